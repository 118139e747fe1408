#include "reactor/conn.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "reactor/clock.h"
#include "reactor/engine.h"
#include "reactor/errors.h"
#include "reactor/event_loop.h"
#include "reactor/logging.h"
#include "reactor/socket_ops.h"
#include "reactor/sys_io.h"
#include "reactor/worker.h"

namespace netloop {
namespace {

// Pieces per sendmsg; the rest waits for the next round (IOV_MAX is 1024).
constexpr size_t kMaxIov = 64;

ssize_t SendIov(int fd, const iovec* iov, size_t count) {
  msghdr msg;
  memset(&msg, 0, sizeof(msg));
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = count;
  ssize_t n;
  do {
    // MSG_NOSIGNAL: a peer that reset mid-write is an error to report, never
    // a SIGPIPE that kills the process.
    n = internal::SysSendMsg(fd, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n;
}

}  // namespace

Conn::Guard::~Guard() {
  if (--c_->guards_ == 0 &&
      (c_->state_ == State::kClosed || c_->state_ == State::kDetached)) {
    delete c_;
  }
}

Conn::Conn(internal::Worker* worker, int fd, uint64_t id, bool is_client,
           const SocketAddress& remote)
    : worker_(worker), id_(id), fd_(fd), is_client_(is_client) {
  if (remote.family() == AF_INET || remote.family() == AF_INET6) {
    remote_len_ = static_cast<uint8_t>(std::min<size_t>(remote.length(), sizeof(remote_)));
    memcpy(&remote_, remote.sockaddr_ptr(), remote_len_);
  }
}

Conn::~Conn() = default;

EventLoop& Conn::loop() const { return worker_->loop(); }
int Conn::loop_index() const { return worker_->index(); }
Engine& Conn::engine() const { return worker_->engine(); }
ConnRef Conn::Ref() const { return ConnRef(worker_, id_); }

SocketAddress Conn::RemoteAddress() const {
  if (remote_len_ > 0) {
    return SocketAddress(reinterpret_cast<const sockaddr*>(&remote_), remote_len_);
  }
  return fd_ >= 0 ? PeerAddressOf(fd_) : SocketAddress();
}

SocketAddress Conn::LocalAddress() const {
  return fd_ >= 0 ? LocalAddressOf(fd_) : SocketAddress();
}

// ---------------------------------------------------------------- reading

ByteView Conn::Peek(size_t n) {
  if (!fresh_.empty()) return {fresh_.substr(0, std::min(n, fresh_.size())), {}};
  RingBuffer::Views v = inbound_.Peek(n);
  return {v.first, v.second};
}

ByteView Conn::Next(size_t n) {
  ByteView v = Peek(n);
  Discard(v.size());
  return v;
}

size_t Conn::Discard(size_t n) {
  if (!fresh_.empty()) {
    size_t k = std::min(n, fresh_.size());
    fresh_.remove_prefix(k);
    return k;
  }
  return inbound_.Discard(n);
}

std::string_view Conn::PeekContiguous(size_t n) {
  if (!fresh_.empty()) return fresh_.substr(0, std::min(n, fresh_.size()));
  return inbound_.MakeContiguous(n);
}

void Conn::OnIoReady(uint32_t events) {
  Guard guard(this);
  if (state_ == State::kConnecting) {
    if (events & (kIoWritable | kIoError)) {
      int err = SocketError(fd_);
      if (err != 0) {
        CloseNow(ConnectFailedError(err));
        return;
      }
      if (timer_.valid()) {
        loop().CancelTimer(timer_);
        timer_ = TimerId();
      }
      HandleConnected();
    }
    return;
  }
  if (state_ != State::kOpen && state_ != State::kClosing) return;
  if ((events & (kIoReadable | kIoPeerClosed | kIoError)) && state_ == State::kOpen &&
      !read_paused_ && !peer_eof_) {
    HandleReadable();
  }
  if ((events & kIoWritable) && (state_ == State::kOpen || state_ == State::kClosing)) {
    HandleWritable();
  }
  if ((events & kIoError) && (state_ == State::kOpen || state_ == State::kClosing)) {
    int err = SocketError(fd_);
    CloseNow(err != 0 ? ResetError(err) : PeerClosedError());
  }
}

void Conn::HandleConnected() {
  state_ = State::kOpen;
  opened_ = true;
  last_active_ns_ = loop().NowNanos();
  UpdateInterest();
  if (state_ != State::kOpen) return;
  ArmIdleTimer();
  ++in_callback_;
  Action action = worker_->handler().OnOpen(*this);
  --in_callback_;
  ApplyAction(static_cast<int>(action));
  AfterCallback();
}

void Conn::HandleReadable() {
  EventLoop& lp = loop();
  char* buf = lp.read_buffer();
  const size_t cap = lp.read_buffer_size();
  const bool edge = lp.poller().edge_triggered();
  size_t budget = worker_->options().read_budget_per_event;
  for (;;) {
    ssize_t n = internal::SysRead(fd_, buf, cap);
    if (n > 0) {
      last_active_ns_ = lp.NowNanos();
      if (inbound_.empty()) {
        fresh_ = std::string_view(buf, static_cast<size_t>(n));
      } else {
        inbound_.Append(std::string_view(buf, static_cast<size_t>(n)));
      }
      DispatchTraffic();
      if (state_ != State::kOpen || read_paused_) return;
      // Level-triggered: one read per event keeps loops fair and the poller
      // reports the rest. Edge-triggered: drain to EAGAIN, within a budget.
      if (!edge) return;
      if (static_cast<size_t>(n) >= budget) {
        lp.ReinvokeNextIteration(this, kIoReadable);
        return;
      }
      budget -= static_cast<size_t>(n);
      continue;
    }
    if (n == 0) {
      HandlePeerEof();
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    FailIo(errno);
    return;
  }
}

void Conn::DispatchTraffic() {
  ++in_callback_;
  Action action = worker_->handler().OnTraffic(*this);
  --in_callback_;
  if (!fresh_.empty()) {
    // The one copy: bytes the handler left for later move out of the shared
    // buffer, which the next read on this loop overwrites.
    if (state_ == State::kOpen || state_ == State::kClosing) inbound_.Append(fresh_);
    fresh_ = {};
  }
  if (inbound_.empty()) inbound_.ReleaseIfEmpty();
  const size_t max_inbound = worker_->options().max_inbound_bytes;
  if (max_inbound > 0 && inbound_.size() > max_inbound && state_ == State::kOpen &&
      !close_requested_) {
    close_requested_ = true;
    pending_reason_ = LimitExceededError(
        "inbound bytes left unconsumed exceed Options::max_inbound_bytes");
  }
  AccountBuffers();
  ApplyAction(static_cast<int>(action));
  AfterCallback();
}

void Conn::AccountBuffers() {
  const uint32_t now = static_cast<uint32_t>((inbound_.capacity() + outbound_.capacity()) >> 10);
  if (now == accounted_kib_) return;
  const bool grew = now > accounted_kib_;
  worker_->AddBufferedKib(static_cast<int64_t>(now) - static_cast<int64_t>(accounted_kib_));
  accounted_kib_ = now;
  if (grew) worker_->EnforceBufferBudget();
}

void Conn::HandlePeerEof() {
  peer_eof_ = true;
  if (outbound_.empty() || state_ != State::kOpen) {
    CloseNow(PeerClosedError());
    return;
  }
  // Half-close from the peer: it may still read. Finish sending, then close.
  state_ = State::kClosing;
  pending_reason_ = PeerClosedError();
  UpdateInterest();
  // A peer that half-closed and never reads must not hold the connection
  // forever: the same bound as a local Close.
  if (state_ == State::kClosing) ArmDrainTimer();
}

void Conn::AfterCallback() {
  if (in_callback_ > 0) return;
  if (close_requested_) {
    close_requested_ = false;
    absl::Status reason = std::move(pending_reason_);
    pending_reason_ = absl::OkStatus();
    CloseNow(std::move(reason));
  }
}

void Conn::ApplyAction(int action) {
  switch (static_cast<Action>(action)) {
    case Action::kNone:
      return;
    case Action::kClose:
      Close();
      return;
    case Action::kShutdown:
      worker_->engine().Stop();
      return;
  }
}

// ---------------------------------------------------------------- writing

absl::Status Conn::Write(std::string_view data) {
  Guard guard(this);  // called from a loop timer or task, this may free the Conn
  if (state_ != State::kOpen) {
    return absl::FailedPreconditionError("write on a connection that is not open");
  }
  if (data.empty()) return absl::OkStatus();
  if (outbound_.empty()) {
    ssize_t n;
    do {
      n = internal::SysSend(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n == static_cast<ssize_t>(data.size())) return absl::OkStatus();
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        int err = errno;
        FailIo(err);
        return ResetError(err);
      }
      n = 0;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  outbound_.Append(data);
  AfterOutboundGrew();
  return absl::OkStatus();
}

absl::Status Conn::Writev(std::span<const std::string_view> pieces) {
  Guard guard(this);  // called from a loop timer or task, this may free the Conn
  if (state_ != State::kOpen) {
    return absl::FailedPreconditionError("write on a connection that is not open");
  }
  size_t first_unsent = 0;
  size_t offset_in_piece = 0;
  if (outbound_.empty()) {
    while (first_unsent < pieces.size()) {
      iovec iov[kMaxIov];
      size_t count = 0;
      size_t total = 0;
      for (size_t i = first_unsent; i < pieces.size() && count < kMaxIov; ++i) {
        std::string_view p = pieces[i];
        if (i == first_unsent) p.remove_prefix(offset_in_piece);
        if (p.empty()) continue;
        iov[count].iov_base = const_cast<char*>(p.data());
        iov[count].iov_len = p.size();
        total += p.size();
        ++count;
      }
      if (count == 0) return absl::OkStatus();
      ssize_t n = SendIov(fd_, iov, count);
      if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
          int err = errno;
          FailIo(err);
          return ResetError(err);
        }
        break;
      }
      // Advance (first_unsent, offset_in_piece) by n bytes.
      size_t left = static_cast<size_t>(n);
      while (left > 0 && first_unsent < pieces.size()) {
        size_t avail = pieces[first_unsent].size() - offset_in_piece;
        if (left < avail) {
          offset_in_piece += left;
          left = 0;
        } else {
          left -= avail;
          ++first_unsent;
          offset_in_piece = 0;
        }
      }
      if (static_cast<size_t>(n) < total) break;  // socket full
    }
  }
  if (first_unsent >= pieces.size()) return absl::OkStatus();
  for (size_t i = first_unsent; i < pieces.size(); ++i) {
    std::string_view p = pieces[i];
    if (i == first_unsent) p.remove_prefix(offset_in_piece);
    outbound_.Append(p);
  }
  AfterOutboundGrew();
  return absl::OkStatus();
}

absl::Status Conn::Flush() {
  Guard guard(this);  // called from a loop timer or task, this may free the Conn
  if (state_ != State::kOpen && state_ != State::kClosing) {
    return absl::FailedPreconditionError("flush on a closed connection");
  }
  if (!SendBuffered()) return pending_reason_.ok() ? ClosedError() : pending_reason_;
  return absl::OkStatus();
}

// Sends what the outbound ring holds, as far as the socket takes it. Returns
// false if the connection failed.
bool Conn::SendBuffered() {
  const bool edge = loop().poller().edge_triggered();
  while (!outbound_.empty()) {
    iovec iov[2];
    int count = outbound_.ReadableIovecs(iov);
    ssize_t n = SendIov(fd_, iov, static_cast<size_t>(count));
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      FailIo(errno);
      return false;
    }
    outbound_.Discard(static_cast<size_t>(n));
    // Level-triggered: one send per writable event, the poller says when more
    // room opens. Edge-triggered must go on until EAGAIN.
    if (!edge) break;
  }
  AfterOutboundShrank();
  return true;
}

void Conn::HandleWritable() { SendBuffered(); }

void Conn::AfterOutboundGrew() {
  AccountBuffers();  // never closes here: budget victims close from a task
  const Options& o = worker_->options();
  if (o.write_high_water > 0 && !read_paused_ && outbound_.size() > o.write_high_water) {
    read_paused_ = true;
    UpdateInterest();
    ++in_callback_;
    worker_->handler().OnBackpressure(*this, true);
    --in_callback_;
    AfterCallback();
    return;
  }
  UpdateInterest();
}

void Conn::AfterOutboundShrank() {
  if (outbound_.empty()) {
    outbound_.ReleaseIfEmpty();
    AccountBuffers();
    if (state_ == State::kClosing) {
      absl::Status reason = std::move(pending_reason_);
      pending_reason_ = absl::OkStatus();
      CloseNow(std::move(reason));
      return;
    }
    if (shutdown_write_pending_) {
      shutdown_write_pending_ = false;
      ::shutdown(fd_, SHUT_WR);
    }
  }
  const Options& o = worker_->options();
  if (read_paused_) {
    size_t low = o.write_low_water > 0 ? o.write_low_water : o.write_high_water / 2;
    if (outbound_.size() <= low) {
      read_paused_ = false;
      UpdateInterest();
      ++in_callback_;
      worker_->handler().OnBackpressure(*this, false);
      --in_callback_;
      AfterCallback();
      return;
    }
  }
  UpdateInterest();
}

void Conn::UpdateInterest() {
  if (state_ == State::kClosed || state_ == State::kDetached ||
      state_ == State::kConnecting) {
    return;
  }
  uint32_t want = 0;
  if (state_ == State::kOpen && !read_paused_ && !peer_eof_) {
    want |= kIoReadable | kIoPeerClosed;
  }
  if (!outbound_.empty()) want |= kIoWritable;
  if (want == interest_ && registered_) return;
  interest_ = want;
  absl::Status s = registered_ ? loop().UpdateWatch(fd_, want, this)
                               : loop().Watch(fd_, want, this);
  registered_ = true;
  if (!s.ok()) {
    NETLOOP_LOG(kError) << "watch fd " << fd_ << ": " << s.message();
    if (in_callback_ > 0) {
      close_requested_ = true;
      pending_reason_ = s;
    } else {
      CloseNow(s);
    }
  }
}

// ---------------------------------------------------------------- closing

void Conn::Close() {
  Guard guard(this);  // called from a loop timer or task, this may free the Conn
  if (state_ != State::kOpen) {
    if (state_ == State::kConnecting) CloseWithError(ClosedError());
    return;
  }
  if (outbound_.empty()) {
    absl::Status reason = std::move(pending_reason_);
    pending_reason_ = absl::OkStatus();
    if (in_callback_ > 0) {
      close_requested_ = true;
      pending_reason_ = std::move(reason);
      return;
    }
    CloseNow(std::move(reason));
    return;
  }
  state_ = State::kClosing;
  UpdateInterest();
  ArmDrainTimer();
}

void Conn::ArmDrainTimer() {
  // Replaces the idle timer, which ignores connections that are not open.
  if (timer_.valid()) loop().CancelTimer(timer_);
  timer_ = TimerId();
  int64_t drain = DurationToNanosSaturated(worker_->options().close_drain_timeout);
  if (drain < kNeverNanos) {
    timer_ = loop().RunAtNanos(loop().NowNanos() + drain, [this] {
      Guard g(this);
      timer_ = TimerId();
      CloseNow(DeadlineExceededError("close: unsent bytes did not drain in time"));
    });
  }
}

void Conn::CloseWithError(absl::Status reason) {
  Guard guard(this);  // called from a loop timer or task, this may free the Conn
  if (state_ == State::kClosed || state_ == State::kDetached) return;
  if (in_callback_ > 0) {
    close_requested_ = true;
    pending_reason_ = std::move(reason);
    return;
  }
  CloseNow(std::move(reason));
}

void Conn::ShutdownWrite() {
  Guard guard(this);  // called from a loop timer or task, this may free the Conn
  if (state_ != State::kOpen) return;
  if (outbound_.empty()) {
    ::shutdown(fd_, SHUT_WR);
  } else {
    shutdown_write_pending_ = true;
  }
}

void Conn::FailIo(int err) {
  absl::Status reason = ResetError(err);
  if (in_callback_ > 0) {
    // Closing under a running callback would free what it is using; stop
    // touching the socket now and close once the callback returns.
    if (!close_requested_) {
      close_requested_ = true;
      pending_reason_ = std::move(reason);
    }
    read_paused_ = true;
    return;
  }
  CloseNow(std::move(reason));
}

void Conn::CloseNow(absl::Status reason) {
  if (state_ == State::kClosed || state_ == State::kDetached) return;
  state_ = State::kClosed;
  if (timer_.valid()) {
    loop().CancelTimer(timer_);
    timer_ = TimerId();
  }
  if (registered_) (void)loop().Unwatch(fd_, this);
  registered_ = false;
  interest_ = 0;
  fresh_ = {};
  inbound_.Release();
  outbound_.Release();
  AccountBuffers();
  worker_->Forget(this);
  // OnClose still sees a working fd (LocalAddress, SO_ options); the socket
  // closes right after it.
  ++in_callback_;
  worker_->handler().OnClose(*this, reason);
  --in_callback_;
  if (fd_ >= 0) ::close(fd_);  // a Dial that failed before its socket has none
  fd_ = -1;
  // The last Guard frees the Conn.
}

absl::StatusOr<DetachedConn> Conn::Detach() {
  Guard guard(this);  // called from a loop timer or task, this may free the Conn
  if (state_ != State::kOpen) {
    return absl::FailedPreconditionError("detach: connection is not open");
  }
  if (!outbound_.empty()) {
    return absl::FailedPreconditionError("detach: unsent outbound bytes pending");
  }
  DetachedConn out;
  out.fd = fd_;
  out.remote = RemoteAddress();
  Peek().AppendTo(&out.unread);
  fresh_ = {};
  inbound_.Release();
  AccountBuffers();
  if (timer_.valid()) {
    loop().CancelTimer(timer_);
    timer_ = TimerId();
  }
  if (registered_) (void)loop().Unwatch(fd_, this);
  registered_ = false;
  interest_ = 0;
  state_ = State::kDetached;
  worker_->Forget(this);
  fd_ = -1;
  // A Guard on the stack (callbacks always run under one) frees the Conn.
  return out;
}

void Conn::ArmIdleTimer() {
  int64_t idle = DurationToNanosSaturated(worker_->options().idle_timeout);
  if (idle <= 0 || idle == kNeverNanos) return;
  timer_ = loop().RunAtNanos(last_active_ns_ + idle, [this] { OnIdleTimer(); });
}

void Conn::OnIdleTimer() {
  Guard g(this);
  timer_ = TimerId();
  if (state_ != State::kOpen) return;
  int64_t idle = DurationToNanosSaturated(worker_->options().idle_timeout);
  int64_t now = MonotonicNanos();
  // Traffic only stamps last_active_ns_; the timer is moved lazily here, so a
  // busy connection costs no timer work per message.
  if (now - last_active_ns_ >= idle) {
    CloseNow(DeadlineExceededError("idle timeout"));
    return;
  }
  timer_ = loop().RunAtNanos(last_active_ns_ + idle, [this] { OnIdleTimer(); });
}

// ---------------------------------------------------------------- ConnRef

void ConnRef::AsyncWrite(std::string data, WriteCallback done) const {
  if (worker_ == nullptr) return;
  internal::Worker* w = worker_;
  uint64_t id = id_;
  w->loop().QueueInLoop([w, id, data = std::move(data), done = std::move(done)]() mutable {
    Conn* c = w->Find(id);
    if (c == nullptr || !c->is_open()) {
      if (done) done(nullptr, ClosedError());
      return;
    }
    Conn::Guard g(c);
    absl::Status s = c->Write(data);
    if (done) done(c->is_open() ? c : nullptr, std::move(s));
  });
}

void ConnRef::AsyncWritev(std::vector<std::string> parts, WriteCallback done) const {
  if (worker_ == nullptr) return;
  internal::Worker* w = worker_;
  uint64_t id = id_;
  w->loop().QueueInLoop([w, id, parts = std::move(parts), done = std::move(done)]() mutable {
    Conn* c = w->Find(id);
    if (c == nullptr || !c->is_open()) {
      if (done) done(nullptr, ClosedError());
      return;
    }
    Conn::Guard g(c);
    std::vector<std::string_view> views(parts.begin(), parts.end());
    absl::Status s = c->Writev(views);
    if (done) done(c->is_open() ? c : nullptr, std::move(s));
  });
}

void ConnRef::Wake() const {
  Run([](Conn* c) {
    if (c != nullptr && c->is_open()) c->DispatchTraffic();
  });
}

void ConnRef::Close() const {
  Run([](Conn* c) {
    if (c != nullptr) c->Close();
  });
}

void ConnRef::CloseWithError(absl::Status reason) const {
  Run([reason = std::move(reason)](Conn* c) mutable {
    if (c != nullptr) c->CloseWithError(std::move(reason));
  });
}

void ConnRef::Run(absl::AnyInvocable<void(Conn*)> fn) const {
  if (worker_ == nullptr) return;
  internal::Worker* w = worker_;
  uint64_t id = id_;
  w->loop().QueueInLoop([w, id, fn = std::move(fn)]() mutable {
    Conn* c = w->Find(id);
    if (c == nullptr) {
      fn(nullptr);
      return;
    }
    Conn::Guard g(c);
    fn(c);
  });
}

}  // namespace netloop
