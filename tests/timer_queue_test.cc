#include "reactor/timer_queue.h"

#include <map>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace netloop {
namespace {

TEST(TimerQueueTest, RunsInDeadlineOrderTiesByInsertion) {
  TimerQueue q;
  std::vector<int> order;
  q.Add(30, 0, [&] { order.push_back(3); });
  q.Add(10, 0, [&] { order.push_back(1); });
  q.Add(20, 0, [&] { order.push_back(21); });
  q.Add(20, 0, [&] { order.push_back(22); });
  EXPECT_EQ(q.NextExpiry(), 10);
  EXPECT_EQ(q.RunExpired(25), 3u);
  EXPECT_EQ(order, (std::vector<int>{1, 21, 22}));
  EXPECT_EQ(q.RunExpired(100), 1u);
  EXPECT_EQ(q.size(), 0u);
  EXPECT_EQ(q.NextExpiry(), INT64_MAX);
}

TEST(TimerQueueTest, CancelAndStaleIds) {
  TimerQueue q;
  int fired = 0;
  TimerId a = q.Add(10, 0, [&] { ++fired; });
  EXPECT_TRUE(q.Cancel(a));
  EXPECT_FALSE(q.Cancel(a)) << "second cancel is stale";
  TimerId b = q.Add(10, 0, [&] { ++fired; });  // reuses a's slot
  EXPECT_EQ(b.slot, a.slot);
  EXPECT_FALSE(q.Cancel(a)) << "stale id must not cancel the slot's new timer";
  q.RunExpired(10);
  EXPECT_EQ(fired, 1);
  EXPECT_FALSE(q.Cancel(b)) << "fired timers are not pending";
  EXPECT_FALSE(q.Reschedule(b, 50));
}

TEST(TimerQueueTest, RescheduleEarlierAndLater) {
  TimerQueue q;
  std::vector<int> order;
  TimerId a = q.Add(100, 0, [&] { order.push_back(1); });
  q.Add(50, 0, [&] { order.push_back(2); });
  ASSERT_TRUE(q.Reschedule(a, 10));
  EXPECT_EQ(q.NextExpiry(), 10);
  q.RunExpired(60);
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  TimerId c = q.Add(70, 0, [&] { order.push_back(3); });
  ASSERT_TRUE(q.Reschedule(c, 200));
  EXPECT_EQ(q.RunExpired(150), 0u);
  EXPECT_EQ(q.RunExpired(200), 1u);
}

TEST(TimerQueueTest, PeriodicRearmsWithoutCatchUpBurstAndCancelsItself) {
  TimerQueue q;
  int fired = 0;
  TimerId id;
  id = q.Add(10, 10, [&] {
    if (++fired == 3) q.Cancel(id);
  });
  EXPECT_EQ(q.RunExpired(10), 1u);
  EXPECT_EQ(q.NextExpiry(), 20);
  // Far behind: one run, then re-armed relative to now, not a burst.
  EXPECT_EQ(q.RunExpired(1000), 1u);
  EXPECT_EQ(q.NextExpiry(), 1010);
  EXPECT_EQ(q.RunExpired(1010), 1u);
  EXPECT_EQ(fired, 3);
  EXPECT_EQ(q.size(), 0u) << "cancelled itself";
}

TEST(TimerQueueTest, AddFromCallbackWaitsForNextRun) {
  TimerQueue q;
  int inner = 0;
  q.Add(10, 0, [&] { q.Add(5, 0, [&] { ++inner; }); });
  EXPECT_EQ(q.RunExpired(10), 1u);
  EXPECT_EQ(inner, 0);
  EXPECT_EQ(q.RunExpired(10), 1u);
  EXPECT_EQ(inner, 1);
}

TEST(TimerQueueTest, RandomOpsAgainstModel) {
  std::mt19937 rng(7);
  TimerQueue q;
  std::map<std::pair<int64_t, uint64_t>, int> model;  // (when, seq) -> tag
  std::vector<std::pair<TimerId, std::pair<int64_t, uint64_t>>> live;
  std::vector<int> fired;
  uint64_t seq = 0;
  int64_t now = 0;
  for (int step = 0; step < 100000; ++step) {
    int op = rng() % 4;
    if (op <= 1) {
      int64_t when = now + rng() % 1000;
      int tag = step;
      TimerId id = q.Add(when, 0, [&fired, tag] { fired.push_back(tag); });
      model[{when, seq}] = tag;
      live.push_back({id, {when, seq}});
      ++seq;
    } else if (op == 2 && !live.empty()) {
      size_t i = rng() % live.size();
      bool pending = model.count(live[i].second) > 0;
      ASSERT_EQ(q.Cancel(live[i].first), pending);
      model.erase(live[i].second);
      live[i] = live.back();
      live.pop_back();
    } else {
      now += rng() % 50;
      fired.clear();
      q.RunExpired(now);
      std::vector<int> expected;
      while (!model.empty() && model.begin()->first.first <= now) {
        expected.push_back(model.begin()->second);
        model.erase(model.begin());
      }
      ASSERT_EQ(fired, expected) << "step " << step;
    }
    ASSERT_EQ(q.size(), model.size());
  }
}

}  // namespace
}  // namespace netloop
