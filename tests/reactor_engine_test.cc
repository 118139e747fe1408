// Engine lifecycle over loopback: graceful stop with draining, forced stop at
// the deadline, the ticker, loop timers and task ordering, 10k connections.
#ifndef _WIN32
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "reactor/fault_injection.h"
#include "reactor/netloop.h"
#ifndef _WIN32
#include "tests/client_process.h"
#endif
#include "tests/test_util.h"

namespace netloop {
namespace {

using testing::CloseClient;
using testing::Connect;
using testing::ReadExactly;
using testing::ReadToEof;
using testing::WaitFor;
using testing::WriteAll;

// On open, queues `bytes` of output (more than the socket takes).
class Sender : public EventHandler {
 public:
  explicit Sender(size_t bytes) : bytes_(bytes) {}
  Action OnOpen(Conn& conn) override {
    (void)conn.Write(std::string(bytes_, 's'));
    opens.fetch_add(1);
    return Action::kNone;
  }
  void OnClose(Conn&, const absl::Status& reason) override {
    std::lock_guard<std::mutex> lock(mu);
    reasons.push_back(reason);
  }
  void OnShutdown(Engine&) override { shutdowns.fetch_add(1); }
  size_t bytes_;
  std::atomic<int> opens{0}, shutdowns{0};
  std::mutex mu;
  std::vector<absl::Status> reasons;
};

TEST(EngineStopTest, PendingOutboundDrainsBeforeClose) {
  Sender h(8 << 20);
  Engine engine;
  Options o;
  o.loops = 2;
  o.write_high_water = 0;
  ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, o).ok());
  std::vector<SocketHandle> fds;
  for (int i = 0; i < 4; ++i) fds.push_back(Connect(engine.ListenAddresses()[0], 30));
  ASSERT_TRUE(WaitFor([&] { return h.opens.load() == 4; }));
  engine.Stop(absl::Now() + absl::Seconds(20));
  for (SocketHandle fd : fds) {
    auto got = ReadToEof(fd, 16 << 20);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->size(), size_t{8} << 20) << "every queued byte arrives before EOF";
    CloseClient(fd);
  }
  EXPECT_TRUE(engine.Wait().ok());
  EXPECT_EQ(h.shutdowns.load(), 1);
  std::lock_guard<std::mutex> lock(h.mu);
  ASSERT_EQ(h.reasons.size(), 4u) << "OnClose once per connection";
  for (const auto& r : h.reasons) EXPECT_EQ(GetCloseReason(r), CloseReason::kClosed) << r;
}

TEST(EngineStopTest, NonReadingClientIsCutAtTheDeadline) {
  Sender h(16 << 20);
  Engine engine;
  Options o;
  o.loops = 1;
  o.write_high_water = 0;
  ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, o).ok());
  SocketHandle fd = Connect(engine.ListenAddresses()[0]);
  ASSERT_TRUE(WaitFor([&] { return h.opens.load() == 1; }));
  absl::Time start = absl::Now();
  engine.Stop(absl::Now() + absl::Milliseconds(300));
  EXPECT_TRUE(engine.Wait().ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  std::lock_guard<std::mutex> lock(h.mu);
  ASSERT_EQ(h.reasons.size(), 1u);
  EXPECT_EQ(GetCloseReason(h.reasons[0]), CloseReason::kEngineStopping) << h.reasons[0];
  CloseClient(fd);
}

TEST(EngineStopTest, StopIsIdempotentAndNewConnectionsAreRefused) {
  Sender h(10);
  Engine engine;
  ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, Options{.loops = 2}).ok());
  std::string uri = engine.ListenAddresses()[0];
  std::thread t1([&] { engine.Stop(absl::Now() + absl::Seconds(1)); });
  std::thread t2([&] { engine.Stop(absl::Now() + absl::Seconds(1)); });
  t1.join();
  t2.join();
  EXPECT_TRUE(engine.Wait().ok());
  EXPECT_EQ(h.shutdowns.load(), 1);
  EXPECT_FALSE(IsValidSocket(Connect(uri, 1))) << "listeners are closed";
}

class Ticker : public EventHandler {
 public:
  TickResult OnTick() override {
    int n = ticks.fetch_add(1) + 1;
    return {absl::Milliseconds(10), n >= 5 ? Action::kShutdown : Action::kNone};
  }
  std::atomic<int> ticks{0};
};

