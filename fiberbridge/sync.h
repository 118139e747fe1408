// Fiber-aware synchronisation: blocking a fiber parks it, never the OS thread,
// so the loop keeps serving everything else. Usable between fibers on one loop
// and across loops (a waker on another loop posts the wake-up to the waiter's
// loop). Call the blocking methods from fibers only; the non-blocking ones
// (Unlock, Signal, Broadcast, Done, Add) from any thread.
#ifndef NETLOOP_FIBERBRIDGE_SYNC_H_
#define NETLOOP_FIBERBRIDGE_SYNC_H_

#include <cstdint>
#include <mutex>

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
  // Atomically unlocks `m` and parks; relocks before returning. Spurious
  // wake-ups do not happen, but re-check your predicate anyway.
  void Wait(Mutex& m);
  template <typename Pred>
  void Wait(Mutex& m, Pred pred) {
    while (!pred()) Wait(m);
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
  // Parks until the counter is zero.
  void Wait();

 private:
  std::mutex mu_;
  int64_t count_ = 0;
  internal::WaiterList waiters_;
};

}  // namespace netloop::fiber

#endif  // NETLOOP_FIBERBRIDGE_SYNC_H_
