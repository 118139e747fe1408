// The I/O multiplexing backend of one EventLoop (Seastar's reactor_backend,
// muduo's Poller). The loop never calls epoll directly, so another backend can
// slot in behind this interface:
// - kqueue maps interest to EVFILT_READ/EVFILT_WRITE filters one to one.
// - io_uring can honour the same readiness contract with multishot
//   IORING_OP_POLL_ADD (one SQE per Add/Modify, completions dispatched in
//   Poll), which keeps Conn and the fiber bridge unchanged; a completion-based
//   data path (multishot recv into a provided buffer ring) would be a second
//   seam at the Conn level, not a change to this one.
// A poller belongs to one loop and is used from that loop's thread only.
#ifndef NETLOOP_REACTOR_POLLER_H_
#define NETLOOP_REACTOR_POLLER_H_

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "reactor/io_watcher.h"

namespace netloop {

class Poller {
 public:
  virtual ~Poller() = default;

  // Starts watching `fd` for `interest` (kIoReadable | kIoWritable |
  // kIoPeerClosed, optionally | kIoEdgeTriggered; 0 is allowed and still
  // reports errors). One watcher per fd.
  virtual absl::Status Add(int fd, uint32_t interest, IoWatcher* watcher) = 0;
  virtual absl::Status Modify(int fd, uint32_t interest, IoWatcher* watcher) = 0;
  // Stops watching. Events already collected by the current Poll for this
  // watcher are discarded, so the watcher may be freed afterwards.
  virtual absl::Status Remove(int fd, IoWatcher* watcher) = 0;

  // Waits up to `timeout_ns` (negative: forever; 0: do not block) and calls
  // OnIoReady for each ready watcher. Returns the number of events dispatched.
  virtual int Poll(int64_t timeout_ns) = 0;

  virtual bool edge_triggered() const = 0;
  virtual const char* name() const = 0;
};

// Level-triggered by default; `edge_triggered` adds EPOLLET to every fd.
absl::StatusOr<std::unique_ptr<Poller>> NewEpollPoller(bool edge_triggered);

}  // namespace netloop

#endif  // NETLOOP_REACTOR_POLLER_H_
