// A listening socket watched by one loop (engine internal). Accepts in
// batches and survives descriptor exhaustion: on EMFILE/ENFILE/ENOBUFS/ENOMEM
// it stops watching the socket for a short, growing back-off instead of
// spinning on a level-triggered readiness it cannot clear; connections wait in
// the kernel's backlog meanwhile, so none already queued is lost.
#ifndef NETLOOP_REACTOR_LISTENER_H_
#define NETLOOP_REACTOR_LISTENER_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "reactor/address.h"
#include "reactor/event_loop.h"
#include "reactor/io_watcher.h"

namespace netloop::internal {

class Listener final : public IoWatcher {
 public:
  // Receives each accepted, non-blocking socket on the listener's loop thread.
  using AcceptSink = absl::AnyInvocable<void(int fd, const SocketAddress& peer)>;

  // Takes ownership of the listening `fd`. Watch() starts accepting.
  Listener(EventLoop* loop, int fd, AcceptSink sink, std::atomic<uint64_t>* pauses);
  ~Listener();

  absl::Status Watch();  // loop thread (or before the loop runs)
  void Close();          // loop thread; idempotent
  int fd() const { return fd_; }

  void OnIoReady(uint32_t events) override;

 private:
  void Pause(int err);

  EventLoop* const loop_;
  int fd_;
  AcceptSink sink_;
  std::atomic<uint64_t>* pauses_;
  bool paused_ = false;
  int64_t backoff_ns_ = 0;
  TimerId resume_timer_;
};

}  // namespace netloop::internal

#endif  // NETLOOP_REACTOR_LISTENER_H_
