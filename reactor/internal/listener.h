// A listening socket served by one loop's backend (engine internal; the
// backend makes the accepts: a batch per readiness event on epoll, a
// multishot accept on io_uring). Survives descriptor exhaustion: on
// EMFILE/ENFILE/ENOBUFS/ENOMEM the backend stops accepting and the listener
// resumes after a short, growing back-off instead of spinning on a readiness
// it cannot clear; connections wait in the kernel's backlog meanwhile, so
// none already queued is lost.
#ifndef NETLOOP_REACTOR_INTERNAL_LISTENER_H_
#define NETLOOP_REACTOR_INTERNAL_LISTENER_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "reactor/address.h"
#include "reactor/event_loop.h"
#include "reactor/internal/backend.h"
#include "reactor/socket_handle.h"

namespace netloop::internal {

class Listener final : private AcceptSink {
 public:
  // Receives each accepted, non-blocking socket on the listener's loop thread.
  using AcceptCallback = absl::AnyInvocable<void(SocketHandle fd, const SocketAddress& peer)>;

  // Takes ownership of the listening `fd`. Watch() starts accepting.
  Listener(EventLoop* loop, SocketHandle fd, AcceptCallback sink, std::atomic<uint64_t>* pauses);
  ~Listener();

  absl::Status Watch();  // loop thread (or before the loop runs)
  void Close();          // loop thread; idempotent
  SocketHandle fd() const { return fd_; }

 private:
  // AcceptSink.
  bool OnAccepted(SocketHandle fd, const SocketAddress& peer) override;
  void OnAcceptFailed(int err) override;
  void Pause(int err);

  EventLoop* const loop_;
  SocketHandle fd_;
  AcceptCallback sink_;
  std::atomic<uint64_t>* pauses_;
  bool paused_ = false;
  int64_t backoff_ns_ = 0;
  TimerId resume_timer_;
};

}  // namespace netloop::internal

#endif  // NETLOOP_REACTOR_INTERNAL_LISTENER_H_
