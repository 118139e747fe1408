// Fiber costs: a raw switch, a park/wake through the loop's scheduler, a park
// on EAGAIN resumed by the poller, a Channel ping-pong between two fibers on
// one loop and across two loops, with allocations per operation.
#include <sys/socket.h>

#include <future>
#include <thread>

#include "bench/alloc_counter.h"
#include "benchmark/benchmark.h"
#include "fiberbridge/channel.h"
#include "fiberbridge/fiber.h"
#include "fiberbridge/fiber_conn.h"
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
    Yield();  // the echo fiber sees Closed and returns before the loop goes
  });
}
BENCHMARK(BM_ChannelPingPong)->UseRealTime();

// Park on EAGAIN and resume on readiness, through the loop's poller: two
// fibers bounce one byte over a socketpair, so each round trip is two parks,
// two epoll wake-ups and two resumes.
void BM_ParkResumeOnIo(benchmark::State& state) {
  RunOnLoop(state, [](benchmark::State& st) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
      st.SkipWithError("socketpair");
      return;
    }
    auto a = FiberConn::Adopt(sv[0]);
    auto b = FiberConn::Adopt(sv[1]);
    if (!a.ok() || !b.ok()) {
      st.SkipWithError("adopt");
      return;
    }
    FiberConn* echo = b->get();
    Spawn([echo] {
      char c;
      while (echo->Read({&c, 1}).ok() && echo->WriteAll({&c, 1}).ok()) {
      }
    });
    char c = 'p';
    uint64_t allocs = bench::Allocations();
    for (auto _ : st) {
      if (!(*a)->WriteAll({&c, 1}).ok() || !(*a)->Read({&c, 1}).ok()) {
        st.SkipWithError("i/o");
        break;
      }
    }
    st.counters["allocs/op"] = benchmark::Counter(
        static_cast<double>(bench::Allocations() - allocs), benchmark::Counter::kAvgIterations);
    (*b)->Close();  // the echo fiber wakes with Closed and returns
    Yield();
  });
}
BENCHMARK(BM_ParkResumeOnIo)->UseRealTime();

// A fiber on one loop wakes a fiber on another: Channel ping-pong across two
// loop threads, each wake posted through the target loop's task queue.
void BM_CrossLoopWake(benchmark::State& state) {
  auto far = EventLoop::Create();
  if (!far.ok()) {
    state.SkipWithError("loop");
    return;
  }
  std::thread t([&] { (*far)->Run(); });
  Channel<int> ping(0), pong(0);
  std::promise<void> echo_done;
  Spawn(**far, [&] {
    for (;;) {
      auto v = ping.Recv();
      if (!v.ok() || !pong.Send(*v).ok()) break;
    }
    echo_done.set_value();
  });
  RunOnLoop(state, [&](benchmark::State& st) {
    uint64_t allocs = bench::Allocations();
    int i = 0;
    for (auto _ : st) {
      (void)ping.Send(i++);
      benchmark::DoNotOptimize(pong.Recv());
    }
    st.counters["allocs/op"] = benchmark::Counter(
        static_cast<double>(bench::Allocations() - allocs), benchmark::Counter::kAvgIterations);
    ping.Close();
  });
  echo_done.get_future().wait();
  (*far)->Quit();
  t.join();
}
BENCHMARK(BM_CrossLoopWake)->UseRealTime();

}  // namespace
}  // namespace netloop::fiber

BENCHMARK_MAIN();
