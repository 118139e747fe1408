#include "fiberbridge/server.h"


#include <utility>

#include "reactor/internal/accepted_socket_taker.h"
#include "reactor/internal/platform.h"
#include "reactor/logging.h"

namespace netloop::fiber {
namespace {

// A detached fd travelling to a fiber that has not run yet: if the fiber is
// destroyed without running (its scheduler went away first), its captures
// die and this closes the fd, which nobody else owns at that point.
class PendingFd {
 public:
  explicit PendingFd(SocketHandle fd) : fd_(fd) {}
  PendingFd(PendingFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  PendingFd& operator=(PendingFd&&) = delete;
  ~PendingFd() {
    if (IsValidSocket(fd_)) netloop::internal::CloseSocket(fd_);
  }
  // Hands the fd on (to FiberConn::Serve, which owns it from then on).
  int Release() { return std::exchange(fd_, -1); }

 private:
  SocketHandle fd_;
};

}  // namespace

// The engine-side handler. Accepted sockets never become callback Conns:
// the engine hands each straight to TakeAccepted on the loop that is to
// serve it, which starts its fiber there.
class FiberServer::Bridge final : public EventHandler,
                                  public netloop::internal::AcceptedSocketTaker {
 public:
  explicit Bridge(FiberServer* server) : server_(server) {}

  Action OnBoot(Engine& engine) override {
    // The loops are not running yet: registering from here is allowed.
    for (int i = 0; i < engine.num_loops(); ++i) {
      Scheduler& s = Scheduler::For(engine.loop(i), server_->scheduler_options_);
      engine.AddLoopService(i, &s);
    }
    return Action::kNone;
  }

  // Connections dialled through engine().Dial() still arrive as Conns: they
  // leave the callback world here, as accepted ones did before the engine
  // could hand sockets over directly.
  Action OnOpen(Conn& conn) override {
    absl::StatusOr<DetachedConn> detached = conn.Detach();
    if (!detached.ok()) return Action::kClose;
    SpawnServe(conn.loop_index(), detached->fd, /*taken=*/false);
    return Action::kNone;
  }

  void TakeAccepted(int loop_index, SocketHandle fd, const SocketAddress&) override {
    SpawnServe(loop_index, fd, /*taken=*/true);
  }

 private:
  // Starts the handler's fiber for `fd` on loop `loop_index`. A `taken`
  // socket (accepted, never a Conn) is counted by the engine until
  // ReleaseTakenSocket.
  void SpawnServe(int loop_index, SocketHandle fd, bool taken) {
    // The closure is three words: it fits AnyInvocable's inline storage, so
    // a parked connection pays no heap block for it.
    FiberServer* server = server_;
    const int released_index = taken ? loop_index : -1;
    server->live_.fetch_add(1, std::memory_order_relaxed);
    Scheduler::For(server->engine_.loop(loop_index))
        .Spawn([server, released_index, fd = PendingFd(fd)]() mutable {
          absl::Status s = FiberConn::Serve(fd.Release(), {},
                                            [server](FiberConn& conn) { server->ServeConn(conn); });
          if (!s.ok()) {
            NETLOOP_LOG(kWarning) << "fiber connection: " << s.message();
          }
          server->live_.fetch_sub(1, std::memory_order_relaxed);
          if (released_index >= 0) {
            netloop::internal::ReleaseTakenSocket(server->engine_, released_index);
          }
        });
  }

  FiberServer* server_;
};

FiberServer::FiberServer() = default;

FiberServer::~FiberServer() {
  if (bridge_ != nullptr) {
    engine_.Stop(absl::Now());
    (void)engine_.Wait();
  }
}

void FiberServer::ServeConn(FiberConn& conn) {
  if (tls_ != nullptr) {
    // As in the callback model, a zero or infinite timeout is no bound.
    const bool bounded = tls_handshake_timeout_ > absl::ZeroDuration() &&
                         tls_handshake_timeout_ != absl::InfiniteDuration();
    if (bounded) conn.SetDeadline(absl::Now() + tls_handshake_timeout_);
    if (!conn.StartTls(tls_).ok()) {
      tls_handshake_failures_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (bounded) conn.SetDeadline(absl::InfiniteFuture());
  }
  handler_(conn);
}

absl::Status FiberServer::Start(std::vector<std::string> addresses, Options options,
                                ConnHandler handler, SchedulerOptions scheduler_options) {
  if (options.tls != nullptr && !options.tls->is_server()) {
    return absl::InvalidArgumentError("Options::tls must be a server tls::Context");
  }
  handler_ = std::move(handler);
  tls_ = options.tls;
  tls_handshake_timeout_ = options.tls_handshake_timeout;
  scheduler_options_ = scheduler_options;
  bridge_ = std::make_unique<Bridge>(this);
  netloop::internal::SetAcceptedSocketTaker(engine_, bridge_.get());
  return engine_.Start(*bridge_, std::move(addresses), options);
}

void FiberServer::Stop(absl::Time deadline) { engine_.Stop(deadline); }

absl::Status FiberServer::Wait() { return engine_.Wait(); }

absl::Status FiberServer::Serve(std::vector<std::string> addresses, Options options,
                                ConnHandler handler) {
  FiberServer server;
  absl::Status s = server.Start(std::move(addresses), options, std::move(handler));
  if (!s.ok()) return s;
  server.engine().StopOnSignals();
  return server.Wait();
}

absl::Status HandOff(Conn& conn, ConnHandler handler) {
  Engine& engine = conn.engine();
  int index = conn.loop_index();
  absl::StatusOr<DetachedConn> detached = conn.Detach();
  if (!detached.ok()) return detached.status();
  Scheduler& s = Scheduler::For(conn.loop());
  engine.AddLoopService(index, &s);  // so Engine::Stop waits for the fiber
  // The handler travels with its fiber; the callback side keeps nothing.
  auto owned = std::make_shared<ConnHandler>(std::move(handler));
  s.Spawn([fd = PendingFd(detached->fd), unread = std::move(detached->unread),
           unsent = std::move(detached->unsent), owned]() mutable {
    // What the callback handler wrote before the hand-off goes out first.
    (void)FiberConn::Serve(fd.Release(), std::move(unread),
                           [&unsent, &owned](FiberConn& fc) {
                             if (!unsent.empty() && !fc.WriteAll(unsent).ok()) return;
                             unsent.clear();
                             (*owned)(fc);
                           });
  });
  return absl::OkStatus();
}

}  // namespace netloop::fiber
