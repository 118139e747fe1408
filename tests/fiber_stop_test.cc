// Stopping a scheduler with fibers that have not finished: the stop deadline,
// fibers blocked in Offload past it, and what outlives the scheduler.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "fiberbridge/offload.h"
#include "fiberbridge/scheduler.h"
#include "fiberbridge/server.h"
#include "gtest/gtest.h"
#include "reactor/logging.h"

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

}  // namespace
}  // namespace netloop::fiber
