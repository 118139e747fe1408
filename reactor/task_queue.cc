#include "reactor/task_queue.h"

#include <cassert>
#include <utility>

namespace netloop {

bool TaskQueue::Push(absl::AnyInvocable<void()> task) {
  std::lock_guard<std::mutex> lock(mu_);
  // The batch is empty exactly when no wake-up is owed for it yet.
  const bool starts_batch = pending_.empty();
  pending_.push_back(std::move(task));
  pending_count_.store(pending_.size(), std::memory_order_release);
  return starts_batch;
}

size_t TaskQueue::RunAll() {
  assert(!in_run_ && "TaskQueue::RunAll called from a task");
  // An idle loop checks every iteration; skip the lock when nothing came.
  if (pending_count_.load(std::memory_order_acquire) == 0) return 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // running_ is empty (cleared after the last batch) with its capacity
    // kept, so the swap hands producers a ready-grown vector.
    running_.swap(pending_);
    pending_count_.store(0, std::memory_order_release);
  }
  in_run_ = true;
  const size_t n = running_.size();
  for (size_t i = 0; i < n; ++i) running_[i]();
  running_.clear();
  in_run_ = false;
  return n;
}

}  // namespace netloop
