// The engine: N event loops serving listeners and dialled connections with
// one EventHandler (gnet's Run / Stop / Dial).
//
//   EchoHandler handler;
//   netloop::Engine engine;
//   absl::Status s = engine.Start(handler, {"tcp://127.0.0.1:9000"}, {});
//   ...
//   engine.Stop(absl::Now() + absl::Seconds(5));   // any thread
//   engine.Wait();                                  // returns once stopped
//
// or simply `netloop::Engine::Run(handler, {"tcp://:9000"}, options)`, which
// blocks until a handler returns Action::kShutdown or Stop is called.
#ifndef NETLOOP_REACTOR_ENGINE_H_
#define NETLOOP_REACTOR_ENGINE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "reactor/conn.h"
#include "reactor/event_handler.h"
#include "reactor/event_loop.h"
#include "reactor/options.h"
#include "reactor/socket_handle.h"

namespace netloop {

namespace internal {
class Worker;
class DialResolver;
class Listener;
class TlsSession;
class AcceptedSocketTaker;
void SetAcceptedSocketTaker(Engine& engine, AcceptedSocketTaker* taker);
void ReleaseTakenSocket(Engine& engine, int loop_index);
}  // namespace internal

struct DialOptions {
  // Connect timeout, the name lookup included; OnClose reports ConnectFailed
  // (ETIMEDOUT) when it passes.
  absl::Duration timeout = absl::Seconds(30);
  // Stored in Conn::context() before OnOpen/OnClose run.
  void* context = nullptr;
  // Loop to run the connection on; -1 picks round-robin.
  int loop = -1;
  // TLS over the connection: a client tls::Context (reactor/tls.h). OnOpen
  // runs once the handshake is complete and the server verified (unless the
  // context turned verification off); a failed handshake reaches OnClose as
  // a TlsError (IsTlsError) saying why, a slow one as DeadlineExceeded after
  // Options::tls_handshake_timeout.
  std::shared_ptr<const tls::Context> tls;
  // The host the server's certificate must be issued for, and the SNI sent.
  // Empty: the dialled address's host (its name, or its IP address).
  std::string server_name;
};

// Something else living on a loop that must wind down before the engine stops
// (the fiber bridge's scheduler is one). Called on that loop's thread.
class LoopService {
 public:
  // The engine is stopping; finish by `deadline_ns` (monotonic).
  virtual void BeginStop(int64_t deadline_ns) = 0;
  // True once nothing is left; the loop exits only when every service says so.
  virtual bool Quiescent() const = 0;

