// Fiber costs: a raw switch, a park/wake through the loop's scheduler, and a
// Channel ping-pong between two fibers, with allocations per operation.
#include <future>

#include "bench/alloc_counter.h"
#include "benchmark/benchmark.h"
#include "fiberbridge/channel.h"
#include "fiberbridge/fiber.h"
#include "fiberbridge/scheduler.h"
#include "reactor/event_loop.h"

namespace netloop::fiber {
namespace {

void BM_FiberSwitch(benchmark::State& state) {
  StackPool pool;
  bool stop = false;
  Fiber f(pool, [&] {
    while (!stop) Fiber::Suspend();
  });
  f.Resume();
  uint64_t allocs = bench::Allocations();
  for (auto _ : state) f.Resume();  // two switches: in and back out
  state.counters["ns/switch"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * 2, benchmark::Counter::kIsRate |
                                                       benchmark::Counter::kInvert);
  state.counters["allocs/op"] = benchmark::Counter(
      static_cast<double>(bench::Allocations() - allocs), benchmark::Counter::kAvgIterations);
  stop = true;
  f.Resume();
}
BENCHMARK(BM_FiberSwitch);

void BM_FiberCreateFinish(benchmark::State& state) {
  StackPool pool;
  for (auto _ : state) {
    Fiber f(pool, [] {});
    f.Resume();
  }
}
BENCHMARK(BM_FiberCreateFinish);

// Runs `body(iterations)` inside a fiber on a fresh loop and waits for it.
template <typename Body>
void RunOnLoop(benchmark::State& state, Body body) {
  auto loop = EventLoop::Create();
  std::thread t([&] { (*loop)->Run(); });
  std::promise<void> done;
  Spawn(**loop, [&] {
    body(state);
    done.set_value();
  });
  done.get_future().wait();
  (*loop)->Quit();
  t.join();
}

void BM_YieldThroughLoop(benchmark::State& state) {
  RunOnLoop(state, [](benchmark::State& st) {
    uint64_t allocs = bench::Allocations();
    for (auto _ : st) Yield();  // park, one loop iteration, resume
    st.counters["allocs/op"] = benchmark::Counter(
        static_cast<double>(bench::Allocations() - allocs), benchmark::Counter::kAvgIterations);
  });
}
BENCHMARK(BM_YieldThroughLoop)->UseRealTime();

void BM_ChannelPingPong(benchmark::State& state) {
  RunOnLoop(state, [](benchmark::State& st) {
    Channel<int> ping(0), pong(0);
    bool stop = false;
    Spawn([&] {
      for (;;) {
        auto v = ping.Recv();
        if (!v.ok()) return;
        (void)pong.Send(*v);
      }
    });
    uint64_t allocs = bench::Allocations();
    int i = 0;
    for (auto _ : st) {
      (void)ping.Send(i++);
      benchmark::DoNotOptimize(pong.Recv());
    }
    st.counters["allocs/op"] = benchmark::Counter(
        static_cast<double>(bench::Allocations() - allocs), benchmark::Counter::kAvgIterations);
    ping.Close();
    (void)stop;
  });
}
BENCHMARK(BM_ChannelPingPong)->UseRealTime();

}  // namespace
}  // namespace netloop::fiber

BENCHMARK_MAIN();
