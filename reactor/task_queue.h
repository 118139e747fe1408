// Work posted to an event loop from any thread. Producers append to a
// mutex-guarded vector; the loop swaps the whole vector out and runs it
// outside the lock, so a producer holds the lock only for one push_back and
// the loop takes it once per batch, not once per task. The two vectors trade
// places every batch and keep their capacity, so a steady flow of tasks
// allocates nothing beyond what a task's own captures need.
//
// Order: tasks run in the order they were pushed (one global order, fixed by
// the lock), so in particular each producer's tasks run in its push order.
//
// Wake-up protocol (so the loop's eventfd is written once per batch, and a
// wake-up is never lost):
//   - Push returns true exactly when it made the pending batch non-empty.
//     Only then can the consumer be asleep with nothing else coming to wake
//     it, so only then must the caller wake it (write the eventfd). Pushes
//     that find the batch non-empty return false: the wake-up owed for that
//     batch was already requested by the push that started it.
//   - RunAll takes the batch and empties it in one step under the lock, so the
//     first push after that step starts a new batch and returns true again,
//     even while the old batch is still running.
//   - The consumer must drain its wake-up signal (read the eventfd) BEFORE it
//     calls RunAll, never after: draining after would swallow the signal of a
//     push that landed between RunAll's swap and the drain, and that task
//     would wait until something else woke the loop.
//   - A consumer that pushes to its own queue may skip the wake-up Push asks
//     for, provided it checks Empty() before it next blocks.
#ifndef NETLOOP_REACTOR_TASK_QUEUE_H_
#define NETLOOP_REACTOR_TASK_QUEUE_H_

#include <atomic>
#include <cstddef>
#include <mutex>
#include <vector>

#include "absl/functional/any_invocable.h"

namespace netloop {

class TaskQueue {
 public:
  TaskQueue() = default;
  TaskQueue(const TaskQueue&) = delete;
  TaskQueue& operator=(const TaskQueue&) = delete;
  // Destroys tasks still pending without running them. No Push or RunAll may
  // be in progress.
  ~TaskQueue() = default;

  // Any thread. Queues `task` behind every task already pushed. Returns true
  // if the caller must wake the consumer (see the protocol above).
  bool Push(absl::AnyInvocable<void()> task);

  // Consumer thread only; not reentrant (a task must not call it). Runs the
  // tasks pushed before this call, in order, outside the lock, and destroys
  // them after the batch. Tasks pushed meanwhile (by these tasks or other
  // threads) wait for the next call. Returns how many ran.
  size_t RunAll();

  // Any thread. Whether no task is pending. On the consumer thread it is
  // exact for every Push that has returned; elsewhere it is a snapshot that
  // may be stale by the time it is used.
  bool Empty() const { return pending_count_.load(std::memory_order_acquire) == 0; }

 private:
  std::mutex mu_;
  std::vector<absl::AnyInvocable<void()>> pending_;  // guarded by mu_
  // Lets Empty() and an idle RunAll skip the lock; written under mu_.
  std::atomic<size_t> pending_count_{0};
  std::vector<absl::AnyInvocable<void()>> running_;  // consumer thread only
  bool in_run_ = false;                              // consumer thread only
};

}  // namespace netloop

#endif  // NETLOOP_REACTOR_TASK_QUEUE_H_