TEST(EngineTickTest, OnTickRepeatsAndCanShutDown) {
  Ticker h;
  Options o;
  o.loops = 1;
  o.ticker = true;
  absl::Time start = absl::Now();
  EXPECT_TRUE(Engine::Run(h, {}, o).ok()) << "Run returns once OnTick shuts down";
  EXPECT_EQ(h.ticks.load(), 5);
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

// Engine::StopOnSignals: SIGTERM (and SIGINT) stop the engine gracefully.
TEST(EngineSignalTest, SigtermStopsTheEngine) {
#ifdef _WIN32
  GTEST_SKIP() << "POSIX signals (Windows stops on console control events)";
#else
  Sender h(10);
  Engine engine;
  ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, Options{.loops = 2}).ok());
  SocketHandle fd = Connect(engine.ListenAddresses()[0]);
  ASSERT_TRUE(IsValidSocket(fd));
  ASSERT_TRUE(WaitFor([&] { return h.opens.load() == 1; }));
  engine.StopOnSignals();
  ASSERT_FALSE(engine.stopping());
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  EXPECT_TRUE(WaitFor([&] { return engine.stopping(); })) << "the signal did not stop the engine";
  EXPECT_TRUE(engine.Wait().ok());
  EXPECT_EQ(h.shutdowns.load(), 1);
  auto rest = ReadToEof(fd);
  ASSERT_TRUE(rest.has_value());
  EXPECT_EQ(*rest, std::string(10, 's')) << "greeting, then EOF";
  CloseClient(fd);
  std::lock_guard<std::mutex> lock(h.mu);
  EXPECT_EQ(h.reasons.size(), 1u);
#endif
}

TEST(EngineSignalTest, SigintFromAnotherThreadStopsTheEngine) {
#ifdef _WIN32
  GTEST_SKIP() << "POSIX signals (Windows stops on console control events)";
#else
  Sender h(1);
  Engine engine;
  ASSERT_TRUE(engine.Start(h, {}, Options{.loops = 1}).ok());
  engine.StopOnSignals();
  std::thread([] { kill(getpid(), SIGINT); }).join();
  EXPECT_TRUE(engine.Wait().ok());
  EXPECT_TRUE(engine.stopping());
#endif
}

// Binds a loopback port and listens on it without SO_REUSEPORT, so no engine
// can bind it; returns its URI and the holding socket in *fd.
std::string HoldAPort(SocketHandle* fd) {
#ifdef _WIN32
  // Winsock is started by the Connect before any use of this; the holder
  // takes the port exclusively, as the engine's listeners do.
  (void)testing::Connect("tcp://127.0.0.1:9", 1);
  SOCKET s = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, reinterpret_cast<const char*>(&one),
             sizeof(one));
  *fd = static_cast<SocketHandle>(s);
  int len = sizeof(sockaddr_in);
#else
  *fd = socket(AF_INET, SOCK_STREAM, 0);
  socklen_t len = sizeof(sockaddr_in);
#endif
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(*fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(*fd, 1) != 0 ||
      getsockname(*fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    CloseClient(*fd);
    *fd = kInvalidSocket;
    return "";
  }
  return "tcp://127.0.0.1:" + std::to_string(ntohs(a.sin_port));
}

// A failed Start leaves nothing running: Wait, Stop and the destructor must
// not wait for loops that never started.
TEST(EngineStartTest, FailedStartLeavesANeverStartedEngine) {
  SocketHandle holder = kInvalidSocket;
  const std::string busy = HoldAPort(&holder);
  ASSERT_TRUE(IsValidSocket(holder));
#ifdef _WIN32
  const AcceptMode modes[] = {AcceptMode::kAcceptor};  // the only one there
#else
  const AcceptMode modes[] = {AcceptMode::kReusePort, AcceptMode::kAcceptor};
#endif
  for (AcceptMode mode : modes) {
    Sender h(1);
    {
      Engine engine;
      Options o;
      o.loops = 2;
      o.accept_mode = mode;
      // The first address binds, the second cannot (held without SO_REUSEPORT).
      absl::Status s = engine.Start(h, {"tcp://127.0.0.1:0", busy}, o);
      EXPECT_FALSE(s.ok());
      EXPECT_TRUE(engine.ListenAddresses().empty());
      EXPECT_FALSE(engine.Wait().ok()) << "Wait on a failed engine returns at once";
      engine.Stop();
      EXPECT_FALSE(engine.Dial(busy).ok());
      // A second Start on the same engine may succeed.
      ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, o).ok());
      SocketHandle fd = Connect(engine.ListenAddresses()[0]);
      EXPECT_TRUE(IsValidSocket(fd));
      EXPECT_TRUE(ReadExactly(fd, 1).has_value());
      CloseClient(fd);
    }  // ~Engine stops and waits
    EXPECT_EQ(h.shutdowns.load(), 1);
  }
  Sender unused(0);
  EXPECT_FALSE(Engine().Start(unused, {"tcp://nonsense"}).ok());
  CloseClient(holder);
}

