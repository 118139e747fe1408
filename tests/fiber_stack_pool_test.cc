// The stack pool's bounds as the scheduler uses them: only the most recently
// released stacks keep their pages, the cache has a maximum size, and after a
// burst of fibers has ended a loop's resident memory falls back near where it
// was. (tests/stack_pool_test.cc covers the pool's layout and guards.)
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "fiberbridge/scheduler.h"
#include "fiberbridge/stack_pool.h"
#include "fiberbridge/sync.h"
#include "gtest/gtest.h"
#include "tests/fiber_test_util.h"

namespace netloop::fiber {
namespace {

size_t Page() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }

// Pages of [p, p + len) resident in RAM, per mincore.
size_t ResidentPages(const char* p, size_t len) {
  std::vector<unsigned char> vec(len / Page());
  if (mincore(const_cast<char*>(p), len, vec.data()) != 0) return ~size_t{0};
  size_t n = 0;
  for (unsigned char v : vec) n += v & 1;
  return n;
}

// Resident bytes of the whole process, from /proc/self/statm.
long ResidentBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  long size = 0, resident = -1;
  if (f != nullptr) {
    if (std::fscanf(f, "%ld %ld", &size, &resident) != 2) resident = -1;
    std::fclose(f);
  }
  return resident * static_cast<long>(Page());
}

TEST(FiberStackPoolTest, OnlyTheMostRecentlyReleasedStacksKeepTheirPages) {
  StackPool pool({.stack_size = 64 * 1024, .max_cached = 10, .max_warm = 2});
  std::vector<Stack> stacks;
  for (int i = 0; i < 5; ++i) {
    stacks.push_back(pool.Allocate());
    memset(stacks.back().usable_bottom(), 0x5a, stacks.back().usable());
  }
  const size_t full = stacks[0].usable() / Page();
  for (const Stack& s : stacks) pool.Release(s);  // stacks[4] is the newest
  EXPECT_EQ(pool.cached(), 5u);
  EXPECT_EQ(pool.cached_warm(), 2u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(ResidentPages(stacks[i].usable_bottom(), stacks[i].usable()), 0u) << i;
  }
  for (int i = 3; i < 5; ++i) {
    EXPECT_EQ(ResidentPages(stacks[i].usable_bottom(), stacks[i].usable()), full) << i;
  }
  // Reuse is LIFO: warm stacks first, then cold ones, which come back zeroed
  // (and still usable).
  EXPECT_EQ(pool.Allocate().base, stacks[4].base);
  EXPECT_EQ(pool.Allocate().base, stacks[3].base);
  EXPECT_EQ(pool.cached_warm(), 0u);
  Stack cold = pool.Allocate();
  EXPECT_EQ(cold.base, stacks[2].base);
  EXPECT_EQ(cold.usable_bottom()[0], 0);
  cold.top()[-1] = 1;
  EXPECT_EQ(pool.cached(), 2u);
  EXPECT_EQ(pool.cached_warm(), 0u) << "the two left are cold";
  // Released again, they are the warm ones; the older cold ones stay cold.
  pool.Release(cold);
  pool.Release(stacks[3]);
  pool.Release(stacks[4]);
  EXPECT_EQ(pool.cached(), 5u);
  EXPECT_EQ(pool.cached_warm(), 2u);
  EXPECT_EQ(ResidentPages(cold.usable_bottom(), cold.usable()), 0u) << "aged out again";
}

TEST(FiberStackPoolTest, CacheBeyondItsMaximumIsUnmapped) {
  StackPool pool({.max_cached = 3, .max_warm = 1});
  std::vector<Stack> stacks;
  for (int i = 0; i < 8; ++i) stacks.push_back(pool.Allocate());
  for (const Stack& s : stacks) pool.Release(s);
  EXPECT_EQ(pool.cached(), 3u);
  EXPECT_EQ(pool.cached_warm(), 1u);
  EXPECT_EQ(pool.live(), 0u);
}

// Touches `bytes` of the calling fiber's stack, as a deep handler would.
__attribute__((noinline)) void TouchStack(size_t bytes) {
  char* frame = static_cast<char*>(alloca(bytes));
  memset(frame, 0x33, bytes);
  asm volatile("" : : "r"(frame) : "memory");
}

// A burst: many fibers at once, each touching 24 KiB of its stack, all
// parked together, then all finishing. With the scheduler's defaults the
// loop's pool must then hold at most max_cached_stacks stacks, at most
// max_warm_stacks of them with pages, and the process's RSS must come back
// near what it was before the burst. (Before the bound every cached stack
// kept its pages: about 48 MiB here.)
TEST(FiberStackPoolTest, RssFallsBackAfterABurstOfFibersEnds) {
#if NETLOOP_FIBER_TSAN
  constexpr int kFibers = 200;  // TSan keeps ~850 KiB of its own per fiber
#else
  constexpr int kFibers = 2000;
#endif
  constexpr size_t kTouched = 24 * 1024;
  testing::Loops loops;
  ASSERT_TRUE(loops.Run([] {}));  // the scheduler, its pool, the loop: warmed up
  const long before = ResidentBytes();
  ASSERT_GT(before, 0);
  size_t peak_live = 0, cached = 0, warm = 0;
  ASSERT_TRUE(loops.Run([&] {
    WaitGroup release, finished;
    release.Add(1);
    finished.Add(kFibers);
    int parked = 0;
    for (int i = 0; i < kFibers; ++i) {
      Spawn([&] {
        TouchStack(kTouched);
        ++parked;
        (void)release.Wait();
        finished.Done();
      });
    }
    while (parked < kFibers) Yield();
    peak_live = Scheduler::Current()->stack_pool().live();
    release.Done();
    (void)finished.Wait();
    // The last fiber's stack went back when its entry returned, just after
    // its Done; yielding lets it return.
    Yield();
    cached = Scheduler::Current()->stack_pool().cached();
    warm = Scheduler::Current()->stack_pool().cached_warm();
  }));
  const long grown = ResidentBytes() - before;
  const SchedulerOptions defaults;
  RecordProperty("rss_growth_after_burst_bytes", static_cast<int>(grown));
  std::printf("%d fibers x %zu KiB: pool %zu cached (%zu warm), RSS +%ld KiB after\n",
              kFibers, kTouched / 1024, cached, warm, grown / 1024);
  EXPECT_GE(peak_live, static_cast<size_t>(kFibers)) << "the fibers were all alive at once";
  EXPECT_LE(cached, defaults.max_cached_stacks);
  EXPECT_LE(warm, defaults.max_warm_stacks);
#if NETLOOP_FIBER_TSAN
  // Not bounded: TSan's per-fiber state dominates and is its own business.
#elif NETLOOP_FIBER_ASAN
  // ASan's shadow of the touched stacks (1/8) and its heap quarantine stay:
  // measured about 17 MiB, against about 60 MiB without the bound.
  EXPECT_LT(grown, 32L << 20);
#else
  // Warm stacks (64 x ~28 KiB), heap the allocator keeps, page tables.
  EXPECT_LT(grown, 8L << 20);
#endif
}

}  // namespace
}  // namespace netloop::fiber
