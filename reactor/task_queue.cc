#include "reactor/task_queue.h"

#include <utility>

namespace netloop {

bool TaskQueue::Push(absl::AnyInvocable<void()> task) {
  std::lock_guard<std::mutex> lock(mu_);
  pending_.push_back(std::move(task));
  size_.fetch_add(1, std::memory_order_release);
  if (wake_pending_) return false;
  wake_pending_ = true;
  return true;
}

size_t TaskQueue::RunAll() {
  if (size_.load(std::memory_order_acquire) == 0) return 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake_pending_ = false;
    running_.swap(pending_);  // both keep their capacity: no steady-state allocation
    size_.fetch_sub(running_.size(), std::memory_order_release);
  }
  size_t n = running_.size();
  for (size_t i = 0; i < n; ++i) running_[i]();
  running_.clear();
  return n;
}

}  // namespace netloop
