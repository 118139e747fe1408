#include "fiberbridge/stack_pool.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>

// Linux 6.13 uapi; older libc headers lack it.
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

namespace netloop::fiber {
namespace {

// Unmaps stack memory. Under ASan, frames that ran on it left poisoned
// redzones in the shadow, which munmap does not clear: the next mapping at
// the same address (another loop's receive buffers, say) would then be
// reported as a stack overflow on its first read.
void UnmapStackMemory(void* p, size_t n) {
#if defined(__SANITIZE_ADDRESS__)
  ASAN_UNPOISON_MEMORY_REGION(p, n);
#endif
  munmap(p, n);
}

constexpr size_t kMinStack = 16 * 1024;
constexpr size_t kMaxStack = 8 * 1024 * 1024;

size_t RoundUp(size_t n, size_t page) { return (n + page - 1) / page * page; }

[[noreturn]] void Die(const char* what, size_t bytes) {
  std::fprintf(stderr, "netloop: %s (%zu bytes): %s (address space or vm.max_map_count?)\n",
               what, bytes, strerror(errno));
  std::abort();
}

// 0 = not probed yet, 1 = supported, 2 = not supported. Racing probes agree,
// so a relaxed store suffices.
std::atomic<int> guard_marker_support{0};

bool ProbeGuardMarkers(size_t page) {
  int state = guard_marker_support.load(std::memory_order_relaxed);
  if (state != 0) return state == 1;
  void* p = mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  bool ok = p != MAP_FAILED && madvise(p, page, MADV_GUARD_INSTALL) == 0;
  if (p != MAP_FAILED) munmap(p, 2 * page);
  guard_marker_support.store(ok ? 1 : 2, std::memory_order_relaxed);
  return ok;
}

void* MapReserved(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (p == MAP_FAILED) Die("cannot map fiber stacks", bytes);
  return p;
}

}  // namespace

StackPool::StackPool(StackPoolOptions options)
    : options_(options), page_(static_cast<size_t>(sysconf(_SC_PAGESIZE))) {
  usable_ = RoundUp(std::clamp(options.stack_size, kMinStack, kMaxStack), page_);
  guard_ = RoundUp(std::max<size_t>(options.guard_size, 1), page_);
  options_.stacks_per_slab = std::max<size_t>(options.stacks_per_slab, 1);
}

StackPool::~StackPool() {
  for (const Stack& s : cache_) UnmapStackMemory(s.base, s.mapped);
  if (slab_next_ != slab_end_) UnmapStackMemory(slab_next_, slab_end_ - slab_next_);
}

bool StackPool::guard_markers() const {
  return guard_marker_support.load(std::memory_order_relaxed) == 1;
}

void StackPool::MapSlab() {
  // Without guard markers every guard splits its region anyway: one stack per
  // mapping then, so each can be unmapped without leaving holes behind.
  const size_t stacks = ProbeGuardMarkers(page_) ? options_.stacks_per_slab : 1;
  const size_t bytes = stacks * (guard_ + usable_);
  // The previous slab's remainder is always empty here (see Allocate).
  slab_next_ = static_cast<char*>(MapReserved(bytes));
  slab_end_ = slab_next_ + bytes;
}

Stack StackPool::Allocate() {
  ++live_;
  if (!cache_.empty()) {
    Stack s = cache_.back();
    cache_.pop_back();
    if (cold_ > cache_.size()) cold_ = cache_.size();  // it was a cold one
    return s;
  }
  if (slab_next_ == slab_end_) MapSlab();
  Stack s;
  s.base = slab_next_;
  s.guard = guard_;
  s.mapped = guard_ + usable_;
  slab_next_ += s.mapped;
  // Guards are installed as stacks are carved, so the uncarved rest of a slab
  // stays one plain region (and mprotect'd guards cost regions only when used).
  if (!(guard_markers() && madvise(s.base, guard_, MADV_GUARD_INSTALL) == 0) &&
      mprotect(s.base, guard_, PROT_NONE) != 0) {
    Die("cannot protect a fiber stack guard", guard_);
  }
  return s;
}

void StackPool::Release(Stack stack) {
  --live_;
  if (cache_.size() >= options_.max_cached) {
    UnmapStackMemory(stack.base, stack.mapped);
    return;
  }
  if (options_.release_pages_on_return && stack.usable() > page_) {
    // Keeps the top page: the next fiber touches it first anyway. Guard
    // markers survive MADV_DONTNEED.
    madvise(stack.usable_bottom(), stack.usable() - page_, MADV_DONTNEED);
  }
  cache_.push_back(stack);
  // The oldest warm stack ages out of the warm set: all its pages go back.
  // (At most one per release, so this stays O(1).)
  if (cache_.size() - cold_ > options_.max_warm) {
    const Stack& aged = cache_[cold_];
    madvise(aged.usable_bottom(), aged.usable(), MADV_DONTNEED);
    ++cold_;
  }
}

}  // namespace netloop::fiber
