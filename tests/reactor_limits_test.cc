// Memory bounds over loopback: what one peer, or all peers together, can make
// the engine hold. Peers that send and never read, handlers that never
// consume, and the engine-wide buffer budget.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "reactor/netloop.h"
#include "tests/test_util.h"

namespace netloop {
namespace {

using testing::CloseClient;
using testing::Connect;
using testing::WaitFor;

// Tracks, per connection, whether backpressure paused it and how it closed.
class Tracker : public EventHandler {
 public:
  void OnBackpressure(Conn& conn, bool paused) override {
    std::lock_guard<std::mutex> lock(mu);
    if (paused) paused_ids.insert(conn.id());
  }
  Action OnOpen(Conn& conn) override {
    std::lock_guard<std::mutex> lock(mu);
    open_ids.insert(conn.id());
    return Action::kNone;
  }
  void OnClose(Conn& conn, const absl::Status& reason) override {
    std::lock_guard<std::mutex> lock(mu);
    closed_ids.insert(conn.id());
    reasons.push_back(reason);
  }
  // Every open connection is paused or closed.
  bool Settled(size_t expected) {
    std::lock_guard<std::mutex> lock(mu);
    if (open_ids.size() < expected) return false;
    for (uint64_t id : open_ids) {
      if (!paused_ids.count(id) && !closed_ids.count(id)) return false;
    }
    return true;
  }
  size_t closed() {
    std::lock_guard<std::mutex> lock(mu);
    return closed_ids.size();
  }
  std::mutex mu;
  std::set<uint64_t> open_ids, paused_ids, closed_ids;
  std::vector<absl::Status> reasons;
};

class Echo : public Tracker {
 public:
  Action OnTraffic(Conn& conn) override {
    ByteView b = conn.Next();
    std::string_view pieces[] = {b.first, b.second};
    (void)conn.Writev(pieces);
    return Action::kNone;
  }
};

// Sends until the kernel takes no more, without ever reading. Returns false if
// the connection failed.
bool SendUntilFull(SocketHandle fd, const std::string& chunk) {
  for (;;) {
    const long n = testing::SendNow(fd, chunk.data(), chunk.size());
    if (n > 0) continue;
    return n == 0;
  }
}

// Peers that send tens of MiB to an echo server and never read hold the
// server to about its high-water mark each, and give it all back on close.
TEST(LimitsTest, NonReadingEchoPeersAreHeldAtTheHighWaterMark) {
  constexpr int kPeers = 32;
  Echo h;
  Engine engine;
  Options o;
  o.loops = 2;
  ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, o).ok());
  std::vector<SocketHandle> fds;
  for (int i = 0; i < kPeers; ++i) fds.push_back(Connect(engine.ListenAddresses()[0]));
  const std::string chunk(64 * 1024, 'x');
  // Keep sending while the server still reads: until it paused every peer.
  for (int round = 0; round < 2000 && !h.Settled(kPeers); ++round) {
    for (SocketHandle fd : fds) ASSERT_TRUE(SendUntilFull(fd, chunk));
    WaitFor([&] { return h.Settled(kPeers); }, 20);
  }
  ASSERT_TRUE(h.Settled(kPeers));
  EXPECT_EQ(h.closed(), 0u);
  // Each peer: the 256 KiB mark plus one 64 KiB read past it, in a ring whose
  // capacity is the next power of two: at most 512 KiB. On io_uring, plus
  // the receives that were in flight when the mark was passed (up to 32
  // buffers, held unread in the inbound ring; see Options::write_high_water).
  ASSERT_EQ(std::string_view(engine.loop(0).backend_name()) == "io_uring",
            testing::TestingIoUring());
  const uint64_t per_peer = 512 * 1024 + testing::ReceiveSlopBytesPerConnection();
  const uint64_t buffered = engine.stats().buffered_bytes;
  EXPECT_GT(buffered, 0u);
  EXPECT_LE(buffered, uint64_t{kPeers} * per_peer);
  for (SocketHandle fd : fds) CloseClient(fd);
  ASSERT_TRUE(WaitFor([&] { return h.closed() == kPeers; }));
  EXPECT_EQ(engine.stats().buffered_bytes, 0u);
  engine.Stop(absl::Now() + absl::Seconds(2));
  EXPECT_TRUE(engine.Wait().ok());
}

