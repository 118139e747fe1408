#include "reactor/timer_queue.h"

#include <utility>

namespace netloop {

uint32_t TimerQueue::AllocSlot() {
  if (free_head_ != 0) {
    uint32_t slot = free_head_ - 1;
    free_head_ = slots_[slot].next_free;
    return slot;
  }
  slots_.emplace_back();
  return static_cast<uint32_t>(slots_.size() - 1);
}

void TimerQueue::FreeSlot(uint32_t slot) {
  Slot& s = slots_[slot];
  s.cb = nullptr;
  s.heap_index = -1;
  // A new generation makes every outstanding id for this slot stale; skip 0,
  // which means "no timer".
  if (++s.generation == 0) s.generation = 1;
  s.next_free = free_head_;
  free_head_ = slot + 1;
}

TimerQueue::Slot* TimerQueue::Lookup(TimerId id) {
  if (!id.valid() || id.slot >= slots_.size()) return nullptr;
  Slot& s = slots_[id.slot];
  if (s.generation != id.generation || s.heap_index < 0) return nullptr;
  return &s;
}

TimerId TimerQueue::Add(int64_t when_ns, int64_t interval_ns,
                        absl::AnyInvocable<void()> cb) {
  uint32_t slot = AllocSlot();
  Slot& s = slots_[slot];
  s.when = when_ns;
  s.interval = interval_ns > 0 ? interval_ns : 0;
  s.seq = next_seq_++;
  s.cb = std::move(cb);
  heap_.push_back(slot);
  s.heap_index = static_cast<int32_t>(heap_.size() - 1);
  SiftUp(heap_.size() - 1);
  return TimerId{slot, slots_[slot].generation};
}

bool TimerQueue::Cancel(TimerId id) {
  Slot* s = Lookup(id);
  if (s == nullptr) {
    // The running periodic timer is out of the heap while its callback runs:
    // mark it so it is not re-armed.
    if (id.valid() && id.slot < slots_.size() &&
        slots_[id.slot].generation == id.generation && slots_[id.slot].heap_index == -2) {
      slots_[id.slot].interval = 0;
      return true;
    }
    return false;
  }
  RemoveAt(static_cast<size_t>(s->heap_index));
  FreeSlot(id.slot);
  return true;
}

bool TimerQueue::Reschedule(TimerId id, int64_t when_ns) {
  Slot* s = Lookup(id);
  if (s == nullptr) return false;
  s->when = when_ns;
  s->seq = next_seq_++;
  size_t pos = static_cast<size_t>(s->heap_index);
  SiftUp(pos);
  SiftDown(static_cast<size_t>(slots_[id.slot].heap_index));
  return true;
}

size_t TimerQueue::RunExpired(int64_t now_ns) {
  size_t ran = 0;
  // Timers added by the callbacks below carry a seq >= cutoff and wait.
  const uint64_t cutoff = next_seq_;
  while (!heap_.empty()) {
    uint32_t slot = heap_[0];
    if (slots_[slot].when > now_ns || slots_[slot].seq >= cutoff) break;
    RemoveAt(0);
    // Move the callback out: the slot array may grow while it runs.
    absl::AnyInvocable<void()> cb = std::move(slots_[slot].cb);
    slots_[slot].heap_index = -2;  // running
    uint32_t generation = slots_[slot].generation;
    cb();
    ++ran;
    Slot& s = slots_[slot];
    if (s.generation == generation && s.interval > 0) {
      int64_t next = s.when + s.interval;
      s.when = next > now_ns ? next : now_ns + s.interval;
      s.seq = next_seq_++;
      s.cb = std::move(cb);
      heap_.push_back(slot);
      s.heap_index = static_cast<int32_t>(heap_.size() - 1);
      SiftUp(heap_.size() - 1);
    } else {
      FreeSlot(slot);
    }
  }
  return ran;
}

void TimerQueue::SiftUp(size_t pos) {
  uint32_t slot = heap_[pos];
  while (pos > 0) {
    size_t parent = (pos - 1) / 4;
    if (!Less(slot, heap_[parent])) break;
    Place(pos, heap_[parent]);
    pos = parent;
  }
  Place(pos, slot);
}

void TimerQueue::SiftDown(size_t pos) {
  uint32_t slot = heap_[pos];
  const size_t n = heap_.size();
  for (;;) {
    size_t first = pos * 4 + 1;
    if (first >= n) break;
    size_t best = first;
    size_t last = first + 4 < n ? first + 4 : n;
    for (size_t c = first + 1; c < last; ++c) {
      if (Less(heap_[c], heap_[best])) best = c;
    }
    if (!Less(heap_[best], slot)) break;
    Place(pos, heap_[best]);
    pos = best;
  }
  Place(pos, slot);
}

void TimerQueue::RemoveAt(size_t pos) {
  uint32_t last = heap_.back();
  heap_.pop_back();
  if (pos == heap_.size()) return;
  Place(pos, last);
  SiftUp(pos);
  SiftDown(static_cast<size_t>(slots_[last].heap_index));
}

}  // namespace netloop
