#include "reactor/timer_queue.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "bench/alloc_counter.h"
#include "gtest/gtest.h"

namespace netloop {
namespace {

constexpr int64_t kNever = INT64_MAX;

TEST(TimerQueueTest, EmptyQueue) {
  TimerQueue q;
  EXPECT_EQ(q.NextExpiry(), kNever);
  EXPECT_EQ(q.size(), 0u);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.RunExpired(kNever), 0u);
  EXPECT_FALSE(q.Cancel(TimerId()));
  EXPECT_FALSE(q.Reschedule(TimerId(), 5));
  EXPECT_FALSE(q.Cancel(TimerId{7, 1})) << "slot out of range";
}

TEST(TimerQueueTest, RunsInDeadlineOrderTiesByInsertion) {
  TimerQueue q;
  std::vector<int> order;
  q.Add(30, 0, [&] { order.push_back(3); });
  q.Add(10, 0, [&] { order.push_back(1); });
  q.Add(20, 0, [&] { order.push_back(21); });
  q.Add(20, 0, [&] { order.push_back(22); });
  q.Add(20, 0, [&] { order.push_back(23); });
  EXPECT_EQ(q.size(), 5u);
  EXPECT_EQ(q.NextExpiry(), 10);
  EXPECT_EQ(q.RunExpired(9), 0u) << "nothing due yet";
  EXPECT_EQ(q.RunExpired(25), 4u);
  EXPECT_EQ(order, (std::vector<int>{1, 21, 22, 23}));
  EXPECT_EQ(q.NextExpiry(), 30);
  EXPECT_EQ(q.RunExpired(30), 1u) << "when == now is due";
  EXPECT_EQ(q.size(), 0u);
  EXPECT_EQ(q.NextExpiry(), kNever);
}

TEST(TimerQueueTest, ManyTiesKeepInsertionOrder) {
  TimerQueue q;
  std::vector<int> order;
  for (int i = 0; i < 1000; ++i) q.Add(i % 3, 0, [&order, i] { order.push_back(i); });
  EXPECT_EQ(q.RunExpired(2), 1000u);
  std::vector<int> expected;
  for (int when = 0; when < 3; ++when) {
    for (int i = when; i < 1000; i += 3) expected.push_back(i);
  }
  EXPECT_EQ(order, expected);
}

TEST(TimerQueueTest, CancelBeforeAndAfterFire) {
  TimerQueue q;
  int fired = 0;
  TimerId a = q.Add(10, 0, [&] { fired += 1; });
  TimerId b = q.Add(10, 0, [&] { fired += 10; });
  EXPECT_TRUE(q.Cancel(a));
  EXPECT_FALSE(q.Cancel(a)) << "second cancel is stale";
  EXPECT_EQ(q.size(), 1u);
  EXPECT_EQ(q.RunExpired(10), 1u);
  EXPECT_EQ(fired, 10);
  EXPECT_FALSE(q.Cancel(b)) << "a fired one-shot is not pending";
  EXPECT_FALSE(q.Reschedule(b, 50));
  EXPECT_EQ(q.size(), 0u);
}

TEST(TimerQueueTest, CancelDestroysTheCallbackAtOnce) {
  TimerQueue q;
  auto token = std::make_shared<int>(0);
  TimerId id = q.Add(10, 0, [token] {});
  EXPECT_EQ(token.use_count(), 2);
  EXPECT_TRUE(q.Cancel(id));
  EXPECT_EQ(token.use_count(), 1);
  q.Add(10, 0, [token] {});
  q.RunExpired(10);
  EXPECT_EQ(token.use_count(), 1) << "a fired one-shot's callback is destroyed";
  q.Add(10, 0, [token] {});
  {
    TimerQueue doomed;
    doomed.Add(1, 0, [token] {});
    EXPECT_EQ(token.use_count(), 3);
  }
  EXPECT_EQ(token.use_count(), 2) << "destroying the queue destroys its callbacks";
}

TEST(TimerQueueTest, StaleIdsAfterSlotReuse) {
  TimerQueue q;
  int fired_a = 0, fired_b = 0;
  TimerId a = q.Add(10, 0, [&] { ++fired_a; });
  ASSERT_TRUE(q.Cancel(a));
  TimerId b = q.Add(20, 0, [&] { ++fired_b; });
  ASSERT_EQ(b.slot, a.slot) << "the freed slot is reused";
  EXPECT_NE(b.generation, a.generation);
  EXPECT_FALSE(q.Cancel(a)) << "a stale id must not touch the slot's new timer";
  EXPECT_FALSE(q.Reschedule(a, 5));
  EXPECT_EQ(q.NextExpiry(), 20);
  EXPECT_EQ(q.RunExpired(20), 1u);
  EXPECT_EQ(fired_a, 0);
  EXPECT_EQ(fired_b, 1);
  // Reuse after firing, too.
  TimerId c = q.Add(30, 0, [] {});
  EXPECT_EQ(c.slot, b.slot);
  EXPECT_FALSE(q.Cancel(b));
  EXPECT_TRUE(q.Cancel(c));
}

TEST(TimerQueueTest, RescheduleEarlierAndLater) {
  TimerQueue q;
  std::vector<int> order;
  TimerId a = q.Add(100, 0, [&] { order.push_back(1); });
  q.Add(50, 0, [&] { order.push_back(2); });
  ASSERT_TRUE(q.Reschedule(a, 10));
  EXPECT_EQ(q.NextExpiry(), 10);
  EXPECT_EQ(q.RunExpired(60), 2u);
  EXPECT_EQ(order, (std::vector<int>{1, 2}));

  TimerId c = q.Add(70, 0, [&] { order.push_back(3); });
  ASSERT_TRUE(q.Reschedule(c, 200));
  EXPECT_EQ(q.NextExpiry(), 200);
  EXPECT_EQ(q.RunExpired(150), 0u);
  EXPECT_EQ(q.RunExpired(200), 1u);
  EXPECT_EQ(q.size(), 0u);
}

TEST(TimerQueueTest, RescheduledTimerCountsAsNewestAmongTies) {
  TimerQueue q;
  std::vector<int> order;
  TimerId first = q.Add(10, 0, [&] { order.push_back(1); });
  q.Add(10, 0, [&] { order.push_back(2); });
  ASSERT_TRUE(q.Reschedule(first, 10));
  q.RunExpired(10);
  EXPECT_EQ(order, (std::vector<int>{2, 1}));
}

TEST(TimerQueueTest, PeriodicRearmsWithoutCatchUpBurst) {
  TimerQueue q;
  std::vector<int64_t> runs;
  int64_t now = 0;
  TimerId id = q.Add(10, 10, [&] { runs.push_back(now); });
  now = 10;
  EXPECT_EQ(q.RunExpired(now), 1u);
  EXPECT_EQ(q.NextExpiry(), 20) << "when + interval";
  now = 25;
  EXPECT_EQ(q.RunExpired(now), 1u) << "one run per call, even if late";
  EXPECT_EQ(q.NextExpiry(), 30) << "still on its grid: 20 + 10 > 25";
  now = 1000;
  EXPECT_EQ(q.RunExpired(now), 1u) << "far behind: one run, not 97";
  EXPECT_EQ(q.NextExpiry(), 1010) << "re-armed from now";
  EXPECT_EQ(q.size(), 1u);
  EXPECT_EQ(runs, (std::vector<int64_t>{10, 25, 1000}));
  EXPECT_TRUE(q.Cancel(id));
  EXPECT_EQ(q.size(), 0u);
  EXPECT_EQ(q.RunExpired(5000), 0u);
}

TEST(TimerQueueTest, PeriodicCancelsItselfFromItsCallback) {
  TimerQueue q;
  int fired = 0;
  std::vector<bool> cancel_results;
  TimerId id;
  id = q.Add(10, 10, [&] {
    if (++fired == 3) {
      cancel_results.push_back(q.Cancel(id));
      cancel_results.push_back(q.Cancel(id));
      cancel_results.push_back(q.Reschedule(id, 100));
      EXPECT_EQ(q.size(), 0u) << "no longer counted once cancelled";
    }
  });
  for (int64_t now = 10; now <= 100; now += 10) q.RunExpired(now);
  EXPECT_EQ(fired, 3);
  EXPECT_EQ(cancel_results, (std::vector<bool>{true, false, false}));
  EXPECT_EQ(q.size(), 0u);
  EXPECT_EQ(q.NextExpiry(), kNever);
  EXPECT_FALSE(q.Cancel(id)) << "the id is stale once the callback returned";
}

TEST(TimerQueueTest, OneShotCannotCancelOrRescheduleItselfWhileRunning) {
  TimerQueue q;
  TimerId id;
  bool cancelled = true, rescheduled = true;
  size_t size_inside = 99;
  id = q.Add(10, 0, [&] {
    size_inside = q.size();
    cancelled = q.Cancel(id);
    rescheduled = q.Reschedule(id, 50);
  });
  EXPECT_EQ(q.RunExpired(10), 1u);
  EXPECT_EQ(size_inside, 0u) << "a running one-shot is no longer pending";
  EXPECT_FALSE(cancelled);
  EXPECT_FALSE(rescheduled);
  EXPECT_EQ(q.RunExpired(100), 0u);
}

TEST(TimerQueueTest, PeriodicChoosesItsNextRunFromItsCallback) {
  TimerQueue q;
  std::vector<int64_t> runs;
  int64_t now = 0;
  TimerId id;
  id = q.Add(10, 10, [&] {
    runs.push_back(now);
    if (runs.size() == 1) {
      EXPECT_TRUE(q.Reschedule(id, 500));
    }
  });
  now = 10;
  q.RunExpired(now);
  EXPECT_EQ(q.NextExpiry(), 500);
  now = 500;
  q.RunExpired(now);
  EXPECT_EQ(q.NextExpiry(), 510) << "back to its interval";
  EXPECT_EQ(runs, (std::vector<int64_t>{10, 500}));
}

TEST(TimerQueueTest, DueTimersAddedByCallbacksWaitForTheNextCall) {
  TimerQueue q;
  std::vector<int> order;
  q.Add(10, 0, [&] {
    order.push_back(1);
    q.Add(5, 0, [&] { order.push_back(100); });  // due, but added now
    EXPECT_EQ(q.NextExpiry(), 5) << "visible to a callback asking";
  });
  q.Add(20, 0, [&] { order.push_back(2); });
  q.Add(30, 0, [&] { order.push_back(3); });
  // 20 was due before the call began: it must run although the new timer
  // (when 5) sits ahead of it in deadline order.
  EXPECT_EQ(q.RunExpired(20), 2u);
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_EQ(q.NextExpiry(), 5);
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(q.RunExpired(20), 1u);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 100}));
  EXPECT_EQ(q.RunExpired(30), 1u);
}

