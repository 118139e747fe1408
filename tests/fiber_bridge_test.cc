// The fiber bridge over loopback and socketpairs: fiber echo in every accept
// mode, Go deadline semantics, parked readers and writers, close while parked,
// Stop with parked fibers, sync across loops, Offload, HandOff, 10k fibers.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "fiberbridge/channel.h"
#include "fiberbridge/fiber_conn.h"
#include "fiberbridge/offload.h"
#include "fiberbridge/scheduler.h"
#include "fiberbridge/server.h"
#include "fiberbridge/sync.h"
#include "gtest/gtest.h"
#include "reactor/clock.h"
#include "reactor/netloop.h"
#include "tests/fiber_test_util.h"
#include "tests/test_util.h"

namespace netloop::fiber {
namespace {

using netloop::testing::Connect;
using netloop::testing::Pattern;
using netloop::testing::ReadExactly;
using netloop::testing::ReadToEof;
using netloop::testing::WaitFor;
using netloop::testing::WriteAll;

using testing::Loops;
using testing::Pair;

void EchoHandler(FiberConn& conn) {
  for (;;) {
    absl::StatusOr<std::string_view> bytes = conn.ReadView();
    if (!bytes.ok()) return;
    if (!conn.WriteAll(*bytes).ok()) return;
  }
}

using Config = std::tuple<AcceptMode, int>;
class FiberEchoTest : public ::testing::TestWithParam<Config> {};

TEST_P(FiberEchoTest, EchoesThroughFibers) {
  auto [mode, loops] = GetParam();
  FiberServer server;
  Options o;
  o.loops = loops;
  o.accept_mode = mode;
  ASSERT_TRUE(server.Start({"tcp://127.0.0.1:0"}, o, EchoHandler).ok());
  std::string uri = server.ListenAddresses()[0];
  std::vector<int> fds;
  for (int i = 0; i < 10; ++i) fds.push_back(Connect(uri));
  for (int round = 0; round < 3; ++round) {
    for (size_t i = 0; i < fds.size(); ++i) {
      std::string msg = Pattern(1000 + round * 70000 + i, i + round);
      std::thread w([&] { ASSERT_TRUE(WriteAll(fds[i], msg)); });
      auto got = ReadExactly(fds[i], msg.size());
      w.join();
      ASSERT_TRUE(got.has_value());
      ASSERT_EQ(*got, msg);
    }
  }
  EXPECT_EQ(server.CountConnections(), fds.size());
  for (int fd : fds) close(fd);
  EXPECT_TRUE(WaitFor([&] { return server.CountConnections() == 0; }));
  server.Stop(absl::Now() + absl::Seconds(2));
  EXPECT_TRUE(server.Wait().ok());
}

INSTANTIATE_TEST_SUITE_P(Modes, FiberEchoTest,
                         ::testing::Combine(::testing::Values(AcceptMode::kReusePort,
                                                              AcceptMode::kAcceptor),
                                            ::testing::Values(1, 3)));

TEST(FiberConnTest, ReadAndWriteParkedAtTheSameTime) {
  Loops loops;
  Pair p;
  std::atomic<bool> reader_done{false}, writer_done{false};
  std::string big = Pattern(4 << 20, 3);
  auto conn_holder = std::make_shared<std::unique_ptr<FiberConn>>();
  ASSERT_TRUE(loops.Run([&] {
    auto c = FiberConn::Adopt(p.fiber_end);
    ASSERT_TRUE(c.ok());
    *conn_holder = std::move(*c);
    FiberConn* conn = conn_holder->get();
    Spawn([conn, &reader_done] {
      char buf[16];
      auto n = conn->Read(buf);  // parks: nothing to read yet
      EXPECT_TRUE(n.ok());
      EXPECT_EQ(std::string(buf, *n), "wake");
      reader_done = true;
    });
    Spawn([conn, &big, &writer_done] {
      EXPECT_TRUE(conn->WriteAll(big).ok());  // parks: 4 MiB > socket buffer
      writer_done = true;
    });
  }));
  usleep(50 * 1000);
  EXPECT_FALSE(reader_done.load());
  EXPECT_FALSE(writer_done.load());
  ASSERT_TRUE(WriteAll(p.test_end, "wake"));
  EXPECT_TRUE(WaitFor([&] { return reader_done.load(); }));
  EXPECT_FALSE(writer_done.load()) << "the writer is still parked";
  auto got = ReadExactly(p.test_end, big.size());
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(*got == big);
  EXPECT_TRUE(WaitFor([&] { return writer_done.load(); }));
  loops.Run([&] { conn_holder->reset(); });
}

TEST(FiberDeadlineTest, ExpiresWhileParked) {
  Loops loops;
  Pair p;
  ASSERT_TRUE(loops.Run([&] {
    auto c = FiberConn::Adopt(p.fiber_end);
    ASSERT_TRUE(c.ok());
    (*c)->SetReadDeadline(absl::Now() + absl::Milliseconds(50));
    char buf[8];
    absl::Time start = absl::Now();
    auto n = (*c)->Read(buf);
    EXPECT_TRUE(absl::IsDeadlineExceeded(n.status())) << n.status();
    EXPECT_GE(absl::Now() - start, absl::Milliseconds(45));
    // Later calls keep failing until the deadline moves...
    EXPECT_TRUE(absl::IsDeadlineExceeded((*c)->Read(buf).status()));
    // ...writes have their own deadline and still work.
    EXPECT_TRUE((*c)->WriteAll("ok").ok());
    // Moving it makes reads work again.
    (*c)->SetReadDeadline(absl::InfiniteFuture());
    ASSERT_TRUE(WriteAll(p.test_end, "x"));
    auto m = (*c)->Read(buf);
    EXPECT_TRUE(m.ok());
  }));
}

TEST(FiberDeadlineTest, ExtendedWhileParkedExpiresAtTheNewTime) {
  Loops loops;
  Pair p;
  ASSERT_TRUE(loops.Run([&] {
    auto c = FiberConn::Adopt(p.fiber_end);
    ASSERT_TRUE(c.ok());
    FiberConn* conn = c->get();
    absl::Time start = absl::Now();
    conn->SetReadDeadline(start + absl::Milliseconds(50));
    Spawn([conn, start] {
      (void)fiber::SleepFor(absl::Milliseconds(20));
      conn->SetReadDeadline(start + absl::Milliseconds(150));  // extend
    });
    char buf[8];
    auto n = conn->Read(buf);
    EXPECT_TRUE(absl::IsDeadlineExceeded(n.status())) << n.status();
    EXPECT_GE(absl::Now() - start, absl::Milliseconds(140)) << "woke at the old deadline";
  }));
}

TEST(FiberDeadlineTest, DataAfterClearedDeadline) {
  Loops loops;
  Pair p;
  std::thread feeder([&] {
    usleep(200 * 1000);
    WriteAll(p.test_end, "late");
  });
  ASSERT_TRUE(loops.Run([&] {
    auto c = FiberConn::Adopt(p.fiber_end);
    ASSERT_TRUE(c.ok());
    FiberConn* conn = c->get();
    conn->SetReadDeadline(absl::Now() + absl::Milliseconds(50));
    Spawn([conn] {
      (void)fiber::SleepFor(absl::Milliseconds(20));
      conn->SetReadDeadline(absl::Now() + absl::Milliseconds(100));  // extend
      (void)fiber::SleepFor(absl::Milliseconds(60));
      conn->SetReadDeadline(absl::InfiniteFuture());  // clear
    });
    char buf[8];
    auto n = conn->Read(buf);
    ASSERT_TRUE(n.ok()) << n.status();
    EXPECT_EQ(std::string(buf, *n), "late");
  }));
  feeder.join();
}

// The idle-timeout idiom: push the read deadline before every read. It must
// keep working while data flows, fire once the peer goes quiet, and never
// pile up timers (one lazy timer per direction).
TEST(FiberDeadlineTest, DeadlinePushedBeforeEveryReadStaysCheap) {
  Loops loops;
  Pair p;
  std::atomic<bool> stop{false};
  std::thread feeder([&] {
    for (int i = 0; i < 40 && !stop.load(); ++i) {
      WriteAll(p.test_end, "x");
      usleep(5 * 1000);
    }
  });
  int reads = 0;
  size_t max_timers = 0;
  absl::Status last;
  ASSERT_TRUE(loops.Run([&] {
    auto c = FiberConn::Adopt(p.fiber_end);
    ASSERT_TRUE(c.ok());
    char buf[8];
    for (;;) {
      (*c)->SetReadDeadline(absl::Now() + absl::Milliseconds(100));
      auto n = (*c)->Read(buf);
      max_timers = std::max(max_timers, loops.loop().PendingTimers());
      if (!n.ok()) {
        last = n.status();
        break;
      }
      reads += static_cast<int>(*n);
    }
  }));
  stop = true;
  feeder.join();
  EXPECT_GE(reads, 30) << "reads succeeded while data flowed";
  EXPECT_TRUE(absl::IsDeadlineExceeded(last)) << last;
  EXPECT_LE(max_timers, 2u) << "deadline pushes must not accumulate timers";
}

TEST(FiberDeadlineTest, DeadlineInThePastFailsAtOnce) {
  Loops loops;
  Pair p;
  ASSERT_TRUE(WriteAll(p.test_end, "data is there"));
  ASSERT_TRUE(loops.Run([&] {
    auto c = FiberConn::Adopt(p.fiber_end);
    ASSERT_TRUE(c.ok());
    (*c)->SetDeadline(absl::Now() - absl::Seconds(1));
    char buf[32];
    EXPECT_TRUE(absl::IsDeadlineExceeded((*c)->Read(buf).status()))
        << "even with data waiting, as in Go";
    EXPECT_TRUE(absl::IsDeadlineExceeded((*c)->WriteAll("x")));
  }));
}

// Go's documented mistake: a deadline is absolute, not per operation. Set
// once before a read loop, it fails a later read although data keeps flowing.
TEST(FiberDeadlineTest, OneDeadlineForALoopOfReadsIsTheGoMistake) {
  Loops loops;
  Pair p;
  std::atomic<bool> stop{false};
  std::thread feeder([&] {
    while (!stop.load()) {
      WriteAll(p.test_end, "tick");
      usleep(10 * 1000);
    }
  });
  int reads = 0;
  absl::Status last;
  ASSERT_TRUE(loops.Run([&] {
    auto c = FiberConn::Adopt(p.fiber_end);
    ASSERT_TRUE(c.ok());
    (*c)->SetReadDeadline(absl::Now() + absl::Milliseconds(100));
    char buf[64];
    for (;;) {
      auto n = (*c)->Read(buf);
      if (!n.ok()) {
        last = n.status();
        break;
      }
      ++reads;
    }
  }));
  stop = true;
  feeder.join();
  EXPECT_GT(reads, 2) << "reads succeeded while data flowed";
  EXPECT_TRUE(absl::IsDeadlineExceeded(last)) << last;
}

TEST(FiberConnTest, CloseFromAnotherFiberAndFromAnotherThreadWhileParked) {
  Loops loops;
  Pair p1, p2;
  FiberConnRef ref;
  std::atomic<int> woken{0};
  ASSERT_TRUE(loops.Run([&] {
    auto c1 = FiberConn::Adopt(p1.fiber_end);
    auto c2 = FiberConn::Adopt(p2.fiber_end);
    ASSERT_TRUE(c1.ok() && c2.ok());
    ref = (*c2)->Ref();
    FiberConn* conn1 = c1->release();
    FiberConn* conn2 = c2->release();
    Spawn([conn1, &woken] {
      char buf[8];
      auto n = conn1->Read(buf);
      EXPECT_EQ(GetCloseReason(n.status()), CloseReason::kClosed) << n.status();
      woken++;
      delete conn1;
    });
    Spawn([conn2, &woken] {
      char buf[8];
      auto n = conn2->Read(buf);
      EXPECT_EQ(GetCloseReason(n.status()), CloseReason::kClosed) << n.status();
      woken++;
      delete conn2;
    });
    Spawn([conn1] {
      (void)fiber::SleepFor(absl::Milliseconds(20));
      conn1->Close();  // from another fiber
    });
  }));
  usleep(50 * 1000);
  EXPECT_EQ(woken.load(), 1);
  std::thread([&] { ref.Close(); }).join();  // from another thread
  EXPECT_TRUE(WaitFor([&] { return woken.load() == 2; }));
}

TEST(FiberServerTest, StopUnparksEveryFiberWithClosed) {
  std::atomic<int> returned{0};
  std::atomic<int> closed_status{0};
  FiberServer server;
  Options o;
  o.loops = 2;
  ASSERT_TRUE(server
                  .Start({"tcp://127.0.0.1:0"}, o,
                         [&](FiberConn& c) {
                           char buf[8];
                           auto n = c.Read(buf);  // clients never send
                           if (GetCloseReason(n.status()) == CloseReason::kClosed) {
                             closed_status++;
                           }
                           returned++;
                         })
                  .ok());
  std::vector<int> fds;
  for (int i = 0; i < 20; ++i) fds.push_back(Connect(server.ListenAddresses()[0]));
  ASSERT_TRUE(WaitFor([&] { return server.CountConnections() == 20; }));
  server.Stop(absl::Now() + absl::Seconds(5));
  EXPECT_TRUE(server.Wait().ok());
  EXPECT_EQ(returned.load(), 20);
  EXPECT_EQ(closed_status.load(), 20);
  for (int fd : fds) {
    auto eof = ReadToEof(fd);
    EXPECT_TRUE(eof.has_value() && eof->empty());
    close(fd);
  }
}

// Fibers spawned before Stop but not yet run register their connections
// after it: they must still be closed, not left parked.
TEST(FiberServerTest, StopReachesFibersThatHaveNotRunYet) {
  Loops loops(1);
  std::atomic<int> closed{0};
  Pair p1, p2;
  ASSERT_TRUE(loops.Run([&] {
    Scheduler& s = *Scheduler::Current();
    // Both spawned; neither runs before BeginStop below.
    for (int fd : {p1.fiber_end, p2.fiber_end}) {
      s.Spawn([fd, &closed] {
        (void)FiberConn::Serve(fd, {}, [&closed](FiberConn& c) {
          char buf[4];
          auto n = c.Read(buf);
          if (GetCloseReason(n.status()) == CloseReason::kClosed) closed++;
        });
      });
    }
    s.BeginStop(MonotonicNanos() + 1'000'000'000);
  }));
  EXPECT_TRUE(WaitFor([&] { return closed.load() == 2; }, 5000));
}

TEST(FiberServerTest, TenThousandParkedFibers) {
  netloop::testing::RaiseFdLimit();
#if defined(__SANITIZE_THREAD__)
  constexpr int kConns = 1000;  // TSan's per-fiber state runs out of memory sooner
#else
  constexpr int kConns = 9000;  // client and server fds share this process
#endif
  FiberServer server;
  Options o;
  o.loops = 2;
  ASSERT_TRUE(server.Start({"tcp://127.0.0.1:0"}, o, EchoHandler).ok());
  std::vector<int> fds;
  for (int i = 0; i < kConns; ++i) {
    int fd = Connect(server.ListenAddresses()[0], 20);
    ASSERT_GE(fd, 0) << i;
    fds.push_back(fd);
  }
  ASSERT_TRUE(WaitFor([&] { return server.CountConnections() == kConns; }, 30000));
  for (int i = 0; i < kConns; i += 97) {
    ASSERT_TRUE(WriteAll(fds[i], "hi"));
    auto got = ReadExactly(fds[i], 2);
    ASSERT_TRUE(got.has_value());
  }
  server.Stop(absl::Now() + absl::Seconds(10));
  EXPECT_TRUE(server.Wait().ok());
  for (int fd : fds) close(fd);
}

TEST(FiberSyncTest, ChannelAndWaitGroupAcrossLoops) {
  Loops loops(2);
  Channel<int> ch(4);
  WaitGroup wg;
  std::atomic<long> sum{0};
  constexpr int kProducers = 4, kPer = 1000;
  wg.Add(kProducers);
  for (int p = 0; p < kProducers; ++p) {
    Spawn(loops.loop(p % 2), [&, p] {
      for (int i = 1; i <= kPer; ++i) EXPECT_TRUE(ch.Send(i).ok());
      wg.Done();
    });
  }
  std::atomic<bool> consumer_done{false};
  Spawn(loops.loop(1), [&] {
    for (;;) {
      auto v = ch.Recv();
      if (!v.ok()) break;
      sum += *v;
    }
    consumer_done = true;
  });
  ASSERT_TRUE(loops.Run([&] {
    wg.Wait();
    ch.Close();
  }, 0));
  EXPECT_TRUE(WaitFor([&] { return consumer_done.load(); }));
  EXPECT_EQ(sum.load(), static_cast<long>(kProducers) * kPer * (kPer + 1) / 2);
}

TEST(FiberSyncTest, MutexAndCondVarAcrossLoops) {
  Loops loops(2);
  Mutex mu;
  CondVar cv;
  int counter = 0;  // guarded by mu
  bool ready = false;
  WaitGroup wg;
  wg.Add(4);
  for (int f = 0; f < 4; ++f) {
    Spawn(loops.loop(f % 2), [&] {
      {
        MutexLock lock(mu);
        cv.Wait(mu, [&] { return ready; });
      }
      for (int i = 0; i < 500; ++i) {
        MutexLock lock(mu);
        int v = counter;
        if (i % 50 == 0) Yield();  // hold the lock across a switch
        counter = v + 1;
      }
      wg.Done();
    });
  }
  ASSERT_TRUE(loops.Run([&] {
    (void)fiber::SleepFor(absl::Milliseconds(20));
    {
      MutexLock lock(mu);
      ready = true;
    }
    cv.Broadcast();
    wg.Wait();
    MutexLock lock(mu);
    EXPECT_EQ(counter, 2000);
  }));
}

TEST(FiberSyncTest, UnbufferedChannelRendezvous) {
  Loops loops(2);
  Channel<std::string> ch(0);
  std::atomic<bool> got{false};
  Spawn(loops.loop(1), [&] {
    auto v = ch.Recv();
    EXPECT_TRUE(v.ok());
    EXPECT_EQ(*v, "hand-off");
    got = true;
  });
  ASSERT_TRUE(loops.Run([&] { EXPECT_TRUE(ch.Send("hand-off").ok()); }));
  EXPECT_TRUE(WaitFor([&] { return got.load(); }));
}

TEST(OffloadTest, BlockingCallDoesNotStallTheLoop) {
  Loops loops(1);
  std::atomic<int64_t> max_lateness_ms{0};
  std::atomic<bool> slow_done{false};
  // A 20 ms ticker on the same loop measures how late it runs.
  loops.loop().RunInLoop([&] {
    auto last = std::make_shared<absl::Time>(absl::Now());
    loops.loop().RunEvery(absl::Milliseconds(20), [&, last] {
      absl::Time now = absl::Now();
      int64_t late = absl::ToInt64Milliseconds(now - *last) - 20;
      if (late > max_lateness_ms.load()) max_lateness_ms = late;
      *last = now;
    });
  });
  ASSERT_TRUE(loops.Run([&] {
    int r = Offload([] {
      usleep(500 * 1000);  // a legacy blocking call
      return 42;
    });
    EXPECT_EQ(r, 42);
    slow_done = true;
  }));
  EXPECT_TRUE(slow_done.load());
  // Bounded generously (2 shared cores), but far below the 500 ms block.
  EXPECT_LT(max_lateness_ms.load(), 200);
}

// A callback handler that reads a line, then hands the connection to a fiber.
class UpgradeHandler : public EventHandler {
 public:
  Action OnTraffic(Conn& conn) override {
    std::string_view bytes = conn.PeekContiguous();
    size_t eol = bytes.find('\n');
    if (eol == std::string_view::npos) return Action::kNone;
    EXPECT_EQ(bytes.substr(0, eol), "UPGRADE");
    conn.Discard(eol + 1);
    (void)conn.Write("OK\n");
    EXPECT_TRUE(HandOff(conn, [](FiberConn& fc) {
                  char buf[64];
                  for (;;) {
                    auto n = fc.Read(buf);
                    if (!n.ok()) return;
                    std::string up(buf, *n);
                    for (char& ch : up) ch = static_cast<char>(toupper(ch));
                    if (!fc.WriteAll(up).ok()) return;
                  }
                }).ok());
    return Action::kNone;
  }
  void OnClose(Conn&, const absl::Status&) override { callback_closes++; }
  std::atomic<int> callback_closes{0};
};

TEST(HandOffTest, CallbackHandlerPassesConnectionToAFiber) {
  UpgradeHandler h;
  Engine engine;
  ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, Options{.loops = 1}).ok());
  int fd = Connect(engine.ListenAddresses()[0]);
  // The bytes after the upgrade line arrive in the same segment: they must
  // reach the fiber unconsumed.
  ASSERT_TRUE(WriteAll(fd, "UPGRADE\nhello"));
  auto got = ReadExactly(fd, 8);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, "OK\nHELLO");
  ASSERT_TRUE(WriteAll(fd, "more"));
  got = ReadExactly(fd, 4);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, "MORE");
  close(fd);
  engine.Stop(absl::Now() + absl::Seconds(2));
  EXPECT_TRUE(engine.Wait().ok());
  EXPECT_EQ(h.callback_closes.load(), 0) << "the callback side no longer owns it";
}

TEST(FiberDialTest, DialsAndFailsAsGoDoes) {
  FiberServer server;
  ASSERT_TRUE(server.Start({"tcp://127.0.0.1:0"}, Options{.loops = 1}, EchoHandler).ok());
  std::string uri = server.ListenAddresses()[0];
  Loops loops;
  ASSERT_TRUE(loops.Run([&] {
    auto c = Dial(uri, absl::Now() + absl::Seconds(5));
    ASSERT_TRUE(c.ok()) << c.status();
    ASSERT_TRUE((*c)->WriteAll("round trip").ok());
    char buf[10];
    EXPECT_TRUE((*c)->ReadFull(buf).ok());
    EXPECT_EQ(std::string(buf, 10), "round trip");
    auto bad = Dial("tcp://127.0.0.1:1", absl::Now() + absl::Seconds(5));
    EXPECT_FALSE(bad.ok());
  }));
  server.Stop(absl::Now() + absl::Seconds(2));
  EXPECT_TRUE(server.Wait().ok());
}

}  // namespace
}  // namespace netloop::fiber
