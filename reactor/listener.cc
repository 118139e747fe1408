#include "reactor/listener.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "reactor/clock.h"
#include "reactor/logging.h"
#include "reactor/sys_io.h"

namespace netloop::internal {
namespace {
// Accepts per readiness event before the loop serves others: bounds the time
// one listener can hold the loop during a connection storm.
constexpr int kAcceptBatch = 64;
constexpr int64_t kMinBackoffNs = 10'000'000;   // 10 ms
constexpr int64_t kMaxBackoffNs = 500'000'000;  // 500 ms
}  // namespace

Listener::Listener(EventLoop* loop, int fd, AcceptSink sink,
                   std::atomic<uint64_t>* pauses)
    : loop_(loop), fd_(fd), sink_(std::move(sink)), pauses_(pauses) {}

Listener::~Listener() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status Listener::Watch() { return loop_->Watch(fd_, kIoReadable, this); }

void Listener::Close() {
  if (fd_ < 0) return;
  if (paused_) {
    loop_->CancelTimer(resume_timer_);
  } else {
    (void)loop_->Unwatch(fd_, this);
  }
  ::close(fd_);
  fd_ = -1;
}

void Listener::OnIoReady(uint32_t) {
  for (int i = 0; fd_ >= 0; ++i) {
    if (i == kAcceptBatch) {
      // The batch is spent with connections possibly still queued. Level-
      // triggered, the poller reports the socket again. Edge-triggered it
      // would not: no new edge comes until another client connects, and after
      // a burst none may, so the rest of the backlog would wait forever. Ask
      // the loop to call again after it has served the others.
      if (loop_->poller().edge_triggered()) loop_->ReinvokeNextIteration(this, kIoReadable);
      return;
    }
    SocketAddress peer;
    socklen_t len = sizeof(sockaddr_un);
    int cfd = SysAccept4(fd_, peer.mutable_sockaddr_ptr(), &len,
                      SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd >= 0) {
      peer.set_length(len);
      backoff_ns_ = 0;
      sink_(cfd, peer);
      continue;
    }
    switch (errno) {
      case EAGAIN:
        return;
      case EINTR:
      case ECONNABORTED:  // the client gave up while queued: its problem only
      case EPROTO:
      case EPERM:  // firewall rules
        continue;
      case EMFILE:
      case ENFILE:
      case ENOBUFS:
      case ENOMEM:
        Pause(errno);
        return;
      default:
        NETLOOP_LOG(kError) << "accept4: " << strerror(errno);
        Pause(errno);
        return;
    }
  }
}

void Listener::Pause(int err) {
  backoff_ns_ = std::clamp(backoff_ns_ * 2, kMinBackoffNs, kMaxBackoffNs);
  uint64_t count = pauses_->fetch_add(1, std::memory_order_relaxed) + 1;
  if (count == 1 || count % 100 == 0) {
    NETLOOP_LOG(kWarning) << "accept paused for " << backoff_ns_ / 1'000'000
                          << " ms: " << strerror(err) << " (pause #" << count << ")";
  }
  (void)loop_->Unwatch(fd_, this);
  paused_ = true;
  resume_timer_ = loop_->RunAtNanos(MonotonicNanos() + backoff_ns_, [this] {
    paused_ = false;
    if (fd_ >= 0) (void)Watch();
  });
}

}  // namespace netloop::internal
