// One engine loop plus the connections it owns (engine internal). Every
// method runs on the loop thread unless marked otherwise.
#ifndef NETLOOP_REACTOR_INTERNAL_WORKER_H_
#define NETLOOP_REACTOR_INTERNAL_WORKER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "reactor/conn.h"
#include "reactor/engine.h"
#include "reactor/event_loop.h"
#include "reactor/internal/datagram_socket.h"
#include "reactor/internal/listener.h"
#include "reactor/internal/tls_session.h"
#include "reactor/socket_handle.h"

namespace netloop::internal {

class Worker final : public IterationHook {
 public:
  Worker(Engine* engine, int index, std::unique_ptr<EventLoop> loop);
  ~Worker();

  EventLoop& loop() { return *loop_; }
  int index() const { return index_; }
  Engine& engine() { return *engine_; }
  EventHandler& handler() { return *engine_->handler_; }
  const Options& options() const { return engine_->options_; }

  // Takes ownership of `fd` (accepted, or connecting when `connecting`) and
  // opens a Conn for it. Counted in load() by whoever chose this worker.
  // An accepted socket gets a TLS session when Options::tls is set; a
  // dialled one brings its own (`tls`, made by Dial).
  void AddConnection(SocketHandle fd, const SocketAddress& peer, uint64_t id, bool is_client,
                     bool connecting, void* context, int64_t connect_deadline_ns,
                     std::unique_ptr<TlsSession> tls = nullptr);
  // A Dial that failed before it had a socket (its name did not resolve, or
  // the engine stopped first): reports `reason` through OnClose on a Conn
  // that never opened. Counted in load() like AddConnection.
  void FailDial(uint64_t id, void* context, absl::Status reason);
  Conn* Find(uint64_t id) const;
  // A Conn closed or detached: stop tracking it.
  void Forget(Conn* conn);

  void AddListener(std::unique_ptr<Listener> listener) {
    listeners_.push_back(std::move(listener));
  }
  void AddDatagramSocket(std::unique_ptr<DatagramSocket> socket) {
    datagram_sockets_.push_back(std::move(socket));
  }

  // UDP (DatagramSocket): the handler's Conn for a socket, which is never
  // in conns_ (it has no OnOpen or OnClose, and does not hold Stop up).
  Conn* NewDatagramConn(SocketHandle fd);
  void DeleteDatagramConn(Conn* conn);
  void DatagramSocketClosed(Conn* conn);
  void DeliverDatagram(Conn* conn, std::string_view bytes, const SocketAddress& from,
                       bool truncated);
  void SetDatagramBatch(Conn* conn, DatagramSocket* batch);
  void CountUdpSendDrop() { udp_send_drops_.fetch_add(1, std::memory_order_relaxed); }
  uint64_t udp_send_drops() const { return udp_send_drops_.load(std::memory_order_relaxed); }
  void CloseListeners();
  void AddService(LoopService* service) {
    for (LoopService* s : services_) {
      if (s == service) return;
    }
    services_.push_back(service);
    if (stopping_) service->BeginStop(stop_deadline_ns_);
  }
  void BeginStop(int64_t deadline_ns);

  // Open connections plus hand-offs on their way here. Any thread.
  int64_t load() const { return load_.load(std::memory_order_relaxed); }
  // A socket given to the engine's AcceptedSocketTaker is done with.
  void ReleaseTaken() {
    taken_.fetch_sub(1, std::memory_order_seq_cst);
    load_.fetch_sub(1, std::memory_order_seq_cst);
  }
  void AddLoad(int64_t delta, std::memory_order order = std::memory_order_relaxed) {
    load_.fetch_add(delta, order);
  }

  // Buffer accounting (see Options::buffer_budget_bytes). Loop thread,
  // except the two readers.
  void AddBufferedKib(int64_t delta) {
    buffered_kib_.fetch_add(delta, std::memory_order_relaxed);
  }
  // Called when a connection's buffers grew: while this loop is over its
  // share, marks its heaviest connections and closes them from a task.
  void EnforceBufferBudget();
  uint64_t budget_closes() const { return budget_closes_.load(std::memory_order_relaxed); }
  void CountTlsHandshakeFailure() {
    tls_handshake_failures_.fetch_add(1, std::memory_order_relaxed);
  }
  uint64_t tls_handshake_failures() const {
    return tls_handshake_failures_.load(std::memory_order_relaxed);
  }
  uint64_t buffered_bytes() const {
    int64_t kib = buffered_kib_.load(std::memory_order_relaxed);
    return kib > 0 ? static_cast<uint64_t>(kib) * 1024 : 0;
  }

  // IterationHook: notices when a stopping worker has nothing left.
  bool HasReadyWork() const override;
  void RunReadyWork() override;

 private:
  void ForceCloseAll();
  // No connection left, none on its way.
  bool Drained() const;

  Engine* const engine_;
  const int index_;
  std::unique_ptr<EventLoop> loop_;
  absl::flat_hash_map<uint64_t, Conn*> conns_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<std::unique_ptr<DatagramSocket>> datagram_sockets_;
  std::vector<LoopService*> services_;
  std::atomic<int64_t> load_{0};
  // Of load_, the sockets an AcceptedSocketTaker holds: they are its
  // services' business when stopping (a fiber the scheduler abandoned never
  // gives its socket back), so Drained does not wait for them.
  std::atomic<int64_t> taken_{0};
  std::atomic<int64_t> buffered_kib_{0};
  std::atomic<uint64_t> budget_closes_{0};
  std::atomic<uint64_t> tls_handshake_failures_{0};
  std::atomic<uint64_t> udp_send_drops_{0};
  bool stopping_ = false;
  bool stop_reported_ = false;
  int64_t stop_deadline_ns_ = 0;
  TimerId stop_timer_;
};

}  // namespace netloop::internal

#endif  // NETLOOP_REACTOR_INTERNAL_WORKER_H_
