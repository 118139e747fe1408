// Fiber-aware synchronisation: blocking a fiber parks it, never the OS thread,
// so the loop keeps serving everything else. Usable between fibers on one loop
// and across loops (a waker on another loop posts the wake-up to the waiter's
// loop).
//
// Thread rules: the blocking methods (Lock, CondVar::Wait, WaitGroup::Wait)
// from fibers only; the non-blocking ones (TryLock, Unlock, Signal,
// Broadcast, Done, Add) from any thread. A primitive must outlive every
// fiber parked in it.
//
// Scheduler stop (see scheduler.h): at the stop deadline of the waiting
// fiber's scheduler, CondVar::Wait and WaitGroup::Wait return
// StopDeadlineError() (Cancelled), and fail at once after it. Mutex::Lock is
// not cut short, as a std::mutex or Go's sync.Mutex is not (and as in
// Boost.Thread, where a condition wait is an interruption point and a mutex
// lock is not): its wait ends when the holder unlocks, and a holder being
// stopped unwinds and unlocks; failing it would leave callers to run their
// critical section unlocked. A Lock behind a holder that never finishes is
// reported by the scheduler with the other fibers it gives up on.
#ifndef NETLOOP_FIBERBRIDGE_SYNC_H_
#define NETLOOP_FIBERBRIDGE_SYNC_H_

#include <cstdint>
#include <mutex>

#include "absl/status/status.h"
#include "fiberbridge/waiter_list.h"

namespace netloop::fiber {

// A mutex whose Lock parks the fiber. Ownership is handed directly to the
// next waiter on Unlock (FIFO, no barging), so no waiter starves.
class Mutex {
 public:
  void Lock();
  bool TryLock();
  void Unlock();

 private:
  std::mutex mu_;
  bool locked_ = false;
  internal::WaiterList waiters_;
};

class MutexLock {
 public:
  explicit MutexLock(Mutex& m) : m_(m) { m_.Lock(); }
  ~MutexLock() { m_.Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& m_;
};

class CondVar {
 public:
  // Atomically unlocks `m` and parks; relocks before returning, whatever the
  // status. OK: woken by Signal or Broadcast (spurious wake-ups do not
  // happen, but re-check your predicate anyway). StopDeadlineError(): the
  // scheduler's stop deadline passed.
  absl::Status Wait(Mutex& m);
  // Waits until pred() holds (OK), or until the stop deadline (its error);
  // `m` is held on return either way.
  template <typename Pred>
  absl::Status Wait(Mutex& m, Pred pred) {
    while (!pred()) {
      if (absl::Status s = Wait(m); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
  void Signal();
  void Broadcast();

 private:
  std::mutex mu_;
  internal::WaiterList waiters_;
};

// Go's sync.WaitGroup.
class WaitGroup {
 public:
  void Add(int64_t n);
  void Done() { Add(-1); }
  // Parks until the counter is zero (OK), or until the stop deadline
  // (StopDeadlineError()).
  absl::Status Wait();

 private:
  std::mutex mu_;
  int64_t count_ = 0;
  internal::WaiterList waiters_;
};

}  // namespace netloop::fiber

#endif  // NETLOOP_FIBERBRIDGE_SYNC_H_
