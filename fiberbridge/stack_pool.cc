#include "fiberbridge/stack_pool.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdio>
#include <cstdlib>
#include <iterator>

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
// reported as a stack overflow on its first read. True when it was unmapped.
bool UnmapStackMemory(void* p, size_t n) {
#if defined(__SANITIZE_ADDRESS__)
  ASAN_UNPOISON_MEMORY_REGION(p, n);
#endif
  return munmap(p, n) == 0;
}

constexpr size_t kMinStack = 16 * 1024;
constexpr size_t kMaxStack = 8 * 1024 * 1024;
// A slab's retired stacks are the bits of one word.
constexpr size_t kMaxStacksPerSlab = 64;

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
  stride_ = guard_ + usable_;
  options_.stacks_per_slab = std::clamp<size_t>(options.stacks_per_slab, 1, kMaxStacksPerSlab);
}

StackPool::~StackPool() {
  // Cached stacks are free now too: counted with the retired ones, so that
  // each slab goes in as few munmaps as possible.
  for (const Stack& s : cache_) {
    auto it = std::prev(slabs_.upper_bound(reinterpret_cast<uintptr_t>(s.base)));
    it->second.retired |= uint64_t{1} << ((s.base - it->second.base) / stride_);
  }
  for (auto& [base, slab] : slabs_) {
    auto is_free = [&slab](size_t i) { return i >= slab.carved || ((slab.retired >> i) & 1); };
    for (size_t i = 0; i < slab.stacks;) {
      if (!is_free(i)) {
        ++i;  // still out: stays mapped
        continue;
      }
      size_t end = i + 1;
      while (end < slab.stacks && is_free(end)) ++end;
      UnmapStackMemory(slab.base + i * stride_, (end - i) * stride_);
      i = end;
    }
  }
}

bool StackPool::guard_markers() const {
  return guard_marker_support.load(std::memory_order_relaxed) == 1;
}

void StackPool::MapSlab() {
  // Without guard markers every guard splits its region anyway: one stack per
  // mapping then, so each can be unmapped without leaving holes behind.
  const size_t stacks = ProbeGuardMarkers(page_) ? options_.stacks_per_slab : 1;
  const size_t bytes = stacks * stride_;
  char* base = static_cast<char*>(MapReserved(bytes));
  // A fresh mapping cannot overlap a slab still listed: those are mapped.
  Slab& slab = slabs_.try_emplace(reinterpret_cast<uintptr_t>(base)).first->second;
  slab.base = base;
  slab.stacks = stacks;
  mapped_bytes_ += bytes;
  carving_ = &slab;
}

Stack StackPool::StackAt(const Slab& slab, size_t index) const {
  Stack s;
  s.base = slab.base + index * stride_;
  s.guard = guard_;
  s.mapped = stride_;
  return s;
}

void StackPool::LinkPartial(Slab* slab) {
  slab->prev_partial = nullptr;
  slab->next_partial = partial_;
  if (partial_ != nullptr) partial_->prev_partial = slab;
  partial_ = slab;
}

void StackPool::UnlinkPartial(Slab* slab) {
  if (slab->prev_partial != nullptr) {
    slab->prev_partial->next_partial = slab->next_partial;
  } else {
    partial_ = slab->next_partial;
  }
  if (slab->next_partial != nullptr) slab->next_partial->prev_partial = slab->prev_partial;
  slab->prev_partial = slab->next_partial = nullptr;
}

Stack StackPool::Allocate() {
  ++live_;
  if (!cache_.empty()) {
    Stack s = cache_.back();
    cache_.pop_back();
    if (cold_ > cache_.size()) cold_ = cache_.size();  // it was a cold one
    return s;
  }
  if (partial_ != nullptr) {
    // Reusing a retired stack costs no syscall (its guard marker survived
    // MADV_DONTNEED) and keeps the address space from growing while old slabs
    // sit half empty.
    Slab* slab = partial_;
    const int index = std::countr_zero(slab->retired);
    slab->retired &= slab->retired - 1;
    if (slab->retired == 0) UnlinkPartial(slab);
    --retired_;
    return StackAt(*slab, static_cast<size_t>(index));
  }
  if (carving_ == nullptr) MapSlab();
  Stack s = StackAt(*carving_, carving_->carved++);
  if (carving_->carved == carving_->stacks) carving_ = nullptr;
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
    Retire(stack);
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

void StackPool::Retire(Stack stack) {
  // The slab at or below the stack's base is its own.
  auto it = std::prev(slabs_.upper_bound(reinterpret_cast<uintptr_t>(stack.base)));
  Slab& slab = it->second;
  const bool was_partial = slab.retired != 0;
  slab.retired |= uint64_t{1} << ((stack.base - slab.base) / stride_);
  const uint64_t all =
      slab.stacks == kMaxStacksPerSlab ? ~uint64_t{0} : (uint64_t{1} << slab.stacks) - 1;
  if (slab.carved == slab.stacks && slab.retired == all) {
    // Whole slabs only: unmapping from inside a region would split it, and
    // enough such holes exhaust vm.max_map_count.
    if (UnmapStackMemory(slab.base, slab.stacks * stride_)) {
      if (was_partial) UnlinkPartial(&slab);
      retired_ -= slab.stacks - 1;  // the others were counted as they retired
      mapped_bytes_ -= slab.stacks * stride_;
      if (carving_ == &slab) carving_ = nullptr;
      slabs_.erase(it);
      return;
    }
    // Cutting a slab out of a merged region needs a free map slot; at the cap
    // the slab stays, every stack of it retired and reusable.
  }
  madvise(stack.usable_bottom(), stack.usable(), MADV_DONTNEED);
  ++retired_;
  if (!was_partial) LinkPartial(&slab);
}

}  // namespace netloop::fiber
