// TimerQueue: the per-loop timer heap, with many timers pending as in a
// server with an idle timeout per connection. Time per operation and heap
// allocations per operation (the counter replaces the global operator new;
// every steady state here must read 0).
#include <cstdint>
#include <vector>

#include "bench/alloc_counter.h"
#include "benchmark/benchmark.h"
#include "reactor/timer_queue.h"

namespace netloop {
namespace {

constexpr int64_t kFarFuture = int64_t{1} << 50;

void ReportAllocs(benchmark::State& state, uint64_t before) {
  state.counters["allocs/op"] = benchmark::Counter(
      static_cast<double>(bench::Allocations() - before), benchmark::Counter::kAvgIterations);
}

// `n` timers spread over the far future, standing in for idle connections.
void FillBackground(TimerQueue& q, int n, std::vector<TimerId>* ids = nullptr) {
  for (int i = 0; i < n; ++i) {
    // A multiplicative scramble so deadlines are not inserted in order.
    TimerId id = q.Add(kFarFuture + (int64_t{i} * 7919) % (n + 1), 0, [] {});
    if (ids != nullptr) ids->push_back(id);
  }
}

// A timeout armed and cancelled before it fires: a request that completes
// in time. The deadline lands mid-heap, so both calls sift.
void BM_AddCancel(benchmark::State& state) {
  TimerQueue q;
  const int pending = static_cast<int>(state.range(0));
  FillBackground(q, pending);
  q.Cancel(q.Add(0, 0, [] {}));  // warm: one spare slot and heap entry
  int64_t i = 0;
  const uint64_t before = bench::Allocations();
  for (auto _ : state) {
    TimerId id = q.Add(kFarFuture + (i++ * 104729) % (pending + 1), 0, [] {});
    benchmark::DoNotOptimize(q.Cancel(id));
  }
  ReportAllocs(state, before);
}
BENCHMARK(BM_AddCancel)->Arg(0)->Arg(10000)->Arg(100000);

// A timer armed and fired: Add, then RunExpired at its deadline, with the
// background timers never due.
void BM_AddFire(benchmark::State& state) {
  TimerQueue q;
  FillBackground(q, static_cast<int>(state.range(0)));
  int fired = 0;
  int64_t now = 0;
  q.Add(++now, 0, [&fired] { ++fired; });  // warm
  q.RunExpired(now);
  const uint64_t before = bench::Allocations();
  for (auto _ : state) {
    q.Add(now + 1, 0, [&fired] { ++fired; });
    ++now;
    benchmark::DoNotOptimize(q.RunExpired(now));
  }
  ReportAllocs(state, before);
  if (fired != state.iterations() + 1) state.SkipWithError("a timer did not fire");
}
BENCHMARK(BM_AddFire)->Arg(10000);

// Moving one of many pending deadlines: a connection's idle timeout pushed
// back on activity, or a parked fiber's deadline moved.
void BM_Reschedule(benchmark::State& state) {
  TimerQueue q;
  std::vector<TimerId> ids;
  const int pending = static_cast<int>(state.range(0));
  FillBackground(q, pending, &ids);
  int64_t t = 0;
  size_t i = 0;
  const uint64_t before = bench::Allocations();
  for (auto _ : state) {
    // Later than most (the usual idle-timeout push-back), but not always
    // to the very end, so the sift distance varies.
    benchmark::DoNotOptimize(
        q.Reschedule(ids[i], kFarFuture + pending / 2 + (t++ * 7919) % pending));
    if (++i == ids.size()) i = 0;
  }
  ReportAllocs(state, before);
}
BENCHMARK(BM_Reschedule)->Arg(10000)->Arg(100000);

// A periodic timer firing among many pending: RunExpired pops and re-arms.
void BM_PeriodicFire(benchmark::State& state) {
  TimerQueue q;
  FillBackground(q, static_cast<int>(state.range(0)));
  int fired = 0;
  q.Add(1, 1, [&fired] { ++fired; });
  int64_t now = 0;
  const uint64_t before = bench::Allocations();
  for (auto _ : state) benchmark::DoNotOptimize(q.RunExpired(++now));
  ReportAllocs(state, before);
  if (fired != state.iterations()) state.SkipWithError("periodic timer missed runs");
}
BENCHMARK(BM_PeriodicFire)->Arg(10000);

}  // namespace
}  // namespace netloop

BENCHMARK_MAIN();
