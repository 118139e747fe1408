// The Windows StackPool: a LIFO cache of OS fibers (see stack_pool.h).
#include "fiberbridge/stack_pool.h"

#include "fiberbridge/internal/lean_windows.h"

#include <algorithm>

namespace netloop::fiber {
namespace {

constexpr size_t kMinStack = 16 * 1024;
constexpr size_t kMaxStack = 8 * 1024 * 1024;

size_t RoundUp(size_t n, size_t page) { return (n + page - 1) / page * page; }

size_t PageSize() {
  SYSTEM_INFO info;
  GetSystemInfo(&info);
  return info.dwPageSize;
}

}  // namespace

StackPool::StackPool(StackPoolOptions options) : options_(options), page_(PageSize()) {
  usable_ = RoundUp(std::clamp(options.stack_size, kMinStack, kMaxStack), page_);
  guard_ = 0;
  stride_ = usable_;
  // A cached OS fiber keeps its touched pages (they cannot be given back
  // under the system's guard page), so the warm bound is the cache's bound.
  options_.max_cached = std::min(options.max_cached, options.max_warm);
}

StackPool::~StackPool() {
  // Never the running fiber's: a cached one has finished, and this runs on
  // the thread (or fiber) that owned the pool.
  for (const Stack& s : cache_) {
    if (s.os_fiber != nullptr) DeleteFiber(s.os_fiber);
  }
}

bool StackPool::guard_markers() const { return false; }

Stack StackPool::Allocate() {
  ++live_;
  if (!cache_.empty()) {
    Stack s = cache_.back();
    cache_.pop_back();
    return s;
  }
  Stack s;
  s.mapped = usable_;
  mapped_bytes_ += usable_;
  return s;
}

void StackPool::Release(Stack stack) {
  --live_;
  if (cache_.size() < options_.max_cached) {
    cache_.push_back(stack);
    return;
  }
  // Called on the resumer's side, never on the fiber being deleted.
  if (stack.os_fiber != nullptr) DeleteFiber(stack.os_fiber);
  mapped_bytes_ -= usable_;
}

}  // namespace netloop::fiber
