#include "reactor/event_loop.h"

#include <errno.h>
#include <string.h>

#ifndef _WIN32
#include <sys/eventfd.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <cassert>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "reactor/clock.h"
#include "reactor/logging.h"

namespace netloop {
namespace {
thread_local EventLoop* current_loop = nullptr;
}  // namespace

#ifdef _WIN32
// Windows wakes the loop through its completion port (Backend::Wakeup): no
// descriptor, nothing to drain.
class EventLoop::WakeupWatcher {};
#else
// Drains the eventfd other threads write to wake the loop.
class EventLoop::WakeupWatcher final : public IoWatcher {
 public:
  explicit WakeupWatcher(int fd) : fd_(fd) {}
  void OnIoReady(uint32_t) override {
    uint64_t count;
    while (read(fd_, &count, sizeof(count)) < 0 && errno == EINTR) {
    }
  }

 private:
  int fd_;
};
#endif

absl::StatusOr<std::unique_ptr<EventLoop>> EventLoop::Create(LoopOptions options) {
#ifdef _WIN32
  const int efd = -1;
#else
  int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd < 0) return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
#endif
  std::unique_ptr<EventLoop> loop(new EventLoop(std::move(options), efd));
  internal::BackendOptions bo;
  bo.kind = loop->options_.backend;
  bo.edge_triggered = loop->options_.edge_triggered;
  bo.read_buffer = loop->read_buffer_.get();
  bo.read_buffer_size = loop->read_buffer_size_;
  bo.read_budget_per_event = loop->options_.read_budget_per_event;
  bo.uring_buffer_size = loop->options_.uring_buffer_size;
  bo.uring_buffer_count = loop->options_.uring_buffer_count;
  absl::StatusOr<std::unique_ptr<internal::Backend>> backend = internal::NewBackend(bo);
  if (!backend.ok()) return backend.status();
  loop->backend_ = std::move(*backend);
#ifndef _WIN32
  // The wake-up fd is drained on every event, so an edge-triggered backend
  // cannot strand a wake-up.
  absl::Status s = loop->backend_->Watch(efd, kIoReadable, loop->wakeup_watcher_.get());
  if (!s.ok()) return s;
#endif
  return loop;
}

EventLoop::EventLoop(LoopOptions options, int wakeup_fd)
    : options_(std::move(options)),
      read_buffer_(new char[std::max<size_t>(options_.read_buffer_size, 4096)]),
      read_buffer_size_(std::max<size_t>(options_.read_buffer_size, 4096)),
      wakeup_fd_(wakeup_fd),
