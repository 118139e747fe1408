// What only a completion backend can get wrong: operations in flight when a
// connection closes or the engine stops, a provided-buffer ring that runs
// dry, multishot receives the kernel ends, UDP sockets the backend receives
// on and sends from itself. The engine is asked for io_uring
// explicitly; the test is skipped (saying why) where io_uring cannot work.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "reactor/internal/backend.h"
#include "reactor/netloop.h"
#include "tests/test_util.h"

namespace netloop {
namespace {

using testing::Connect;
using testing::WaitFor;

class Echo : public EventHandler {
 public:
  Action OnTraffic(Conn& conn) override {
    ByteView b = conn.Next();
    std::string_view pieces[] = {b.first, b.second};
    (void)conn.Writev(pieces);
    return Action::kNone;
  }
  Action OnOpen(Conn&) override {
    opens.fetch_add(1);
    return Action::kNone;
  }
  void OnClose(Conn&, const absl::Status&) override { closes.fetch_add(1); }
  void OnBackpressure(Conn&, bool on) override {
    if (on) paused.fetch_add(1);
  }
  std::atomic<int> opens{0};
  std::atomic<int> closes{0};
  std::atomic<int> paused{0};  // connections whose output reached the high-water mark
};

class IoUringTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (absl::Status s = internal::IoUringAvailable(); !s.ok()) {
      GTEST_SKIP() << "io_uring unavailable here: " << s;
    }
  }
  static Options UringOptions() {
    Options o;
    o.backend = BackendKind::kIoUring;
    o.loops = 1;
    return o;
  }
};

// Sends `data` on every fd at once (non-blocking, interleaved) while reading
// the echoes; true when every fd got exactly its bytes back.
bool EchoAllAtOnce(const std::vector<int>& fds, const std::vector<std::string>& data) {
  std::vector<size_t> sent(fds.size(), 0), got(fds.size(), 0);
  std::vector<std::string> back(fds.size());
  for (int fd : fds) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  size_t done = 0;
  for (int round = 0; round < 200000 && done < fds.size(); ++round) {
    std::vector<pollfd> polls;
    for (size_t i = 0; i < fds.size(); ++i) {
      short ev = 0;
      if (got[i] < data[i].size()) ev |= POLLIN;
      if (sent[i] < data[i].size()) ev |= POLLOUT;
      polls.push_back(pollfd{fds[i], ev, 0});
    }
    if (poll(polls.data(), polls.size(), 5000) <= 0) return false;
    for (size_t i = 0; i < fds.size(); ++i) {
      if ((polls[i].revents & POLLOUT) && sent[i] < data[i].size()) {
        ssize_t n = send(fds[i], data[i].data() + sent[i], data[i].size() - sent[i],
                         MSG_NOSIGNAL);
        if (n > 0) sent[i] += static_cast<size_t>(n);
      }
      if (polls[i].revents & (POLLIN | POLLHUP | POLLERR)) {
        char buf[65536];
        ssize_t n = recv(fds[i], buf, sizeof(buf), 0);
        if (n <= 0 && errno != EAGAIN) return false;
        if (n > 0) {
          back[i].append(buf, static_cast<size_t>(n));
          got[i] += static_cast<size_t>(n);
          if (got[i] == data[i].size()) ++done;
        }
      }
    }
  }
  for (size_t i = 0; i < fds.size(); ++i) {
    if (back[i] != data[i]) return false;
  }
  return true;
}

// 1000 connections send at once into a loop with 8 receive buffers: the ring
// runs dry again and again (the kernel ends multishot receives with ENOBUFS),
// and every receive is armed again without losing or reordering a byte.
TEST_F(IoUringTest, ABufferRingRunDryByAThousandSendersLosesNothing) {
  testing::RaiseFdLimit();
  Echo h;
  Engine engine;
  Options o = UringOptions();
  o.uring_buffer_count = 8;
  o.uring_buffer_size = 4096;
  ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, o).ok());
  ASSERT_STREQ(engine.loop(0).backend_name(), "io_uring");
  std::vector<int> fds;
  std::vector<std::string> data;
  for (int i = 0; i < 1000; ++i) {
    int fd = Connect(engine.ListenAddresses()[0]);
    ASSERT_GE(fd, 0) << i;
    fds.push_back(fd);
    data.push_back(testing::Pattern(3000 + (i % 7) * 1000, static_cast<uint32_t>(i)));
  }
  EXPECT_TRUE(EchoAllAtOnce(fds, data));
  for (int fd : fds) close(fd);
  ASSERT_TRUE(WaitFor([&] { return h.closes.load() == 1000; }));
  engine.Stop(absl::Now() + absl::Seconds(2));
  EXPECT_TRUE(engine.Wait().ok());
}

