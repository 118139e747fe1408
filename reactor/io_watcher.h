// The readiness seam between a poller and whatever owns a file descriptor: a
// callback connection, a listener, a fiber's pollDesc. Anything that wants to
// hear about an fd on an EventLoop implements IoWatcher.
#ifndef NETLOOP_REACTOR_IO_WATCHER_H_
#define NETLOOP_REACTOR_IO_WATCHER_H_

#include <cstdint>

namespace netloop {

// Backend-neutral readiness bits. An io_uring or kqueue backend maps its own
// completions or filters onto these.
enum IoEvent : uint32_t {
  kIoReadable = 1u << 0,
  kIoWritable = 1u << 1,
  kIoPeerClosed = 1u << 2,  // the peer shut down its write side (EPOLLRDHUP)
  kIoError = 1u << 3,       // error or full hang-up (EPOLLERR / EPOLLHUP)
  // Interest modifier: report this fd edge-triggered even on a
  // level-triggered loop. For watchers that register read and write interest
  // once and keep it (Go's pollDesc): level-triggered writability would fire
  // on every poll.
  kIoEdgeTriggered = 1u << 4,
};

class IoWatcher {
 public:
  // Called on the loop thread with the bits that fired (kIoError and
  // kIoPeerClosed are reported whatever the interest). It may unwatch itself
  // or other watchers: events already collected for an unwatched watcher are
  // dropped, so a watcher may be destroyed right after EventLoop::Unwatch.
  virtual void OnIoReady(uint32_t events) = 0;

 protected:
  ~IoWatcher() = default;
};

}  // namespace netloop

#endif  // NETLOOP_REACTOR_IO_WATCHER_H_
