// Counts heap allocations in a benchmark binary (this header replaces the
// global operator new: include it in exactly one .cc of the binary).
#ifndef NETLOOP_BENCH_ALLOC_COUNTER_H_
#define NETLOOP_BENCH_ALLOC_COUNTER_H_

#include <atomic>
#include <cstdlib>
#include <new>

namespace netloop::bench {
inline std::atomic<uint64_t> allocations{0};
inline uint64_t Allocations() { return allocations.load(std::memory_order_relaxed); }
}  // namespace netloop::bench

void* operator new(std::size_t n) {
  netloop::bench::allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

#endif  // NETLOOP_BENCH_ALLOC_COUNTER_H_
