// One reactor: a thread, its poller, a task queue other threads post to, and
// its timers. Engine runs one per core; the fiber bridge schedules fibers on
// the very same loops through IoWatcher, timers and IterationHook.
//
// Thread rules: methods marked "any thread" may be called from anywhere;
// everything else only on the loop thread (the thread inside Run()), which is
// checked in debug builds.
#ifndef NETLOOP_REACTOR_EVENT_LOOP_H_
#define NETLOOP_REACTOR_EVENT_LOOP_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "reactor/internal/backend.h"
#include "reactor/io_watcher.h"
#include "reactor/options.h"
#include "reactor/socket_handle.h"
#include "reactor/task_queue.h"
#include "reactor/timer_queue.h"

namespace netloop {

using Task = absl::AnyInvocable<void()>;

struct LoopOptions {
  // The kernel interface (see Options::backend); kAuto as there.
  BackendKind backend = BackendKind::kAuto;
  bool edge_triggered = false;  // epoll only
  size_t read_buffer_size = 64 * 1024;
  size_t read_budget_per_event = 1024 * 1024;
  size_t uring_buffer_size = 16 * 1024;
  size_t uring_buffer_count = 256;
  std::string name = "netloop";
};

// Work that runs once per loop iteration, after I/O dispatch, timers and
// posted tasks (the fiber scheduler runs its ready fibers here).
class IterationHook {
 public:
  // True when RunReadyWork has something to do: the loop then polls without
  // blocking. Loop thread.
  virtual bool HasReadyWork() const = 0;
  virtual void RunReadyWork() = 0;

 protected:
  ~IterationHook() = default;
};

// Per-loop state owned by the loop (the fiber scheduler is one), destroyed
// first in ~EventLoop while the poller and timers still exist.
class LoopLocal {
 public:
  virtual ~LoopLocal() = default;
};

class EventLoop {
 public:
  static absl::StatusOr<std::unique_ptr<EventLoop>> Create(LoopOptions options = {});
  ~EventLoop();  // the loop must not be running
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Runs the loop on the calling thread until Quit(). Tasks still queued when
  // it quits are run before Run returns (so no posted close is lost).
  void Run();
  // Blocks until Run() has started (once) on its thread and set up the
  // backend there. Any thread but the loop's.
  void WaitUntilRunning() const;
  // Asks Run() to return after the current iteration. Any thread.
  void Quit();
  bool InLoopThread() const {
    return thread_id_.load(std::memory_order_relaxed) == std::this_thread::get_id();
  }
  // The loop whose Run() is on this thread's stack, or nullptr.
  static EventLoop* Current();

  // Runs `task` now if called on the loop thread, else queues it. Any thread.
  void RunInLoop(Task task);
  // Queues `task` to run on the loop thread in a later step of this or the
  // next iteration; tasks from one thread run in the order queued. Any thread.
  void QueueInLoop(Task task);
  // Wakes the loop from its poll (eventfd write). Async-signal-safe.
  void Wakeup();

  // Timers. `callback` runs on the loop thread. Loop thread only; from other
  // threads wrap the call in RunInLoop. Ids of fired or cancelled timers are
  // stale: Cancel/Reschedule on them return false.
  TimerId RunAt(absl::Time when, Task callback);
  TimerId RunAfter(absl::Duration delay, Task callback);
  TimerId RunEvery(absl::Duration interval, Task callback);
  // Monotonic variants (see NowNanos) for callers that already hold one.
  TimerId RunAtNanos(int64_t when_ns, Task callback);
  bool CancelTimer(TimerId id);
  bool RescheduleTimer(TimerId id, int64_t when_ns);
  size_t PendingTimers() const { return timers_.size(); }

  // Monotonic nanoseconds read once per iteration (after the poll returned):
  // cheap enough to stamp every message with.
  int64_t NowNanos() const { return now_ns_; }

  // Readiness watching (see IoWatcher), on the Linux backends (io_uring
  // serves it with multishot polls, which report like edge-triggered epoll:
  // watchers must read or write until EAGAIN). IOCP (Windows) serves
  // completions only: Watch returns Unimplemented there. Loop thread only.
  absl::Status Watch(SocketHandle fd, uint32_t interest, IoWatcher* watcher);
  absl::Status UpdateWatch(SocketHandle fd, uint32_t interest, IoWatcher* watcher);
  // After Unwatch returns, `watcher` receives nothing more and may be freed.
  absl::Status Unwatch(SocketHandle fd, IoWatcher* watcher);
  // Calls watcher->OnIoReady(events) again in the next iteration without
  // waiting for the poller: used when an edge-triggered reader stopped at its
  // budget with bytes still in the socket. Cancelled by Unwatch.
  void ReinvokeNextIteration(IoWatcher* watcher, uint32_t events);

  // Loop thread only; the hook must stay alive until removed.
  void AddIterationHook(IterationHook* hook);
  void RemoveIterationHook(IterationHook* hook);

  // The buffer every connection on this loop reads into. Its contents are
  // valid only until the next read on this loop.
  char* read_buffer() { return read_buffer_.get(); }
  size_t read_buffer_size() const { return read_buffer_size_; }

  // The LoopLocal stored under `key`, or nullptr. Loop thread only.
  LoopLocal* GetLocal(const void* key) const;
  // Stores (replacing) the LoopLocal under `key`. Loop thread only.
  void SetLocal(const void* key, std::unique_ptr<LoopLocal> value);

  // The backend (engine internal).
  internal::Backend& backend() { return *backend_; }
  // "epoll(level)", "epoll(edge)" or "io_uring".
  const char* backend_name() const { return backend_->name(); }
  const std::string& name() const { return options_.name; }
  // Iterations completed, for tests and stats. Any thread.
  uint64_t iterations() const { return iterations_.load(std::memory_order_relaxed); }

 private:
  EventLoop(LoopOptions options, int wakeup_fd);
  class WakeupWatcher;
  int64_t PollTimeoutNanos() const;
  void RunReinvokes();

  const LoopOptions options_;
  std::unique_ptr<char[]> read_buffer_;
  size_t read_buffer_size_;
  std::unique_ptr<internal::Backend> backend_;
  const int wakeup_fd_;
  std::unique_ptr<WakeupWatcher> wakeup_watcher_;
  std::atomic<std::thread::id> thread_id_{};
  std::atomic<bool> quit_{false};
  std::atomic<bool> running_{false};  // Run() started once
  mutable std::mutex running_mu_;      // WaitUntilRunning's wait
  mutable std::condition_variable running_cv_;
  std::atomic<uint64_t> iterations_{0};
  int64_t now_ns_ = 0;
  TaskQueue tasks_;
  TimerQueue timers_;
  std::vector<IterationHook*> hooks_;
  std::vector<std::pair<IoWatcher*, uint32_t>> reinvokes_;
  std::vector<std::pair<IoWatcher*, uint32_t>> reinvoking_;
  std::vector<std::pair<const void*, std::unique_ptr<LoopLocal>>> locals_;
};

}  // namespace netloop

#endif  // NETLOOP_REACTOR_EVENT_LOOP_H_