// Regression: a Start that failed at bind, then the Engine's destructor, called
// OnShutdown on a handler whose OnBoot never ran.
TEST(EngineStartTest, FailedBindNeverCallsOnShutdown) {
  class Lifecycle : public EventHandler {
   public:
    Action OnBoot(Engine&) override {
      boots.fetch_add(1);
      return Action::kNone;
    }
    void OnShutdown(Engine&) override { shutdowns.fetch_add(1); }
    std::atomic<int> boots{0}, shutdowns{0};
  };
  SocketHandle holder = kInvalidSocket;
  const std::string busy = HoldAPort(&holder);
  ASSERT_TRUE(IsValidSocket(holder));
  Lifecycle h;
  {
    Engine engine;
    EXPECT_FALSE(engine.Start(h, {busy}).ok());
  }  // ~Engine
  EXPECT_EQ(h.boots.load(), 0);
  EXPECT_EQ(h.shutdowns.load(), 0) << "OnShutdown without OnBoot";
  CloseClient(holder);
}

// Counts client connections' OnOpen and OnClose (with their reasons).
class DialCounter : public EventHandler {
 public:
  Action OnOpen(Conn& conn) override {
    if (conn.is_client()) opens.fetch_add(1);
    return Action::kNone;
  }
  void OnClose(Conn& conn, const absl::Status& reason) override {
    if (!conn.is_client()) return;
    if (shut_down.load()) closes_after_shutdown.fetch_add(1);
    std::lock_guard<std::mutex> lock(mu);
    reasons.push_back(reason);
  }
  void OnShutdown(Engine&) override { shut_down.store(true); }
  std::atomic<bool> shut_down{false};
  std::atomic<int> closes_after_shutdown{0};
  size_t closes() {
    std::lock_guard<std::mutex> lock(mu);
    return reasons.size();
  }
  std::atomic<int> opens{0};
  std::mutex mu;
  std::vector<absl::Status> reasons;
};

// Regression: a Dial racing Stop closed its socket without OnClose. Here the
// Dial is deterministically caught in its name lookup when Stop comes.
TEST(EngineStopTest, ADialStillLookingUpItsNameGetsOnCloseWithECANCELED) {
  if (!FaultInjection::Available()) GTEST_SKIP() << "-c opt: no lookup hold";
  DialCounter h;
  Engine engine;
  Options o;
  o.loops = 1;
  ASSERT_TRUE(engine.Start(h, {}, o).ok());
  FaultInjection::HoldLookups(true);
  auto ref = engine.Dial("tcp://127.1:9");  // a name to inet_pton: looked up
  ASSERT_TRUE(ref.ok()) << ref.status();
  engine.Stop(absl::Now() + absl::Seconds(5));
  FaultInjection::HoldLookups(false);
  EXPECT_TRUE(engine.Wait().ok());
  ASSERT_EQ(h.closes(), 1u);
  EXPECT_EQ(GetCloseReason(h.reasons[0]), CloseReason::kConnectFailed) << h.reasons[0];
  EXPECT_NE(h.reasons[0].message().find("errno " + std::to_string(ECANCELED)), absl::string_view::npos)
      << h.reasons[0];
  EXPECT_EQ(h.opens.load(), 0);
}

