// FiberConn over socketpairs: Go's deadline semantics in the cases not
// covered by fiber_bridge_test (shortened, moved into the past, keeps failing
// until moved, write deadlines), errors, unread bytes, ReadView's shared
// buffer surviving a parked write, and misuse reported as errors.
#include <errno.h>
#include <pthread.h>
#if !defined(_WIN32)
#include <fcntl.h>
#endif

#include <atomic>
#include <cstdio>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "fiberbridge/fiber_conn.h"
#include "fiberbridge/scheduler.h"
#include "fiberbridge/sync.h"
#include "gtest/gtest.h"
#include "reactor/clock.h"
#include "reactor/errors.h"
#include "reactor/internal/platform.h"
#include "tests/fiber_test_util.h"
#include "tests/test_util.h"

namespace netloop::fiber {
namespace {

using netloop::testing::CloseClient;
using netloop::testing::Pattern;
using netloop::testing::ReadExactly;
using netloop::testing::ReadToEof;
using netloop::testing::WaitFor;
using netloop::testing::SendNow;
using netloop::testing::ShutdownClientWrite;
using netloop::testing::WriteAll;
using testing::ListenOnLoopback;
using testing::Loops;
using testing::Pair;

// Fills the kernel buffers of a socketpair from the fiber side so that the
// next write parks.
void FillSendBuffer(FiberConn& c) {
  std::string chunk(64 * 1024, 'f');
  for (int i = 0; i < 1000; ++i) {
    // The fiber's socket is non-blocking: a send that finds no room fails.
    // (SendNow would leave a Windows socket blocking afterwards.)
    if (netloop::testing::SendSome(c.fd(), chunk.data(), chunk.size()) <= 0) return;
  }
  ADD_FAILURE() << "the socket buffer never filled";
}

TEST(FiberConnDeadlineTest, PastDeadlineKeepsFailingUntilMoved) {
  Loops loops;
  Pair p;
  ASSERT_TRUE(WriteAll(p.test_end, "queued"));
  ASSERT_TRUE(loops.Run([&] {
    auto c = FiberConn::Adopt(p.fiber_end);
    ASSERT_TRUE(c.ok());
    FiberConn& conn = **c;
    conn.SetReadDeadline(absl::Now() - absl::Milliseconds(1));
    char buf[16];
    for (int i = 0; i < 3; ++i) {
      EXPECT_TRUE(absl::IsDeadlineExceeded(conn.Read(buf).status())) << i;
      EXPECT_TRUE(absl::IsDeadlineExceeded(conn.ReadView().status())) << i;
      (void)fiber::SleepFor(absl::Milliseconds(5));  // time passing does not help
    }
    // Only the read side expired.
    EXPECT_TRUE(conn.WriteAll("w").ok());
    // Moved into the future: the queued bytes are readable again.
    conn.SetReadDeadline(absl::Now() + absl::Seconds(30));
    absl::StatusOr<size_t> n = conn.Read(buf);
    ASSERT_TRUE(n.ok()) << n.status();
    EXPECT_EQ(std::string(buf, *n), "queued");
  }));
  auto w = ReadExactly(p.test_end, 1);
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(*w, "w");
}

TEST(FiberConnDeadlineTest, ShortenedWhileParkedFiresAtTheNewTime) {
  Loops loops;
  Pair p;
  ASSERT_TRUE(loops.Run([&] {
    auto c = FiberConn::Adopt(p.fiber_end);
    ASSERT_TRUE(c.ok());
    FiberConn* conn = c->get();
    absl::Time start = absl::Now();
    conn->SetReadDeadline(start + absl::Seconds(30));
    Spawn([conn, start] {
      (void)fiber::SleepFor(absl::Milliseconds(10));
      conn->SetReadDeadline(start + absl::Milliseconds(60));
    });
    char buf[8];
    auto n = conn->Read(buf);
    absl::Duration took = absl::Now() - start;
    EXPECT_TRUE(absl::IsDeadlineExceeded(n.status())) << n.status();
    EXPECT_GE(took, absl::Milliseconds(55));
    EXPECT_LT(took, absl::Seconds(10)) << "still waited for the old, later deadline";
  }));
}

TEST(FiberConnDeadlineTest, MovedIntoThePastWhileParkedWakesAtOnce) {
  Loops loops;
  Pair p;
  ASSERT_TRUE(loops.Run([&] {
    auto c = FiberConn::Adopt(p.fiber_end);
    ASSERT_TRUE(c.ok());
    FiberConn* conn = c->get();
    absl::Time start = absl::Now();
    Spawn([conn] {
      (void)fiber::SleepFor(absl::Milliseconds(20));
      conn->SetDeadline(absl::UnixEpoch());  // Go's idiom to interrupt a blocked call
    });
    char buf[8];
    auto n = conn->Read(buf);  // no deadline when it parked
    EXPECT_TRUE(absl::IsDeadlineExceeded(n.status())) << n.status();
    EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  }));
}

TEST(FiberConnDeadlineTest, ClearedWhileParkedNeverFires) {
  Loops loops;
  Pair p;
  std::atomic<bool> cleared{false};
  std::atomic<bool> returned{false};
  absl::StatusOr<size_t> result = 0;
  std::string got;
  Spawn(loops.loop(), [&] {
    auto c = FiberConn::Adopt(p.fiber_end);
    ASSERT_TRUE(c.ok());
    FiberConn* conn = c->get();
    conn->SetReadDeadline(absl::Now() + absl::Milliseconds(40));
    Spawn([conn, &cleared] {
      (void)fiber::SleepFor(absl::Milliseconds(10));
      conn->SetReadDeadline(absl::InfiniteFuture());
      cleared = true;
    });
    char buf[8];
    result = conn->Read(buf);
    if (result.ok()) got.assign(buf, *result);
    returned = true;
  });
  ASSERT_TRUE(WaitFor([&] { return cleared.load(); }));
  // Well past the original deadline, the reader must still be parked.
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  EXPECT_FALSE(returned.load()) << "the cleared deadline fired: " << result.status();
  ASSERT_TRUE(WriteAll(p.test_end, "data"));
  ASSERT_TRUE(WaitFor([&] { return returned.load(); }));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(got, "data");
}

TEST(FiberConnDeadlineTest, WriteDeadlineExpiresWhileParkedOnAFullBuffer) {
  Loops loops;
  Pair p;
  ASSERT_TRUE(loops.Run([&] {
    auto c = FiberConn::Adopt(p.fiber_end);
    ASSERT_TRUE(c.ok());
    FiberConn& conn = **c;
    FillSendBuffer(conn);
    conn.SetWriteDeadline(absl::Now() + absl::Milliseconds(50));
    absl::Time start = absl::Now();
    absl::Status s = conn.WriteAll(std::string(4096, 'x'));  // parks: nobody reads
    EXPECT_TRUE(absl::IsDeadlineExceeded(s)) << s;
    EXPECT_GE(absl::Now() - start, absl::Milliseconds(45));
    EXPECT_TRUE(absl::IsDeadlineExceeded(conn.WriteAll("y"))) << "stays expired";
    // The read side has its own deadline and still works.
    char buf[4];
    ASSERT_TRUE(WriteAll(p.test_end, "r"));
    absl::StatusOr<size_t> n = conn.Read(buf);
    EXPECT_TRUE(n.ok()) << n.status();
  }));
}

TEST(FiberConnTest, ReportsEofResetAndUseAfterClose) {
  Loops loops;
  Pair eof, reset;
  ASSERT_TRUE(loops.Run([&] {
    auto a = FiberConn::Adopt(eof.fiber_end);
    auto b = FiberConn::Adopt(reset.fiber_end);
    ASSERT_TRUE(a.ok() && b.ok());
    char buf[8];
    // EOF while parked: another fiber half-closes the peer end.
    Spawn([fd = eof.test_end] {
      (void)fiber::SleepFor(absl::Milliseconds(10));
      ShutdownClientWrite(fd);
    });
    absl::StatusOr<size_t> n = (*a)->Read(buf);
    EXPECT_TRUE(IsPeerClosed(n.status())) << n.status();
    EXPECT_TRUE(IsPeerClosed((*a)->ReadFull(buf))) << "EOF mid-ReadFull";
    // Writing to a closed peer: an error status, no SIGPIPE.
    CloseClient(reset.test_end);
    reset.test_end = kInvalidSocket;
    // (Windows may take a whole write before the reset comes back: write
    // until it fails, boundedly.)
    absl::Status w;
    for (int i = 0; i < 64 && w.ok(); ++i) w = (*b)->WriteAll(std::string(256 * 1024, 'z'));
    EXPECT_FALSE(w.ok());
    EXPECT_EQ(GetCloseReason(w), CloseReason::kReset) << w;
    // Use after Close.
    (*a)->Close();
    (*a)->Close();  // idempotent
    EXPECT_EQ((*a)->fd(), kInvalidSocket);
    EXPECT_EQ(GetCloseReason((*a)->Read(buf).status()), CloseReason::kClosed);
    EXPECT_EQ(GetCloseReason((*a)->WriteAll("x")), CloseReason::kClosed);
    EXPECT_FALSE((*a)->CloseWrite().ok());
  }));
}

TEST(FiberConnTest, UnreadBytesComeFirstAndReadFullSpansSegments) {
  Loops loops;
  Pair p;
  std::thread feeder([&] {
    for (const char* piece : {"34", "56", "789"}) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      WriteAll(p.test_end, piece);
    }
  });
  ASSERT_TRUE(loops.Run([&] {
    auto c = FiberConn::Adopt(p.fiber_end, "012");
    ASSERT_TRUE(c.ok());
    char one[1];
    ASSERT_TRUE((*c)->ReadFull(one).ok());
    EXPECT_EQ(one[0], '0');
    absl::StatusOr<std::string_view> v = (*c)->ReadView();
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(*v, "12") << "the rest of the unread bytes, before the socket";
    char buf[7];
    ASSERT_TRUE((*c)->ReadFull(buf).ok());
    EXPECT_EQ(std::string(buf, 7), "3456789");
  }));
  feeder.join();
}

// ReadView's bytes live in the loop's shared buffer; WriteAll of them that
// parks must keep its own copy, or another connection's read on the same loop
// would overwrite them while it waits.
TEST(FiberConnTest, ParkedWriteOfAReadViewSurvivesOtherReadsOnTheLoop) {
  Loops loops;
  Pair src, noise;
  const std::string big = Pattern(256 * 1024, 11);
  std::atomic<bool> relayed{false};
  std::atomic<int> noise_reads{0};
  // Fiber 1 reads a view from `src` and writes it back to `src` without the
  // peer reading: the write parks. Fiber 2 meanwhile reads other bytes
  // through the same loop buffer.
  Spawn(loops.loop(), [&] {
    auto c = FiberConn::Adopt(src.fiber_end);
    ASSERT_TRUE(c.ok());
    std::string collected;
    while (collected.size() < big.size()) {
      absl::StatusOr<std::string_view> v = (*c)->ReadView();
      ASSERT_TRUE(v.ok());
      ASSERT_TRUE((*c)->WriteAll(*v).ok());
      collected.append(v->size(), '.');
    }
    relayed = true;
  });
  Spawn(loops.loop(), [&] {
    auto c = FiberConn::Adopt(noise.fiber_end);
    ASSERT_TRUE(c.ok());
    for (;;) {
      absl::StatusOr<std::string_view> v = (*c)->ReadView();
      if (!v.ok()) return;
      noise_reads++;
    }
  });
  std::thread writer([&] { WriteAll(src.test_end, big); });
  std::thread noisy([&] {
    std::string junk(60000, '#');
    for (int i = 0; i < 50; ++i) WriteAll(noise.test_end, junk);
    ShutdownClientWrite(noise.test_end);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let writes park
  auto echoed = ReadExactly(src.test_end, big.size());
  writer.join();
  noisy.join();
  ASSERT_TRUE(echoed.has_value());
  EXPECT_TRUE(*echoed == big) << "echoed bytes were overwritten while parked";
  EXPECT_TRUE(WaitFor([&] { return relayed.load(); }));
  EXPECT_GT(noise_reads.load(), 0);
}

TEST(FiberConnTest, MisuseIsAnErrorNotAHang) {
  Loops loops(2);
  Pair p;
  std::unique_ptr<FiberConn> conn;
  ASSERT_TRUE(loops.Run([&] {
    auto c = FiberConn::Adopt(p.fiber_end);
    ASSERT_TRUE(c.ok());
    conn = std::move(*c);
    // A second reader on the same direction while one is parked.
    FiberConn* raw = conn.get();
    bool first_returned = false;
    Spawn([raw, &first_returned] {
      char b[4];
      (void)raw->Read(b);
      first_returned = true;
    });
    Yield();
    char b[4];
    absl::StatusOr<size_t> second = conn->Read(b);
    EXPECT_TRUE(absl::IsFailedPrecondition(second.status())) << second.status();
    EXPECT_FALSE(first_returned);
    ASSERT_TRUE(WriteAll(p.test_end, "x"));
    for (int i = 0; i < 1000 && !first_returned; ++i) (void)fiber::SleepFor(absl::Milliseconds(1));
    EXPECT_TRUE(first_returned);
  }, 0));
  // From a fiber of another loop: refused, not a data race.
  ASSERT_TRUE(loops.Run([&] {
    char b[4];
    absl::StatusOr<size_t> n = conn->Read(b);
    EXPECT_TRUE(absl::IsFailedPrecondition(n.status())) << n.status();
  }, 1));
  loops.Run([&] { conn.reset(); }, 0);
  // Off a loop thread there is nothing to adopt onto.
  Pair q;
  auto off = FiberConn::Adopt(q.fiber_end);
  EXPECT_TRUE(absl::IsFailedPrecondition(off.status())) << off.status();
}

// ---- Who owns the fd: Adopt and Serve close it on every failure path.

// Whether `fd` is closed in this process. Checked right after the call under
// test, on the same thread, while nothing else in the test opens files.
bool FdIsClosed(SocketHandle fd) {
#if defined(_WIN32)
  return !netloop::internal::IsSocket(fd);
#else
  return fcntl(fd, F_GETFD) == -1 && errno == EBADF;
#endif
}

// Whether the peer of a socketpair end sees EOF, i.e. the last copy of the
// other end was closed. Immune to the fd number being reused meanwhile.
bool PeerSeesEof(SocketHandle peer) {
  char c;
#if defined(_WIN32)
  return recv(static_cast<SOCKET>(peer), &c, 1, 0) == 0;
#else
  return recv(peer, &c, 1, 0) == 0;
#endif
}

TEST(FiberConnOwnershipTest, AdoptOffALoopThreadClosesTheFd) {
  Pair p;
  const SocketHandle fd = p.fiber_end;
  auto conn = FiberConn::Adopt(fd);
  EXPECT_TRUE(absl::IsFailedPrecondition(conn.status())) << conn.status();
  EXPECT_TRUE(FdIsClosed(fd));
  EXPECT_TRUE(PeerSeesEof(p.test_end));
}

TEST(FiberConnOwnershipTest, ServeOffALoopThreadClosesTheFd) {
  Pair p;
  const SocketHandle fd = p.fiber_end;
  bool called = false;
  absl::Status s = FiberConn::Serve(fd, {}, [&](FiberConn&) { called = true; });
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_FALSE(called);
  EXPECT_TRUE(FdIsClosed(fd));
  EXPECT_TRUE(PeerSeesEof(p.test_end));
}

// On a loop thread but not in a fiber, Serve cannot run a handler that parks:
// refused, and the fd closed, as off a loop thread.
TEST(FiberConnOwnershipTest, ServeOutsideAFiberClosesTheFd) {
  Loops loops;
  Pair p;
  const SocketHandle fd = p.fiber_end;
  std::promise<std::pair<absl::Status, bool>> result;
  bool called = false;
  loops.loop().RunInLoop([&] {
    absl::Status s = FiberConn::Serve(fd, {}, [&](FiberConn&) { called = true; });
    result.set_value({s, FdIsClosed(fd)});
  });
  auto [status, closed] = result.get_future().get();
  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
  EXPECT_FALSE(called);
  EXPECT_TRUE(closed);
  EXPECT_TRUE(PeerSeesEof(p.test_end));
}

// The loop refuses to watch a file epoll cannot poll (/dev/null: EPERM).
TEST(FiberConnOwnershipTest, AdoptAndServeCloseAnFdTheLoopRefuses) {
#if defined(_WIN32)
  GTEST_SKIP() << "a file handle is not a SocketHandle on Windows";
#else
  Loops loops;
  ASSERT_TRUE(loops.Run([&] {
    const int a = open("/dev/null", O_RDWR | O_CLOEXEC);
    ASSERT_GE(a, 0);
    auto conn = FiberConn::Adopt(a);
    EXPECT_FALSE(conn.ok());
    EXPECT_TRUE(FdIsClosed(a)) << "Adopt";
    const int b = open("/dev/null", O_RDWR | O_CLOEXEC);
    ASSERT_GE(b, 0);
    bool called = false;
    absl::Status s = FiberConn::Serve(b, {}, [&](FiberConn&) { called = true; });
    EXPECT_FALSE(s.ok());
    EXPECT_FALSE(called);
    EXPECT_TRUE(FdIsClosed(b)) << "Serve";
  }));
#endif
}

// A stopping scheduler hands out connections that are closed already.
TEST(FiberConnOwnershipTest, OnAStoppingSchedulerTheConnectionIsClosedAtOnce) {
  Loops loops;
  Pair p, q;
  ASSERT_TRUE(loops.Run([&] {
    Scheduler::Current()->BeginStop(MonotonicNanos() + 60'000'000'000);
    auto conn = FiberConn::Adopt(p.fiber_end);
    ASSERT_TRUE(conn.ok()) << conn.status();
    EXPECT_EQ((*conn)->fd(), kInvalidSocket);
    EXPECT_TRUE(FdIsClosed(p.fiber_end));
    char buf[4];
    EXPECT_EQ(GetCloseReason((*conn)->Read(buf).status()), CloseReason::kClosed);
    absl::Status read;
    EXPECT_TRUE(FiberConn::Serve(q.fiber_end, {}, [&](FiberConn& c) {
                  read = c.Read(buf).status();
                }).ok());
    EXPECT_EQ(GetCloseReason(read), CloseReason::kClosed);
    EXPECT_TRUE(FdIsClosed(q.fiber_end));
  }));
  EXPECT_TRUE(PeerSeesEof(p.test_end));
  EXPECT_TRUE(PeerSeesEof(q.test_end));
}

// On success the connection owns the fd: destroying it (Adopt) or returning
// from the handler (Serve) closes it.
TEST(FiberConnOwnershipTest, TheConnectionClosesTheFdItOwns) {
  Loops loops;
  Pair p, q;
  ASSERT_TRUE(loops.Run([&] {
    auto conn = FiberConn::Adopt(p.fiber_end);
    ASSERT_TRUE(conn.ok());
    EXPECT_EQ((*conn)->fd(), p.fiber_end);
    conn->reset();
    EXPECT_TRUE(FdIsClosed(p.fiber_end));
    bool called = false;
    EXPECT_TRUE(FiberConn::Serve(q.fiber_end, {}, [&](FiberConn& c) {
                  called = true;
                  EXPECT_EQ(c.fd(), q.fiber_end);
                }).ok());
    EXPECT_TRUE(called);
    EXPECT_TRUE(FdIsClosed(q.fiber_end));
  }));
  EXPECT_TRUE(PeerSeesEof(p.test_end));
  EXPECT_TRUE(PeerSeesEof(q.test_end));
}

TEST(FiberConnTest, AddressesOfADialedConnection) {
  Loops loops;
  int port = 0;
  const SocketHandle listener = ListenOnLoopback(4, &port);
  ASSERT_NE(listener, kInvalidSocket);
  ASSERT_TRUE(loops.Run([&] {
    auto c = Dial("tcp://127.0.0.1:" + std::to_string(port), absl::Now() + absl::Seconds(5));
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ((*c)->RemoteAddress().ToString(), "127.0.0.1:" + std::to_string(port));
    EXPECT_NE((*c)->LocalAddress().ToString().find("127.0.0.1:"), std::string::npos)
        << (*c)->LocalAddress().ToString();
    // A deadline already past fails the dial without connecting.
    auto late = Dial("tcp://127.0.0.1:" + std::to_string(port), absl::UnixEpoch());
    EXPECT_FALSE(late.ok());
  }));
  CloseClient(listener);
}

// ---- Dial never resolves a name on the loop thread.

// A listening socket on 127.0.0.1 for Dial to reach; accepts nothing (the
// backlog completes the handshakes).
class Listener {
 public:
  Listener() { fd_ = ListenOnLoopback(16, &port_); }
  ~Listener() { CloseClient(fd_); }
  int port() const { return port_; }

 private:
  SocketHandle fd_ = kInvalidSocket;
  int port_ = 0;
};

// What the test resolver saw and did. The resolver is a plain function (as
// SetDialResolverForTesting wants), so its state is global; each test resets it.
struct ResolverProbe {
  std::mutex mu;
  std::condition_variable cv;
  int calls = 0;
  std::string address;
  bool on_offload_thread = false;
  // Set by the test: the resolver waits until `go` before resolving.
  bool go = false;
  bool returned = false;
  // Whether `go` came before the resolver's bounded wait ran out.
  bool saw_go = false;

  void Reset() {
    std::lock_guard<std::mutex> lock(mu);
    calls = 0;
    address.clear();
    on_offload_thread = go = returned = saw_go = false;
  }
  void Go() {
    std::lock_guard<std::mutex> lock(mu);
    go = true;
    cv.notify_all();
  }
  bool WaitReturned() {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(20), [this] { return returned; });
  }
};
ResolverProbe probe;

absl::StatusOr<NetAddress> ProbingResolver(const std::string& address) {
#if defined(_WIN32)
  // winpthreads keeps no name it can report back: off every loop thread is
  // what matters (the loop is never blocked on a lookup).
  const bool offload = EventLoop::Current() == nullptr;
#else
  char name[16] = {};
  pthread_getname_np(pthread_self(), name, sizeof(name));
  const bool offload = std::string(name) == "netloop-offload";
#endif
  std::unique_lock<std::mutex> lock(probe.mu);
  ++probe.calls;
  probe.address = address;
  probe.on_offload_thread = offload;
  probe.saw_go = probe.cv.wait_for(lock, std::chrono::seconds(20), [] { return probe.go; });
  absl::StatusOr<NetAddress> resolved = ParseAddress(address);
  probe.returned = true;
  probe.cv.notify_all();
  return resolved;
}

// Installs ProbingResolver for one test.
class ProbedDial {
 public:
  ProbedDial() {
    probe.Reset();
    internal::SetDialResolverForTesting(&ProbingResolver);
  }
  ~ProbedDial() {
    probe.Go();  // never leave a pool thread waiting
    internal::SetDialResolverForTesting(nullptr);
  }
};

TEST(FiberDialTest, NumericAddressesNeedNoLookup) {
  ProbedDial probed;
  Listener listener;
  ASSERT_GT(listener.port(), 0);
  Loops loops;
  ASSERT_TRUE(loops.Run([&] {
    auto c = Dial("tcp://127.0.0.1:" + std::to_string(listener.port()),
                  absl::Now() + absl::Seconds(10));
    EXPECT_TRUE(c.ok()) << c.status();
  }));
  std::lock_guard<std::mutex> lock(probe.mu);
  EXPECT_EQ(probe.calls, 0) << "a numeric address went to the resolver";
}

// The resolver runs on an offload thread and, to finish, needs a timer on the
// dialling fiber's loop to fire first: a Dial that resolved on the loop
// thread (blocking it) could not pass.
TEST(FiberDialTest, NamesResolveOnTheOffloadPoolWhileTheLoopRunsTimers) {
  ProbedDial probed;
  Listener listener;
  ASSERT_GT(listener.port(), 0);
  Loops loops;
  // "127.1" is a name to inet_pton, so it goes to the resolver; getaddrinfo
  // reads it as 127.0.0.1 without a name server.
  const std::string address = "tcp://127.1:" + std::to_string(listener.port());
  ASSERT_TRUE(loops.Run([&] {
    loops.loop().RunAtNanos(MonotonicNanos(), [] { probe.Go(); });
    auto c = Dial(address, absl::Now() + absl::Seconds(30));
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ((*c)->RemoteAddress().ToString(), "127.0.0.1:" + std::to_string(listener.port()));
  }));
  std::lock_guard<std::mutex> lock(probe.mu);
  EXPECT_EQ(probe.calls, 1);
  EXPECT_EQ(probe.address, address);
  EXPECT_TRUE(probe.on_offload_thread);
  EXPECT_TRUE(probe.saw_go) << "the loop's timer did not fire while the name was resolved";
}

// With the real resolver, a looked-up name and "localhost" connect too.
TEST(FiberDialTest, DialsNamesWithTheDefaultResolver) {
  Listener listener;
  ASSERT_GT(listener.port(), 0);
  Loops loops;
  ASSERT_TRUE(loops.Run([&] {
    for (const char* host : {"127.1", "localhost"}) {
      auto c = Dial(absl::StrCat("tcp://", host, ":", listener.port()),
                    absl::Now() + absl::Seconds(30));
      EXPECT_TRUE(c.ok()) << host << ": " << c.status();
    }
  }));
}

// A resolver that does not answer in time: Dial returns DeadlineExceeded
// while the lookup is still running (it only finishes once the test lets it,
// after Dial returned).
TEST(FiberDialTest, TheDeadlineBoundsAHangingLookup) {
  ProbedDial probed;
  Loops loops;
  bool resolver_returned_before_dial = true;
  ASSERT_TRUE(loops.Run([&] {
    auto c = Dial("tcp://hangs.invalid:80", absl::Now() + absl::Milliseconds(30));
    EXPECT_TRUE(absl::IsDeadlineExceeded(c.status())) << c.status();
    std::lock_guard<std::mutex> lock(probe.mu);
    resolver_returned_before_dial = probe.returned;
  }));
  EXPECT_FALSE(resolver_returned_before_dial);
  probe.Go();
  ASSERT_TRUE(probe.WaitReturned());  // its result is dropped; nothing is left waiting
  std::lock_guard<std::mutex> lock(probe.mu);
  EXPECT_EQ(probe.calls, 1);
}

// A scheduler that stops while a Dial waits for its lookup wakes it (Closed).
TEST(FiberDialTest, StopEndsAWaitForALookup) {
  ProbedDial probed;
  Loops loops;
  absl::Status status;
  ASSERT_TRUE(loops.Run([&] {
    Spawn([] { Scheduler::Current()->BeginStop(MonotonicNanos() + 60'000'000'000); });
    status = Dial("tcp://hangs.invalid:80").status();  // parks before the spawn runs
  }));
  EXPECT_EQ(GetCloseReason(status), CloseReason::kClosed) << status;
  probe.Go();
  EXPECT_TRUE(probe.WaitReturned());
}

// A read deadline firing in the same loop round as the bytes arrive: on a
// completion backend the cancellation races the receive's completion. Either
// outcome is allowed (bytes, or DeadlineExceeded with the bytes still there
// for the next read); losing or reordering a byte is not.
TEST(FiberConnInFlightTest, DeadlineRacingTheCompletionLosesNoBytes) {
  Loops loops;
  Pair p;
  int with_bytes = 0;
  int timed_out = 0;
  ASSERT_TRUE(loops.Run([&] {
    auto c = FiberConn::Adopt(p.fiber_end);
    ASSERT_TRUE(c.ok());
    FiberConn& conn = **c;
    EventLoop& loop = conn.loop();
    const SocketHandle peer = p.test_end;
    constexpr int kRounds = 300;
    for (int i = 0; i < kRounds; ++i) {
      const int64_t deadline = MonotonicNanos() + 200'000;
      // The byte is sent by a loop timer a little before, at, or a little
      // after the deadline's own timer.
      const int64_t send_at = deadline + (i % 5 - 3) * 50'000;
      const char byte = static_cast<char>(i & 0x7f);
      loop.RunAtNanos(send_at, [peer, byte] { (void)SendNow(peer, &byte, 1); });
      conn.SetReadDeadline(absl::Now() + absl::Nanoseconds(deadline - MonotonicNanos()));
      char got = 0;
      absl::StatusOr<size_t> n = conn.Read({&got, 1});
      if (n.ok()) {
        ++with_bytes;
      } else {
        ASSERT_TRUE(absl::IsDeadlineExceeded(n.status())) << n.status();
        ++timed_out;
        conn.SetReadDeadline(absl::InfiniteFuture());
        n = conn.Read({&got, 1});
        ASSERT_TRUE(n.ok()) << n.status();
      }
      ASSERT_EQ(*n, 1u);
      ASSERT_EQ(got, byte) << "round " << i;
    }
  }));
  EXPECT_EQ(with_bytes + timed_out, 300);
  std::printf("deadline races: %d reads returned bytes, %d timed out\n", with_bytes, timed_out);
}

// Close while one fiber is parked reading and another writing into a full
// socket: both wake with Closed, and (on a completion backend) only after
// their operations' final completions, with none left in flight.
TEST(FiberConnInFlightTest, CloseWithReceiveAndSendInFlight) {
  Loops loops;
  Pair p;
  ASSERT_TRUE(loops.Run([&] {
    auto c = FiberConn::Adopt(p.fiber_end);
    ASSERT_TRUE(c.ok());
    FiberConn* conn = c->get();
    const size_t in_flight_before = conn->loop().backend().OneShotOperationsInFlight();
    FillSendBuffer(*conn);
    absl::Status read_status, write_status;
    int returned = 0;
    Spawn([&] {
      char buf[64];
      read_status = conn->Read(buf).status();
      ++returned;
    });
    Spawn([&] {
      std::string big(1 << 20, 'b');
      write_status = conn->WriteAll(big);
      ++returned;
    });
    // Both run until they park; parking needs no time to pass.
    for (int i = 0; i < 10; ++i) fiber::Yield();
    ASSERT_EQ(returned, 0) << "a fiber did not park";
    conn->Close();
    for (int i = 0; i < 10000 && returned < 2; ++i) fiber::Yield();
    ASSERT_EQ(returned, 2);
    EXPECT_EQ(GetCloseReason(read_status), CloseReason::kClosed) << read_status;
    EXPECT_EQ(GetCloseReason(write_status), CloseReason::kClosed) << write_status;
    EXPECT_EQ(conn->loop().backend().OneShotOperationsInFlight(), in_flight_before);
    EXPECT_EQ(conn->fd(), kInvalidSocket);
  }));
  // The peer sees the end of the stream after what was sent.
  EXPECT_TRUE(ReadToEof(p.test_end).has_value());
}

}  // namespace
}  // namespace netloop::fiber
