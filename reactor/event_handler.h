// The callback contract (gnet's EventHandler). One handler instance serves
// every loop of an engine, so its methods run concurrently on several loop
// threads: keep shared state thread-safe, or key it per loop or per Conn.
#ifndef NETLOOP_REACTOR_EVENT_HANDLER_H_
#define NETLOOP_REACTOR_EVENT_HANDLER_H_

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace netloop {

class Conn;
class Engine;

// What the engine does after a callback returns.
enum class Action {
  kNone,
  kClose,     // close this connection (gracefully: unsent bytes drain first)
  kShutdown,  // stop the whole engine (Engine::Stop with the drain timeout)
};

struct TickResult {
  absl::Duration next_delay = absl::Seconds(1);
  Action action = Action::kNone;
};

class EventHandler {
 public:
  virtual ~EventHandler() = default;

  // Once, after the listeners are bound and before any loop serves traffic.
  // Engine::ListenAddresses() is valid here. Calling thread of Engine::Start.
  virtual Action OnBoot(Engine& engine) { return Action::kNone; }

  // A connection was accepted, or a Dial connected. May write a greeting.
  // kClose closes it (OnClose follows). Loop thread of the connection.
  virtual Action OnOpen(Conn& conn) { return Action::kNone; }

  // Bytes arrived (or Conn::Wake was called). Consume them with Next/Discard;
  // what is left unconsumed is kept and offered again with the next bytes.
  // The default discards everything. Loop thread of the connection.
  virtual Action OnTraffic(Conn& conn);

  // Exactly once per connection that was opened or dialled, with the reason:
  // OK for a local Close()/kClose, IsPeerClosed() for EOF, a reset error, a
  // deadline for the idle timeout, ConnectFailed for a failed Dial (OnOpen was
  // then never called), or the status given to CloseWithError. The Conn is
  // freed after OnClose returns: release its context here. Loop thread.
  virtual void OnClose(Conn& conn, const absl::Status& reason) {}

  // With Options::ticker, on loop 0: returns when to tick next.
  virtual TickResult OnTick() { return {}; }

  // The connection's unsent bytes crossed the high-water mark (paused = true:
  // the engine stopped reading from it) or drained below the low-water mark
  // (paused = false: reading resumed). Loop thread of the connection.
  virtual void OnBackpressure(Conn& conn, bool paused) {}

  // Once, after every connection is closed and before the loops exit. Thread
  // that called Engine::Wait (or Run).
  virtual void OnShutdown(Engine& engine) {}
};

}  // namespace netloop

#endif  // NETLOOP_REACTOR_EVENT_HANDLER_H_
