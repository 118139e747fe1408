#include "fiberbridge/sync.h"

#include <cassert>

namespace netloop::fiber {

void Mutex::Lock() {
  std::unique_lock<std::mutex> lock(mu_);
  if (!locked_) {
    locked_ = true;
    return;
  }
  internal::Waiter w;
  w.task = Scheduler::CurrentTask();
  assert(w.task != nullptr && "fiber::Mutex::Lock outside a fiber");
  waiters_.Push(&w);
  lock.unlock();
  internal::ParkCurrent();
  // Unlock handed the mutex to us: locked_ stayed true.
}

bool Mutex::TryLock() {
  std::lock_guard<std::mutex> lock(mu_);
  if (locked_) return false;
  locked_ = true;
  return true;
}

void Mutex::Unlock() {
  std::unique_lock<std::mutex> lock(mu_);
  internal::Waiter* w = waiters_.Pop();
  if (w == nullptr) {
    locked_ = false;
    return;
  }
  FiberTask* task = w->task;
  lock.unlock();
  Scheduler::WakeFromAnyThread(task);
}

absl::Status CondVar::Wait(Mutex& m) {
  internal::Waiter w;
  w.task = Scheduler::CurrentTask();
  assert(w.task != nullptr && "fiber::CondVar::Wait outside a fiber");
  {
    std::lock_guard<std::mutex> lock(mu_);
    waiters_.Push(&w);
  }
  m.Unlock();
  const bool signalled = internal::ParkCurrentAbortable(mu_, waiters_, w);
  // Relocked whatever happened, so the caller's MutexLock stays right.
  m.Lock();
  return signalled ? absl::OkStatus() : StopDeadlineError();
}

void CondVar::Signal() {
  FiberTask* task = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (internal::Waiter* w = waiters_.Pop()) task = w->task;
  }
  if (task != nullptr) Scheduler::WakeFromAnyThread(task);
}

void CondVar::Broadcast() {
  internal::WaiterList all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    all = waiters_;
    waiters_ = internal::WaiterList();
  }
  internal::WakeAll(all);
}

void WaitGroup::Add(int64_t n) {
  internal::WaiterList ready;
  {
    std::lock_guard<std::mutex> lock(mu_);
    count_ += n;
    assert(count_ >= 0 && "WaitGroup counter went negative");
    if (count_ != 0) return;
    ready = waiters_;
    waiters_ = internal::WaiterList();
  }
  internal::WakeAll(ready);
}

absl::Status WaitGroup::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  if (count_ == 0) return absl::OkStatus();
  internal::Waiter w;
  w.task = Scheduler::CurrentTask();
  assert(w.task != nullptr && "fiber::WaitGroup::Wait outside a fiber");
  waiters_.Push(&w);
  lock.unlock();
  if (!internal::ParkCurrentAbortable(mu_, waiters_, w)) return StopDeadlineError();
  return absl::OkStatus();
}

}  // namespace netloop::fiber