TEST(TimerQueueTest, SelfReaddingCallbackCannotLoopForever) {
  TimerQueue q;
  int runs = 0;
  std::function<void()> again = [&] {
    ++runs;
    q.Add(0, 0, [&] { again(); });
  };
  q.Add(0, 0, [&] { again(); });
  EXPECT_EQ(q.RunExpired(100), 1u);
  EXPECT_EQ(q.RunExpired(100), 1u);
  EXPECT_EQ(runs, 2);
  EXPECT_EQ(q.size(), 1u);
}

TEST(TimerQueueTest, CallbacksCancelAndMoveOtherDueTimers) {
  TimerQueue q;
  std::vector<int> order;
  TimerId b, c, d;
  q.Add(10, 0, [&] {
    order.push_back(1);
    EXPECT_TRUE(q.Cancel(b));
    EXPECT_TRUE(q.Reschedule(c, 100));
    EXPECT_TRUE(q.Reschedule(d, 15));  // still due, but moved now: next call
  });
  b = q.Add(11, 0, [&] { order.push_back(2); });
  c = q.Add(12, 0, [&] { order.push_back(3); });
  d = q.Add(13, 0, [&] { order.push_back(4); });
  q.Add(14, 0, [&] { order.push_back(5); });
  EXPECT_EQ(q.RunExpired(20), 2u);
  EXPECT_EQ(order, (std::vector<int>{1, 5}));
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(q.RunExpired(20), 1u);
  EXPECT_EQ(q.RunExpired(99), 0u);
  EXPECT_EQ(q.RunExpired(100), 1u);
  EXPECT_EQ(order, (std::vector<int>{1, 5, 4, 3}));
}