// Writes far more than the peer takes, then closes while its send is in
// flight and its receive is armed: OnClose runs once, the peer sees the
// connection end, and the operations' final completions free the connection
// (ASan reports it otherwise).
class WriteThenClose : public EventHandler {
 public:
  Action OnTraffic(Conn& conn) override {
    conn.Discard();
    (void)conn.Write(std::string(4 << 20, 'w'));
    conn.CloseWithError(absl::CancelledError("closing with a send in flight"));
    return Action::kNone;
  }
  void OnClose(Conn&, const absl::Status&) override { closes.fetch_add(1); }
  std::atomic<int> closes{0};
};

TEST_F(IoUringTest, ClosingWithReceiveAndSendInFlight) {
  WriteThenClose h;
  Engine engine;
  ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, UringOptions()).ok());
  constexpr int kConns = 50;
  std::vector<int> fds;
  for (int i = 0; i < kConns; ++i) {
    int fd = Connect(engine.ListenAddresses()[0]);
    ASSERT_GE(fd, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    ASSERT_TRUE(testing::WriteAll(fd, "go"));
    fds.push_back(fd);
  }
  ASSERT_TRUE(WaitFor([&] { return h.closes.load() == kConns; }));
  for (int fd : fds) {
    // The peer reads what arrived, then the end (FIN or reset): never a hang.
    std::optional<std::string> rest = testing::ReadToEof(fd, 8 << 20);
    (void)rest;
    close(fd);
  }
  EXPECT_EQ(engine.CountConnections(), 0u);
  engine.Stop(absl::Now() + absl::Seconds(2));
  EXPECT_TRUE(engine.Wait().ok());
}

// Stop while connections have receives armed and sends blocked on peers that
// never read: Wait returns, every OnClose ran, nothing is left held.
TEST_F(IoUringTest, StopWithOperationsInFlight) {
  Echo h;
  Engine engine;
  Options o = UringOptions();
  o.close_drain_timeout = absl::Milliseconds(200);
  ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, o).ok());
  std::vector<int> fds;
  const std::string chunk(256 * 1024, 's');
  for (int i = 0; i < 20; ++i) {
    int fd = Connect(engine.ListenAddresses()[0]);
    ASSERT_GE(fd, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    // As much as the server takes before backpressure stops it.
    for (int k = 0; k < 64; ++k) {
      if (send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL) <= 0) break;
    }
    fds.push_back(fd);
  }
  ASSERT_TRUE(WaitFor([&] { return h.opens.load() == 20; }));
  engine.Stop(absl::Now() + absl::Milliseconds(500));
  EXPECT_TRUE(engine.Wait().ok());
  EXPECT_EQ(h.closes.load(), 20);
  for (int fd : fds) close(fd);
}

// An echo sends straight from the buffer the kernel filled: writing the
// bytes OnTraffic is reading allocates no outbound ring (the engine's
// buffered bytes stay 0 right after the write), and bytes written after them
// from elsewhere (copied into the ring) still follow them on the wire.
class EchoThenMark : public EventHandler {
 public:
  Action OnTraffic(Conn& conn) override {
    std::string_view bytes = conn.PeekContiguous();
    conn.Discard(bytes.size());
    (void)conn.Write(bytes);
    if (conn.engine().stats().buffered_bytes == 0) lent.fetch_add(1);
    (void)conn.Write("|");
    deliveries.fetch_add(1);
    return Action::kNone;
  }
  std::atomic<int> lent{0};
  std::atomic<int> deliveries{0};
};

TEST_F(IoUringTest, EchoSendsFromTheReceiveBufferAndKeepsOrder) {
  EchoThenMark h;
  Engine engine;
  ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, UringOptions()).ok());
  int fd = Connect(engine.ListenAddresses()[0]);
  ASSERT_GE(fd, 0);
  std::string sent;
  std::string back;
  for (int i = 0; i < 200; ++i) {
    // Letters only, so the marker cannot appear in the data.
    std::string msg(100 + i * 37 % 4000, static_cast<char>('a' + i % 26));
    ASSERT_TRUE(testing::WriteAll(fd, msg));
    sent += msg;
    // One marker per delivery: read until every sent byte came back and the
    // marker after the last of them too.
    for (int reads = 0; reads < 10000; ++reads) {
      const size_t markers = static_cast<size_t>(std::count(back.begin(), back.end(), '|'));
      if (back.size() - markers == sent.size() && back.back() == '|') break;
      pollfd p{fd, POLLIN, 0};
      ASSERT_EQ(poll(&p, 1, 10000), 1) << "no echo within 10 s";
      char buf[65536];
      ssize_t n = recv(fd, buf, sizeof(buf), 0);
      ASSERT_GT(n, 0);
      back.append(buf, static_cast<size_t>(n));
    }
  }
  // The marker never comes before the bytes it follows, and nothing is lost
  // or reordered.
  ASSERT_FALSE(back.empty());
  EXPECT_NE(back.front(), '|');
  EXPECT_EQ(back.find("||"), std::string::npos);
  std::string without = back;
  std::erase(without, '|');
  EXPECT_TRUE(without == sent) << "bytes lost or reordered";
  EXPECT_EQ(static_cast<int>(back.size() - without.size()), h.deliveries.load());
  // Zero-copy on (nearly) every delivery: a delivery may copy only when the
  // send before it has not finished yet.
  EXPECT_GE(h.lent.load(), h.deliveries.load() / 2);
  close(fd);
  engine.Stop(absl::Now() + absl::Seconds(2));
  EXPECT_TRUE(engine.Wait().ok());
}