#ifdef _WIN32
      wakeup_watcher_(std::make_unique<WakeupWatcher>()) {
#else
      wakeup_watcher_(std::make_unique<WakeupWatcher>(wakeup_fd)) {
#endif
  now_ns_ = MonotonicNanos();
}

EventLoop::~EventLoop() {
  // Locals may still unwatch fds or cancel timers: destroy them first.
  while (!locals_.empty()) locals_.pop_back();
#ifdef _WIN32
  backend_.reset();
#else
  if (backend_) (void)backend_->Unwatch(wakeup_fd_, wakeup_watcher_.get());
  backend_.reset();
  close(wakeup_fd_);
#endif
}

EventLoop* EventLoop::Current() { return current_loop; }

void EventLoop::Run() {
  thread_id_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  EventLoop* previous = current_loop;
  current_loop = this;
  backend_->StartOnLoopThread();
  {
    std::lock_guard<std::mutex> lock(running_mu_);
    running_.store(true, std::memory_order_release);
  }
  running_cv_.notify_all();
  while (!quit_.load(std::memory_order_acquire)) {
    backend_->Poll(PollTimeoutNanos());
    now_ns_ = MonotonicNanos();
    timers_.RunExpired(now_ns_);
    RunReinvokes();
    tasks_.RunAll();
    for (size_t i = 0; i < hooks_.size(); ++i) {
      if (hooks_[i]->HasReadyWork()) hooks_[i]->RunReadyWork();
    }
    iterations_.fetch_add(1, std::memory_order_relaxed);
  }
  // Work posted just before Quit (closes, completions) still runs.
  for (int round = 0; round < 16 && !tasks_.Empty(); ++round) tasks_.RunAll();
  // A completion backend still owes the final completions of cancelled
  // operations; they hold closed connections until they come (promptly: a
  // cancellation is answered within the next round or two).
  for (int round = 0; round < 1000 && backend_->OperationsInFlight() > 0; ++round) {
    backend_->Poll(10'000'000);
    tasks_.RunAll();
  }
  quit_.store(false, std::memory_order_relaxed);
  current_loop = previous;
  thread_id_.store(std::thread::id(), std::memory_order_relaxed);
}

int64_t EventLoop::PollTimeoutNanos() const {
  if (!tasks_.Empty() || !reinvokes_.empty() || backend_->HasPendingWork()) return 0;
  for (IterationHook* hook : hooks_) {
    if (hook->HasReadyWork()) return 0;
  }
  int64_t next = timers_.NextExpiry();
  if (next == kNeverNanos) return -1;
  int64_t now = MonotonicNanos();
  return next > now ? next - now : 0;
}

void EventLoop::WaitUntilRunning() const {
  // A mutex and condition variable, not atomic<bool>::wait: libstdc++'s
  // wait/notify on platforms without futexes (mingw-w64) was seen to lose
  // the notification and leave Engine::Start waiting forever.
  std::unique_lock<std::mutex> lock(running_mu_);
  running_cv_.wait(lock, [this] { return running_.load(std::memory_order_acquire); });
}

void EventLoop::Quit() {
  quit_.store(true, std::memory_order_release);
  if (!InLoopThread()) Wakeup();
}

void EventLoop::Wakeup() {
#ifdef _WIN32
  backend_->Wakeup();
#else
  uint64_t one = 1;
  ssize_t ignored = write(wakeup_fd_, &one, sizeof(one));
  (void)ignored;
#endif
}

void EventLoop::RunInLoop(Task task) {
  if (InLoopThread()) {
    task();
  } else {
    QueueInLoop(std::move(task));
  }
}

void EventLoop::QueueInLoop(Task task) {
  // From the loop thread itself no wake-up is needed: the loop checks the
  // queue before it blocks again.
  if (tasks_.Push(std::move(task)) && !InLoopThread()) Wakeup();
}

TimerId EventLoop::RunAtNanos(int64_t when_ns, Task callback) {
  assert(InLoopThread() || thread_id_.load() == std::thread::id());
  return timers_.Add(when_ns, 0, std::move(callback));
}

TimerId EventLoop::RunAt(absl::Time when, Task callback) {
  return RunAtNanos(ToMonotonicNanos(when), std::move(callback));
}

TimerId EventLoop::RunAfter(absl::Duration delay, Task callback) {
  int64_t d = DurationToNanosSaturated(delay);
  int64_t now = MonotonicNanos();
  return RunAtNanos(d >= kNeverNanos - now ? kNeverNanos : now + d, std::move(callback));
}

TimerId EventLoop::RunEvery(absl::Duration interval, Task callback) {
  int64_t d = std::max<int64_t>(DurationToNanosSaturated(interval), 1000);
  return timers_.Add(MonotonicNanos() + d, d, std::move(callback));
}

bool EventLoop::CancelTimer(TimerId id) { return timers_.Cancel(id); }

bool EventLoop::RescheduleTimer(TimerId id, int64_t when_ns) {
  return timers_.Reschedule(id, when_ns);
}

absl::Status EventLoop::Watch(SocketHandle fd, uint32_t interest, IoWatcher* watcher) {
  return backend_->Watch(fd, interest, watcher);
}

absl::Status EventLoop::UpdateWatch(SocketHandle fd, uint32_t interest, IoWatcher* watcher) {
  return backend_->Modify(fd, interest, watcher);
}

absl::Status EventLoop::Unwatch(SocketHandle fd, IoWatcher* watcher) {
  for (auto& entry : reinvokes_) {
    if (entry.first == watcher) entry.first = nullptr;
  }
  for (auto& entry : reinvoking_) {
    if (entry.first == watcher) entry.first = nullptr;
  }
  return backend_->Unwatch(fd, watcher);
}

void EventLoop::ReinvokeNextIteration(IoWatcher* watcher, uint32_t events) {
  reinvokes_.emplace_back(watcher, events);
}

void EventLoop::RunReinvokes() {
  if (reinvokes_.empty()) return;
  reinvoking_.swap(reinvokes_);
  for (size_t i = 0; i < reinvoking_.size(); ++i) {
    IoWatcher* w = reinvoking_[i].first;
    if (w != nullptr) w->OnIoReady(reinvoking_[i].second);
  }
  reinvoking_.clear();
}

LoopLocal* EventLoop::GetLocal(const void* key) const {
  for (const auto& [k, v] : locals_) {
    if (k == key) return v.get();
  }
  return nullptr;
}

void EventLoop::SetLocal(const void* key, std::unique_ptr<LoopLocal> value) {
  for (auto& [k, v] : locals_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  locals_.emplace_back(key, std::move(value));
}

void EventLoop::AddIterationHook(IterationHook* hook) { hooks_.push_back(hook); }

void EventLoop::RemoveIterationHook(IterationHook* hook) {
  hooks_.erase(std::remove(hooks_.begin(), hooks_.end(), hook), hooks_.end());
}

}  // namespace netloop
