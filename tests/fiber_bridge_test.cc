// The fiber bridge over loopback and socketpairs: fiber echo in every accept
// mode, Go deadline semantics, parked readers and writers, close while parked,
// Stop with parked fibers, sync across loops, Offload, HandOff, 10k fibers.
#if !defined(_WIN32)
#include <sys/ioctl.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
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
#include "reactor/socket_types.h"
#include "tests/fiber_test_util.h"
#include "tests/test_util.h"

namespace netloop::fiber {
namespace {

using netloop::testing::CloseClient;
using netloop::testing::Connect;
using netloop::testing::Pattern;
using netloop::testing::ReadExactly;
using netloop::testing::ReadToEof;
using netloop::testing::WaitFor;
using netloop::testing::WriteAll;

using testing::Loops;
using testing::Pair;

// Bytes waiting in the socket's receive queue (FIONREAD).
int UnreadBytes(SocketHandle fd) {
#if defined(_WIN32)
  u_long n = 0;
  return ioctlsocket(static_cast<SOCKET>(fd), FIONREAD, &n) == 0 ? static_cast<int>(n) : -1;
#else
  int n = 0;
  return ioctl(fd, FIONREAD, &n) == 0 ? n : -1;
#endif
}

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
#if defined(_WIN32)
  if (mode == AcceptMode::kReusePort) {
    // No SO_REUSEPORT load spreading on Windows: refused, with the way out.
    absl::Status st = server.Start({"tcp://127.0.0.1:0"}, o, EchoHandler);
    EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;
    return;
  }
#endif
  ASSERT_TRUE(server.Start({"tcp://127.0.0.1:0"}, o, EchoHandler).ok());
  std::string uri = server.ListenAddresses()[0];
  std::vector<SocketHandle> fds;
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
  for (SocketHandle fd : fds) CloseClient(fd);
  EXPECT_TRUE(WaitFor([&] { return server.CountConnections() == 0; }));
  server.Stop(absl::Now() + absl::Seconds(2));
  EXPECT_TRUE(server.Wait().ok());
}

INSTANTIATE_TEST_SUITE_P(Modes, FiberEchoTest,
                         ::testing::Combine(::testing::Values(AcceptMode::kReusePort,
                                                              AcceptMode::kAcceptor),
                                            ::testing::Values(1, 3)));

// Whether `task` is parked right now. Read on its own loop's thread (from
// another fiber or a timer callback there), so the answer is exact.
bool IsParked(const FiberTask* task) { return task != nullptr && task->parked; }

TEST(FiberConnTest, ReadAndWriteParkedAtTheSameTime) {
  Loops loops;
  Pair p;
  std::atomic<bool> reader_done{false}, writer_done{false};
  std::string big = Pattern(4 << 20, 3);
  auto conn_holder = std::make_shared<std::unique_ptr<FiberConn>>();
  std::promise<bool> both_parked;
  ASSERT_TRUE(loops.Run([&] {
    auto c = FiberConn::Adopt(p.fiber_end);
    ASSERT_TRUE(c.ok());
    *conn_holder = std::move(*c);
    FiberConn* conn = conn_holder->get();
    auto tasks = std::make_shared<std::pair<FiberTask*, FiberTask*>>();
    Spawn([conn, &reader_done, tasks] {
      tasks->first = Scheduler::CurrentTask();
      char buf[16];
      auto n = conn->Read(buf);  // parks: nothing to read yet
      EXPECT_TRUE(n.ok());
      EXPECT_EQ(std::string(buf, *n), "wake");
      reader_done = true;
    });
    Spawn([conn, &big, &writer_done, tasks] {
      tasks->second = Scheduler::CurrentTask();
      EXPECT_TRUE(conn->WriteAll(big).ok());  // parks: 4 MiB > socket buffer
      writer_done = true;
    });
    // Runs after both have run up to their first park.
    Spawn([tasks, &both_parked] {
      both_parked.set_value(IsParked(tasks->first) && IsParked(tasks->second));
    });
  }));
  ASSERT_TRUE(both_parked.get_future().get()) << "reader and writer parked at the same time";
  EXPECT_FALSE(reader_done.load());
  EXPECT_FALSE(writer_done.load());
  ASSERT_TRUE(WriteAll(p.test_end, "wake"));
  EXPECT_TRUE(WaitFor([&] { return reader_done.load(); }));
  EXPECT_FALSE(writer_done.load()) << "the writer is still parked: nobody has read yet";
  auto got = ReadExactly(p.test_end, big.size());
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(*got == big);
  EXPECT_TRUE(WaitFor([&] { return writer_done.load(); }));
  loops.Run([&] { conn_holder->reset(); });
}

// The read parks (it has not returned when a fiber queued behind it runs)
// and comes back with DeadlineExceeded: only the deadline can end it, since
// nothing is written and nothing closes the connection.
TEST(FiberDeadlineTest, ExpiresWhileParked) {
  Loops loops;
  Pair p;
  ASSERT_TRUE(loops.Run([&] {
    auto c = FiberConn::Adopt(p.fiber_end);
    ASSERT_TRUE(c.ok());
    (*c)->SetReadDeadline(absl::Now() + absl::Milliseconds(20));
    bool returned = false;
    bool parked_first = false;
    Spawn([&] { parked_first = !returned; });  // runs once the read has parked
    char buf[8];
    auto n = (*c)->Read(buf);
    returned = true;
    EXPECT_TRUE(absl::IsDeadlineExceeded(n.status())) << n.status();
    EXPECT_TRUE(parked_first) << "the read failed at once instead of parking";
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

// A deadline set and then extended while the read is parked expires at the
// new time: probe timers due after the old deadline and shortly before the
// new one both run before the read returns DeadlineExceeded (timers fire in
// deadline order, whatever the clock does).
TEST(FiberDeadlineTest, ExtendedWhileParkedExpiresAtTheNewTime) {
  Loops loops;
  Pair p;
  ASSERT_TRUE(loops.Run([&] {
    auto c = FiberConn::Adopt(p.fiber_end);
    ASSERT_TRUE(c.ok());
    FiberConn* conn = c->get();
    int probes_ran = 0;
    // Runs once the read below has parked, and does everything in one go, so
    // no time passes between setting the first deadline and extending it.
    Spawn([&] {
      const absl::Time now = absl::Now();
      conn->SetReadDeadline(now + absl::Milliseconds(20));  // arms the timer
      conn->SetReadDeadline(now + absl::Milliseconds(80));  // extend
      for (int ms : {30, 70}) {
        loops.loop().RunAtNanos(ToMonotonicNanos(now + absl::Milliseconds(ms)),
                                [&] { ++probes_ran; });
      }
    });
    char buf[8];
    auto n = conn->Read(buf);
    EXPECT_TRUE(absl::IsDeadlineExceeded(n.status())) << n.status();
    EXPECT_EQ(probes_ran, 2) << "the read returned before the new deadline";
  }));
}

// A deadline set, extended and cleared while the read is parked (all before
// either could pass) never fires: the data written after both deadlines
// would have passed is what the read returns.
TEST(FiberDeadlineTest, DataAfterClearedDeadline) {
  Loops loops;
  Pair p;
  ASSERT_TRUE(loops.Run([&] {
    auto c = FiberConn::Adopt(p.fiber_end);
    ASSERT_TRUE(c.ok());
    FiberConn* conn = c->get();
    Spawn([&] {
      const absl::Time now = absl::Now();
      conn->SetReadDeadline(now + absl::Milliseconds(20));
      conn->SetReadDeadline(now + absl::Milliseconds(40));   // extend
      conn->SetReadDeadline(absl::InfiniteFuture());         // clear
      // Wakes after the timers of both deadlines were due (deadline order).
      EXPECT_TRUE(fiber::SleepUntil(now + absl::Milliseconds(50)).ok());
      WriteAll(p.test_end, "late");
    });
    char buf[8];
    auto n = conn->Read(buf);
    ASSERT_TRUE(n.ok()) << n.status();
    EXPECT_EQ(std::string(buf, *n), "late");
  }));
}

// The idle-timeout idiom: push the read deadline before every read. It keeps
// working while data flows, fires once the peer goes quiet, and never piles
// up timers (one lazy timer per direction). The feeder writes each byte only
// once the reader is parked, so every read parks with a pushed deadline;
// while bytes are coming the idle timeout is an hour (it cannot pass by
// accident), after the last one it is 20 ms.
TEST(FiberDeadlineTest, DeadlinePushedBeforeEveryReadStaysCheap) {
  Loops loops;
  Pair p;
  constexpr int kBytes = 40;
  int reads = 0;
  size_t max_timers = 0;
  absl::Status last;
  ASSERT_TRUE(loops.Run([&] {
    auto c = FiberConn::Adopt(p.fiber_end);
    ASSERT_TRUE(c.ok());
    FiberTask* reader = Scheduler::CurrentTask();
    bool quiet = false;
    Spawn([&] {
      for (int i = 0; i < kBytes; ++i) {
        while (!IsParked(reader)) Yield();
        if (i == kBytes - 1) quiet = true;  // the reader's next push is the short one
        WriteAll(p.test_end, "x");
        Yield();
      }
    });
    char buf[8];
    for (;;) {
      (*c)->SetReadDeadline(absl::Now() + (quiet ? absl::Milliseconds(20) : absl::Hours(1)));
      auto n = (*c)->Read(buf);
      max_timers = std::max(max_timers, loops.loop().PendingTimers());
      if (!n.ok()) {
        last = n.status();
        break;
      }
      reads += static_cast<int>(*n);
    }
  }));
  EXPECT_EQ(reads, kBytes) << "every byte was read before the idle timeout";
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
// once before a loop of one-byte reads (a millisecond apart), it ends the
// loop with DeadlineExceeded while plenty of data is still waiting. A
// per-operation deadline would instead read all of it, then time out on an
// empty socket.
TEST(FiberDeadlineTest, OneDeadlineForALoopOfReadsIsTheGoMistake) {
  Loops loops;
  Pair p;
  constexpr size_t kWaiting = 4096;  // a millisecond per byte: seconds of data
  ASSERT_TRUE(WriteAll(p.test_end, std::string(kWaiting, 't')));
  int reads = 0;
  int unread_at_failure = 0;
  absl::Status last;
  ASSERT_TRUE(loops.Run([&] {
    auto c = FiberConn::Adopt(p.fiber_end);
    ASSERT_TRUE(c.ok());
    (*c)->SetReadDeadline(absl::Now() + absl::Milliseconds(30));
    char buf[1];
    for (;;) {
      auto n = (*c)->Read(buf);
      if (!n.ok()) {
        last = n.status();
        unread_at_failure = UnreadBytes((*c)->fd());
        break;
      }
      ++reads;
      (void)fiber::SleepFor(absl::Milliseconds(1));
    }
  }));
  RecordProperty("reads_before_the_deadline", reads);
  EXPECT_TRUE(absl::IsDeadlineExceeded(last)) << last;
  EXPECT_GT(unread_at_failure, 0) << "the loop ended for lack of data, not the deadline";
}

// Two readers parked on two connections: a fiber queued behind them closes
// the first (only its reader wakes, with Closed), then a plain thread closes
// the second through a FiberConnRef.
TEST(FiberConnTest, CloseFromAnotherFiberAndFromAnotherThreadWhileParked) {
  Loops loops;
  Pair p1, p2;
  FiberConnRef ref;
  std::atomic<int> woken{0};
  std::atomic<bool> first_closed{false};
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
    Spawn([conn1, &first_closed] {  // runs once both readers have parked
      conn1->Close();  // from another fiber
      first_closed = true;
    });
  }));
  ASSERT_TRUE(WaitFor([&] { return woken.load() == 1; }));
  EXPECT_TRUE(first_closed.load());
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
  std::vector<SocketHandle> fds;
  for (int i = 0; i < 20; ++i) fds.push_back(Connect(server.ListenAddresses()[0]));
  ASSERT_TRUE(WaitFor([&] { return server.CountConnections() == 20; }));
  server.Stop(absl::Now() + absl::Seconds(5));
  EXPECT_TRUE(server.Wait().ok());
  EXPECT_EQ(returned.load(), 20);
  EXPECT_EQ(closed_status.load(), 20);
  for (SocketHandle fd : fds) {
    auto eof = ReadToEof(fd);
    EXPECT_TRUE(eof.has_value() && eof->empty());
    CloseClient(fd);
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
    for (SocketHandle fd : {p1.fiber_end, p2.fiber_end}) {
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
  std::vector<SocketHandle> fds;
  for (int i = 0; i < kConns; ++i) {
    SocketHandle fd = Connect(server.ListenAddresses()[0], 20);
    ASSERT_NE(fd, kInvalidSocket) << i;
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
  for (SocketHandle fd : fds) CloseClient(fd);
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
  WaitGroup wg, waiting;
  wg.Add(4);
  waiting.Add(4);
  for (int f = 0; f < 4; ++f) {
    Spawn(loops.loop(f % 2), [&] {
      {
        MutexLock lock(mu);
        waiting.Done();  // still holding mu, which cv.Wait releases once queued
        EXPECT_TRUE(cv.Wait(mu, [&] { return ready; }).ok());
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
    // Once all four said so and mu is ours, each is queued in cv.Wait: the
    // Broadcast below is what wakes them, across both loops.
    EXPECT_TRUE(waiting.Wait().ok());
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

// The blocking call can only finish after a timer on the calling fiber's loop
// has fired three times: if it blocked the loop thread instead of running on
// the pool, the ticks could not come and its bounded wait would run out.
TEST(OffloadTest, BlockingCallDoesNotStallTheLoop) {
  // Declared before the loop, whose ticker uses them until it is destroyed.
  std::mutex mu;
  std::condition_variable cv;
  int ticks = 0;  // guarded by mu
  Loops loops(1);
  loops.loop().RunInLoop([&] {
    loops.loop().RunEvery(absl::Milliseconds(1), [&] {
      std::lock_guard<std::mutex> lock(mu);
      ++ticks;
      cv.notify_all();
    });
  });
  bool saw_ticks = false;
  bool off_loop_thread = false;
  ASSERT_TRUE(loops.Run([&] {
    const std::thread::id loop_thread = std::this_thread::get_id();
    int r = Offload([&] {
      off_loop_thread = std::this_thread::get_id() != loop_thread;
      std::unique_lock<std::mutex> lock(mu);  // a legacy blocking call
      const int start = ticks;
      saw_ticks = cv.wait_for(lock, std::chrono::seconds(10), [&] { return ticks >= start + 3; });
      return 42;
    });
    EXPECT_EQ(r, 42);
  }));
  EXPECT_TRUE(off_loop_thread);
  EXPECT_TRUE(saw_ticks) << "the loop's timer did not run while the call blocked";
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
  SocketHandle fd = Connect(engine.ListenAddresses()[0]);
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
  CloseClient(fd);
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