TEST(TimerQueueTest, DeferredTimersCanBeCancelledOrMovedInTheSameCall) {
  TimerQueue q;
  int x_runs = 0, y_runs = 0;
  TimerId x, y;
  q.Add(10, 0, [&] {
    x = q.Add(1, 0, [&] { ++x_runs; });
    y = q.Add(1, 0, [&] { ++y_runs; });
  });
  // By the time this runs, x and y have been set aside as already due.
  q.Add(20, 0, [&] {
    EXPECT_TRUE(q.Cancel(x));
    EXPECT_FALSE(q.Cancel(x));
    EXPECT_TRUE(q.Reschedule(y, 50));
    // x's slot is free again; reusing it must not revive x's old entry.
    q.Add(2, 0, [] {});
  });
  EXPECT_EQ(q.RunExpired(20), 2u);
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(q.NextExpiry(), 2);
  EXPECT_EQ(q.RunExpired(20), 1u) << "only the timer added last";
  EXPECT_EQ(q.RunExpired(50), 1u);
  EXPECT_EQ(x_runs, 0);
  EXPECT_EQ(y_runs, 1);
  EXPECT_EQ(q.size(), 0u);
}

// A callback that adds enough timers to move the slot array must still see
// its own captures intact, and a periodic one must keep its state.
TEST(TimerQueueTest, SlotArrayGrowthInsideACallback) {
  TimerQueue q;
  std::string text(200, 'p');  // heap-allocated capture
  int added = 0;
  TimerId id = q.Add(10, 10, [&q, &added, text, count = 0]() mutable {
    ++count;
    for (int i = 0; i < 1000; ++i) q.Add(1'000'000 + i, 0, [] {});
    added += 1000;
    EXPECT_EQ(text, std::string(200, 'p'));
    EXPECT_EQ(count, added / 1000);
  });
  q.RunExpired(10);
  q.RunExpired(20);
  EXPECT_EQ(added, 2000);
  EXPECT_EQ(q.size(), 2001u);
  EXPECT_TRUE(q.Cancel(id));
}

