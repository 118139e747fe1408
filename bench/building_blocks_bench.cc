// Micro-benchmarks of the reactor's building blocks: the ring buffer, the
// timer heap and the cross-thread task queue, with allocations per operation.
#include <thread>

#include "bench/alloc_counter.h"
#include "benchmark/benchmark.h"
#include "reactor/ring_buffer.h"
#include "reactor/task_queue.h"
#include "reactor/timer_queue.h"

namespace netloop {
namespace {

void BM_RingAppendPeekDiscard(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  std::string msg(size, 'x');
  RingBuffer rb;
  rb.Append(msg);  // warm: storage allocated once
  rb.Discard(size);
  uint64_t allocs = bench::Allocations();
  for (auto _ : state) {
    rb.Append(msg);
    RingBuffer::Views v = rb.Peek(size);
    benchmark::DoNotOptimize(v.first.data());
    rb.Discard(size);
  }
  state.SetBytesProcessed(state.iterations() * size);
  state.counters["allocs/op"] = benchmark::Counter(
      static_cast<double>(bench::Allocations() - allocs), benchmark::Counter::kAvgIterations);
}
BENCHMARK(BM_RingAppendPeekDiscard)->Arg(64)->Arg(1024)->Arg(16384);

void BM_TimerAddCancel(benchmark::State& state) {
  TimerQueue q;
  const int pending = static_cast<int>(state.range(0));
  for (int i = 0; i < pending; ++i) q.Add(1'000'000 + i * 97 % 100000, 0, [] {});
  int64_t when = 0;
  // Warm the slot array.
  q.Cancel(q.Add(5, 0, [] {}));
  uint64_t allocs = bench::Allocations();
  for (auto _ : state) {
    TimerId id = q.Add(500'000 + (when++ % 100000), 0, [] {});
    benchmark::DoNotOptimize(q.Cancel(id));
  }
  state.counters["allocs/op"] = benchmark::Counter(
      static_cast<double>(bench::Allocations() - allocs), benchmark::Counter::kAvgIterations);
}
BENCHMARK(BM_TimerAddCancel)->Arg(0)->Arg(10000)->Arg(100000);

void BM_TimerReschedule(benchmark::State& state) {
  TimerQueue q;
  std::vector<TimerId> ids;
  for (int i = 0; i < state.range(0); ++i) ids.push_back(q.Add(1'000'000 + i, 0, [] {}));
  int64_t t = 0;
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(q.Reschedule(ids[i++ % ids.size()], 1'000'000 + (t++ * 7919) % 500000));
  }
}
BENCHMARK(BM_TimerReschedule)->Arg(10000);

void BM_TimerAddFire(benchmark::State& state) {
  TimerQueue q;
  int64_t now = 0;
  for (int i = 0; i < 10000; ++i) q.Add(1'000'000'000 + i, 0, [] {});
  uint64_t allocs = bench::Allocations();
  for (auto _ : state) {
    q.Add(now + 1, 0, [] {});
    q.RunExpired(++now);
  }
  state.counters["allocs/op"] = benchmark::Counter(
      static_cast<double>(bench::Allocations() - allocs), benchmark::Counter::kAvgIterations);
}
BENCHMARK(BM_TimerAddFire);

void BM_TaskQueuePushRunAll(benchmark::State& state) {
  TaskQueue q;
  const int batch = static_cast<int>(state.range(0));
  int sink = 0;
  for (int i = 0; i < batch; ++i) q.Push([&sink] { ++sink; });
  q.RunAll();  // warm both vectors
  uint64_t allocs = bench::Allocations();
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) q.Push([&sink] { ++sink; });
    q.RunAll();
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.counters["allocs/task"] = benchmark::Counter(
      static_cast<double>(bench::Allocations() - allocs) / batch,
      benchmark::Counter::kAvgIterations);
}
BENCHMARK(BM_TaskQueuePushRunAll)->Arg(1)->Arg(64);

void BM_TaskQueueTwoProducers(benchmark::State& state) {
  TaskQueue q;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> ran{0};
  std::thread consumer([&] {
    while (!stop.load(std::memory_order_relaxed)) ran += q.RunAll();
  });
  for (auto _ : state) {
    q.Push([] {});
  }
  stop = true;
  consumer.join();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TaskQueueTwoProducers)->Threads(2);

}  // namespace
}  // namespace netloop

BENCHMARK_MAIN();
