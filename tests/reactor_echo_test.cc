// Echo over real loopback sockets in every engine configuration.
#include <array>
#include <chrono>
#include <map>
#include <atomic>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#ifndef _WIN32
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

#include "gtest/gtest.h"
#include "reactor/netloop.h"
#include "tests/test_util.h"

namespace netloop {
namespace {

using testing::CloseClient;
using testing::Connect;
using testing::Pattern;
using testing::ReadExactly;
using testing::WriteAll;

class EchoHandler : public EventHandler {
 public:
  Action OnOpen(Conn& conn) override {
    opens.fetch_add(1);
    std::lock_guard<std::mutex> lock(mu);
    loops_seen.push_back(conn.loop_index());
    peers_seen.push_back(conn.RemoteAddress().ToString());
    return Action::kNone;
  }
  Action OnTraffic(Conn& conn) override {
    ByteView b = conn.Next();
    std::string_view pieces[] = {b.first, b.second};
    EXPECT_TRUE(conn.Writev(pieces).ok());
    return Action::kNone;
  }
  void OnClose(Conn&, const absl::Status&) override { closes.fetch_add(1); }

  std::atomic<int> opens{0};
  std::atomic<int> closes{0};
  std::mutex mu;
  std::vector<int> loops_seen;
  std::vector<std::string> peers_seen;  // "ip:port" of the peer, same order
};

using Config = std::tuple<AcceptMode, LoadBalancing, int /*loops*/, bool /*edge*/>;

class EchoConfigTest : public ::testing::TestWithParam<Config> {};

TEST_P(EchoConfigTest, EchoesOnEveryConnection) {
  auto [mode, policy, loops, edge] = GetParam();
  Options o;
  o.accept_mode = mode;
  o.load_balancing = policy;
  o.loops = loops;
  o.edge_triggered = edge;
  EchoHandler h;
  Engine engine;
#ifdef _WIN32
  if (mode == AcceptMode::kReusePort) {
    // No SO_REUSEPORT on Windows: a clear error, not a silent fallback.
    absl::Status refused = engine.Start(h, {"tcp://127.0.0.1:0"}, o);
    EXPECT_TRUE(absl::IsInvalidArgument(refused)) << refused;
    EXPECT_NE(refused.message().find("kAcceptor"), absl::string_view::npos) << refused;
    return;
  }
#endif
  ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, o).ok());
  std::string uri = engine.ListenAddresses()[0];
  EXPECT_NE(testing::PortOf(uri), 0);
  constexpr int kConns = 12;
  std::vector<SocketHandle> fds;
  for (int i = 0; i < kConns; ++i) {
    SocketHandle fd = Connect(uri);
    ASSERT_TRUE(IsValidSocket(fd));
    fds.push_back(fd);
  }
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < kConns; ++i) {
      std::string msg = Pattern(100 + 1000 * round + i, i * 31 + round);
      ASSERT_TRUE(WriteAll(fds[i], msg));
      auto got = ReadExactly(fds[i], msg.size());
      ASSERT_TRUE(got.has_value());
      ASSERT_EQ(*got, msg);
    }
  }
  EXPECT_TRUE(testing::WaitFor([&] { return engine.CountConnections() == kConns; }));
  for (SocketHandle fd : fds) CloseClient(fd);
  EXPECT_TRUE(testing::WaitFor([&] { return h.closes.load() == kConns; }));
  engine.Stop(absl::Now() + absl::Seconds(5));
  EXPECT_TRUE(engine.Wait().ok());
  EXPECT_EQ(h.opens.load(), kConns);
  EXPECT_EQ(h.closes.load(), kConns);
}

INSTANTIATE_TEST_SUITE_P(
    AllConfigs, EchoConfigTest,
    ::testing::Combine(::testing::Values(AcceptMode::kReusePort, AcceptMode::kAcceptor),
                       ::testing::Values(LoadBalancing::kRoundRobin,
                                         LoadBalancing::kLeastConnections,
                                         LoadBalancing::kSourceAddrHash),
                       ::testing::Values(1, 3), ::testing::Bool()));

