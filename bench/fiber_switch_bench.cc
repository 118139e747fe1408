// The fiber core alone, with allocation counts: a resume/suspend round trip
// (two switches) through Fiber, the bare Boost.Context fiber for comparison,
// and fiber create + run + finish on pooled stacks.
//
//   bazel run --config=opt //bench:fiber_switch_bench
#include <boost/context/fiber.hpp>

#include <utility>

#include "bench/alloc_counter.h"
#include "benchmark/benchmark.h"
#include "fiberbridge/fiber.h"
#include "fiberbridge/stack_pool.h"

namespace netloop::fiber {
namespace {

void ReportAllocs(benchmark::State& state, uint64_t before) {
  state.counters["allocs/op"] = benchmark::Counter(
      static_cast<double>(bench::Allocations() - before), benchmark::Counter::kAvgIterations);
}

// One iteration = Resume + Suspend = 2 switches.
void BM_FiberResumeSuspend(benchmark::State& state) {
  StackPool pool;
  bool stop = false;
  Fiber f(pool, [&stop] {
    while (!stop) Fiber::Suspend();
  });
  f.Resume();  // first resume builds the context; keep it out of the loop
  const uint64_t allocs = bench::Allocations();
  for (auto _ : state) f.Resume();
  ReportAllocs(state, allocs);
  state.counters["ns/switch"] = benchmark::Counter(
      2 * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  stop = true;
  f.Resume();
}
BENCHMARK(BM_FiberResumeSuspend);

// The floor: Boost.Context's fiber with nothing around it (same 2 switches).
void BM_BoostFiberRoundTrip(benchmark::State& state) {
  namespace ctx = boost::context;
  bool stop = false;
  ctx::fiber f([&stop](ctx::fiber&& main) {
    while (!stop) main = std::move(main).resume();
    return std::move(main);
  });
  f = std::move(f).resume();
  const uint64_t allocs = bench::Allocations();
  for (auto _ : state) f = std::move(f).resume();
  ReportAllocs(state, allocs);
  state.counters["ns/switch"] = benchmark::Counter(
      2 * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  stop = true;
  f = std::move(f).resume();
}
BENCHMARK(BM_BoostFiberRoundTrip);

// Create a fiber on a pooled stack, run it to completion, destroy it. The
// entry's captures fit AnyInvocable's inline storage, so no allocation.
void BM_FiberCreateRunFinish(benchmark::State& state) {
  StackPool pool;
  int runs = 0;
  const uint64_t allocs = bench::Allocations();
  for (auto _ : state) {
    Fiber f(pool, [&runs] { ++runs; });
    f.Resume();
  }
  ReportAllocs(state, allocs);
  if (runs != static_cast<int>(state.iterations())) state.SkipWithError("a fiber did not run");
}
BENCHMARK(BM_FiberCreateRunFinish);

// The same with the stack's pages handed back to the kernel on every release:
// the madvise syscall and the page faults it causes on reuse.
void BM_FiberCreateRunFinishReleasingPages(benchmark::State& state) {
  StackPool pool({.release_pages_on_return = true});
  int runs = 0;
  const uint64_t allocs = bench::Allocations();
  for (auto _ : state) {
    Fiber f(pool, [&runs] { ++runs; });
    f.Resume();
  }
  ReportAllocs(state, allocs);
}
BENCHMARK(BM_FiberCreateRunFinishReleasingPages);

// No cache: every released stack is retired (its pages go back with
// MADV_DONTNEED) and the next fiber faults them in again, which is what
// pooling saves.
void BM_FiberCreateRunFinishUnpooled(benchmark::State& state) {
  StackPool pool({.max_cached = 0});
  int runs = 0;
  for (auto _ : state) {
    Fiber f(pool, [&runs] { ++runs; });
    f.Resume();
  }
}
BENCHMARK(BM_FiberCreateRunFinishUnpooled);

}  // namespace
}  // namespace netloop::fiber

BENCHMARK_MAIN();