// A handler that never consumes: past max_inbound_bytes the connection is
// closed with a LimitExceeded reason, and other connections carry on.
class Hoarder : public Tracker {
 public:
  Action OnTraffic(Conn& conn) override {
    if (conn.Peek(1).first == "e") {
      (void)conn.Write("e");  // the control connection echoes one byte
      conn.Discard(1);
    }
    return Action::kNone;
  }
};

TEST(LimitsTest, UnconsumedInboundPastTheLimitClosesWithAReason) {
  Hoarder h;
  Engine engine;
  Options o;
  o.loops = 1;
  o.max_inbound_bytes = 256 * 1024;
  ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, o).ok());
  SocketHandle other = Connect(engine.ListenAddresses()[0]);
  SocketHandle fd = Connect(engine.ListenAddresses()[0]);
  // Far more than the limit, unless the server closes first. Sends that do
  // not wait: a blocking send could sit on a socket the server has stopped
  // reading (wine closes the server's socket only once its cancelled
  // receive is reaped, so the reset can come late).
  const std::string chunk(64 * 1024, 'h');
  size_t sent = 0;
  for (int i = 0; i < 20000 && sent < (size_t{4} << 20) && h.closed() == 0; ++i) {
    const long n = testing::SendNow(fd, chunk.data(), chunk.size());
    if (n < 0) break;  // reset: the server closed it
    if (n == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    sent += static_cast<size_t>(std::max(n, 0L));
  }
  ASSERT_TRUE(WaitFor([&] { return h.closed() == 1; })) << "sent " << sent;
  {
    std::lock_guard<std::mutex> lock(h.mu);
    ASSERT_EQ(h.reasons.size(), 1u);
    EXPECT_EQ(GetCloseReason(h.reasons[0]), CloseReason::kLimitExceeded) << h.reasons[0];
  }
  ASSERT_TRUE(testing::WriteAll(other, "e"));
  EXPECT_EQ(testing::ReadExactly(other, 1), "e") << "other connections carry on";
  CloseClient(fd);
  CloseClient(other);
  engine.Stop(absl::Now() + absl::Seconds(2));
  EXPECT_TRUE(engine.Wait().ok());
}

// Answers each byte with 256 KiB, honouring backpressure.
class Flooder : public Tracker {
 public:
  Action OnTraffic(Conn& conn) override {
    const std::string chunk(256 * 1024, 'f');
    while (conn.is_open() && !Paused(conn.id()) && conn.Discard(1) == 1) {
      (void)conn.Write(chunk);
    }
    return Action::kNone;
  }
  bool Paused(uint64_t id) {
    std::lock_guard<std::mutex> lock(mu);
    return paused_ids.count(id) > 0;
  }
};

