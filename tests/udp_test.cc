// UDP in the callback model over loopback, on every backend: datagram
// boundaries are kept, truncation is reported, 64 KiB datagrams go both
// ways, 10,000 datagrams from 100 peers all come back, IPv6 works, and each
// loop owns a socket of its own; and the example server echoes.
#if !defined(_WIN32)
#include <signal.h>
#include <sys/wait.h>
#endif

#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "reactor/netloop.h"
#include "reactor/socket_types.h"
#include "tests/test_util.h"
#if !defined(_WIN32)
#include "tests/server_process.h"
#endif

namespace netloop {
namespace {

using testing::CloseClient;
using testing::PortOf;
using testing::ReceiveDatagram;
using testing::SendNow;
using testing::WaitFor;

// Echoes each datagram; a truncated one is answered "T<length>" instead.
class UdpEcho : public EventHandler {
 public:
  Action OnTraffic(Conn& conn) override {
    EXPECT_TRUE(conn.is_datagram());
    {
      std::lock_guard<std::mutex> lock(mu);
      loops.insert(conn.loop_index());
      peers.insert(conn.RemoteAddress().ToString());
    }
    std::string datagram;
    conn.Next().AppendTo(&datagram);
    if (conn.DatagramTruncated()) {
      EXPECT_TRUE(conn.Write("T" + std::to_string(datagram.size())).ok());
    } else {
      EXPECT_TRUE(conn.Write(datagram).ok());
    }
    return Action::kNone;
  }
  void OnClose(Conn&, const absl::Status&) override { closes.fetch_add(1); }
  std::mutex mu;
  std::set<int> loops;
  std::set<std::string> peers;
  std::atomic<int> closes{0};
};

// A client connected to the server at `uri`.
SocketHandle Client(const std::string& uri, int family = AF_INET) {
  return testing::UdpClient(PortOf(uri), family);
}

class UdpTest : public ::testing::Test {
 protected:
  void Start(Options o, const std::string& address = "udp://127.0.0.1:0") {
    if (o.loops == 0) o.loops = 2;
    ASSERT_TRUE(engine_.Start(handler_, {address}, o).ok());
    uri_ = engine_.ListenAddresses()[0];
    ASSERT_EQ(uri_.rfind("udp://", 0), 0u) << uri_;
  }
  void TearDown() override {
    engine_.Stop(absl::Now() + absl::Seconds(5));
    EXPECT_TRUE(engine_.Wait().ok());
    EXPECT_EQ(handler_.closes.load(), 0);  // datagram sockets have no OnClose
  }
  UdpEcho handler_;
  Engine engine_;
  std::string uri_;
};

TEST_F(UdpTest, DatagramBoundariesAreKept) {
  Start({});
  SocketHandle fd = Client(uri_);
  const std::string big(1000, 'b');
  ASSERT_EQ(SendNow(fd, "a", 1), 1);
  ASSERT_EQ(SendNow(fd, big.data(), big.size()), 1000);
  ASSERT_EQ(SendNow(fd, "c", 1), 1);
  EXPECT_EQ(ReceiveDatagram(fd), "a");
  EXPECT_EQ(ReceiveDatagram(fd), big);
  EXPECT_EQ(ReceiveDatagram(fd), "c");
  CloseClient(fd);
}

TEST_F(UdpTest, TruncationIsReported) {
  Options o;
  o.udp_max_datagram = 1024;
  Start(o);
  SocketHandle fd = Client(uri_);
  const std::string datagram(2000, 'x');
  ASSERT_EQ(SendNow(fd, datagram.data(), datagram.size()), 2000);
  EXPECT_EQ(ReceiveDatagram(fd), "T1024");
  ASSERT_EQ(SendNow(fd, "fits", 4), 4);
  EXPECT_EQ(ReceiveDatagram(fd), "fits");  // the next one is whole again
  CloseClient(fd);
}

TEST_F(UdpTest, SixtyFourKibDatagramsGoBothWays) {
  Start({});
  SocketHandle fd = Client(uri_);
  testing::SetClientReceiveBuffer(fd, 1 << 20);
  const std::string datagram = testing::Pattern(65507, 3);  // the IPv4 maximum
  ASSERT_EQ(SendNow(fd, datagram.data(), datagram.size()), 65507);
  EXPECT_TRUE(ReceiveDatagram(fd) == datagram);
  CloseClient(fd);
}

TEST_F(UdpTest, TenThousandDatagramsFromAHundredPeersAllComeBack) {
  Start({});
  constexpr int kPeers = 100, kPerPeer = 100, kInFlight = 2;
  std::vector<SocketHandle> fds;
  for (int i = 0; i < kPeers; ++i) fds.push_back(Client(uri_));
  std::vector<int> sent(kPeers, 0), received(kPeers, 0);
  auto send_next = [&](int p) {
    const std::string msg = std::to_string(p) + ":" + std::to_string(sent[p]);
    ASSERT_EQ(SendNow(fds[p], msg.data(), msg.size()), static_cast<long>(msg.size()));
    ++sent[p];
  };
  // At most kInFlight per peer, so the server's socket buffers (the kernel
  // default) hold everything in flight and nothing is lost on loopback.
  for (int p = 0; p < kPeers; ++p) {
    for (int k = 0; k < kInFlight; ++k) send_next(p);
  }
  int done = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  std::vector<testing::ClientPoll> polls(kPeers);
  for (int p = 0; p < kPeers; ++p) {
    polls[p].fd = fds[p];
    polls[p].want_read = true;
  }
  while (done < kPeers * kPerPeer && absl::Now() < deadline) {
    if (testing::PollClients(polls, 1000) <= 0) continue;
    for (int p = 0; p < kPeers; ++p) {
      if (!polls[p].readable) continue;
      const std::string got = ReceiveDatagram(fds[p]);
      // Replies come back in order: this peer's next sequence number.
      ASSERT_EQ(got, std::to_string(p) + ":" + std::to_string(received[p]));
      ++received[p];
      ++done;
      if (sent[p] < kPerPeer) send_next(p);
    }
  }
  EXPECT_EQ(done, kPeers * kPerPeer);
  for (SocketHandle fd : fds) CloseClient(fd);
  std::lock_guard<std::mutex> lock(handler_.mu);
  EXPECT_EQ(handler_.peers.size(), static_cast<size_t>(kPeers));
#if defined(_WIN32)
  // No SO_REUSEPORT: one socket, on the first loop.
  EXPECT_EQ(handler_.loops.size(), 1u);
#else
  // SO_REUSEPORT spread the peers over both loops' sockets.
  EXPECT_EQ(handler_.loops.size(), 2u);
#endif
}

TEST_F(UdpTest, Ipv6Works) {
  Start({}, "udp6://[::1]:0");
  SocketHandle fd = Client(uri_, AF_INET6);
  ASSERT_EQ(SendNow(fd, "six", 3), 3);
  EXPECT_EQ(ReceiveDatagram(fd), "six");
  CloseClient(fd);
  std::lock_guard<std::mutex> lock(handler_.mu);
  ASSERT_EQ(handler_.peers.size(), 1u);
  EXPECT_EQ(handler_.peers.begin()->rfind("[::1]:", 0), 0u) << *handler_.peers.begin();
}

#if !defined(_WIN32)  // the example runs as a child process (fork)
class UdpExampleTest : public ::testing::TestWithParam<bool> {};

TEST_P(UdpExampleTest, TheExampleServerEchoes) {
  std::vector<std::string> args = {"--address", "udp://127.0.0.1:0", "--loops", "2"};
  if (GetParam()) args.push_back("--fiber");
  testing::ServerProcess server("examples/udp_echo/udp_echo", args);
  const std::string uri = server.uri();
  ASSERT_EQ(uri.rfind("udp://", 0), 0u) << uri;
  SocketHandle fd = Client(uri);
  const std::string msg = testing::Pattern(1200, 8);
  ASSERT_EQ(SendNow(fd, msg.data(), msg.size()), 1200);
  EXPECT_TRUE(ReceiveDatagram(fd) == msg);
  CloseClient(fd);
  // Stops cleanly on SIGTERM (the fibers' sockets close, their loops end).
  const int status = server.Signal(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

INSTANTIATE_TEST_SUITE_P(BothModels, UdpExampleTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Fibers" : "Callbacks";
                         });
#endif

}  // namespace
}  // namespace netloop
