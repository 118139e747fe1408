// Serving connections with blocking-style fiber handlers on the engine's own
// loops: one fiber per accepted connection, on the loop that accepted it, in
// either accept mode.
//
//   netloop::fiber::FiberServer server;
//   server.Start({"tcp://127.0.0.1:9000"}, {}, [](netloop::fiber::FiberConn& c) {
//     char buf[4096];
//     while (auto n = c.Read(buf)) {
//       if (!c.WriteAll({buf, *n}).ok()) break;
//     }
//   });
//   ...
//   server.Stop(absl::Now() + absl::Seconds(5));
//   server.Wait();
#ifndef NETLOOP_FIBERBRIDGE_SERVER_H_
#define NETLOOP_FIBERBRIDGE_SERVER_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "fiberbridge/fiber_conn.h"
#include "fiberbridge/scheduler.h"
#include "reactor/conn.h"
#include "reactor/engine.h"
#include "reactor/options.h"

namespace netloop::fiber {

// Runs in the connection's fiber, concurrently on several loops: must be
// thread-safe to call. The connection closes when it returns.
using ConnHandler = std::function<void(FiberConn&)>;

class FiberServer {
 public:
  FiberServer();
  ~FiberServer();  // stops and waits if still running

  // Binds, starts the loops, returns once serving. Same Options as Engine;
  // with Options::tls each connection's fiber runs the TLS handshake
  // (bounded by Options::tls_handshake_timeout) before the handler, which
  // then reads and writes plaintext. A connection whose handshake fails is
  // closed without reaching the handler (tls_handshake_failures counts it).
  absl::Status Start(std::vector<std::string> addresses, Options options,
                     ConnHandler handler, SchedulerOptions scheduler_options = {});
  // Any thread. Stops accepting, wakes every parked fiber's connection with a
  // Closed status (and sleepers with Cancelled), and waits for handlers to
  // return. At `deadline`, fibers still parked in a Channel, CondVar or
  // WaitGroup resume with Cancelled; fibers that still do not return are
  // reported in a warning and abandoned (see "Stopping" in scheduler.h).
  void Stop(absl::Time deadline);
  // Blocks until stopped. Not from a loop thread.
  absl::Status Wait();
  // Start + Wait (until Stop from another thread or a signal).
  static absl::Status Serve(std::vector<std::string> addresses, Options options,
                            ConnHandler handler);

  // Handler fibers running now. Any thread.
  size_t CountConnections() const { return live_.load(std::memory_order_relaxed); }
  // Connections closed because their TLS handshake failed or timed out.
  // Any thread.
  uint64_t tls_handshake_failures() const {
    return tls_handshake_failures_.load(std::memory_order_relaxed);
  }
  Engine& engine() { return engine_; }
  std::vector<std::string> ListenAddresses() const { return engine_.ListenAddresses(); }

 private:
  class Bridge;
  // Runs in the connection's fiber: the handshake with Options::tls, then
  // the handler.
  void ServeConn(FiberConn& conn);

  Engine engine_;
  std::unique_ptr<Bridge> bridge_;
  ConnHandler handler_;
  SchedulerOptions scheduler_options_;
  std::atomic<size_t> live_{0};
  std::shared_ptr<const tls::Context> tls_;
  absl::Duration tls_handshake_timeout_;
  std::atomic<uint64_t> tls_handshake_failures_{0};
};

// Callback-to-fiber bridge: from a callback handler (OnOpen or OnTraffic, on
// the loop thread), moves `conn` to a new fiber on the same loop running
// `handler`, with the bytes not yet consumed still readable. The callback
// handler gets no OnClose for it. Fails if outbound bytes are pending.
absl::Status HandOff(Conn& conn, ConnHandler handler);

}  // namespace netloop::fiber

#endif  // NETLOOP_FIBERBRIDGE_SERVER_H_