// Peers that send and never read must not hold the loop's receive buffers
// (an echo sends from them): with 8 buffers and 24 such peers stalled
// against full sockets, another client is still echoed, byte for byte.
TEST_F(IoUringTest, PeersThatNeverReadCannotHoldTheReceiveBuffers) {
  Echo h;
  Engine engine;
  Options o = UringOptions();
  o.uring_buffer_count = 8;
  o.uring_buffer_size = 4096;
  // A small send buffer: many sends find the socket full.
  o.socket.send_buffer_bytes = 4096;
  ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, o).ok());
  std::vector<int> stalled;
  const std::string chunk(64 * 1024, 's');
  for (int i = 0; i < 24; ++i) {
    int fd = Connect(engine.ListenAddresses()[0]);
    ASSERT_GE(fd, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    stalled.push_back(fd);
  }
  // Each peer sends until the server's output to it reaches the high-water
  // mark (its replies fill the peer's receive queue and the sockets between,
  // then backpressure stops the server reading). Bounded: at most 4000
  // rounds of 64 KiB a peer.
  for (int round = 0; round < 4000 && h.paused.load() < 24; ++round) {
    for (int fd : stalled) (void)send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
    usleep(1000);  // lets the server's echoes fill the peers' queues
  }
  ASSERT_EQ(h.paused.load(), 24);
  int good = Connect(engine.ListenAddresses()[0]);
  ASSERT_GE(good, 0);
  EXPECT_TRUE(EchoAllAtOnce({good}, {testing::Pattern(256 * 1024, 7)}));
  close(good);
  for (int fd : stalled) close(fd);
  ASSERT_TRUE(WaitFor([&] { return h.closes.load() == 25; }));
  engine.Stop(absl::Now() + absl::Seconds(2));
  EXPECT_TRUE(engine.Wait().ok());
}

// A UDP socket served by the backend itself, driven here the way a loop
// drives it (this thread is the loop thread). Echoes each datagram with
// SendDatagram and keeps what it was shown.
class DatagramEcho : public internal::DatagramSink {
 public:
  explicit DatagramEcho(internal::Backend* backend) : backend_(backend) {}
  void OnDatagram(std::string_view bytes, const sockaddr* from, socklen_t from_len,
                  bool truncated) override {
    got.emplace_back(bytes);
    truncations.push_back(truncated);
    senders.push_back(from_len == sizeof(sockaddr_in)
                          ? ntohs(reinterpret_cast<const sockaddr_in*>(from)->sin_port)
                          : 0);
    std::string_view pieces[] = {bytes.substr(0, 1), bytes.substr(std::min<size_t>(1, bytes.size()))};
    EXPECT_TRUE(backend_->SendDatagram(this, pieces, from, from_len));
  }
  void OnDatagramSendFailed(int err) override { send_failures.push_back(err); }
  void OnDatagramServingEnded(const absl::Status& why) override { ended.push_back(why); }
  std::vector<std::string> got;
  std::vector<absl::Status> ended;
  std::vector<bool> truncations;
  std::vector<uint16_t> senders;
  std::vector<int> send_failures;

 private:
  internal::Backend* backend_;
};

// An io_uring backend driven by the calling thread, as its loop would.
absl::StatusOr<std::unique_ptr<internal::Backend>> LoopThreadBackend() {
  internal::BackendOptions bo;
  bo.kind = BackendKind::kIoUring;
  auto made = internal::NewIoUringBackend(bo);
  if (made.ok()) (*made)->StartOnLoopThread();
  return made;
}

int BoundUdpSocket(uint16_t* port) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

