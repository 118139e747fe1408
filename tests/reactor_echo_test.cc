// Echo over real loopback sockets in every engine configuration.
#include <unistd.h>

#include <array>
#include <atomic>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "reactor/netloop.h"
#include "tests/test_util.h"

namespace netloop {
namespace {

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
  ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, o).ok());
  std::string uri = engine.ListenAddresses()[0];
  EXPECT_NE(testing::PortOf(uri), 0);
  constexpr int kConns = 12;
  std::vector<int> fds;
  for (int i = 0; i < kConns; ++i) {
    int fd = Connect(uri);
    ASSERT_GE(fd, 0);
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
  for (int fd : fds) close(fd);
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
  std::string path = "/tmp/netloop_echo_test_" + std::to_string(getpid()) + ".sock";
  EchoHandler h;
  Engine engine;
  Options o;
  o.loops = 2;
  ASSERT_TRUE(engine.Start(h, {"tcp4://127.0.0.1:0", "tcp6://[::1]:0", "unix://" + path}, o)
                  .ok());
  std::vector<std::string> uris = engine.ListenAddresses();
  ASSERT_EQ(uris.size(), 3u);
  EXPECT_NE(uris[1].find("[::1]"), std::string::npos);
  for (const std::string& uri : uris) {
    int fd = Connect(uri);
    ASSERT_GE(fd, 0) << uri;
    std::string msg = Pattern(5000, 9);
    ASSERT_TRUE(WriteAll(fd, msg));
    auto got = ReadExactly(fd, msg.size());
    ASSERT_TRUE(got.has_value()) << uri;
    EXPECT_EQ(*got, msg) << uri;
    close(fd);
  }
  engine.Stop(absl::Now() + absl::Seconds(5));
  EXPECT_TRUE(engine.Wait().ok());
  unlink(path.c_str());
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
    std::string abstract = "unix://@netloop_echo_" + std::to_string(getpid());
    ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0", abstract}, o).ok());
    ASSERT_EQ(engine.ListenAddresses()[1], abstract);
    for (const std::string& uri : engine.ListenAddresses()) {
      int fd = Connect(uri);
      ASSERT_GE(fd, 0) << uri;
      std::string msg = Pattern(2 << 20, edge ? 1 : 2);
      std::thread writer([&] { EXPECT_TRUE(WriteAll(fd, msg)); });
      auto got = ReadExactly(fd, msg.size());
      writer.join();
      ASSERT_TRUE(got.has_value()) << uri;
      EXPECT_TRUE(*got == msg) << uri << " edge=" << edge;
      close(fd);
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
  std::vector<int> fds;
  for (int i = 0; i < conns; ++i) fds.push_back(Connect(engine.ListenAddresses()[0]));
  testing::WaitFor([&] { return h.opens.load() == conns; });
  {
    std::lock_guard<std::mutex> lock(h.mu);
    for (int l : h.loops_seen) per_loop[l]++;
  }
  for (int fd : fds) close(fd);
  engine.Stop(absl::Now() + absl::Seconds(5));
  (void)engine.Wait();
  return per_loop;
}

TEST(LoadBalancingTest, RoundRobinSpreadsEvenly) {
  EXPECT_EQ(OpenAndCountPerLoop(LoadBalancing::kRoundRobin, 30), (std::vector<int>{10, 10, 10}));
}

TEST(LoadBalancingTest, SourceHashKeepsOneClientOnOneLoop) {
  std::vector<int> per_loop = OpenAndCountPerLoop(LoadBalancing::kSourceAddrHash, 30);
  int nonzero = 0;
  for (int n : per_loop) nonzero += n > 0;
  EXPECT_EQ(nonzero, 1) << "all 127.0.0.1 connections belong on one loop";
}

TEST(LoadBalancingTest, LeastConnectionsBalances) {
  std::vector<int> per_loop = OpenAndCountPerLoop(LoadBalancing::kLeastConnections, 30);
  for (int n : per_loop) EXPECT_EQ(n, 10);
}

}  // namespace
}  // namespace netloop
