// Fibers at scale on one loop: tens of thousands parked at once on sleeps and
// channels, all woken, all finished, without running into vm.max_map_count
// (stacks are carved from slabs, see fiberbridge/stack_pool.h) and with the
// stacks' memory given back afterwards. Plus an overflow in a scheduled fiber,
// reported by the overflow guard. (bench/fiber_scale.cc runs the same shape
// with a million fibers.)
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/time/time.h"
#include "fiberbridge/channel.h"
#include "fiberbridge/fiber.h"
#include "fiberbridge/scheduler.h"
#include "fiberbridge/stack_pool.h"
#include "fiberbridge/sync.h"
#include "gtest/gtest.h"
#include "tests/fiber_test_util.h"

namespace netloop::fiber {
namespace {

using testing::Loops;

int MapCount() {
  FILE* f = std::fopen("/proc/self/maps", "r");
  if (f == nullptr) return -1;
  int lines = 0;
  for (int c; (c = std::fgetc(f)) != EOF;) lines += c == '\n';
  std::fclose(f);
  return lines;
}

// Resident bytes of the whole process, from /proc/self/statm.
long ResidentBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  long size = 0, resident = -1;
  if (f != nullptr) {
    if (std::fscanf(f, "%ld %ld", &size, &resident) != 2) resident = -1;
    std::fclose(f);
  }
  return resident * sysconf(_SC_PAGESIZE);
}

// Yields (each time one loop iteration) until done() holds; false if it did
// not within a bound far above what the loop needs.
template <typename Pred>
bool YieldUntil(Pred done) {
  for (int i = 0; i < 100000; ++i) {
    if (done()) return true;
    Yield();
  }
  return done();
}

// Half the fibers park in Channel::Recv, half in SleepFor, alternating, so
// neighbouring stacks finish at different times (the channel half first):
// the release order that used to fragment the stack slabs' map region.
TEST(FiberScaleTest, FiftyThousandParkedFibersWakeAndFinish) {
#if NETLOOP_FIBER_TSAN
  constexpr int kFibers = 200;  // TSan keeps ~850 KiB of its own per fiber
#else
  constexpr int kFibers = 50000;
#endif
  constexpr int kReceivers = kFibers / 2;
  // Sleepers nap in a loop until released: their wake-up is a timer firing,
  // as for any sleep, and no check here depends on when it fires.
  constexpr absl::Duration kNap = absl::Milliseconds(100);
  Loops loops;
  ASSERT_TRUE(loops.status().ok()) << loops.status();
  // Warms up the scheduler, its pool and the loop, and asks the pool which
  // guards this kernel gives it.
  bool guard_markers = false;
  ASSERT_TRUE(
      loops.Run([&] { guard_markers = Scheduler::Current()->stack_pool().guard_markers(); }));
  if (!guard_markers) {
    GTEST_SKIP() << "mprotect guards (kernel before 6.13): " << kFibers
                 << " stacks would need twice as many map regions";
  }
  const long rss_before = ResidentBytes();
  const int maps_before = MapCount();
  ASSERT_GT(rss_before, 0);
  ASSERT_GT(maps_before, 0);
  long rss_peak = 0, rss_after = 0;
  int maps_peak = 0, maps_half = 0, maps_after = 0;
  size_t live_peak = 0, mapped_peak = 0, mapped_after = 0, cached = 0, warm = 0, live_after = 0;
  long received_sum = 0;
  ASSERT_TRUE(loops.Run(
      [&] {
        Scheduler& scheduler = *Scheduler::Current();
        StackPool& pool = scheduler.stack_pool();
        Channel<int> channel(0);
        WaitGroup receivers_done, all_done;
        receivers_done.Add(kReceivers);
        all_done.Add(kFibers);
        // Every fiber runs on this loop's thread: plain counters suffice.
        int parked = 0;
        bool released = false;
        for (int i = 0; i < kFibers; ++i) {
          if (i % 2 == 0) {
            Spawn([&] {
              ++parked;
              absl::StatusOr<int> v = channel.Recv();
              EXPECT_TRUE(v.ok()) << v.status();
              if (v.ok()) received_sum += *v;
              receivers_done.Done();
              all_done.Done();
            });
          } else {
            Spawn([&] {
              ++parked;
              while (!released) EXPECT_TRUE(fiber::SleepFor(kNap).ok());
              all_done.Done();
            });
          }
        }
        // No ASSERT in here: returning early would free what the fibers
        // still use (the channel, the counters). A late fiber is only a
        // failed check; the wake-up below reaches it too.
        EXPECT_TRUE(YieldUntil([&] { return parked == kFibers; })) << parked << " parked";
        rss_peak = ResidentBytes();
        maps_peak = MapCount();
        live_peak = pool.live();
        mapped_peak = pool.mapped_bytes();

        // Wake them all: a value for each receiver (each Send hands it
        // straight to a parked receiver), and the sleepers' next timer.
        released = true;
        for (int i = 1; i <= kReceivers; ++i) EXPECT_TRUE(channel.Send(i).ok());
        EXPECT_TRUE(receivers_done.Wait().ok());
        // Every other stack is back in the pool now (unless the sleepers
        // already woke too, which only makes this a weaker check).
        maps_half = MapCount();
        EXPECT_TRUE(all_done.Wait().ok());
        // Done() comes just before each entry returns: let the last ones
        // return and hand their stacks back. Only this fiber is left then.
        EXPECT_TRUE(YieldUntil([&] { return scheduler.live_fibers() == 1; }))
            << scheduler.live_fibers() << " fibers still live";
        rss_after = ResidentBytes();
        maps_after = MapCount();
        live_after = pool.live();
        mapped_after = pool.mapped_bytes();
        cached = pool.cached();
        warm = pool.cached_warm();
      },
      0, 120000));
  std::printf(
      "%d fibers: RSS %+ld KiB at peak (%ld bytes per fiber), %+ld KiB after; map regions %+d "
      "at peak, %+d half finished, %+d after; pool mapped %zu MiB at peak, %zu MiB after, %zu "
      "cached (%zu warm)\n",
      kFibers, (rss_peak - rss_before) / 1024, (rss_peak - rss_before) / kFibers,
      (rss_after - rss_before) / 1024, maps_peak - maps_before, maps_half - maps_before,
      maps_after - maps_before, mapped_peak >> 20, mapped_after >> 20, cached, warm);
  RecordProperty("rss_per_parked_fiber_bytes", static_cast<int>((rss_peak - rss_before) / kFibers));
  RecordProperty("map_regions_at_peak", maps_peak - maps_before);

  EXPECT_GE(live_peak, static_cast<size_t>(kFibers)) << "all parked at once";
  EXPECT_EQ(received_sum, static_cast<long>(kReceivers) * (kReceivers + 1) / 2)
      << "every receiver got exactly one value";
  EXPECT_EQ(live_after, 1u) << "only the controlling fiber's stack is out";
  const SchedulerOptions defaults;
  EXPECT_LE(cached, defaults.max_cached_stacks);
  EXPECT_LE(warm, defaults.max_warm_stacks);
  // The pool unmaps slabs once all their stacks are free: what stays mapped
  // is the slabs of the cached stacks, a small part of the peak (when the
  // fibers far outnumber the cache).
  if (kFibers > 4 * defaults.max_cached_stacks) {
    EXPECT_LT(mapped_after, mapped_peak / 4);
  }
#if !NETLOOP_FIBER_TSAN
  // TSan maps shadow of its own per stack page (see stack_pool_test.cc).
  // Without slabs: 2 regions per stack, 100,000 here (over the cap); with
  // slabs unmapped stack by stack: about one per finished receiver at half
  // time. Far below both: a few for the slabs, the rest heap and timers.
  EXPECT_LT(maps_peak - maps_before, 1000);
  EXPECT_LT(maps_half - maps_before, 1000);
  EXPECT_LT(maps_after - maps_before, 1000);
#endif
#if !NETLOOP_FIBER_TSAN && !NETLOOP_FIBER_ASAN
  // Not under ASan: unmapping a slab unpoisons its shadow (stack_pool.cc),
  // writing an eighth of the slab's size, which makes resident shadow the
  // stacks never touched; and its quarantine keeps the fibers' heap blocks.
  //
  // The stacks' pages go back (all but max_warm_stacks'): at least half a
  // page per fiber of the peak is gone again, and little else stays (heap
  // the allocator keeps, the timer queue's grown slot array).
  EXPECT_GT(rss_peak - rss_after, static_cast<long>(kFibers) * sysconf(_SC_PAGESIZE) / 2);
  EXPECT_LT(rss_after - rss_before, (rss_peak - rss_before) / 4);
#endif
}

// Big non-tail frames (volatile, so neither the array nor the recursion can be
// optimised away); the bound is never reached, the guard is hit first.
__attribute__((noinline)) int Recurse(int depth) {
  volatile char frame[512];
  frame[0] = static_cast<char>(depth);
  frame[511] = 0;
  if (depth > 10'000'000) return frame[0];
  return Recurse(depth + 1) + frame[0] + frame[511];
}

// A fiber spawned on an engine's loop with the scheduler's default stack runs
// off its end: the overflow guard names it and the process dies.
TEST(FiberScaleDeathTest, OverflowInAScheduledFiberIsReported) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const size_t stack_size = SchedulerOptions().stack_size;
  EXPECT_DEATH(
      {
        Loops loops;
        loops.Run([] { Recurse(0); });
      },
      "netloop: fiber stack overflow \\(fiber stack size " + std::to_string(stack_size) +
          " bytes\\)");
}

