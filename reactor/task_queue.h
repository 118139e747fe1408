// Work posted to a loop from any thread (muduo's pending functors): a mutex
// guarding a vector that the loop swaps out and runs outside the lock, so a
// producer holds the lock only for a push. Tasks from one producer run in the
// order pushed.
//
// Wake-up protocol: Push returns true only when the loop must be woken (the
// queue was idle and no wake-up is pending), so a burst of posts costs one
// eventfd write. RunAll clears the pending flag *before* taking the batch:
// a push that lands after the swap sees the flag clear and asks for a wake-up,
// so none is lost.
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
  // Any thread. True if the caller should wake the consumer.
  bool Push(absl::AnyInvocable<void()> task);
  // Consumer thread: runs the tasks queued so far, FIFO; tasks they push run
  // in the next call. Returns how many ran.
  size_t RunAll();
  // Any thread; a hint (exact on the consumer thread).
  bool Empty() const { return size_.load(std::memory_order_acquire) == 0; }

 private:
  std::mutex mu_;
  std::vector<absl::AnyInvocable<void()>> pending_;  // guarded by mu_
  std::vector<absl::AnyInvocable<void()>> running_;  // consumer only
  bool wake_pending_ = false;                        // guarded by mu_
  std::atomic<size_t> size_{0};
};

}  // namespace netloop

#endif  // NETLOOP_REACTOR_TASK_QUEUE_H_
