#include "reactor/timer_queue.h"

#include <algorithm>
#include <cassert>
#include <utility>

namespace netloop {
namespace {

constexpr int64_t kForever = std::numeric_limits<int64_t>::max();

// when + interval without signed overflow: a deadline past the end of time
// is simply "never".
int64_t SaturatingAdd(int64_t when, int64_t interval) {
  return when > kForever - interval ? kForever : when + interval;
}

}  // namespace

uint32_t TimerQueue::AllocSlot() {
  if (free_head_ != kNoSlot) {
    uint32_t slot = free_head_;
    free_head_ = slots_[slot].next_free;
    return slot;
  }
  slots_.emplace_back();
  return static_cast<uint32_t>(slots_.size() - 1);
}

void TimerQueue::FreeSlot(uint32_t slot) {
  Slot& s = slots_[slot];
  s.heap_index = kFree;
  // Generation 0 means "no timer", so wrap past it.
  if (++s.generation == 0) s.generation = 1;
  s.next_free = free_head_;
  free_head_ = slot;
}

TimerQueue::Slot* TimerQueue::Lookup(TimerId id) {
  if (!id.valid() || id.slot >= slots_.size()) return nullptr;
  Slot& s = slots_[id.slot];
  if (s.generation != id.generation || s.heap_index == kFree) return nullptr;
  return &s;
}

void TimerQueue::Push(int64_t when, uint32_t slot) {
  heap_.push_back(HeapEntry{when, slot});
  slots_[slot].heap_index = static_cast<int32_t>(heap_.size() - 1);
  SiftUp(heap_.size() - 1);
}

TimerId TimerQueue::Add(int64_t when_ns, int64_t interval_ns,
                        absl::AnyInvocable<void()> cb) {
  const uint32_t slot = AllocSlot();
  Slot& s = slots_[slot];
  s.cb = std::move(cb);
  s.interval = std::max<int64_t>(interval_ns, 0);
  s.seq = next_seq_++;
  Push(when_ns, slot);
  ++pending_;
  return TimerId{slot, s.generation};
}

bool TimerQueue::Cancel(TimerId id) {
  Slot* s = Lookup(id);
  if (s == nullptr) return false;
  if (s->heap_index == kRunning) {
    // The callback is executing and owns itself until it returns; RunExpired
    // frees the slot instead of re-arming it.
    if (s->interval == 0 || running_cancelled_) return false;
    running_cancelled_ = true;
    --pending_;
    return true;
  }
  if (s->heap_index >= 0) RemoveAt(static_cast<size_t>(s->heap_index));
  // A kDeferred slot is simply freed: its deferred entry goes stale because
  // the slot's state (and, once reused, its seq) no longer matches.
  // `doomed` is destroyed on return, once the queue is consistent again.
  absl::AnyInvocable<void()> doomed = std::move(s->cb);
  FreeSlot(id.slot);
  --pending_;
  return true;
}

bool TimerQueue::Reschedule(TimerId id, int64_t when_ns) {
  Slot* s = Lookup(id);
  if (s == nullptr) return false;
  if (s->heap_index == kRunning) {
    if (s->interval == 0 || running_cancelled_) return false;
    running_rescheduled_ = true;
    running_next_when_ = when_ns;
    return true;
  }
  s->seq = next_seq_++;
  if (s->heap_index == kDeferred) {
    // Back into the heap; the new seq makes the deferred entry stale.
    Push(when_ns, id.slot);
    return true;
  }
  const size_t pos = static_cast<size_t>(s->heap_index);
  heap_[pos].when = when_ns;
  SiftUp(pos);
  SiftDown(static_cast<size_t>(slots_[id.slot].heap_index));
  return true;
}

int64_t TimerQueue::NextExpiry() const {
  int64_t next = heap_.empty() ? kForever : heap_[0].when;
  // Only non-empty while RunExpired is on the stack (a callback asking).
  for (const DeferredEntry& d : deferred_) {
    const Slot& s = slots_[d.slot];
    if (s.heap_index == kDeferred && s.seq == d.seq) next = std::min(next, d.when);
  }
  return next;
}

size_t TimerQueue::RunExpired(int64_t now_ns) {
  assert(!in_run_ && "RunExpired called from a timer callback");
  in_run_ = true;
  // Everything armed from here on (by callbacks, or periodic re-arms) has a
  // seq >= the cutoff and waits for the next call.
  run_cutoff_seq_ = next_seq_;
  size_t ran = 0;
  while (!heap_.empty() && heap_[0].when <= now_ns) {
    const HeapEntry top = heap_[0];
    RemoveAt(0);
    Slot& s = slots_[top.slot];
    if (s.seq >= run_cutoff_seq_) {
      // Set aside rather than stop: timers that were due before the call
      // began may still sit behind it in the heap.
      s.heap_index = kDeferred;
      deferred_.push_back(DeferredEntry{top.when, s.seq, top.slot});
      continue;
    }
    const bool periodic = s.interval > 0;
    if (!periodic) --pending_;
    s.heap_index = kRunning;
    running_cancelled_ = false;
    running_rescheduled_ = false;
    // Run from a local: the callback may grow slots_, moving every Slot.
    absl::AnyInvocable<void()> cb = std::move(s.cb);
    cb();
    ++ran;
    Slot& after = slots_[top.slot];
    if (periodic && !running_cancelled_) {
      int64_t next = running_rescheduled_ ? running_next_when_
                                          : SaturatingAdd(top.when, after.interval);
      // Fallen behind by a period or more: skip the missed runs.
      if (!running_rescheduled_ && next <= now_ns) {
        next = SaturatingAdd(now_ns, after.interval);
      }
      after.cb = std::move(cb);
      after.seq = next_seq_++;
      Push(next, top.slot);
    } else {
      FreeSlot(top.slot);
      // `cb` dies at the end of this iteration, with the queue consistent.
    }
  }
  for (const DeferredEntry& d : deferred_) {
    Slot& s = slots_[d.slot];
    if (s.heap_index == kDeferred && s.seq == d.seq) Push(d.when, d.slot);
  }
  deferred_.clear();
  in_run_ = false;
  return ran;
}

void TimerQueue::SiftUp(size_t pos) {
  const HeapEntry e = heap_[pos];
  while (pos > 0) {
    const size_t parent = (pos - 1) / 4;
    if (!Less(e, heap_[parent])) break;
    Place(pos, heap_[parent]);
    pos = parent;
  }
  Place(pos, e);
}

void TimerQueue::SiftDown(size_t pos) {
  const HeapEntry e = heap_[pos];
  const size_t n = heap_.size();
  for (;;) {
    const size_t first = pos * 4 + 1;
    if (first >= n) break;
    const size_t last = std::min(first + 4, n);
    size_t best = first;
    for (size_t c = first + 1; c < last; ++c) {
      if (Less(heap_[c], heap_[best])) best = c;
    }
    if (!Less(heap_[best], e)) break;
    Place(pos, heap_[best]);
    pos = best;
  }
  Place(pos, e);
}

void TimerQueue::RemoveAt(size_t pos) {
  const HeapEntry last = heap_.back();
  heap_.pop_back();
  if (pos == heap_.size()) return;
  Place(pos, last);
  SiftUp(pos);
  SiftDown(static_cast<size_t>(slots_[last.slot].heap_index));
}

}  // namespace netloop