TEST(EchoAddressTest, Ipv6UnixAndSeveralListenersInOneEngine) {
  EchoHandler h;
  Engine engine;
  Options o;
  o.loops = 2;
#ifdef _WIN32
  // AF_UNIX with AcceptEx is not served on Windows yet: TCP only there.
  std::vector<std::string> listen = {"tcp4://127.0.0.1:0", "tcp6://[::1]:0"};
#else
  std::string path = "/tmp/netloop_echo_test_" + std::to_string(getpid()) + ".sock";
  std::vector<std::string> listen = {"tcp4://127.0.0.1:0", "tcp6://[::1]:0", "unix://" + path};
#endif
  ASSERT_TRUE(engine.Start(h, listen, o).ok());
  std::vector<std::string> uris = engine.ListenAddresses();
  ASSERT_EQ(uris.size(), listen.size());
  EXPECT_NE(uris[1].find("[::1]"), std::string::npos);
  for (const std::string& uri : uris) {
    SocketHandle fd = Connect(uri);
    ASSERT_TRUE(IsValidSocket(fd)) << uri;
    std::string msg = Pattern(5000, 9);
    ASSERT_TRUE(WriteAll(fd, msg));
    auto got = ReadExactly(fd, msg.size());
    ASSERT_TRUE(got.has_value()) << uri;
    EXPECT_EQ(*got, msg) << uri;
    CloseClient(fd);
  }
  engine.Stop(absl::Now() + absl::Seconds(5));
  EXPECT_TRUE(engine.Wait().ok());
#ifndef _WIN32
  unlink(path.c_str());
#endif
}

// Small read buffer and budget: edge-triggered reads stop at the budget and
// the loop re-invokes the connection; nothing may be lost or reordered.
TEST(EchoAddressTest, EdgeTriggeredReadBudgetAndAbstractUnixSocket) {
  for (bool edge : {true, false}) {
    EchoHandler h;
    Engine engine;
    Options o;
    o.loops = 2;
    o.edge_triggered = edge;
    o.read_buffer_size = 4096;
    o.read_budget_per_event = 8192;
#ifdef _WIN32
    // No abstract unix sockets on Windows: two TCP listeners instead.
    std::vector<std::string> listen = {"tcp://127.0.0.1:0", "tcp://127.0.0.1:0"};
#else
    // Sandboxed test runs may share a pid (PID namespaces) but not the
    // abstract-socket namespace: add the clock so parallel runs differ.
    std::string abstract =
        "unix://@netloop_echo_" + std::to_string(getpid()) + "_" +
        std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
    std::vector<std::string> listen = {"tcp://127.0.0.1:0", abstract};
#endif
    ASSERT_TRUE(engine.Start(h, listen, o).ok());
#ifndef _WIN32
    ASSERT_EQ(engine.ListenAddresses()[1], abstract);
#endif
    for (const std::string& uri : engine.ListenAddresses()) {
      SocketHandle fd = Connect(uri);
      ASSERT_TRUE(IsValidSocket(fd)) << uri;
      std::string msg = Pattern(2 << 20, edge ? 1 : 2);
      std::thread writer([&] { EXPECT_TRUE(WriteAll(fd, msg)); });
      auto got = ReadExactly(fd, msg.size());
      writer.join();
      ASSERT_TRUE(got.has_value()) << uri;
      EXPECT_TRUE(*got == msg) << uri << " edge=" << edge;
      CloseClient(fd);
    }
    engine.Stop(absl::Now() + absl::Seconds(5));
    EXPECT_TRUE(engine.Wait().ok());
    EXPECT_EQ(h.opens.load(), 2);
    EXPECT_EQ(h.closes.load(), 2);
  }
}

