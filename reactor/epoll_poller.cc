// The epoll backend of Poller.
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "reactor/poller.h"

namespace netloop {
namespace {

class EpollPoller final : public Poller {
 public:
  EpollPoller(int epfd, bool edge_triggered)
      : epfd_(epfd), edge_triggered_(edge_triggered), events_(kInitialEvents) {}
  ~EpollPoller() override { close(epfd_); }

  absl::Status Add(int fd, uint32_t interest, IoWatcher* watcher) override {
    return Control(EPOLL_CTL_ADD, fd, interest, watcher);
  }
  absl::Status Modify(int fd, uint32_t interest, IoWatcher* watcher) override {
    return Control(EPOLL_CTL_MOD, fd, interest, watcher);
  }
  absl::Status Remove(int fd, IoWatcher* watcher) override {
    // Drop events this Poll already collected for the watcher, so that a
    // handler may close and free another connection mid-dispatch.
    for (int i = cursor_ + 1; i < ready_; ++i) {
      if (events_[i].data.ptr == watcher) events_[i].data.ptr = nullptr;
    }
    if (epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr) != 0 && errno != EBADF &&
        errno != ENOENT) {
      return absl::InternalError(absl::StrCat("epoll_ctl(DEL): ", strerror(errno)));
    }
    return absl::OkStatus();
  }

  int Poll(int64_t timeout_ns) override {
    int timeout_ms;
    if (timeout_ns < 0) {
      timeout_ms = -1;
    } else {
      // Round up: waking early would spin on a timer that is not due yet.
      int64_t ms = (timeout_ns + 999'999) / 1'000'000;
      timeout_ms = ms > 3'600'000 ? 3'600'000 : static_cast<int>(ms);
    }
    int n = epoll_wait(epfd_, events_.data(), static_cast<int>(events_.size()),
                       timeout_ms);
    if (n <= 0) return 0;  // EINTR counts as a spurious wake-up
    ready_ = n;
    int dispatched = 0;
    for (cursor_ = 0; cursor_ < n; ++cursor_) {
      auto* watcher = static_cast<IoWatcher*>(events_[cursor_].data.ptr);
      if (watcher == nullptr) continue;
      watcher->OnIoReady(Translate(events_[cursor_].events));
      ++dispatched;
    }
    ready_ = 0;
    cursor_ = -1;
    // A full batch suggests more are waiting: grow (this allocation happens a
    // handful of times per loop lifetime, never in steady state).
    if (n == static_cast<int>(events_.size()) && events_.size() < kMaxEvents) {
      events_.resize(events_.size() * 2);
    }
    return dispatched;
  }

  bool edge_triggered() const override { return edge_triggered_; }
  const char* name() const override {
    return edge_triggered_ ? "epoll(edge)" : "epoll(level)";
  }

 private:
  static constexpr size_t kInitialEvents = 256;
  static constexpr size_t kMaxEvents = 4096;

  static uint32_t Translate(uint32_t e) {
    uint32_t out = 0;
    if (e & (EPOLLIN | EPOLLPRI)) out |= kIoReadable;
    if (e & EPOLLOUT) out |= kIoWritable;
    if (e & EPOLLRDHUP) out |= kIoPeerClosed;
    if (e & (EPOLLERR | EPOLLHUP)) out |= kIoError;
    return out;
  }

  absl::Status Control(int op, int fd, uint32_t interest, IoWatcher* watcher) {
    epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = 0;
    if (interest & kIoPeerClosed) ev.events |= EPOLLRDHUP;
    if (interest & kIoReadable) ev.events |= EPOLLIN;
    if (interest & kIoWritable) ev.events |= EPOLLOUT;
    if (edge_triggered_ || (interest & kIoEdgeTriggered)) ev.events |= EPOLLET;
    ev.data.ptr = watcher;
    if (epoll_ctl(epfd_, op, fd, &ev) != 0) {
      return absl::Status(absl::ErrnoToStatusCode(errno),
                          absl::StrCat(op == EPOLL_CTL_ADD ? "epoll_ctl(ADD)"
                                                           : "epoll_ctl(MOD)",
                                       " fd ", fd, ": ", strerror(errno)));
    }
    return absl::OkStatus();
  }

  const int epfd_;
  const bool edge_triggered_;
  std::vector<epoll_event> events_;
  int ready_ = 0;
  int cursor_ = -1;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Poller>> NewEpollPoller(bool edge_triggered) {
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) {
    return absl::InternalError(absl::StrCat("epoll_create1: ", strerror(errno)));
  }
  return std::unique_ptr<Poller>(new EpollPoller(epfd, edge_triggered));
}

}  // namespace netloop