// 100 datagrams wait before the first submission, for a socket with 8
// buffers: the multishot recvmsg takes 8, ends (ENOBUFS), and is armed again
// until all are in, in order, each with its sender; one longer than
// max_datagram is cut and says so; every echo leaves through SendDatagram;
// a send the kernel refuses reaches OnDatagramSendFailed; after
// StopReceivingDatagrams nothing more is delivered.
TEST_F(IoUringTest, DatagramsReceivedAndSentByTheBackendItself) {
  auto made = LoopThreadBackend();
  ASSERT_TRUE(made.ok()) << made.status();
  internal::Backend& backend = **made;

  uint16_t server_port = 0, client_port = 0;
  const int server = BoundUdpSocket(&server_port);
  const int client = BoundUdpSocket(&client_port);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(server_port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(client, reinterpret_cast<sockaddr*>(&to), sizeof(to)), 0);

  DatagramEcho sink(&backend);
  ASSERT_TRUE(backend.StartReceivingDatagrams(server, &sink, /*max_datagram=*/1000,
                                              /*batch=*/8).ok());
  constexpr int kCount = 100;
  std::vector<std::string> sent;
  for (int i = 0; i < kCount; ++i) {
    sent.push_back("datagram " + std::to_string(i));
    ASSERT_EQ(send(client, sent.back().data(), sent.back().size(), 0),
              static_cast<ssize_t>(sent.back().size()));
  }
  sent.push_back(std::string(1500, 'L'));  // cut to 1000
  ASSERT_EQ(send(client, sent.back().data(), sent.back().size(), 0), 1500);

  for (int round = 0; round < 1000 && sink.got.size() < sent.size(); ++round) {
    backend.Poll(100'000'000);
  }
  ASSERT_EQ(sink.got.size(), sent.size());
  for (int i = 0; i < kCount; ++i) {
    EXPECT_EQ(sink.got[i], sent[i]);
    EXPECT_FALSE(sink.truncations[i]);
    EXPECT_EQ(sink.senders[i], client_port);
  }
  EXPECT_EQ(sink.got.back(), std::string(1000, 'L'));
  EXPECT_TRUE(sink.truncations.back());

  backend.Poll(0);  // the last echoes go out with this submission
  for (size_t i = 0; i < sent.size(); ++i) {
    pollfd p{client, POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 10'000), 1) << "echo " << i << " missing";
    char buf[2000];
    const ssize_t n = recv(client, buf, sizeof(buf), 0);
    ASSERT_GT(n, 0);
    EXPECT_EQ(std::string(buf, static_cast<size_t>(n)),
              i < static_cast<size_t>(kCount) ? sent[i] : std::string(1000, 'L'));
  }
  EXPECT_TRUE(sink.send_failures.empty());
  EXPECT_TRUE(sink.ended.empty());

  // An IPv6 destination for an IPv4 socket: the kernel refuses the send.
  sockaddr_in6 v6{};
  v6.sin6_family = AF_INET6;
  v6.sin6_port = htons(client_port);
  v6.sin6_addr = in6addr_loopback;
  std::string_view one[] = {"x"};
  ASSERT_TRUE(backend.SendDatagram(&sink, one, reinterpret_cast<sockaddr*>(&v6), sizeof(v6)));
  for (int round = 0; round < 100 && sink.send_failures.empty(); ++round) {
    backend.Poll(100'000'000);
  }
  ASSERT_EQ(sink.send_failures.size(), 1u);

  backend.StopReceivingDatagrams(server, &sink);
  close(server);
  ASSERT_EQ(send(client, "late", 4, 0), 4);  // refused: nobody is bound now
  const size_t before = sink.got.size();
  for (int round = 0; round < 5; ++round) backend.Poll(10'000'000);
  EXPECT_EQ(sink.got.size(), before);
  EXPECT_FALSE(backend.SendDatagram(&sink, one, reinterpret_cast<sockaddr*>(&to), sizeof(to)));
  close(client);
}

// A socket the kernel will not receive datagrams on (here a TCP socket that
// is not connected: recvmsg fails with ENOTCONN) is handed back to its sink
// once, not armed again and again.
TEST_F(IoUringTest, ASocketTheKernelRefusesIsHandedBackToItsSink) {
  auto made = LoopThreadBackend();
  ASSERT_TRUE(made.ok()) << made.status();
  internal::Backend& backend = **made;
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  DatagramEcho sink(&backend);
  ASSERT_TRUE(backend.StartReceivingDatagrams(fd, &sink, 1000, 8).ok());
  for (int round = 0; round < 100 && sink.ended.empty(); ++round) backend.Poll(100'000'000);
  ASSERT_EQ(sink.ended.size(), 1u);
  EXPECT_NE(sink.ended[0].message().find("recvmsg"), std::string::npos) << sink.ended[0];
  for (int round = 0; round < 5; ++round) backend.Poll(0);
  EXPECT_EQ(sink.ended.size(), 1u);
  EXPECT_TRUE(sink.got.empty());
  close(fd);
}

}  // namespace
}  // namespace netloop
