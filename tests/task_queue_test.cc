#include "reactor/task_queue.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace netloop {
namespace {

TEST(TaskQueueTest, WakeUpRequestedOncePerBatch) {
  TaskQueue q;
  EXPECT_TRUE(q.Empty());
  EXPECT_TRUE(q.Push([] {}));
  EXPECT_FALSE(q.Push([] {})) << "a wake-up is already pending";
  EXPECT_FALSE(q.Empty());
  EXPECT_EQ(q.RunAll(), 2u);
  EXPECT_TRUE(q.Empty());
  EXPECT_TRUE(q.Push([] {})) << "after a drain the next push must wake again";
  EXPECT_EQ(q.RunAll(), 1u);
}

TEST(TaskQueueTest, TasksPushedByTasksRunNextRound) {
  TaskQueue q;
  int second = 0;
  q.Push([&] { EXPECT_TRUE(q.Push([&] { ++second; })) << "pushed after the swap"; });
  EXPECT_EQ(q.RunAll(), 1u);
  EXPECT_EQ(second, 0);
  EXPECT_EQ(q.RunAll(), 1u);
  EXPECT_EQ(second, 1);
}

TEST(TaskQueueTest, PerProducerFifoUnderContention) {
  TaskQueue q;
  constexpr int kProducers = 4;
  constexpr int kPerProducer = 10000;
  std::vector<int> last(kProducers, -1);
  std::atomic<int> done{0};
  bool in_order = true;
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i) {
        q.Push([&, p, i] {
          if (last[p] != i - 1) in_order = false;
          last[p] = i;
          done.fetch_add(1, std::memory_order_relaxed);
        });
      }
    });
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (done.load() < kProducers * kPerProducer &&
         std::chrono::steady_clock::now() < deadline) {
    q.RunAll();
  }
  for (auto& t : producers) t.join();
  q.RunAll();
  EXPECT_TRUE(in_order);
  EXPECT_EQ(done.load(), kProducers * kPerProducer);
}

}  // namespace
}  // namespace netloop
