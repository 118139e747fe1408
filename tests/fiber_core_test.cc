#if !defined(_WIN32)
#include <unistd.h>  // _exit (stdlib.h has it on Windows)
#endif

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "fiberbridge/fiber.h"
#include "fiberbridge/stack_pool.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace netloop::fiber {
namespace {

TEST(FiberTest, ResumeAndSuspendPassControlBackAndForth) {
  StackPool pool;
  std::vector<int> trace;
  Fiber f(pool, [&] {
    EXPECT_EQ(Fiber::Current(), Fiber::Current());
    EXPECT_NE(Fiber::Current(), nullptr);
    trace.push_back(1);
    Fiber::Suspend();
    trace.push_back(3);
  });
  EXPECT_EQ(Fiber::Current(), nullptr);
  EXPECT_FALSE(f.started());
  f.Resume();
  trace.push_back(2);
  EXPECT_FALSE(f.finished());
  f.Resume();
  EXPECT_TRUE(f.finished());
  EXPECT_EQ(trace, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(pool.live(), 0u) << "the stack went back to the pool";
}

TEST(FiberTest, ManyInterleavedFibersAndStackReuse) {
  constexpr int kFibers = 100, kRounds = 50;
  // Every stack kept warm (Windows keeps no cold ones: see stack_pool.h).
  StackPool pool({.max_warm = kFibers});
  std::vector<int> counters(kFibers, 0);
  std::vector<std::unique_ptr<Fiber>> fibers;
  for (int i = 0; i < kFibers; ++i) {
    fibers.push_back(std::make_unique<Fiber>(pool, [&, i] {
      for (int r = 0; r < kRounds; ++r) {
        ++counters[i];
        Fiber::Suspend();
      }
    }));
  }
  for (int r = 0; r <= kRounds; ++r) {
    for (auto& f : fibers) {
      if (!f->finished()) f->Resume();
    }
  }
  for (int c : counters) EXPECT_EQ(c, kRounds);
  EXPECT_EQ(pool.cached(), static_cast<size_t>(kFibers));
  fibers.clear();
  // A new fiber reuses a cached stack instead of mapping one.
  Fiber again(pool, [] {});
  EXPECT_EQ(pool.cached(), static_cast<size_t>(kFibers - 1));
  again.Resume();
}

TEST(FiberTest, NeverStartedFiberIsDestroyedCleanly) {
  StackPool pool;
  bool ran = false;
  { Fiber f(pool, [&] { ran = true; }); }
  EXPECT_FALSE(ran);
  EXPECT_EQ(pool.live(), 0u);
}

TEST(FiberTest, TenThousandSuspendedFibersCostAboutAPageEach) {
  StackPool pool(StackPoolOptions{.stack_size = 64 * 1024});
#if defined(__SANITIZE_THREAD__)
  constexpr int kFibers = 1000;  // TSan's per-fiber state runs out of memory sooner
#else
  constexpr int kFibers = 10000;
#endif
  std::vector<std::unique_ptr<Fiber>> fibers;
  fibers.reserve(kFibers);
  long before = netloop::testing::ResidentBytes();
  for (int i = 0; i < kFibers; ++i) {
    fibers.push_back(std::make_unique<Fiber>(pool, [] { Fiber::Suspend(); }));
    fibers.back()->Resume();
  }
  long per_fiber_bytes = (netloop::testing::ResidentBytes() - before) / kFibers;
  RecordProperty("resident_bytes_per_suspended_fiber", static_cast<int>(per_fiber_bytes));
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  EXPECT_LT(per_fiber_bytes, 3 * 4096) << "a 64 KiB reservation must not be resident";
#endif
  for (auto& f : fibers) f->Resume();
  for (auto& f : fibers) EXPECT_TRUE(f->finished());
}

int Recurse(int depth) {
  volatile char frame[1024];
  frame[0] = static_cast<char>(depth);
  return depth > 1000000 ? frame[0] : Recurse(depth + 1) + frame[0];
}

TEST(FiberDeathTest, StackOverflowIsReported) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "ASan reports the overflow itself (stack-overflow on the guard page)";
#endif
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH(
      {
        StackPool pool(StackPoolOptions{.stack_size = 32 * 1024});
        Fiber f(pool, [] { Recurse(0); });
        f.Resume();
      },
      "fiber stack overflow");
}

TEST(FiberDeathTest, OrdinarySegvOutsideFibersIsNotMisreported) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH(
      {
        StackPool pool;
        Fiber f(pool, [] {});
        f.Resume();
        volatile int* bad = reinterpret_cast<volatile int*>(16);
        *bad = 1;
        _exit(0);
      },
      ::testing::Not(::testing::HasSubstr("fiber stack overflow")));
}

}  // namespace
}  // namespace netloop::fiber
