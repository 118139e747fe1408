#include "reactor/internal/listener.h"

#include <string.h>

#include <algorithm>

#include "reactor/clock.h"
#include "reactor/internal/platform.h"
#include "reactor/logging.h"

namespace netloop::internal {
namespace {
constexpr int64_t kMinBackoffNs = 10'000'000;   // 10 ms
constexpr int64_t kMaxBackoffNs = 500'000'000;  // 500 ms
}  // namespace

Listener::Listener(EventLoop* loop, SocketHandle fd, AcceptCallback sink,
                   std::atomic<uint64_t>* pauses)
    : loop_(loop), fd_(fd), sink_(std::move(sink)), pauses_(pauses) {}

Listener::~Listener() {
  if (IsValidSocket(fd_)) internal::CloseSocket(fd_);
}

absl::Status Listener::Watch() { return loop_->backend().StartAccepting(fd_, this); }

void Listener::Close() {
  if (!IsValidSocket(fd_)) return;
  if (paused_) {
    loop_->CancelTimer(resume_timer_);
  } else {
    loop_->backend().StopAccepting(fd_, this);
  }
  internal::CloseSocket(fd_);
  fd_ = kInvalidSocket;
}

bool Listener::OnAccepted(SocketHandle fd, const SocketAddress& peer) {
  backoff_ns_ = 0;
  sink_(fd, peer);
  return IsValidSocket(fd_);
}

void Listener::OnAcceptFailed(int err) {
  if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM) {
    NETLOOP_LOG(kError) << "accept: " << strerror(err);
  }
  Pause(err);
}

void Listener::Pause(int err) {
  backoff_ns_ = std::clamp(backoff_ns_ * 2, kMinBackoffNs, kMaxBackoffNs);
  uint64_t count = pauses_->fetch_add(1, std::memory_order_relaxed) + 1;
  if (count == 1 || count % 100 == 0) {
    NETLOOP_LOG(kWarning) << "accept paused for " << backoff_ns_ / 1'000'000
                          << " ms: " << strerror(err) << " (pause #" << count << ")";
  }
  // The backend has stopped accepting on the socket already.
  paused_ = true;
  resume_timer_ = loop_->RunAtNanos(MonotonicNanos() + backoff_ns_, [this] {
    paused_ = false;
    if (IsValidSocket(fd_)) (void)Watch();
  });
}

}  // namespace netloop::internal
