// The timers of one event loop: one-shot and periodic, cancellable and
// movable, cheap with many thousands pending (an idle timeout per connection,
// a deadline per parked fiber).
//
// Time is int64 nanoseconds on a monotonic clock the caller supplies; the
// queue never reads a clock, so tests drive it with plain numbers.
//
// Threading: none. Every call comes from the owning loop's thread, including
// calls made from inside timer callbacks (which are allowed, see RunExpired).
//
// Cost: an indexed 4-ary min-heap (16-byte entries, so the four children of
// a node share a cache line) over a slot array with a free list. Add, Cancel
// and Reschedule are O(log n); once the slot array and heap have grown to the
// peak number of pending timers, adding, cancelling and firing allocate
// nothing beyond what a callback itself needs (absl::AnyInvocable keeps small
// callables inline).
#ifndef NETLOOP_REACTOR_TIMER_QUEUE_H_
#define NETLOOP_REACTOR_TIMER_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "absl/functional/any_invocable.h"

namespace netloop {

// Names one scheduled timer. A fired (one-shot) or cancelled timer's id goes
// stale: its slot's generation moves on, so a late Cancel or Reschedule with
// it is a harmless `false` even after the slot is reused. A default TimerId
// names nothing.
struct TimerId {
  uint32_t slot = 0;
  uint32_t generation = 0;  // 0: no timer
  bool valid() const { return generation != 0; }
};

class TimerQueue {
 public:
  TimerQueue() = default;
  TimerQueue(const TimerQueue&) = delete;
  TimerQueue& operator=(const TimerQueue&) = delete;
  // Destroys pending callbacks without running them. Not from a callback.
  ~TimerQueue() = default;

  // Schedules `cb` to run at `when_ns`, and then every `interval_ns` when it
  // is > 0 (<= 0 means one-shot). A `when_ns` already in the past is due at
  // the next RunExpired.
  TimerId Add(int64_t when_ns, int64_t interval_ns, absl::AnyInvocable<void()> cb);

  // Stops a timer from running again. Returns true if it was pending, i.e.
  // would have run again without this call: a scheduled timer, or a periodic
  // timer whose callback is running right now (it is then not re-armed).
  // False for a stale id, including a one-shot timer cancelling itself from
  // its own callback (it already ran). The callback is destroyed at once,
  // except a running callback's, which is destroyed once it returns.
  bool Cancel(TimerId id);

  // Moves a pending timer to `when_ns`, keeping its callback and interval.
  // Among timers due at the same instant it then counts as the newest. From
  // inside its own callback a periodic timer may call this to choose its
  // next run (instead of when + interval). Returns false if the timer is not
  // pending (stale id, or a one-shot timer whose callback is running).
  bool Reschedule(TimerId id, int64_t when_ns);

  // The earliest pending deadline, or INT64_MAX when nothing is pending.
  int64_t NextExpiry() const;
  // The number of pending timers (a running periodic timer counts unless it
  // cancelled itself).
  size_t size() const { return pending_; }
  bool empty() const { return pending_ == 0; }

  // Runs every timer due at `now_ns` (when <= now_ns), earliest deadline
  // first, ties in the order the timers were added (or last rescheduled).
  // Returns how many callbacks ran.
  //
  // Callbacks may Add, Cancel and Reschedule any timer. A timer that a
  // callback adds or reschedules to a deadline <= now_ns does NOT run in this
  // call but in the next one: a callback that re-adds itself cannot keep one
  // call running forever, and the loop gets to poll I/O in between. Timers
  // that were already due when the call began all run in it, whatever the
  // callbacks add. A periodic timer is re-armed at when + interval, or, when
  // the loop has fallen that far behind, at now_ns + interval: it runs once,
  // not once per missed period.
  //
  // Not reentrant: a callback must not call RunExpired.
  size_t RunExpired(int64_t now_ns);

 private:
  // Slot states, kept in Slot::heap_index when it is not a heap position.
  static constexpr int32_t kFree = -1;
  static constexpr int32_t kRunning = -2;   // its callback is executing
  static constexpr int32_t kDeferred = -3;  // due, but added during this run
  static constexpr uint32_t kNoSlot = std::numeric_limits<uint32_t>::max();

  struct Slot {
    absl::AnyInvocable<void()> cb;
    int64_t interval = 0;
    // Unique per arming (Add, Reschedule, re-arm): orders ties and tells a
    // deferred entry whether its slot was re-armed since.
    uint64_t seq = 0;
    uint32_t generation = 1;
    int32_t heap_index = kFree;  // >= 0: position in heap_
    uint32_t next_free = kNoSlot;
  };
  struct HeapEntry {
    int64_t when;
    uint32_t slot;
  };
  struct DeferredEntry {
    int64_t when;
    uint64_t seq;
    uint32_t slot;
  };

  // Heap order: deadline, then arming order. The deadline sits in the entry,
  // so only ties look at the slots.
  bool Less(const HeapEntry& a, const HeapEntry& b) const {
    if (a.when != b.when) return a.when < b.when;
    return slots_[a.slot].seq < slots_[b.slot].seq;
  }
  void Place(size_t pos, const HeapEntry& e) {
    heap_[pos] = e;
    slots_[e.slot].heap_index = static_cast<int32_t>(pos);
  }
  void Push(int64_t when, uint32_t slot);
  void SiftUp(size_t pos);
  void SiftDown(size_t pos);
  void RemoveAt(size_t pos);
  uint32_t AllocSlot();
  // Puts a slot on the free list and makes its ids stale. The caller has
  // already moved the callback out, so a destructor that calls back into the
  // queue finds it consistent.
  void FreeSlot(uint32_t slot);
  // The live slot `id` names, or nullptr if the id is stale.
  Slot* Lookup(TimerId id);

  std::vector<Slot> slots_;
  std::vector<HeapEntry> heap_;
  uint32_t free_head_ = kNoSlot;
  uint64_t next_seq_ = 0;
  size_t pending_ = 0;

  // State of the RunExpired call in progress.
  bool in_run_ = false;
  uint64_t run_cutoff_seq_ = 0;  // armed at or after this: wait for next call
  bool running_cancelled_ = false;
  bool running_rescheduled_ = false;
  int64_t running_next_when_ = 0;
  // Due timers armed during the run, set aside so the ones behind them in
  // the heap still run. Capacity is kept across calls.
  std::vector<DeferredEntry> deferred_;
};

}  // namespace netloop

#endif  // NETLOOP_REACTOR_TIMER_QUEUE_H_
