// Stopping a scheduler with fibers that have not finished: BeginStop and the
// stop deadline resume fibers parked in every primitive, which then unwind and
// give their stacks back; fibers that will not finish are reported; fibers
// blocked in Offload past the deadline; what outlives the scheduler.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "fiberbridge/channel.h"
#include "fiberbridge/fiber_conn.h"
#include "fiberbridge/offload.h"
#include "fiberbridge/scheduler.h"
#include "fiberbridge/server.h"
#include "fiberbridge/sync.h"
#include "gtest/gtest.h"
#include "reactor/errors.h"
#include "reactor/logging.h"
#include "tests/fiber_test_util.h"

namespace netloop::fiber {
namespace {

// Collects every log message while installed.
class CapturingLogSink final : public LogSink {
 public:
  CapturingLogSink() { SetLogSink(this); }
  ~CapturingLogSink() override { SetLogSink(nullptr); }
  void Send(LogSeverity, std::string_view, int, std::string_view message) override {
    std::lock_guard<std::mutex> lock(mu_);
    messages_.emplace_back(message);
  }
  // The messages containing `needle`.
  std::vector<std::string> Matching(std::string_view needle) {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> out;
    for (const std::string& m : messages_) {
      if (m.find(needle) != std::string::npos) out.push_back(m);
    }
    return out;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> messages_;
};

// A one-way gate a pool thread waits at until the test opens it; the test can
// also wait until the pool thread has arrived. Waits are bounded so that a
// broken build fails instead of hanging.
class Gate {
 public:
  void ArriveAndWait() {
    std::unique_lock<std::mutex> lock(mu_);
    arrived_ = true;
    cv_.notify_all();
    cv_.wait_for(lock, std::chrono::seconds(20), [this] { return open_; });
  }
  bool WaitArrived() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(20), [this] { return arrived_; });
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool arrived_ = false;
  bool open_ = false;
};

// Returns once every job submitted to the offload pool before the call has
// returned: one barrier job per pool thread, each waiting until all of them
// run. Pool threads take jobs in order, so a thread inside a barrier job has
// finished whatever it ran before. False if the barrier did not fill in time.
bool DrainOffloadPool() {
  struct Barrier {
    std::mutex mu;
    std::condition_variable cv;
    size_t arrived = 0;
  };
  auto barrier = std::make_shared<Barrier>();
  const size_t threads = OffloadPool::Default().threads();
  for (size_t i = 0; i < threads; ++i) {
    OffloadPool::Default().Submit([barrier, threads] {
      std::unique_lock<std::mutex> lock(barrier->mu);
      ++barrier->arrived;
      barrier->cv.notify_all();
      barrier->cv.wait_for(lock, std::chrono::seconds(20),
                           [&] { return barrier->arrived >= threads; });
    });
  }
  std::unique_lock<std::mutex> lock(barrier->mu);
  return barrier->cv.wait_for(lock, std::chrono::seconds(20),
                              [&] { return barrier->arrived >= threads; });
}

void IgnoreConnection(FiberConn&) {}

// The stop deadline passes while a fiber is blocked in Offload; the engine
// stops and its loops (with their schedulers) are destroyed; only then does
// the blocking call return. The pool thread's wake-up must find out that the
// scheduler is gone without touching it (ASan reports a use-after-free
// otherwise), and the fiber it can no longer resume is reported.
TEST(FiberStopTest, OffloadReturningAfterTheSchedulerIsGoneTouchesNothingFreed) {
  CapturingLogSink logs;
  auto gate = std::make_shared<Gate>();
  {
    FiberServer server;
    // No listeners: the server only hosts the fiber, its schedulers are the
    // engine's loop services, so Stop applies to them.
    ASSERT_TRUE(server.Start({}, Options{.loops = 1}, IgnoreConnection).ok());
    Spawn(server.engine().loop(0), [gate] { Offload([gate] { gate->ArriveAndWait(); }); });
    ASSERT_TRUE(gate->WaitArrived());
    server.Stop(absl::Now());  // the deadline has passed already
    ASSERT_TRUE(server.Wait().ok());
  }  // the loops and their schedulers are destroyed here
  gate->Open();
  ASSERT_TRUE(DrainOffloadPool()) << "the pool thread's wake-up never finished";
  EXPECT_FALSE(logs.Matching("1 fiber").empty()) << "the abandoned fiber was not reported";
}

// Counts destructors that ran: a fiber's frames unwound normally.
struct UnwindCounter {
  explicit UnwindCounter(std::atomic<int>& n) : n_(n) {}
  ~UnwindCounter() { n_++; }
  std::atomic<int>& n_;
};

bool IsClosedOrCancelled(const absl::Status& s) {
  return absl::IsCancelled(s) && GetCloseReason(s) == CloseReason::kClosed;
}

// One fiber parked in each primitive when Stop is called. BeginStop reaches
// the connection and the sleeper; the deadline reaches the channel, condition
// variable and wait group waiters; the fiber queued on a Mutex gets it when
// its holder (itself parked in a channel) unwinds. Every one returns with an
// error, its destructors run, and every stack goes back to the pool. The ASan
// build's leak check covers the tasks.
TEST(FiberStopTest, DeadlineResumesFibersParkedInEveryPrimitive) {
  CapturingLogSink logs;
  testing::Pair pair;
  Channel<int> empty(1), full(1), unbuffered(0), held_chan(1);
  Mutex cv_mu, held;
  CondVar cv;
  WaitGroup never_done;
  never_done.Add(1);
  ASSERT_TRUE(full.TrySend(*std::make_unique<int>(7)));
  std::atomic<int> unwound{0};
  constexpr int kFibers = 9;
  // Written by the fibers, read after Wait (which joins the loop thread).
  absl::Status statuses[kFibers];
  bool mutex_acquired = false;
  std::promise<void> all_parked;

  FiberServer server;
  ASSERT_TRUE(server.Start({}, Options{.loops = 1}, IgnoreConnection).ok());
  Spawn(server.engine().loop(0), [&] {
    // Each child parks the first time it runs, in spawn order, so the last
    // one runs only once all the others are parked.
    Spawn([&] {
      UnwindCounter c(unwound);
      auto conn = FiberConn::Adopt(pair.fiber_end);
      if (!conn.ok()) return;
      char buf[8];
      statuses[0] = (*conn)->Read(buf).status();
    });
    Spawn([&] {
      UnwindCounter c(unwound);
      statuses[1] = fiber::SleepFor(absl::Hours(1));
    });
    Spawn([&] {
      UnwindCounter c(unwound);
      statuses[2] = empty.Recv().status();
    });
    Spawn([&] {
      UnwindCounter c(unwound);
      statuses[3] = full.Send(8);
    });
    Spawn([&] {
      UnwindCounter c(unwound);
      statuses[4] = unbuffered.Send(9);
    });
    Spawn([&] {
      UnwindCounter c(unwound);
      MutexLock lock(cv_mu);
      statuses[5] = cv.Wait(cv_mu, [] { return false; });
    });
    Spawn([&] {
      UnwindCounter c(unwound);
      statuses[6] = never_done.Wait();
    });
    Spawn([&] {
      UnwindCounter c(unwound);
      MutexLock lock(held);  // held while parked below
      statuses[7] = held_chan.Recv().status();
    });
    Spawn([&] {
      UnwindCounter c(unwound);
      MutexLock lock(held);  // parks: the fiber above holds it
      mutex_acquired = true;
      statuses[8] = absl::OkStatus();
    });
    Spawn([&] { all_parked.set_value(); });
  });
  all_parked.get_future().wait();
  server.Stop(absl::Now() + absl::Milliseconds(20));
  ASSERT_TRUE(server.Wait().ok());

  EXPECT_EQ(unwound.load(), kFibers) << "every fiber returned and unwound";
  EXPECT_EQ(GetCloseReason(statuses[0]), CloseReason::kClosed) << statuses[0];
  for (int i = 1; i <= 7; ++i) {
    EXPECT_TRUE(IsClosedOrCancelled(statuses[i])) << i << ": " << statuses[i];
  }
  EXPECT_TRUE(mutex_acquired) << "the Mutex waiter got the lock once its holder unwound";
  Scheduler& s = Scheduler::For(server.engine().loop(0));
  EXPECT_EQ(s.live_fibers(), 0u);
  EXPECT_EQ(s.stack_pool().live(), 0u) << "every stack went back to the pool";
  EXPECT_TRUE(logs.Matching("did not finish").empty());
}

// Before the deadline, Channels keep working: a fiber woken by BeginStop can
// still hand a result to one parked in a channel, which gets it (not an
// error), and Stop returns once both are done, long before its deadline.
TEST(FiberStopTest, ChannelsStillWorkBetweenBeginStopAndTheDeadline) {
  Channel<int> results(0);
  absl::StatusOr<int> received = 0;
  absl::Status slept;
  std::promise<void> parked;
  FiberServer server;
  ASSERT_TRUE(server.Start({}, Options{.loops = 1}, IgnoreConnection).ok());
  Spawn(server.engine().loop(0), [&] {
    Spawn([&] { received = results.Recv(); });
    Spawn([&] {
      slept = fiber::SleepFor(absl::Hours(1));  // ends at BeginStop
      (void)results.Send(42);
    });
    Spawn([&] { parked.set_value(); });
  });
  parked.get_future().wait();
  server.Stop(absl::InfiniteFuture());  // only the fibers finishing can end it
  ASSERT_TRUE(server.Wait().ok());
  EXPECT_TRUE(IsClosedOrCancelled(slept)) << slept;
  ASSERT_TRUE(received.ok()) << received.status();
  EXPECT_EQ(*received, 42);
}

// Fibers that will not finish: three retry forever, ignoring the errors they
// get (which would hold the loop thread forever if the failing calls did not
// yield), one is blocked in Offload. Stop still returns, and one warning names
// them; a well-behaved fiber parked next to them unwinds as usual.
TEST(FiberStopTest, FibersThatWillNotFinishAreReported) {
  CapturingLogSink logs;
  auto gate = std::make_shared<Gate>();
  testing::Pair pair;
  // Outlive the server: the retrying fibers use them until its loop quits.
  auto ch = std::make_shared<Channel<int>>(0);
  auto nobody_sends = std::make_shared<Channel<int>>(0);
  std::atomic<int> unwound{0};
  std::promise<void> parked;
  {
    FiberServer server;
    ASSERT_TRUE(server.Start({}, Options{.loops = 1}, IgnoreConnection).ok());
    Spawn(server.engine().loop(0), [&, ch, fd = pair.fiber_end] {
      Spawn([ch] {
        for (;;) (void)ch->Recv();
      });
      Spawn([] {
        for (;;) (void)fiber::SleepFor(absl::Milliseconds(1));
      });
      Spawn([fd] {
        auto conn = FiberConn::Adopt(fd);
        char buf[8];
        for (;;) (void)(*conn)->Read(buf);
      });
      Spawn([gate] { Offload([gate] { gate->ArriveAndWait(); }); });
      Spawn([&, nobody_sends] {
        UnwindCounter c(unwound);
        (void)nobody_sends->Recv();
      });
      Spawn([&] { parked.set_value(); });
    });
    parked.get_future().wait();
    ASSERT_TRUE(gate->WaitArrived());
    server.Stop(absl::Now() + absl::Milliseconds(20));
    ASSERT_TRUE(server.Wait().ok());
    EXPECT_EQ(unwound.load(), 1);
    std::vector<std::string> reports = logs.Matching("did not finish by the stop deadline");
    ASSERT_EQ(reports.size(), 1u);
    EXPECT_NE(reports[0].find("4 fiber(s)"), std::string::npos) << reports[0];
    EXPECT_NE(reports[0].find("1 blocked in Offload"), std::string::npos) << reports[0];
    EXPECT_NE(reports[0].find("3 still running"), std::string::npos) << reports[0];
  }
  gate->Open();
  EXPECT_TRUE(DrainOffloadPool());
}

// A fiber that never ran when its scheduler is destroyed is destroyed with
// it: its captures die and its stack goes back (no leak for ASan to find).
TEST(FiberStopTest, FibersThatNeverRanAreDestroyedWithTheirScheduler) {
  CapturingLogSink logs;
  auto token = std::make_shared<int>(1);
  std::weak_ptr<int> weak = token;
  bool ran = false;
  {
    absl::StatusOr<std::unique_ptr<EventLoop>> loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok());
    Scheduler::For(**loop).Spawn([&ran, t = std::move(token)] { ran = true; });
    EXPECT_EQ(Scheduler::For(**loop).live_fibers(), 1u);
  }  // never run
  EXPECT_FALSE(ran);
  EXPECT_TRUE(weak.expired()) << "the fiber's captures were destroyed";
  EXPECT_EQ(logs.Matching("never ran").size(), 1u);
}

}  // namespace
}  // namespace netloop::fiber
