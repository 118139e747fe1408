// An intrusive FIFO of parked fibers. Nodes live on the waiting fiber's own
// stack, so parking never allocates. Guarded by the owning primitive's mutex:
// every call below needs it held, except WakeAll (on a detached list) and the
// Park* functions (after the caller released it).
#ifndef NETLOOP_FIBERBRIDGE_WAITER_LIST_H_
#define NETLOOP_FIBERBRIDGE_WAITER_LIST_H_

#include <mutex>

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
  // Takes `w` out if it is still in the list; false if someone popped it.
  // Linear, but only the stop deadline calls it.
  bool Remove(Waiter* w) {
    Waiter* prev = nullptr;
    for (Waiter* cur = head_; cur != nullptr; prev = cur, cur = cur->next) {
      if (cur != w) continue;
      (prev == nullptr ? head_ : prev->next) = cur->next;
      if (tail_ == cur) tail_ = prev;
      cur->next = nullptr;
      return true;
    }
    return false;
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
// suspended (the loop is single-threaded). The stop deadline does not end
// this park (Mutex::Lock, whose wait ends when the holder unlocks).
inline void ParkCurrent() {
  FiberTask* t = Scheduler::CurrentTask();
  t->scheduler->Park();
}

// A Waiter in a WaiterList guarded by `mu`, which the stop deadline may take
// back out (see AbortableWait).
class ListWait final : public AbortableWait {
 public:
  ListWait(std::mutex& mu, WaiterList& list, Waiter& w) : mu_(mu), list_(list), w_(w) {}
  bool Abort() override {
    std::lock_guard<std::mutex> lock(mu_);
    return list_.Remove(&w_);
  }

 private:
  std::mutex& mu_;
  WaiterList& list_;
  Waiter& w_;
};

// ParkCurrent for a waiter the stop deadline may abort: returns true when a
// waker woke it, false when the deadline took it out of `list` (guarded by
// `mu`, which the caller has released).
inline bool ParkCurrentAbortable(std::mutex& mu, WaiterList& list, Waiter& w) {
  ListWait wait(mu, list, w);
  return Scheduler::CurrentTask()->scheduler->ParkAbortable(&wait);
}

}  // namespace netloop::fiber::internal

#endif  // NETLOOP_FIBERBRIDGE_WAITER_LIST_H_