// Destroying a callback may run arbitrary code (a captured object's
// destructor); the queue must be consistent by then.
TEST(TimerQueueTest, CallbackDestructorsMayUseTheQueue) {
  TimerQueue q;
  struct Reenter {
    TimerQueue* q;
    TimerId victim;
    int* added;
    ~Reenter() {
      if (q == nullptr) return;
      q->Cancel(victim);
      q->Add(500, 0, [] {});
      ++*added;
    }
    Reenter(TimerQueue* q, TimerId v, int* a) : q(q), victim(v), added(a) {}
    Reenter(Reenter&& o) noexcept : q(std::exchange(o.q, nullptr)), victim(o.victim), added(o.added) {}
  };
  int added = 0;
  TimerId victim1 = q.Add(100, 0, [] {});
  TimerId victim2 = q.Add(100, 0, [] {});
  TimerId holder = q.Add(50, 0, [r = Reenter(&q, victim1, &added)] {});
  q.Add(10, 0, [r = Reenter(&q, victim2, &added)] {});
  EXPECT_TRUE(q.Cancel(holder));  // destructor cancels victim1, adds one
  EXPECT_EQ(q.RunExpired(10), 1u);  // destructor cancels victim2, adds one
  EXPECT_EQ(added, 2);
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(q.NextExpiry(), 500);
  EXPECT_EQ(q.RunExpired(500), 2u);
}

TEST(TimerQueueTest, SteadyStateDoesNotAllocate) {
  TimerQueue q;
  constexpr int kPending = 10000;
  std::vector<TimerId> ids;
  for (int i = 0; i < kPending; ++i) ids.push_back(q.Add(1'000'000 + i, 0, [] {}));
  int fired = 0;
  int64_t now = 0;
  // Warm: one extra slot, and the deferral list.
  q.Cancel(q.Add(1, 0, [] {}));
  uint64_t before = bench::Allocations();
  for (int i = 0; i < 10000; ++i) {
    TimerId a = q.Add(now + 5, 0, [&fired] { ++fired; });
    ASSERT_TRUE(q.Cancel(a));
    q.Add(now + 1, 0, [&fired] { ++fired; });
    q.Reschedule(ids[i % kPending], 2'000'000 + i);
    ++now;
    q.RunExpired(now);
  }
  EXPECT_EQ(bench::Allocations(), before);
  EXPECT_EQ(fired, 10000);
  EXPECT_EQ(q.size(), static_cast<size_t>(kPending));
}

