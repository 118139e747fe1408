// An intrusive FIFO of parked fibers. Nodes live on the waiting fiber's own
// stack, so parking never allocates. Guarded by the owning primitive's mutex.
#ifndef NETLOOP_FIBERBRIDGE_WAITER_LIST_H_
#define NETLOOP_FIBERBRIDGE_WAITER_LIST_H_

#include "fiberbridge/scheduler.h"

namespace netloop::fiber::internal {

struct Waiter {
  FiberTask* task = nullptr;
  Waiter* next = nullptr;
  bool done = false;  // set by the waker before it wakes the fiber
};

class WaiterList {
 public:
  bool empty() const { return head_ == nullptr; }
  void Push(Waiter* w) {
    w->next = nullptr;
    if (tail_ == nullptr) {
      head_ = tail_ = w;
    } else {
      tail_->next = w;
      tail_ = w;
    }
  }
  Waiter* Pop() {
    Waiter* w = head_;
    if (w != nullptr) {
      head_ = w->next;
      if (head_ == nullptr) tail_ = nullptr;
    }
    return w;
  }

 private:
  Waiter* head_ = nullptr;
  Waiter* tail_ = nullptr;
};

// Wakes every waiter of a list the caller has already detached from its
// primitive (outside the lock). Each node's successor is read before its
// fiber is woken: a woken fiber's stack, where its node lives, may be reused
// as soon as it runs.
inline void WakeAll(WaiterList& list) {
  for (Waiter* w = list.Pop(); w != nullptr;) {
    Waiter* next = list.Pop();
    Scheduler::WakeFromAnyThread(w->task);
    w = next;
  }
}

// Parks the current fiber after the caller pushed `w` and released its lock.
// A waker on another loop may already have popped `w` and posted the wake:
// that is safe, because the post runs on this loop only after this fiber has
// suspended (the loop is single-threaded).
inline void ParkCurrent() {
  FiberTask* t = Scheduler::CurrentTask();
  t->scheduler->Park();
}

}  // namespace netloop::fiber::internal

#endif  // NETLOOP_FIBERBRIDGE_WAITER_LIST_H_