// Dials from other threads race Stop: every Dial that returned a ConnRef gets
// exactly one OnClose before Wait returns, whichever side of the stop it
// fell on.
TEST(EngineStopTest, DialsRacingStopEachGetExactlyOneOnClose) {
  Sender server_h(0);
  Engine server;
  ASSERT_TRUE(server.Start(server_h, {"tcp://127.0.0.1:0"}).ok());
  const std::string uri = server.ListenAddresses()[0];
  for (int round = 0; round < 20; ++round) {
    DialCounter h;
    Engine client;
    Options o;
    o.loops = 2;
    ASSERT_TRUE(client.Start(h, {}, o).ok());
    std::atomic<int> dialled{0};
    std::vector<std::thread> dialers;
    for (int t = 0; t < 2; ++t) {
      dialers.emplace_back([&] {
        for (int i = 0; i < 500; ++i) {
          if (!client.Dial(uri).ok()) return;  // stopping
          dialled.fetch_add(1);
        }
      });
    }
    ASSERT_TRUE(WaitFor([&] { return dialled.load() >= 10 * (round % 5 + 1); }));
    client.Stop(absl::Now() + absl::Seconds(5));
    EXPECT_TRUE(client.Wait().ok());
    const size_t closes_at_wait = h.closes();
    for (auto& t : dialers) t.join();
    EXPECT_EQ(closes_at_wait, static_cast<size_t>(dialled.load())) << "round " << round;
    EXPECT_EQ(h.closes_after_shutdown.load(), 0) << "OnClose after OnShutdown, round " << round;
  }
  server.Stop(absl::Now() + absl::Seconds(5));
  EXPECT_TRUE(server.Wait().ok());
}

// Regression: Wait stopped the workers before the acceptor, so a connection
// accepted at the last moment was handed to a loop that had quit and its
// socket leaked. Clients keep connecting while the engine stops; afterwards
// the process holds exactly the descriptors it held before.
TEST(EngineStopTest, ConnectionsAcceptedWhileStoppingLeakNoDescriptor) {
#ifdef _WIN32
  GTEST_SKIP() << "counts descriptors in /proc";
#else
  for (int round = 0; round < 10; ++round) {
    const int baseline = testing::OpenDescriptors();
    Sender h(0);
    {
      Engine engine;
      Options o;
      o.loops = 2;
      o.accept_mode = AcceptMode::kAcceptor;
      ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, o).ok());
      const std::string uri = engine.ListenAddresses()[0];
      std::atomic<bool> done{false};
      std::atomic<int> connected{0};
      std::thread client([&] {
        for (int i = 0; i < 20000 && !done.load(); ++i) {
          SocketHandle fd = testing::Connect(uri, 1);
          if (!IsValidSocket(fd)) continue;  // refused once the listener closed
          connected.fetch_add(1);
          CloseClient(fd);
        }
      });
      ASSERT_TRUE(WaitFor([&] { return connected.load() >= 50; }));
      engine.Stop(absl::Now() + absl::Seconds(5));
      EXPECT_TRUE(engine.Wait().ok());
      done.store(true);
      client.join();
    }
    EXPECT_EQ(testing::OpenDescriptors(), baseline) << "round " << round;
  }
#endif
}

class CountingEcho : public EventHandler {
 public:
  Action OnTraffic(Conn& conn) override {
    ByteView b = conn.Next();
    std::string_view pieces[] = {b.first, b.second};
    (void)conn.Writev(pieces);
    return Action::kNone;
  }
};

// The clients live in a child process (forked before any engine thread
// exists), so the server side alone holds 10,000 descriptors.
TEST(EngineScaleTest, TenThousandConnections) {
#ifdef _WIN32
  GTEST_SKIP() << "the clients are a forked process";
#else
  constexpr int kConns = 10000;
  testing::RaiseFdLimit();
  testing::ClientProcess clients({.connections = kConns});  // before any engine thread
  ASSERT_TRUE(clients.forked());
  CountingEcho h;
  Engine engine;
  Options o;
  o.loops = 2;
  o.backlog = 4096;
  ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, o).ok());
  clients.Begin(testing::PortOf(engine.ListenAddresses()[0]));
  ASSERT_TRUE(clients.WaitReady(90000)) << "the child did not finish its echoes in time";
  EXPECT_EQ(engine.CountConnections(), static_cast<size_t>(kConns));
  EXPECT_TRUE(clients.Finish());
  EXPECT_TRUE(WaitFor([&] { return engine.CountConnections() == 0; }, 30000));
  engine.Stop(absl::Now() + absl::Seconds(5));
  EXPECT_TRUE(engine.Wait().ok());
#endif
}

}  // namespace
}  // namespace netloop
