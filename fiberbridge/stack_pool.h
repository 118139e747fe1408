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
//
// Trimming. Unmapping one stack from the middle of a slab would split that
// slab's region, so the pool never does: a stack released beyond max_cached
// is retired instead (its pages go back with MADV_DONTNEED, its address
// space and guard stay), handed out again before anything new is carved, and
// a slab is unmapped whole once all its stacks are retired. The map count is
// then bounded by the number of slabs (1M stacks: 15,625) whatever order
// fibers finish in. (Unmapping stacks one by one, 1M stacks released evens
// first fragmented the map to the 65530 cap; past it munmap fails, and 3 GiB
// of released stacks stayed resident.)
//
// Windows (stack_pool_win.cc). An OS fiber allocates its own stack
// (CreateFiberEx: reserved, committed as it grows, with the system's guard
// page), and no other memory can be handed to it, so the Windows pool is a
// LIFO cache of OS fibers rather than of stacks. A Stack there is an OS
// fiber (made by the Fiber at its first run), and the pool keeps at most
// min(max_cached, max_warm) of them; beyond that a released one is deleted,
// stack and all, which is what bounds resident memory there (a cached OS
// fiber keeps the pages it touched). guard_size, stacks_per_slab and
// release_pages_on_return do not apply; retired() is 0.
//
// Thread safety: none. A pool belongs to one loop thread (or one test); every
// call, and the release of every stack it handed out, happens there.
#ifndef NETLOOP_FIBERBRIDGE_STACK_POOL_H_
#define NETLOOP_FIBERBRIDGE_STACK_POOL_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

namespace netloop::fiber {

struct StackPoolOptions {
  // Usable bytes per stack: clamped to [16 KiB, 8 MiB], then rounded up to
  // whole pages.
  size_t stack_size = 64 * 1024;
  // Bytes of guard below each stack, rounded up to whole pages (at least one).
  // Costs address space only.
  size_t guard_size = 4096;
  // Released stacks kept for reuse with their pages (see max_warm). Beyond
  // this many, a released stack is retired: its pages go back to the kernel
  // at once, and its address space goes once the rest of its slab is free too
  // (see "Trimming"; with one stack per slab, at once).
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
  // regions (see above), clamped to [1, 64] (a slab's bookkeeping is one
  // word; adjacent slabs merge into one region anyway, so larger slabs would
  // save no regions); ignored (one stack per mapping) otherwise.
  size_t stacks_per_slab = 64;
};

// One stack: [base, base + guard) is the guard, [base + guard, top()) the
// usable part. Stacks grow down from top(). On Windows only the size is
// known (base is null, guard 0), and os_fiber is the OS fiber that owns the
// stack, or null until a Fiber first runs on it.
struct Stack {
  char* base = nullptr;
  size_t mapped = 0;  // guard + usable
  size_t guard = 0;
#if defined(_WIN32)
  void* os_fiber = nullptr;
#endif
  char* top() const { return base + mapped; }
  char* usable_bottom() const { return base + guard; }
  size_t usable() const { return mapped - guard; }
};

class StackPool {
 public:
  explicit StackPool(StackPoolOptions options = {});
  // Unmaps every stack not handed out (cached, retired, never carved), whole
  // slabs where it can. Stacks still out stay mapped (a scheduler abandoning
  // stuck fibers leaks them rather than pulling a stack from under a
  // suspended frame).
  ~StackPool();
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;

  // The most recently released stack, else a retired one, else a fresh one.
  // Aborts with a message on stderr when the kernel refuses (address space or
  // vm.max_map_count exhausted): a fiber without a stack cannot run, and
  // there is no partial recovery. Allocates heap memory only when it maps a
  // new slab (one node of bookkeeping per slab).
  Stack Allocate();
  // Takes back a stack from Allocate() on this pool. May push onto the cache
  // vector (heap growth, amortised) and, per the options, call madvise or
  // munmap (a whole slab at a time).
  void Release(Stack stack);

  // Usable bytes per stack after clamping and rounding.
  size_t stack_size() const { return usable_; }
  size_t guard_size() const { return guard_; }
  size_t cached() const { return cache_.size(); }
  // Cached stacks whose pages are still kept (at most max_warm).
  size_t cached_warm() const { return cache_.size() - cold_; }
  // Stacks handed out and not yet released.
  size_t live() const { return live_; }
  // Released stacks beyond the cache: pages returned, address space kept
  // until their slab is unmapped (see "Trimming").
  size_t retired() const { return retired_; }
  // Address space the pool holds mapped: every slab with a live, cached or
  // retired stack, or still being carved. An upper bound on what the stacks
  // can keep resident, and what falls back once a burst of fibers has ended.
  size_t mapped_bytes() const { return mapped_bytes_; }
  // Whether guards are page-table markers (true: no extra map regions) or
  // mprotect'd pages (false). Decided by the first slab this pool maps.
  bool guard_markers() const;

 private:
  // One reservation, carved into `stacks` stacks of stride_ bytes from the
  // bottom up. Lives in slabs_ (node-based, so pointers to it stay valid).
  struct Slab {
    char* base = nullptr;
    size_t stacks = 0;
    size_t carved = 0;             // stacks [0, carved) have been handed out
    uint64_t retired = 0;          // bit i: stack i is retired
    Slab* next_partial = nullptr;  // in partial_ while `retired` is non-zero
    Slab* prev_partial = nullptr;
  };

  void MapSlab();
  Stack StackAt(const Slab& slab, size_t index) const;
  void Retire(Stack stack);
  void LinkPartial(Slab* slab);
  void UnlinkPartial(Slab* slab);

  StackPoolOptions options_;
  size_t page_;
  size_t usable_;
  size_t guard_;
  size_t stride_;  // guard + usable
  // LIFO: the back is the most recently released. cache_[0, cold_) have had
  // their pages returned; the rest are warm.
  std::vector<Stack> cache_;
  size_t cold_ = 0;
  size_t live_ = 0;
  size_t retired_ = 0;
  size_t mapped_bytes_ = 0;
  // Every mapped slab, by base address, so a retiring stack finds its slab.
  std::map<uintptr_t, Slab> slabs_;
  // The newest slab, while it has stacks left to carve.
  Slab* carving_ = nullptr;
  // Slabs holding retired stacks, handed out again before anything is carved.
  Slab* partial_ = nullptr;
};

}  // namespace netloop::fiber

#endif  // NETLOOP_FIBERBRIDGE_STACK_POOL_H_