 protected:
  ~LoopService() = default;
};

struct EngineStats {
  uint64_t accepted = 0;
  // Times accepting paused because the process or system ran out of file
  // descriptors (EMFILE/ENFILE/ENOBUFS/ENOMEM): the listener backs off instead
  // of spinning; queued connections wait in the backlog and are not lost.
  uint64_t accept_pauses = 0;
  uint64_t dialled = 0;
  // Connections closed because their loop's share of
  // Options::buffer_budget_bytes was spent, and the bytes the loops' buffers
  // hold now (capacity, inbound and outbound).
  uint64_t budget_closes = 0;
  uint64_t buffered_bytes = 0;
  // Accepted TLS connections closed before OnOpen: the handshake failed
  // (garbage, an alert, no shared version), timed out, or the peer left.
  uint64_t tls_handshake_failures = 0;
  // UDP replies dropped because a socket's send buffer was full.
  uint64_t udp_send_drops = 0;
};

class Engine {
 public:
  Engine();
  // Stops (immediately) and waits if still running.
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Binds every address (tcp, unix, and udp: a socket per loop whose
  // datagrams reach OnTraffic on a datagram Conn, see Conn::is_datagram),
  // calls handler.OnBoot, starts the loops and returns
  // once they serve. `addresses` may be empty for a client-only engine (Dial).
  // `handler` must outlive the engine. Call once per Engine; a Start that
  // failed leaves the engine as if never started (no OnShutdown; Start may be
  // called again).
  absl::Status Start(EventHandler& handler, std::vector<std::string> addresses,
                     Options options = {});
  // Blocks until the engine has stopped: all connections closed (OnClose for
  // each), OnShutdown called, loop threads joined. Call from one thread, not
  // from a loop thread.
  absl::Status Wait();
  // Start + Wait.
  static absl::Status Run(EventHandler& handler, std::vector<std::string> addresses,
                          Options options = {});

  // Any thread, idempotent, returns at once. Stops accepting, stops reading,
  // lets each connection's unsent bytes drain until `deadline`, then closes
  // what is left (reason EngineStopping); every connection gets OnClose once.
  void Stop(absl::Time deadline);
  // Stop with the deadline now + Options::close_drain_timeout.
  void Stop();
  // Async-signal-safe Stop(): call it from a signal handler.
  void StopFromSignalHandler();
  // Installs SIGINT/SIGTERM handlers that call StopFromSignalHandler on this
  // engine (one engine per process can own them). Any thread.
  void StopOnSignals();
  bool stopping() const { return stop_requested_.load(std::memory_order_acquire); }

  // Open connections (accepted + dialled) over all loops. Any thread.
  size_t CountConnections() const;
  EngineStats stats() const;

  // Connects to `address` from one of the loops. Returns at once: the
  // connection's OnOpen runs when connected; a failure is reported through
  // OnClose with a ConnectFailed reason. Errors returned here are immediate
  // (bad address, engine stopped). A host name is looked up on a resolver
  // thread, never on the caller's or a loop's; numeric addresses and
  // "localhost" need no lookup. Stop cancels lookups still pending (OnClose
  // with ConnectFailed). tcp and unix only: udp:// is Unimplemented (serve
  // UDP by listening on a udp:// address). Any thread, after Start.
  absl::StatusOr<ConnRef> Dial(std::string_view address, DialOptions options = {});

  // The bound addresses as URIs with the real port ("tcp://127.0.0.1:39123").
  // Valid after Start (and in OnBoot). Any thread.
  std::vector<std::string> ListenAddresses() const { return listen_uris_; }

  int num_loops() const { return static_cast<int>(workers_.size()); }
  EventLoop& loop(int index);
  const Options& options() const { return options_; }
  EventHandler& handler() { return *handler_; }

  // Registers a service on loop `index`. Call on that loop's thread (or
  // before Start returns, from OnBoot).
  void AddLoopService(int index, LoopService* service);

 private:
  friend class internal::Worker;
  friend void internal::SetAcceptedSocketTaker(Engine&, internal::AcceptedSocketTaker*);
  friend void internal::ReleaseTakenSocket(Engine&, int);
  void OnAccepted(SocketHandle fd, const SocketAddress& peer);
  internal::Worker* PickWorker(const SocketAddress& peer);
  uint64_t NextConnId() { return next_conn_id_.fetch_add(1, std::memory_order_relaxed); }
  void WorkerStopped();
  void StartTicker();
  absl::Status BindListeners(const std::vector<std::string>& addresses);
  absl::Status AbandonStart(absl::Status error);
  // The rest of Dial for a host name; `w` is chosen and counted.
  absl::StatusOr<ConnRef> DialByName(internal::Worker* w, NetAddress address,
                                     const DialOptions& dial,
                                     std::shared_ptr<std::unique_ptr<internal::TlsSession>> tls);

  EventHandler* handler_ = nullptr;
  // Takes accepted sockets instead of Conns (internal/accepted_socket_taker.h).
  internal::AcceptedSocketTaker* socket_taker_ = nullptr;
  Options options_;
  std::vector<std::unique_ptr<internal::Worker>> workers_;
  std::vector<std::thread> threads_;
  // Serves acceptor-mode and unix listeners; absent in pure reuse-port mode.
  std::unique_ptr<EventLoop> acceptor_loop_;
  std::thread acceptor_thread_;
  std::vector<std::unique_ptr<internal::Listener>> acceptor_listeners_;
  std::vector<std::string> listen_uris_;
  // Looks up host names for Dial off the loops; created by Start.
  std::unique_ptr<internal::DialResolver> resolver_;

  std::atomic<uint64_t> next_conn_id_{1};
  std::atomic<uint64_t> round_robin_{0};
  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> accept_pauses_{0};
  std::atomic<uint64_t> dialled_{0};

  std::atomic<bool> started_{false};
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> signal_stop_{false};
  std::atomic<int64_t> stop_deadline_ns_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  int workers_stopped_ = 0;  // guarded by mu_
  bool waited_ = false;
};

}  // namespace netloop

#endif  // NETLOOP_REACTOR_ENGINE_H_
