// TaskQueue: work posted to a loop. Cost per task for one thread pushing and
// draining (the uncontended lock and the vector swap), and per task with
// producers contending for the lock while a consumer drains. Allocations
// per task come from the counter that replaces the global operator new.
#include <atomic>
#include <cstdint>
#include <thread>

#include "bench/alloc_counter.h"
#include "benchmark/benchmark.h"
#include "reactor/task_queue.h"

namespace netloop {
namespace {

// Push `batch` tasks, then RunAll them, on one thread.
void BM_PushRunAll(benchmark::State& state) {
  TaskQueue q;
  const int batch = static_cast<int>(state.range(0));
  int64_t sink = 0;
  // Two rounds: the vectors trade places each batch, so both must grow.
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < batch; ++i) q.Push([&sink] { ++sink; });
    q.RunAll();
  }
  const uint64_t before = bench::Allocations();
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) q.Push([&sink] { ++sink; });
    benchmark::DoNotOptimize(q.RunAll());
  }
  const int64_t tasks = state.iterations() * batch;
  // Read the counter before adding counters, which allocates.
  const double allocs = static_cast<double>(bench::Allocations() - before);
  state.counters["allocs/task"] = allocs / static_cast<double>(tasks);
  state.SetItemsProcessed(tasks);
  if (sink != tasks + 2 * batch) state.SkipWithError("tasks lost");
}
BENCHMARK(BM_PushRunAll)->Arg(1)->Arg(64);

// Producers (the benchmark's threads) push while one extra thread drains
// the queue as fast as it can, like a loop that never sleeps. items/s is
// the rate all producers together get tasks in; ns per task = 1e9 / it.
// This machine has 2 cores, so with 2 producers the three threads share
// them: the figure includes that contention, not just the lock's.
TaskQueue* shared_queue = nullptr;
std::atomic<bool> consumer_stop{false};
std::atomic<int64_t> consumed{0};
std::thread* consumer = nullptr;

void BM_ProducersContend(benchmark::State& state) {
  if (state.thread_index() == 0) {
    shared_queue = new TaskQueue;
    consumer_stop = false;
    consumed = 0;
    consumer = new std::thread([] {
      while (!consumer_stop.load(std::memory_order_relaxed)) {
        size_t n = shared_queue->RunAll();
        if (n == 0) std::this_thread::yield();
        consumed.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed);
      }
    });
  }
  // The benchmark library starts every thread's loop together, after the
  // setup above, and ends them together before the teardown below.
  for (auto _ : state) {
    shared_queue->Push([] {});
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    consumer_stop = true;
    consumer->join();
    delete consumer;
    consumer = nullptr;
    consumed += static_cast<int64_t>(shared_queue->RunAll());
    state.counters["consumed"] = static_cast<double>(consumed.load());
    delete shared_queue;
    shared_queue = nullptr;
  }
}
BENCHMARK(BM_ProducersContend)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace
}  // namespace netloop

BENCHMARK_MAIN();