// All connections together may not hold more than the budget: once it is
// spent, the heaviest are closed with LimitExceeded, and the count says so.
TEST(LimitsTest, TheEngineWideBudgetClosesTheHeaviestConnections) {
  constexpr int kPeers = 8;
  Flooder h;
  Engine engine;
  Options o;
  o.loops = 1;
  o.write_high_water = 1 << 20;
  o.buffer_budget_bytes = 4 << 20;
  o.socket.send_buffer_bytes = 64 * 1024;
  ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, o).ok());
  std::vector<SocketHandle> fds;
  for (int i = 0; i < kPeers; ++i) {
    SocketHandle fd = Connect(engine.ListenAddresses()[0]);
    testing::SetClientReceiveBuffer(fd, 64 * 1024);
    fds.push_back(fd);
    // 64 requests of 256 KiB each: 16 MiB asked of the server per peer.
    ASSERT_TRUE(testing::WriteAll(fd, std::string(64, 'r')));
  }
  // Settled, the budget's closes (made from a task after the write that
  // spent it, one after another) have all reached OnClose, and what is left
  // fits the budget. Without the budget nothing closes and the wait fails.
  ASSERT_TRUE(WaitFor([&] {
    const EngineStats s = engine.stats();
    return h.Settled(kPeers) && s.budget_closes >= 1 && h.closed() == s.budget_closes &&
           s.buffered_bytes <= uint64_t{4} << 20;
  })) << "budget closes " << engine.stats().budget_closes << ", closed " << h.closed()
      << ", buffered " << engine.stats().buffered_bytes;
  const EngineStats s = engine.stats();
  {
    std::lock_guard<std::mutex> lock(h.mu);
    EXPECT_EQ(h.reasons.size(), s.budget_closes);
    for (const absl::Status& r : h.reasons) {
      EXPECT_EQ(GetCloseReason(r), CloseReason::kLimitExceeded) << r;
    }
  }
  EXPECT_LT(h.closed(), static_cast<size_t>(kPeers)) << "only the heaviest are closed";
  for (SocketHandle fd : fds) CloseClient(fd);
  engine.Stop(absl::Now() + absl::Seconds(2));
  EXPECT_TRUE(engine.Wait().ok());
}

// The budget's victims are closed after the handler returns, never inside
// the write that spent it: a handler may hold a pointer to another connection
// across its own writes (ASan fails this test if the victim is freed there).
class HoldsAPeer : public Tracker {
 public:
  Action OnOpen(Conn& conn) override {
    if (heavy == nullptr) heavy = &conn;
    return Tracker::OnOpen(conn);
  }
  Action OnTraffic(Conn& conn) override {
    conn.Discard();
    if (&conn == heavy) {
      (void)conn.Write(std::string(3 << 20, 'h'));  // its client never reads
      heavy_loaded.store(true);
      return Action::kNone;
    }
    Conn* peer = heavy;  // kept across our own write
    (void)conn.Write(std::string(2 << 20, 'a'));  // spends the budget
    if (peer != nullptr) {
      peer_still_open.store(peer->is_open());
      (void)peer->Write("x");
    }
    return Action::kNone;
  }
  void OnClose(Conn& conn, const absl::Status& reason) override {
    if (&conn == heavy) heavy = nullptr;
    Tracker::OnClose(conn, reason);
  }
  Conn* heavy = nullptr;  // loop thread only
  std::atomic<bool> heavy_loaded{false}, peer_still_open{false};
};

TEST(LimitsTest, BudgetVictimsCloseAfterTheHandlerReturns) {
  HoldsAPeer h;
  Engine engine;
  Options o;
  o.loops = 1;
  o.write_high_water = 0;
  o.buffer_budget_bytes = 4 << 20;
  o.socket.send_buffer_bytes = 64 * 1024;
  ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, o).ok());
  SocketHandle heavy = Connect(engine.ListenAddresses()[0]);
  testing::SetClientReceiveBuffer(heavy, 64 * 1024);
  ASSERT_TRUE(testing::WriteAll(heavy, "h"));
  ASSERT_TRUE(WaitFor([&] { return h.heavy_loaded.load(); }));
  SocketHandle writer = Connect(engine.ListenAddresses()[0]);
  testing::SetClientReceiveBuffer(writer, 64 * 1024);
  ASSERT_TRUE(testing::WriteAll(writer, "a"));
  ASSERT_TRUE(WaitFor([&] { return h.closed() == 1; }));
  EXPECT_TRUE(h.peer_still_open.load()) << "the victim was closed inside the write";
  EXPECT_EQ(engine.stats().budget_closes, 1u);
  {
    std::lock_guard<std::mutex> lock(h.mu);
    EXPECT_EQ(GetCloseReason(h.reasons.at(0)), CloseReason::kLimitExceeded) << h.reasons[0];
  }
  CloseClient(heavy);
  CloseClient(writer);
  engine.Stop(absl::Now() + absl::Seconds(2));
  EXPECT_TRUE(engine.Wait().ok());
}

}  // namespace
}  // namespace netloop
