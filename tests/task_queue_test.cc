#include "reactor/task_queue.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "bench/alloc_counter.h"
#include "gtest/gtest.h"

namespace netloop {
namespace {

TEST(TaskQueueTest, RunAllOnAnEmptyQueue) {
  TaskQueue q;
  EXPECT_TRUE(q.Empty());
  EXPECT_EQ(q.RunAll(), 0u);
  EXPECT_TRUE(q.Push([] {})) << "an idle RunAll must not swallow the next wake-up";
}

TEST(TaskQueueTest, WakeUpRequestedOncePerBatch) {
  TaskQueue q;
  EXPECT_TRUE(q.Push([] {}));
  EXPECT_FALSE(q.Push([] {})) << "a wake-up is already owed for this batch";
  EXPECT_FALSE(q.Push([] {}));
  EXPECT_FALSE(q.Empty());
  EXPECT_EQ(q.RunAll(), 3u);
  EXPECT_TRUE(q.Empty());
  EXPECT_EQ(q.RunAll(), 0u);
  EXPECT_TRUE(q.Push([] {})) << "after a drain the next push must wake again";
  EXPECT_FALSE(q.Push([] {}));
  EXPECT_EQ(q.RunAll(), 2u);
}

TEST(TaskQueueTest, PushDuringABatchStartsTheNextBatch) {
  TaskQueue q;
  std::vector<bool> results;
  int later = 0;
  q.Push([&] {
    results.push_back(q.Push([&] { ++later; }));
    results.push_back(q.Push([&] { ++later; }));
    EXPECT_FALSE(q.Empty());
  });
  q.Push([&] { results.push_back(q.Push([&] { ++later; })); });
  EXPECT_EQ(q.RunAll(), 2u);
  EXPECT_EQ(results, (std::vector<bool>{true, false, false}))
      << "the batch was taken before it ran: the first push inside it starts a new one";
  EXPECT_EQ(later, 0) << "tasks pushed while running wait for the next call";
  EXPECT_EQ(q.RunAll(), 3u);
  EXPECT_EQ(later, 3);
  EXPECT_TRUE(q.Empty());
}

TEST(TaskQueueTest, RunsInPushOrder) {
  TaskQueue q;
  std::vector<int> order;
  for (int i = 0; i < 100; ++i) q.Push([&order, i] { order.push_back(i); });
  EXPECT_EQ(q.RunAll(), 100u);
  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[i], i);
}

TEST(TaskQueueTest, ChainOfTasksRunsOneBatchAtATime) {
  TaskQueue q;
  constexpr int kLength = 1000;
  int ran = 0;
  std::function<void()> step = [&] {
    if (++ran < kLength) {
      EXPECT_TRUE(q.Push([&] { step(); }));
    }
  };
  q.Push([&] { step(); });
  int calls = 0;
  while (!q.Empty() && calls < 2 * kLength) {
    EXPECT_EQ(q.RunAll(), 1u);
    ++calls;
  }
  EXPECT_EQ(ran, kLength);
  EXPECT_EQ(calls, kLength);
}

TEST(TaskQueueTest, TasksAreDestroyedAfterRunningOrWithTheQueue) {
  auto token = std::make_shared<int>(0);
  {
    TaskQueue q;
    q.Push([token] {});
    EXPECT_EQ(token.use_count(), 2);
    q.RunAll();
    EXPECT_EQ(token.use_count(), 1) << "ran: destroyed";
    bool ran = false;
    q.Push([token, &ran] { ran = true; });
    EXPECT_EQ(token.use_count(), 2);
    // q goes out of scope with the task pending.
    EXPECT_FALSE(ran);
  }
  EXPECT_EQ(token.use_count(), 1) << "pending tasks die with the queue, unrun";
}

TEST(TaskQueueTest, SteadyStateDoesNotAllocate) {
  TaskQueue q;
  int sink = 0;
  // Two rounds grow both vectors (they trade places each batch).
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 64; ++i) q.Push([&sink] { ++sink; });
    q.RunAll();
  }
  uint64_t before = bench::Allocations();
  for (int round = 0; round < 100; ++round) {
    for (int i = 0; i < 64; ++i) q.Push([&sink] { ++sink; });
    q.RunAll();
  }
  EXPECT_EQ(bench::Allocations(), before);
  EXPECT_EQ(sink, 102 * 64);
}

TEST(TaskQueueTest, PerProducerFifoUnderContention) {
  TaskQueue q;
  constexpr int kProducers = 4;
  constexpr int kPerProducer = 10000;
  constexpr int kTotal = kProducers * kPerProducer;
  // Touched only by the consumer (this thread), inside tasks.
  std::vector<int> last(kProducers, -1);
  int out_of_order = 0;
  int done = 0;
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i) {
        q.Push([&, p, i] {
          if (last[p] != i - 1) ++out_of_order;
          last[p] = i;
          ++done;
        });
      }
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  size_t ran = 0;
  while (done < kTotal && std::chrono::steady_clock::now() < deadline) {
    ran += q.RunAll();
    if (q.Empty()) std::this_thread::yield();
  }
  for (std::thread& t : producers) t.join();
  ran += q.RunAll();
  EXPECT_EQ(out_of_order, 0);
  EXPECT_EQ(done, kTotal);
  EXPECT_EQ(ran, static_cast<size_t>(kTotal));
  for (int p = 0; p < kProducers; ++p) EXPECT_EQ(last[p], kPerProducer - 1);
}

