// The timers of one loop: run-at, run-every, cancel and reschedule, with many
// thousands pending (an idle timeout per connection, a deadline per parked
// fiber). An indexed 4-ary min-heap over a slot array with a free list: add,
// cancel and reschedule are O(log n), and a steady state of adds and cancels
// allocates nothing beyond what a callback itself needs (AnyInvocable keeps
// small lambdas inline).
//
// Time is int64 nanoseconds on a monotonic clock the caller supplies; the
// queue never reads a clock. Not thread-safe: the owning loop's thread only.
#ifndef NETLOOP_REACTOR_TIMER_QUEUE_H_
#define NETLOOP_REACTOR_TIMER_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "absl/functional/any_invocable.h"

namespace netloop {

// Names one scheduled timer. Ids of fired or cancelled timers go stale (the
// generation no longer matches), so using one late is harmless.
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

  // Schedules `cb` at `when_ns`, then every `interval_ns` if > 0.
  TimerId Add(int64_t when_ns, int64_t interval_ns, absl::AnyInvocable<void()> cb);
  // True if the timer was pending. Safe inside any callback, including a
  // periodic timer cancelling itself.
  bool Cancel(TimerId id);
  // Moves a pending timer; false if it is not pending.
  bool Reschedule(TimerId id, int64_t when_ns);

  // The earliest deadline, or INT64_MAX when nothing is pending.
  int64_t NextExpiry() const {
    return heap_.empty() ? std::numeric_limits<int64_t>::max() : slots_[heap_[0]].when;
  }
  size_t size() const { return heap_.size(); }

  // Runs every timer due at `now_ns`, earliest first (ties in the order they
  // were added). Callbacks may add, cancel and reschedule; a timer they add
  // that is already due waits for the next call, so a callback re-adding
  // itself cannot loop forever. A periodic timer is re-armed at when +
  // interval, or now + interval if that has passed (no burst of catch-ups).
  size_t RunExpired(int64_t now_ns);

 private:
  struct Slot {
    int64_t when = 0;
    int64_t interval = 0;
    uint64_t seq = 0;  // tie-break: insertion order
    uint32_t generation = 1;
    int32_t heap_index = -1;  // -1: not pending
    absl::AnyInvocable<void()> cb;
    uint32_t next_free = 0;
  };

  bool Less(uint32_t a, uint32_t b) const {
    const Slot& x = slots_[a];
    const Slot& y = slots_[b];
    return x.when != y.when ? x.when < y.when : x.seq < y.seq;
  }
  void Place(size_t pos, uint32_t slot) {
    heap_[pos] = slot;
    slots_[slot].heap_index = static_cast<int32_t>(pos);
  }
  void SiftUp(size_t pos);
  void SiftDown(size_t pos);
  void RemoveAt(size_t pos);
  uint32_t AllocSlot();
  void FreeSlot(uint32_t slot);
  Slot* Lookup(TimerId id);

  std::vector<Slot> slots_;
  std::vector<uint32_t> heap_;
  uint32_t free_head_ = 0;  // 1-based index into slots_; 0 = none
  uint64_t next_seq_ = 0;
  int64_t running_cutoff_seq_ = -1;
};

}  // namespace netloop

#endif  // NETLOOP_REACTOR_TIMER_QUEUE_H_