// The same with 40,000 other fibers parked first: past what mprotect'd
// guards allow (two map regions per stack: about 32,000 stacks at the default
// vm.max_map_count), the fiber that overflows still hits a guard and is named.
TEST(FiberScaleDeathTest, OverflowPastTheMprotectGuardBudgetIsReported) {
#if NETLOOP_FIBER_TSAN
  GTEST_SKIP() << "TSan keeps ~850 KiB of its own per fiber";
#endif
  {
    Loops probe;
    bool guard_markers = false;
    ASSERT_TRUE(
        probe.Run([&] { guard_markers = Scheduler::Current()->stack_pool().guard_markers(); }));
    if (!guard_markers) GTEST_SKIP() << "mprotect guards (kernel before 6.13): no room for 40,000";
  }
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const size_t stack_size = SchedulerOptions().stack_size;
  EXPECT_DEATH(
      {
        Loops loops;
        loops.Run([] {
          constexpr int kParked = 40'000;
          Channel<int> never(0);
          for (int i = 0; i < kParked; ++i) Spawn([&never] { (void)never.Recv(); });
          // Every one of them has run up to its park before this fiber goes on.
          Yield();
          if (Scheduler::Current()->stack_pool().live() < static_cast<size_t>(kParked)) {
            std::fprintf(stderr, "only %zu stacks live\n", Scheduler::Current()->stack_pool().live());
            std::abort();
          }
          Recurse(0);
        });
      },
      "netloop: fiber stack overflow \\(fiber stack size " + std::to_string(stack_size) +
          " bytes\\)");
}

}  // namespace
}  // namespace netloop::fiber