// A consumer that really sleeps, like the loop on its eventfd: it blocks
// until signalled, drains the signal, then runs the queue. If a push that
// needed a wake-up did not get one, it sleeps with work pending; after 10 s
// it gives up and reports `stuck` instead of hanging the test.
class BlockingConsumer {
 public:
  explicit BlockingConsumer(TaskQueue& q) : q_(q), thread_([this] { Loop(); }) {}
  ~BlockingConsumer() { Stop(); }

  // What a producer does when Push returns true: write the "eventfd".
  void Signal() {
    std::lock_guard<std::mutex> lock(mu_);
    ++signals_;
    cv_.notify_one();
  }
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      cv_.notify_one();
    }
    if (thread_.joinable()) thread_.join();
  }
  bool stuck() const { return stuck_.load(); }
  // Valid after Stop().
  size_t ran() const { return ran_; }
  size_t nonempty_batches() const { return nonempty_batches_; }

 private:
  void Loop() {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        if (!cv_.wait_for(lock, std::chrono::seconds(10),
                          [&] { return signals_ > 0 || stop_; })) {
          stuck_.store(true);
          return;
        }
        if (signals_ == 0 && stop_) return;
        signals_ = 0;  // drain BEFORE running, as the protocol requires
      }
      size_t n = q_.RunAll();
      ran_ += n;
      if (n > 0) ++nonempty_batches_;
    }
  }

  TaskQueue& q_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t signals_ = 0;  // guarded by mu_
  bool stop_ = false;     // guarded by mu_
  std::atomic<bool> stuck_{false};
  size_t ran_ = 0;               // consumer thread until joined
  size_t nonempty_batches_ = 0;  // consumer thread until joined
  std::thread thread_;
};

// Waits (bounded) until `pred` holds or the consumer gave up.
template <typename Pred>
bool AwaitOrStuck(const BlockingConsumer& consumer, Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!pred()) {
    if (consumer.stuck() || std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

// The exact interleaving that loses wake-ups in a broken protocol: a push
// that lands while the batch before it is still running, with nothing
// pushed after it. Each round forces it: the running task waits until the
// producer has pushed the next task.
TEST(TaskQueueTest, PushWhileTheBatchRunsStillWakesABlockingConsumer) {
  TaskQueue q;
  BlockingConsumer consumer(q);
  constexpr int kRounds = 100;
  std::atomic<bool> blocker_running{false};
  std::atomic<bool> pushed{false};
  std::atomic<int> tails_run{0};
  for (int round = 0; round < kRounds; ++round) {
    blocker_running = false;
    pushed = false;
    bool first = q.Push([&] {
      blocker_running = true;
      // Bounded: the producer sets `pushed` right after its push.
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (!pushed.load() && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::yield();
      }
    });
    ASSERT_TRUE(first) << "round " << round;
    consumer.Signal();
    ASSERT_TRUE(AwaitOrStuck(consumer, [&] { return blocker_running.load(); }));
    if (q.Push([&] { tails_run.fetch_add(1); })) consumer.Signal();
    pushed = true;
    ASSERT_TRUE(AwaitOrStuck(consumer, [&] { return tails_run.load() == round + 1; }))
        << "round " << round << ": a task pushed during a batch was never run";
  }
  consumer.Stop();
  EXPECT_FALSE(consumer.stuck());
  EXPECT_EQ(consumer.ran(), 2u * kRounds);
}

// Several producers pushing in bursts against the blocking consumer.
TEST(TaskQueueTest, NoLostWakeUpsUnderContention) {
  TaskQueue q;
  BlockingConsumer consumer(q);
  constexpr int kProducers = 3;
  constexpr int kBursts = 200;
  constexpr int kBurst = 20;
  constexpr int kPerProducer = kBursts * kBurst;
  std::atomic<uint64_t> wakeups_requested{0};
  std::vector<std::atomic<int>> executed(kProducers);
  std::atomic<int> failed_waits{0};
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int b = 0; b < kBursts; ++b) {
        for (int i = 0; i < kBurst; ++i) {
          if (q.Push([&executed, p] { executed[p].fetch_add(1, std::memory_order_release); })) {
            wakeups_requested.fetch_add(1, std::memory_order_relaxed);
            consumer.Signal();
          }
        }
        // Waiting for its own burst makes each burst's end a point where
        // the producer depends on the wake-up it was (or was not) told to give.
        if (!AwaitOrStuck(consumer, [&] { return executed[p].load() == (b + 1) * kBurst; })) {
          failed_waits.fetch_add(1);
          return;
        }
      }
    });
  }
  for (std::thread& t : producers) t.join();
  consumer.Stop();
  ASSERT_FALSE(consumer.stuck()) << "consumer slept with tasks pending: a wake-up was lost";
  EXPECT_EQ(failed_waits.load(), 0);
  for (int p = 0; p < kProducers; ++p) EXPECT_EQ(executed[p].load(), kPerProducer);
  EXPECT_EQ(consumer.ran(), static_cast<size_t>(kProducers * kPerProducer));
  EXPECT_TRUE(q.Empty());
  // Exactly one wake-up per batch: every batch was started by one push that
  // returned true and taken by one RunAll that ran something.
  EXPECT_EQ(wakeups_requested.load(), consumer.nonempty_batches());
  EXPECT_LT(wakeups_requested.load(), static_cast<uint64_t>(kProducers * kPerProducer))
      << "pushes that find a wake-up already owed must not ask again";
}

}  // namespace
}  // namespace netloop
