#include "reactor/internal/worker.h"


#include <algorithm>
#include <functional>
#include <utility>
#include <vector>

#include "reactor/clock.h"
#include "reactor/errors.h"
#include "reactor/logging.h"
#include "reactor/internal/accepted_socket_taker.h"
#include "reactor/internal/platform.h"
#include "reactor/internal/socket_ops.h"

namespace netloop::internal {

Worker::Worker(Engine* engine, int index, std::unique_ptr<EventLoop> loop)
    : engine_(engine), index_(index), loop_(std::move(loop)) {
  loop_->AddIterationHook(this);
}

Worker::~Worker() {
  // Connections still here were never run through a loop (Start failed).
  for (auto& [id, conn] : conns_) {
    CloseSocket(conn->fd_);
    delete conn;
  }
  loop_->RemoveIterationHook(this);
}

void Worker::AddConnection(SocketHandle fd, const SocketAddress& peer, uint64_t id,
                           bool is_client, bool connecting, void* context,
                           int64_t connect_deadline_ns, std::unique_ptr<TlsSession> tls) {
  if (stopping_ && !is_client) {
    internal::CloseSocket(fd);
    AddLoad(-1);
    return;
  }
  ApplySocketTuning(fd, peer.family(), options().socket);
  if (!is_client && engine_->socket_taker_ != nullptr) {
    taken_.fetch_add(1, std::memory_order_seq_cst);
    engine_->socket_taker_->TakeAccepted(index_, fd, peer);
    return;
  }
  Conn* conn = new Conn(this, fd, id, is_client, peer);
  conn->context_ = context;
  conns_.emplace(id, conn);
  Conn::Guard guard(conn);
  if (stopping_) {
    // A Dial that raced with Stop: Dial already returned a ConnRef, so the
    // handler is owed the OnClose that reports the failure.
    conn->CloseNow(ConnectFailedError(ECANCELED));
    return;
  }
  if (!is_client && options().tls != nullptr) {
    absl::StatusOr<std::unique_ptr<TlsSession>> session = NewTlsSession(*options().tls, "");
    if (!session.ok()) {
      NETLOOP_LOG(kError) << "tls session: " << session.status().message();
      conn->FailHandshake(session.status());
      return;
    }
    tls = *std::move(session);
  }
  if (connecting) {
    conn->tls_ = std::move(tls);  // the handshake starts once connected
    conn->state_ = Conn::State::kConnecting;
    absl::Status s = loop_->backend().AwaitConnect(conn, peer);
    if (!s.ok()) {
      conn->CloseNow(s);
      return;
    }
    if (connect_deadline_ns != kNeverNanos) {
      conn->timer_ = loop_->RunAtNanos(connect_deadline_ns, [conn] {
        Conn::Guard g(conn);
        conn->timer_ = TimerId();
        conn->CloseNow(ConnectFailedError(ETIMEDOUT));
      });
    }
    return;
  }
  if (tls != nullptr) {
    conn->BeginTls(std::move(tls));
    return;
  }
  conn->HandleConnected();
}

void Worker::FailDial(uint64_t id, void* context, absl::Status reason) {
  Conn* conn = new Conn(this, -1, id, /*is_client=*/true, SocketAddress());
  conn->context_ = context;
  conns_.emplace(id, conn);
  Conn::Guard guard(conn);
  conn->CloseNow(std::move(reason));
}

void Worker::EnforceBufferBudget() {
  const size_t budget = options().buffer_budget_bytes;
  if (budget == 0) return;
  const int64_t share_kib = static_cast<int64_t>(budget / 1024 / engine_->workers_.size());
  int64_t buffered = buffered_kib_.load(std::memory_order_relaxed);
  if (buffered <= share_kib) return;
  // Rare (the budget is spent), so a scan is fine: heaviest first, until the
  // projected total is under 90% of the share. Connections already doomed
  // count as gone, and are not picked (or counted) twice.
  std::vector<std::pair<uint32_t, uint64_t>> by_weight;  // (KiB, id)
  by_weight.reserve(conns_.size());
  for (const auto& [id, c] : conns_) {
    if (c->budget_doomed_) {
      buffered -= c->accounted_kib_;
    } else if (c->accounted_kib_ > 0) {
      by_weight.emplace_back(c->accounted_kib_, id);
    }
  }
  const int64_t target = share_kib * 9 / 10;
  if (buffered <= target) return;
  std::sort(by_weight.begin(), by_weight.end(), std::greater<>());
  std::vector<uint64_t> doomed;
  for (const auto& [kib, id] : by_weight) {
    if (buffered <= target) break;
    buffered -= kib;
    conns_.at(id)->budget_doomed_ = true;
    doomed.push_back(id);
  }
  // Closed from a task, where no handler is on the stack: closing here would
  // run OnClose for (and free) other connections in the middle of the
  // handler whose write spent the budget, which may hold pointers to them.
  loop_->QueueInLoop([this, doomed = std::move(doomed)] {
    const absl::Status reason = LimitExceededError(
        "the loop's share of Options::buffer_budget_bytes is spent; closing the heaviest "
        "connections");
    for (uint64_t id : doomed) {
      Conn* c = Find(id);
      if (c == nullptr) continue;
      Conn::Guard guard(c);  // the last guard out frees a closed Conn
      budget_closes_.fetch_add(1, std::memory_order_relaxed);
      c->CloseWithError(reason);
    }
  });
}

Conn* Worker::Find(uint64_t id) const {
  auto it = conns_.find(id);
  return it == conns_.end() ? nullptr : it->second;
}

void Worker::Forget(Conn* conn) {
  if (conns_.erase(conn->id_) > 0) AddLoad(-1);
}

void Worker::CloseListeners() {
  for (auto& l : listeners_) l->Close();
  for (auto& d : datagram_sockets_) d->Close();
}

Conn* Worker::NewDatagramConn(SocketHandle fd) {
  Conn* conn = new Conn(this, fd, /*id=*/0, /*is_client=*/false, SocketAddress());
  conn->datagram_ = true;
  conn->state_ = Conn::State::kOpen;
  return conn;
}

void Worker::DatagramSocketClosed(Conn* conn) {
  conn->state_ = Conn::State::kClosed;
  conn->fd_ = kInvalidSocket;
}

void Worker::DeleteDatagramConn(Conn* conn) { delete conn; }

void Worker::SetDatagramBatch(Conn* conn, DatagramSocket* batch) { conn->datagram_batch_ = batch; }

void Worker::DeliverDatagram(Conn* conn, std::string_view bytes, const SocketAddress& from,
                             bool truncated) {
  conn->DeliverDatagram(bytes, from, truncated);
}

void Worker::BeginStop(int64_t deadline_ns) {
  if (stopping_) return;
  stopping_ = true;
  stop_deadline_ns_ = deadline_ns;
  CloseListeners();
  for (LoopService* s : services_) s->BeginStop(deadline_ns);
  std::vector<uint64_t> ids;
  ids.reserve(conns_.size());
  for (auto& [id, conn] : conns_) ids.push_back(id);
  for (uint64_t id : ids) {
    Conn* conn = Find(id);
    if (conn == nullptr) continue;
    Conn::Guard guard(conn);
    if (conn->state_ == Conn::State::kConnecting || conn->state_ == Conn::State::kHandshaking) {
      conn->CloseNow(ClosedError("engine stopped"));
    } else if (conn->state_ == Conn::State::kOpen) {
      conn->pending_reason_ = ClosedError("engine stopped");
      conn->Close();
    }
  }
  stop_timer_ = loop_->RunAtNanos(deadline_ns, [this] {
    stop_timer_ = TimerId();
    ForceCloseAll();
  });
}

void Worker::ForceCloseAll() {
  std::vector<uint64_t> ids;
  for (auto& [id, conn] : conns_) ids.push_back(id);
  for (uint64_t id : ids) {
    Conn* conn = Find(id);
    if (conn == nullptr) continue;
    Conn::Guard guard(conn);
    conn->CloseNow(EngineStoppingError());
  }
}

bool Worker::HasReadyWork() const {
  if (index_ == 0 && engine_->signal_stop_.load(std::memory_order_relaxed) &&
      !engine_->stopping()) {
    return true;
  }
  if (!stopping_ || stop_reported_ || !Drained()) return false;
  for (LoopService* s : services_) {
    if (!s->Quiescent()) return false;
  }
  return true;
}

bool Worker::Drained() const {
  // load_ also counts hand-offs on their way here (a Dial or an accept whose
  // AddConnection is still queued): each will still produce an OnClose.
  return conns_.empty() && load_.load(std::memory_order_seq_cst) -
                               taken_.load(std::memory_order_seq_cst) <=
                           0;
}

void Worker::RunReadyWork() {
  if (index_ == 0 && engine_->signal_stop_.load(std::memory_order_relaxed) &&
      !engine_->stopping()) {
    engine_->Stop();
  }
  if (!stopping_ || stop_reported_ || !Drained()) return;
  for (LoopService* s : services_) {
    if (!s->Quiescent()) return;
  }
  stop_reported_ = true;
  if (stop_timer_.valid()) loop_->CancelTimer(stop_timer_);
  engine_->WorkerStopped();
}

}  // namespace netloop::internal
