// EventLoop on its own thread: timers, cross-thread tasks, fd watching,
// re-invocation and iteration hooks.
#include "reactor/event_loop.h"

#ifndef _WIN32
#include <fcntl.h>
#include <unistd.h>
#endif

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "reactor/clock.h"
#include "tests/test_util.h"

namespace netloop {
namespace {

using testing::WaitFor;

// Runs a loop on a thread for the scope of a test.
class LoopThread {
 public:
  LoopThread() {
    auto loop = EventLoop::Create();
    EXPECT_TRUE(loop.ok()) << loop.status();
    loop_ = std::move(*loop);
    thread_ = std::thread([this] { loop_->Run(); });
  }
  ~LoopThread() {
    loop_->Quit();
    thread_.join();
  }
  EventLoop& loop() { return *loop_; }
  // Runs fn on the loop thread and waits for it.
  template <typename Fn>
  void Sync(Fn fn) {
    std::atomic<bool> done{false};
    loop_->RunInLoop([&] {
      fn();
      done.store(true);
    });
    EXPECT_TRUE(WaitFor([&] { return done.load(); }));
  }

 private:
  std::unique_ptr<EventLoop> loop_;
  std::thread thread_;
};

TEST(EventLoopTest, TimersRunCancelAndRepeat) {
  LoopThread t;
  EventLoop& loop = t.loop();
  std::atomic<int> once{0}, every{0}, cancelled{0};
  t.Sync([&] {
    loop.RunAfter(absl::Milliseconds(20), [&] { once.fetch_add(1); });
    TimerId c = loop.RunAfter(absl::Milliseconds(10), [&] { cancelled.fetch_add(1); });
    EXPECT_TRUE(loop.CancelTimer(c));
    EXPECT_FALSE(loop.CancelTimer(c)) << "a cancelled id is stale";
    loop.RunEvery(absl::Milliseconds(5), [&] { every.fetch_add(1); });
    loop.RunAt(absl::Now() + absl::Milliseconds(30), [&] { once.fetch_add(10); });
  });
  EXPECT_TRUE(WaitFor([&] { return once.load() == 11 && every.load() >= 5; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_EQ(once.load(), 11) << "one-shot timers fire once";
  EXPECT_EQ(cancelled.load(), 0);
}

TEST(EventLoopTest, TimersFireInDeadlineOrder) {
  LoopThread t;
  EventLoop& loop = t.loop();
  std::vector<int> order;  // loop thread only until the wait below
  std::atomic<int> fired{0};
  t.Sync([&] {
    for (int ms : {40, 10, 30, 20, 0}) {
      loop.RunAfter(absl::Milliseconds(ms), [&, ms] {
        order.push_back(ms);
        fired.fetch_add(1);
      });
    }
  });
  ASSERT_TRUE(WaitFor([&] { return fired.load() == 5; }));
  t.Sync([&] { EXPECT_EQ(order, (std::vector<int>{0, 10, 20, 30, 40})); });
}

TEST(EventLoopTest, RepeatingTimerCancelsItselfAndRescheduleMovesATimer) {
  LoopThread t;
  EventLoop& loop = t.loop();
  std::atomic<int> ticks{0};
  std::atomic<bool> moved_fired{false};
  auto id = std::make_shared<TimerId>();
  TimerId distant;
  t.Sync([&] {
    *id = loop.RunEvery(absl::Milliseconds(2), [&, id] {
      if (ticks.fetch_add(1) + 1 == 3) {
        EXPECT_TRUE(loop.CancelTimer(*id));
      }
    });
    distant = loop.RunAfter(absl::Hours(1), [&] { moved_fired.store(true); });
    EXPECT_TRUE(loop.RescheduleTimer(distant, MonotonicNanos() + 10'000'000));
  });
  EXPECT_TRUE(WaitFor([&] { return moved_fired.load(); }, 5000))
      << "a timer moved from an hour to 10 ms fires";
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_EQ(ticks.load(), 3);
  t.Sync([&] {
    EXPECT_FALSE(loop.RescheduleTimer(distant, MonotonicNanos())) << "fired ids are stale";
    EXPECT_EQ(loop.PendingTimers(), 0u);
  });
}

TEST(EventLoopTest, QueuedTasksKeepPerThreadOrder) {
  LoopThread t;
  EventLoop& loop = t.loop();
  constexpr int kThreads = 3, kPer = 5000;
  std::vector<int> last(kThreads, -1);  // touched on the loop thread only
  std::atomic<int> done{0};
  std::atomic<bool> ordered{true};
  std::vector<std::thread> producers;
  for (int p = 0; p < kThreads; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kPer; ++i) {
        loop.QueueInLoop([&, p, i] {
          if (last[p] != i - 1) ordered = false;
          last[p] = i;
          done.fetch_add(1);
        });
      }
    });
  }
  for (auto& p : producers) p.join();
  EXPECT_TRUE(WaitFor([&] { return done.load() == kThreads * kPer; }));
  EXPECT_TRUE(ordered.load());
}

TEST(EventLoopTest, RunInLoopIsInlineOnTheLoopThreadAndQueuedElsewhere) {
  LoopThread t;
  EventLoop& loop = t.loop();
  EXPECT_FALSE(loop.InLoopThread());
  EXPECT_EQ(EventLoop::Current(), nullptr);
  t.Sync([&] {
    EXPECT_TRUE(loop.InLoopThread());
    EXPECT_EQ(EventLoop::Current(), &loop);
    bool ran = false;
    loop.RunInLoop([&] { ran = true; });
    EXPECT_TRUE(ran) << "RunInLoop on the loop thread runs at once";
    bool queued = false;
    loop.QueueInLoop([&] { queued = true; });
    EXPECT_FALSE(queued) << "QueueInLoop always defers";
  });
}

TEST(EventLoopTest, QuitStillRunsTasksQueuedBeforeIt) {
  auto loop_or = EventLoop::Create();
  ASSERT_TRUE(loop_or.ok());
  EventLoop& loop = **loop_or;
  std::atomic<int> ran{0};
  std::thread runner([&] { loop.Run(); });
  for (int i = 0; i < 100; ++i) loop.QueueInLoop([&] { ran.fetch_add(1); });
  loop.Quit();
  runner.join();
  EXPECT_EQ(ran.load(), 100);
}

#ifdef _WIN32
// IOCP serves completions, not readiness: Watch says so rather than
// pretend.
TEST(EventLoopTest, WatchIsUnimplementedOnIocp) {
  LoopThread t;
  EventLoop& loop = t.loop();
  class Nothing final : public IoWatcher {
    void OnIoReady(uint32_t) override {}
  } watcher;
  t.Sync([&] {
    EXPECT_TRUE(absl::IsUnimplemented(loop.Watch(kInvalidSocket, kIoReadable, &watcher)));
  });
}
#else
// Counts readiness on a pipe's read end and drains it.
class PipeReader final : public IoWatcher {
 public:
  explicit PipeReader(int fd) : fd_(fd) {}
  void OnIoReady(uint32_t events) override {
    if (events & kIoReadable) {
      char buf[64];
      while (read(fd_, buf, sizeof(buf)) > 0) {
      }
      wakeups.fetch_add(1);
    }
  }
  int fd_;
  std::atomic<int> wakeups{0};
};

TEST(EventLoopTest, WatchReportsReadinessUntilUnwatched) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  LoopThread t;
  EventLoop& loop = t.loop();
  PipeReader reader(p[0]);
  t.Sync([&] { ASSERT_TRUE(loop.Watch(p[0], kIoReadable, &reader).ok()); });
  ASSERT_EQ(write(p[1], "a", 1), 1);
  ASSERT_TRUE(WaitFor([&] { return reader.wakeups.load() == 1; }));
  t.Sync([&] { ASSERT_TRUE(loop.Unwatch(p[0], &reader).ok()); });
  ASSERT_EQ(write(p[1], "b", 1), 1);
  // The poll that wakes the loop for this task also sees the pipe's byte, so
  // a watch still in place would have been dispatched before the task ran.
  t.Sync([] {});
  EXPECT_EQ(reader.wakeups.load(), 1) << "no events after Unwatch";
  close(p[0]);
  close(p[1]);
}
#endif

// Re-invokes itself a few times without any fd readiness.
class Reinvoker final : public IoWatcher {
 public:
  explicit Reinvoker(EventLoop* loop) : loop_(loop) {}
  void OnIoReady(uint32_t events) override {
    EXPECT_EQ(events, kIoReadable);
    if (calls.fetch_add(1) + 1 < 5) loop_->ReinvokeNextIteration(this, kIoReadable);
  }
  EventLoop* loop_;
  std::atomic<int> calls{0};
};

TEST(EventLoopTest, ReinvokeNextIterationCallsAgainWithoutPolling) {
  LoopThread t;
  Reinvoker r(&t.loop());
  t.Sync([&] { t.loop().ReinvokeNextIteration(&r, kIoReadable); });
  EXPECT_TRUE(WaitFor([&] { return r.calls.load() == 5; }));
  // Reinvokes run at the start of each iteration, before its tasks: a sixth
  // would have run by the time two more iterations' tasks have.
  t.Sync([] {});
  t.Sync([] {});
  EXPECT_EQ(r.calls.load(), 5);
}

class CountdownHook final : public IterationHook {
 public:
  bool HasReadyWork() const override { return left.load() > 0; }
  void RunReadyWork() override { left.fetch_sub(1); }
  std::atomic<int> left{50};
};

TEST(EventLoopTest, IterationHookKeepsTheLoopSpinningOnlyWhileItHasWork) {
  LoopThread t;
  CountdownHook hook;
  t.Sync([&] { t.loop().AddIterationHook(&hook); });
  EXPECT_TRUE(WaitFor([&] { return hook.left.load() == 0; }))
      << "a hook with work must not wait for I/O";
  uint64_t idle_iterations = t.loop().iterations();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_LT(t.loop().iterations() - idle_iterations, 5u) << "idle loop must block";
  t.Sync([&] { t.loop().RemoveIterationHook(&hook); });
}

}  // namespace
}  // namespace netloop
