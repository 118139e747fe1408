#include "fiberbridge/stack_pool.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace netloop::fiber {

StackPool::StackPool(StackPoolOptions options)
    : options_(options), page_(static_cast<size_t>(sysconf(_SC_PAGESIZE))) {
  size_t want = std::max<size_t>(options.stack_size, 16 * 1024);
  usable_ = (want + page_ - 1) / page_ * page_;
}

StackPool::~StackPool() {
  for (const Stack& s : cache_) munmap(s.base, s.mapped);
}

Stack StackPool::Allocate() {
  ++live_;
  if (!cache_.empty()) {
    Stack s = cache_.back();
    cache_.pop_back();
    return s;
  }
  Stack s;
  s.guard = page_;
  s.mapped = usable_ + page_;
  void* p = mmap(nullptr, s.mapped, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (p == MAP_FAILED || mprotect(p, page_, PROT_NONE) != 0) {
    // A fiber without a stack cannot run; there is no partial recovery.
    std::fprintf(stderr,
                 "netloop: cannot map a %zu-byte fiber stack: %s (vm.max_map_count?)\n",
                 s.mapped, strerror(errno));
    std::abort();
  }
  s.base = static_cast<char*>(p);
  return s;
}

void StackPool::Release(Stack stack) {
  --live_;
  if (cache_.size() >= options_.max_cached) {
    munmap(stack.base, stack.mapped);
    return;
  }
  if (options_.release_pages_on_return && stack.usable() > page_) {
    // Keep the top page (always touched first), return the rest.
    madvise(stack.usable_bottom(), stack.usable() - page_, MADV_DONTNEED);
  }
  cache_.push_back(stack);
}

}  // namespace netloop::fiber