// Random Add / Cancel / Reschedule / RunExpired, one-shot and periodic,
// against a model that keeps (deadline, arming order) -> timer.
TEST(TimerQueueTest, RandomOpsAgainstModel) {
  std::mt19937 rng(7);
  struct Live {
    TimerId id;
    int tag;
  };
  struct Armed {
    int tag;
    int64_t interval;
  };
  TimerQueue q;
  std::map<std::pair<int64_t, uint64_t>, Armed> model;  // (when, seq) -> timer
  std::map<int, std::pair<int64_t, uint64_t>> key_of;   // tag -> model key
  std::vector<Live> live;                                // ids ever handed out
  std::vector<int> fired;
  uint64_t seq = 0;
  int64_t now = 0;
  int next_tag = 0;
  size_t max_size = 0;
  for (int step = 0; step < 100000; ++step) {
    // Adds outnumber cancels only slightly, so the queue holds hundreds of
    // timers without periodic ones piling up into millions of runs.
    const int op = static_cast<int>(rng() % 8);
    if (op <= 1 || (op == 2 && rng() % 2 == 0)) {
      const int64_t when = now + static_cast<int64_t>(rng() % 1000) - 100;
      const int64_t interval = rng() % 10 == 0 ? 1 + rng() % 4000 : 0;
      const int tag = next_tag++;
      TimerId id = q.Add(when, interval, [&fired, tag] { fired.push_back(tag); });
      model[{when, seq}] = Armed{tag, interval};
      key_of[tag] = {when, seq};
      ++seq;
      live.push_back(Live{id, tag});
    } else if ((op == 2 || op == 3) && !live.empty()) {
      const size_t i = rng() % live.size();
      auto it = key_of.find(live[i].tag);
      const bool pending = it != key_of.end();
      ASSERT_EQ(q.Cancel(live[i].id), pending) << "step " << step;
      if (pending) {
        model.erase(it->second);
        key_of.erase(it);
      }
      live[i] = live.back();
      live.pop_back();
    } else if (op == 4 && !live.empty()) {
      const size_t i = rng() % live.size();
      const int64_t when = now + static_cast<int64_t>(rng() % 1000);
      auto it = key_of.find(live[i].tag);
      const bool pending = it != key_of.end();
      ASSERT_EQ(q.Reschedule(live[i].id, when), pending) << "step " << step;
      if (pending) {
        Armed armed = model[it->second];
        model.erase(it->second);
        model[{when, seq}] = armed;
        it->second = {when, seq};
        ++seq;
      }
    } else if (op >= 5) {
      now += rng() % 30;
      fired.clear();
      const size_t ran = q.RunExpired(now);
      std::vector<int> expected;
      std::vector<std::pair<int64_t, Armed>> rearm;
      while (!model.empty() && model.begin()->first.first <= now) {
        const int64_t when = model.begin()->first.first;
        const Armed armed = model.begin()->second;
        model.erase(model.begin());
        key_of.erase(armed.tag);
        expected.push_back(armed.tag);
        if (armed.interval > 0) {
          int64_t next = when + armed.interval;
          if (next <= now) next = now + armed.interval;
          rearm.push_back({next, armed});
        }
      }
      for (const auto& [when, armed] : rearm) {
        model[{when, seq}] = armed;
        key_of[armed.tag] = {when, seq};
        ++seq;
      }
      ASSERT_EQ(fired, expected) << "step " << step;
      ASSERT_EQ(ran, expected.size());
    }
    ASSERT_EQ(q.size(), model.size()) << "step " << step;
    max_size = std::max(max_size, q.size());
    ASSERT_EQ(q.NextExpiry(), model.empty() ? kNever : model.begin()->first.first)
        << "step " << step;
  }
  EXPECT_GT(seq, 50000u);
  EXPECT_GT(max_size, 100u) << "the heap should have been several levels deep";
}

}  // namespace
}  // namespace netloop
