// Fiber stacks for one loop: guarded, carved from large reservations, reused
// LIFO (Go's stack cache, without growth).
//
// Memory. Every stack is reserved with MAP_NORESERVE, so resident memory is
// what a fiber actually touched, not the reservation: a parked connection
// handler costs one or two 4 KiB pages whatever `stack_size` says.
//
// Guards. Below each stack sits a guard of `guard_size` bytes that faults on
// any access; running into it is reported by overflow_guard.h, never silent.
// A frame larger than the guard can jump over it into the next stack down:
// build with -fstack-clash-protection (it probes every page of a big frame) or
// raise guard_size when fibers keep large arrays on the stack.
//
// Map count. The kernel caps the regions (VMAs) a process may map at
// vm.max_map_count (65530 here). A stack guarded with mprotect costs two
// regions (guard + stack), so such stacks top out near 32k per process,
// however they are carved. Linux 6.13+ has MADV_GUARD_INSTALL, a guard kept
// in the page tables that does not split the region: stacks are then carved
// `stacks_per_slab` at a time from one mapping, and adjacent slabs merge, so
// 20,000 stacks of 64 KiB cost 1 region instead of 40,000 (measured with
// `wc -l /proc/self/maps`, see tests/stack_pool_test.cc). The pool probes the
// kernel once and falls back to mprotect guards on older kernels.
// Unmapping one stack from the middle of a slab splits that slab's region, so
// a pool that trims its cache can fragment back towards one region per stack
// (never beyond the mprotect case).
//
// Thread safety: none. A pool belongs to one loop thread (or one test); every
// call, and the release of every stack it handed out, happens there.
#ifndef NETLOOP_FIBERBRIDGE_STACK_POOL_H_
#define NETLOOP_FIBERBRIDGE_STACK_POOL_H_

#include <cstddef>
#include <vector>

namespace netloop::fiber {

struct StackPoolOptions {
  // Usable bytes per stack: clamped to [16 KiB, 8 MiB], then rounded up to
  // whole pages.
  size_t stack_size = 64 * 1024;
  // Bytes of guard below each stack, rounded up to whole pages (at least one).
  // Costs address space only.
  size_t guard_size = 4096;
  // Released stacks kept for reuse; beyond this many, released stacks are
  // unmapped at once.
  size_t max_cached = 4096;
  // Of the cached stacks, the `max_warm` most recently released keep their
  // pages; older ones hold address space only: as a cached stack ages past
  // this bound its whole usable range goes back to the kernel with
  // MADV_DONTNEED. So whatever max_cached says, the cache keeps at most
  // max_warm stacks' worth of touched pages resident, and RSS falls back
  // after a burst of fibers ends. Reuse is LIFO, so steady churn below the
  // bound never pays the syscall or the page faults.
  size_t max_warm = 64;
  // When a stack goes back to the cache, return its pages (all but the top
  // one, which every fiber touches) to the kernel with MADV_DONTNEED, however
  // recently it was used. On: even warm stacks hold no more than a page.
  // Off: each release and the next fiber's first touches are cheaper (no
  // madvise syscall, no page faults re-zeroing pages), and max_warm bounds
  // what the cache keeps. Off suits most servers; on suits fibers that are
  // deep and rare.
  bool release_pages_on_return = false;
  // Stacks carved from each reservation when guard pages need no extra map
  // regions (see above); ignored (one stack per mapping) otherwise.
  size_t stacks_per_slab = 64;
};

// One stack: [base, base + guard) is the guard, [base + guard, top()) the
// usable part. Stacks grow down from top().
struct Stack {
  char* base = nullptr;
  size_t mapped = 0;  // guard + usable
  size_t guard = 0;
  char* top() const { return base + mapped; }
  char* usable_bottom() const { return base + guard; }
  size_t usable() const { return mapped - guard; }
};

class StackPool {
 public:
  explicit StackPool(StackPoolOptions options = {});
  // Unmaps cached stacks and the uncarved rest of the current slab. Stacks
  // still out stay mapped (a scheduler abandoning stuck fibers leaks them
  // rather than pulling a stack from under a suspended frame).
  ~StackPool();
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;

  // The most recently released stack, else a fresh one. Aborts with a message
  // on stderr when the kernel refuses (address space or vm.max_map_count
  // exhausted): a fiber without a stack cannot run, and there is no partial
  // recovery. Allocates no heap memory.
  Stack Allocate();
  // Takes back a stack from Allocate() on this pool. May push onto the cache
  // vector (heap growth, amortised) and, per the options, call madvise or
  // munmap.
  void Release(Stack stack);

  // Usable bytes per stack after clamping and rounding.
  size_t stack_size() const { return usable_; }
  size_t guard_size() const { return guard_; }
  size_t cached() const { return cache_.size(); }
  // Cached stacks whose pages are still kept (at most max_warm).
  size_t cached_warm() const { return cache_.size() - cold_; }
  // Stacks handed out and not yet released.
  size_t live() const { return live_; }
  // Whether guards are page-table markers (true: no extra map regions) or
  // mprotect'd pages (false). Decided by the first slab this pool maps.
  bool guard_markers() const;

 private:
  void MapSlab();

  StackPoolOptions options_;
  size_t page_;
  size_t usable_;
  size_t guard_;
  // LIFO: the back is the most recently released. cache_[0, cold_) have had
  // their pages returned; the rest are warm.
  std::vector<Stack> cache_;
  size_t cold_ = 0;
  size_t live_ = 0;
  // Uncarved remainder of the newest slab.
  char* slab_next_ = nullptr;
  char* slab_end_ = nullptr;
};

}  // namespace netloop::fiber

#endif  // NETLOOP_FIBERBRIDGE_STACK_POOL_H_