std::vector<int> OpenAndCountPerLoop(LoadBalancing policy, int conns) {
  EchoHandler h;
  Engine engine;
  Options o;
  o.loops = 3;
  o.accept_mode = AcceptMode::kAcceptor;
  o.load_balancing = policy;
  std::vector<int> per_loop(3, 0);
  if (!engine.Start(h, {"tcp://127.0.0.1:0"}, o).ok()) return per_loop;
  std::vector<SocketHandle> fds;
  for (int i = 0; i < conns; ++i) fds.push_back(Connect(engine.ListenAddresses()[0]));
  testing::WaitFor([&] { return h.opens.load() == conns; });
  {
    std::lock_guard<std::mutex> lock(h.mu);
    for (int l : h.loops_seen) per_loop[l]++;
  }
  for (SocketHandle fd : fds) CloseClient(fd);
  engine.Stop(absl::Now() + absl::Seconds(5));
  (void)engine.Wait();
  return per_loop;
}

TEST(LoadBalancingTest, RoundRobinSpreadsEvenly) {
  EXPECT_EQ(OpenAndCountPerLoop(LoadBalancing::kRoundRobin, 30), (std::vector<int>{10, 10, 10}));
}

// Clients bound to 16 different loopback sources, 4 connections each: every
// source's connections share one loop, and the sources spread over more than
// one loop (a constant hash would put them all on one).
TEST(LoadBalancingTest, SourceHashKeepsEachSourceOnOneLoopAndSpreadsSources) {
#ifdef _WIN32
  GTEST_SKIP() << "binds clients to 127.0.0.2 and up: POSIX socket calls";
#else
  constexpr int kSources = 16, kPerSource = 4;
  EchoHandler h;
  Engine engine;
  Options o;
  o.loops = 3;
  o.accept_mode = AcceptMode::kAcceptor;
  o.load_balancing = LoadBalancing::kSourceAddrHash;
  ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, o).ok());
  // Client "ip:port" -> source index (ports repeat across sources).
  std::map<std::string, int> source_of_peer;
  std::vector<int> fds;
  sockaddr_in server{};
  server.sin_family = AF_INET;
  server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  server.sin_port = htons(testing::PortOf(engine.ListenAddresses()[0]));
  for (int s = 0; s < kSources; ++s) {
    for (int k = 0; k < kPerSource; ++k) {
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in src{};
      src.sin_family = AF_INET;
      src.sin_addr.s_addr = htonl(0x7f000002 + s);  // 127.0.0.2 ...
      ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof(src)), 0);
      ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&server), sizeof(server)), 0);
      socklen_t len = sizeof(src);
      getsockname(fd, reinterpret_cast<sockaddr*>(&src), &len);
      source_of_peer[SocketAddress(reinterpret_cast<sockaddr*>(&src), len).ToString()] = s;
      fds.push_back(fd);
    }
  }
  ASSERT_TRUE(testing::WaitFor([&] { return h.opens.load() == kSources * kPerSource; }));
  std::map<int, std::set<int>> loops_of_source;
  std::set<int> loops_used;
  {
    std::lock_guard<std::mutex> lock(h.mu);
    ASSERT_EQ(h.peers_seen.size(), h.loops_seen.size());
    for (size_t i = 0; i < h.peers_seen.size(); ++i) {
      loops_of_source[source_of_peer.at(h.peers_seen[i])].insert(h.loops_seen[i]);
      loops_used.insert(h.loops_seen[i]);
    }
  }
  for (const auto& [source, loops] : loops_of_source) {
    EXPECT_EQ(loops.size(), 1u) << "source 127.0.0." << source + 2 << " was split";
  }
  EXPECT_GT(loops_used.size(), 1u) << "16 sources all hashed to one loop";
  for (int fd : fds) close(fd);
  engine.Stop(absl::Now() + absl::Seconds(5));
  EXPECT_TRUE(engine.Wait().ok());
#endif
}

TEST(LoadBalancingTest, LeastConnectionsBalances) {
  std::vector<int> per_loop = OpenAndCountPerLoop(LoadBalancing::kLeastConnections, 30);
  for (int n : per_loop) EXPECT_EQ(n, 10);
}

}  // namespace
}  // namespace netloop
