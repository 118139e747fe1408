// Fiber stacks: mmap'd with a PROT_NONE guard page below, pooled and reused
// LIFO by one loop (Go's stack cache, without growth). Resident memory is what
// a fiber touched, not the reservation: a parked connection handler typically
// costs one or two 4 KiB pages whatever the stack size.
//
// Each stack is two memory regions (stack + guard), so the kernel's
// vm.max_map_count (65530 by default) caps a process near 32k live stacks;
// raise it for more fibers.
//
// Not thread-safe: one pool per loop.
#ifndef NETLOOP_FIBERBRIDGE_STACK_POOL_H_
#define NETLOOP_FIBERBRIDGE_STACK_POOL_H_

#include <cstddef>
#include <vector>

namespace netloop::fiber {

struct StackPoolOptions {
  // Usable bytes per stack, rounded up to whole pages (minimum 16 KiB).
  size_t stack_size = 64 * 1024;
  // Stacks kept for reuse; beyond this, returned stacks are unmapped.
  size_t max_cached = 4096;
  // On return to the cache, give the touched pages (all but the top one)
  // back to the kernel with MADV_DONTNEED: lower RSS after a burst, at the cost
  // of a syscall per fiber exit and page faults on reuse. Off by default.
  bool release_pages_on_return = false;
};

struct Stack {
  char* base = nullptr;  // start of the mapping (the guard page)
  size_t mapped = 0;     // guard + usable
  size_t guard = 0;
  char* top() const { return base + mapped; }  // stacks grow down from here
  char* usable_bottom() const { return base + guard; }
  size_t usable() const { return mapped - guard; }
};

class StackPool {
 public:
  explicit StackPool(StackPoolOptions options = {});
  ~StackPool();
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;

  // A stack from the cache, or a fresh mapping. Aborts with a message if the
  // kernel refuses (out of memory or map count).
  Stack Allocate();
  void Release(Stack stack);

  size_t stack_size() const { return usable_; }
  size_t cached() const { return cache_.size(); }
  size_t live() const { return live_; }

 private:
  StackPoolOptions options_;
  size_t page_;
  size_t usable_;
  std::vector<Stack> cache_;
  size_t live_ = 0;
};

}  // namespace netloop::fiber

#endif  // NETLOOP_FIBERBRIDGE_STACK_POOL_H_
