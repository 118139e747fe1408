// Conn behaviour over loopback: framing across arbitrary splits, big writes
// through EPOLLOUT, async writes from other threads, wake, every way to close,
// backpressure, idle timeout, dial.
#ifndef _WIN32
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "reactor/fault_injection.h"
#include "reactor/netloop.h"
#include "tests/test_util.h"

namespace netloop {
namespace {

using testing::CloseClient;
using testing::Connect;
using testing::ResetClient;
using testing::ShutdownClientWrite;
using testing::Pattern;
using testing::ReadExactly;
using testing::ReadToEof;
using testing::WaitFor;
using testing::WriteAll;

// Runs an engine for the duration of a test.
class EngineFixture {
 public:
  EngineFixture(EventHandler& h, Options o = {}, std::vector<std::string> addrs = {
                                                     "tcp://127.0.0.1:0"}) {
    if (o.loops == 0) o.loops = 2;
    status_ = engine.Start(h, std::move(addrs), o);
  }
  ~EngineFixture() {
    engine.Stop(absl::Now() + absl::Seconds(5));
    (void)engine.Wait();
  }
  bool ok() const { return status_.ok(); }
  std::string uri() { return engine.ListenAddresses()[0]; }
  Engine engine;

 private:
  absl::Status status_;
};

// 4-byte big-endian length + payload; replies with the payload reversed.
class FrameHandler : public EventHandler {
 public:
  Action OnTraffic(Conn& conn) override {
    traffic_calls.fetch_add(1);
    for (;;) {
      if (!conn.Peek().second.empty()) wrapped_views.fetch_add(1);
      ByteView header = conn.Peek(4);
      if (header.size() < 4) return Action::kNone;
      char h[4];
      std::string tmp;
      header.AppendTo(&tmp);
      memcpy(h, tmp.data(), 4);
      uint32_t len = (uint8_t(h[0]) << 24) | (uint8_t(h[1]) << 16) | (uint8_t(h[2]) << 8) |
                     uint8_t(h[3]);
      if (conn.InboundBuffered() < 4 + len) return Action::kNone;
      conn.Discard(4);
      std::string_view payload = conn.PeekContiguous(len);
      EXPECT_EQ(payload.size(), len);
      std::string reply(payload.rbegin(), payload.rend());
      conn.Discard(len);
      EXPECT_TRUE(conn.Write(reply).ok());
    }
  }
  std::atomic<int> wrapped_views{0};
  std::atomic<int> traffic_calls{0};
};

// Sends `piece` and waits until the server has read it (one more OnTraffic),
// so that each piece is a read of its own instead of merging with the next.
void SendAsOwnRead(SocketHandle fd, std::string_view piece, FrameHandler& h) {
  const int before = h.traffic_calls.load();
  ASSERT_TRUE(WriteAll(fd, piece));
  ASSERT_TRUE(WaitFor([&] { return h.traffic_calls.load() > before; }));
}

// Returns once every loop of `engine` has run a task queued now: whatever was
// queued or ready before has been dispatched.
void DrainLoops(Engine& engine) {
  std::atomic<int> ran{0};
  for (int i = 0; i < engine.num_loops(); ++i) {
    engine.loop(i).RunInLoop([&ran] { ran.fetch_add(1); });
  }
  ASSERT_TRUE(WaitFor([&] { return ran.load() == engine.num_loops(); }));
}

std::string Frame(std::string_view payload) {
  uint32_t n = static_cast<uint32_t>(payload.size());
  std::string out = {char(n >> 24), char(n >> 16), char(n >> 8), char(n)};
  out.append(payload);
  return out;
}

void SetNoDelay(SocketHandle fd) { testing::SetClientNoDelay(fd); }

TEST(ConnTest, FramesSplitAtEveryByteBoundary) {
  FrameHandler h;
  EngineFixture f(h);
  ASSERT_TRUE(f.ok());
  std::string stream = Frame("hello") + Frame(Pattern(300, 1)) + Frame("") + Frame("xyz");
  std::string expected = std::string("olleh");
  std::string p = Pattern(300, 1);
  expected += std::string(p.rbegin(), p.rend()) + "zyx";
  for (size_t split = 1; split < stream.size(); ++split) {
    SocketHandle fd = Connect(f.uri());
    ASSERT_TRUE(IsValidSocket(fd));
    SetNoDelay(fd);
    SendAsOwnRead(fd, stream.substr(0, split), h);
    ASSERT_TRUE(WriteAll(fd, stream.substr(split)));
    auto got = ReadExactly(fd, expected.size());
    ASSERT_TRUE(got.has_value()) << "split " << split;
    ASSERT_EQ(*got, expected) << "split " << split;
    CloseClient(fd);
  }
}

TEST(ConnTest, ByteByByteAndWrappedRingViews) {
  FrameHandler h;
  EngineFixture f(h);
  ASSERT_TRUE(f.ok());
  SocketHandle fd = Connect(f.uri());
  ASSERT_TRUE(IsValidSocket(fd));
  SetNoDelay(fd);
  // Byte by byte: every read leaves a partial frame in the ring.
  std::string frame = Frame("drip");
  for (char c : frame) SendAsOwnRead(fd, std::string(1, c), h);
  auto got = ReadExactly(fd, 4);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, "pird");
  // Frames of 1000 bytes sent in 700-byte pieces make the leftovers walk
  // around the 1 KiB ring until a frame header wraps its end.
  std::string big;
  for (int i = 0; i < 60; ++i) big += Frame(Pattern(997 + i % 5, i));
  for (size_t off = 0; off < big.size(); off += 700) {
    SendAsOwnRead(fd, big.substr(off, 700), h);
  }
  size_t expect_bytes = 0;
  for (int i = 0; i < 60; ++i) expect_bytes += 997 + i % 5;
  got = ReadExactly(fd, expect_bytes);
  ASSERT_TRUE(got.has_value());
  std::string expected;
  for (int i = 0; i < 60; ++i) {
    std::string p = Pattern(997 + i % 5, i);
    expected.append(p.rbegin(), p.rend());
  }
  EXPECT_EQ(*got, expected);
  EXPECT_GT(h.wrapped_views.load(), 0) << "the wrapped (two-piece) path was not exercised";
  CloseClient(fd);
}

// Writes `total` bytes on open; the client reads slowly at first.
class BigWriter : public EventHandler {
 public:
  explicit BigWriter(std::string data) : data_(std::move(data)) {}
  Action OnOpen(Conn& conn) override {
    EXPECT_TRUE(conn.Write(data_).ok());
    buffered_after_write.store(conn.OutboundBuffered());
    return Action::kClose;  // graceful: drains first
  }
  void OnClose(Conn&, const absl::Status& reason) override {
    close_ok.store(reason.ok());
    closed.fetch_add(1);
  }
  std::string data_;
  std::atomic<size_t> buffered_after_write{0};
  std::atomic<bool> close_ok{false};
  std::atomic<int> closed{0};
};

TEST(ConnTest, MultiMegabyteWriteCompletesThroughWritableEvents) {
  std::string data = Pattern(32 << 20, 77);
  BigWriter h(data);
  Options o;
  o.socket.send_buffer_bytes = 64 * 1024;
  o.write_high_water = 0;  // no backpressure in this test
  EngineFixture f(h, o);
  ASSERT_TRUE(f.ok());
  SocketHandle fd = Connect(f.uri(), 30);
  ASSERT_TRUE(IsValidSocket(fd));
  // The 32 MiB write in OnOpen met a full socket while we did not read.
  ASSERT_TRUE(WaitFor([&] { return h.buffered_after_write.load() > 0; }));
  auto got = ReadToEof(fd, 64 << 20);
  ASSERT_TRUE(got.has_value());
  EXPECT_GT(h.buffered_after_write.load(), 0u) << "the write should have hit EAGAIN";
  ASSERT_EQ(got->size(), data.size());
  EXPECT_TRUE(*got == data) << "bytes differ";
  EXPECT_TRUE(WaitFor([&] { return h.closed.load() == 1; }));
  EXPECT_TRUE(h.close_ok.load());
  CloseClient(fd);
}

// Remembers the first connection for the tests below.
class RecordingHandler : public EventHandler {
 public:
  Action OnOpen(Conn& conn) override {
    std::lock_guard<std::mutex> lock(mu);
    refs.push_back(conn.Ref());
    opens.fetch_add(1);
    return Action::kNone;
  }
  Action OnTraffic(Conn& conn) override {
    traffic.fetch_add(1);
    inbound_seen.fetch_add(conn.InboundBuffered());
    conn.Discard();
    return Action::kNone;
  }
  void OnClose(Conn&, const absl::Status& reason) override {
    std::lock_guard<std::mutex> lock(mu);
    reasons.push_back(reason);
    closes.fetch_add(1);
  }
  ConnRef First() {
    std::lock_guard<std::mutex> lock(mu);
    return refs.empty() ? ConnRef() : refs[0];
  }
  absl::Status LastReason() {
    std::lock_guard<std::mutex> lock(mu);
    return reasons.empty() ? absl::UnknownError("none") : reasons.back();
  }
  std::mutex mu;
  std::vector<ConnRef> refs;
  std::vector<absl::Status> reasons;
  std::atomic<int> opens{0}, closes{0}, traffic{0};
  std::atomic<size_t> inbound_seen{0};
};

TEST(ConnTest, AsyncWriteFromForeignThreadsKeepsPerThreadOrder) {
  RecordingHandler h;
  EngineFixture f(h);
  ASSERT_TRUE(f.ok());
  SocketHandle fd = Connect(f.uri());
  ASSERT_TRUE(IsValidSocket(fd));
  ASSERT_TRUE(WaitFor([&] { return h.opens.load() == 1; }));
  ConnRef ref = h.First();
  constexpr int kThreads = 4, kPer = 1000;
  std::atomic<int> callbacks{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPer; ++i) {
        char msg[9];
        snprintf(msg, sizeof(msg), "%d%07d", t, i);
        ref.AsyncWrite(std::string(msg, 8), [&](Conn* c, absl::Status s) {
          EXPECT_NE(c, nullptr);
          EXPECT_TRUE(s.ok());
          callbacks.fetch_add(1);
        });
      }
    });
  }
  for (auto& t : threads) t.join();
  auto got = ReadExactly(fd, 8 * kThreads * kPer);
  ASSERT_TRUE(got.has_value());
  std::vector<int> next(kThreads, 0);
  for (size_t off = 0; off < got->size(); off += 8) {
    int t = (*got)[off] - '0';
    int i = std::stoi(got->substr(off + 1, 7));
    ASSERT_EQ(i, next[t]) << "thread " << t << " out of order";
    next[t]++;
  }
  EXPECT_TRUE(WaitFor([&] { return callbacks.load() == kThreads * kPer; }));
  // After close: the callback reports the connection gone.
  CloseClient(fd);
  ASSERT_TRUE(WaitFor([&] { return h.closes.load() == 1; }));
  std::atomic<int> late{0};
  ref.AsyncWrite("late", [&](Conn* c, absl::Status s) {
    EXPECT_EQ(c, nullptr);
    EXPECT_FALSE(s.ok());
    late.fetch_add(1);
  });
  EXPECT_TRUE(WaitFor([&] { return late.load() == 1; }));
}

TEST(ConnTest, WakeCallsOnTrafficWithoutNewBytes) {
  RecordingHandler h;
  EngineFixture f(h);
  ASSERT_TRUE(f.ok());
  SocketHandle fd = Connect(f.uri());
  ASSERT_TRUE(WaitFor([&] { return h.opens.load() == 1; }));
  EXPECT_EQ(h.traffic.load(), 0);
  std::thread([&] { h.First().Wake(); }).join();
  EXPECT_TRUE(WaitFor([&] { return h.traffic.load() == 1; }));
  EXPECT_EQ(h.inbound_seen.load(), 0u);
  CloseClient(fd);
}

// Replies "bye" and returns kClose: the reply must arrive before EOF.
class ReplyThenClose : public EventHandler {
 public:
  Action OnTraffic(Conn& conn) override {
    conn.Discard();
    (void)conn.Write("bye");
    return Action::kClose;
  }
  void OnClose(Conn&, const absl::Status& r) override {
    ok.store(r.ok());
    closes.fetch_add(1);
  }
  std::atomic<bool> ok{false};
  std::atomic<int> closes{0};
};

TEST(ConnTest, CloseFromHandlerDeliversReplyThenEof) {
  ReplyThenClose h;
  EngineFixture f(h);
  ASSERT_TRUE(f.ok());
  SocketHandle fd = Connect(f.uri());
  ASSERT_TRUE(WriteAll(fd, "hi"));
  auto got = ReadToEof(fd);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, "bye");
  EXPECT_TRUE(WaitFor([&] { return h.closes.load() == 1; }));
  EXPECT_TRUE(h.ok.load()) << "local close reports OK";
  CloseClient(fd);
}

TEST(ConnTest, CloseWithErrorFromAnotherThreadReportsThatStatus) {
  RecordingHandler h;
  EngineFixture f(h);
  ASSERT_TRUE(f.ok());
  SocketHandle fd = Connect(f.uri());
  ASSERT_TRUE(WaitFor([&] { return h.opens.load() == 1; }));
  std::thread([&] { h.First().CloseWithError(absl::AbortedError("kicked")); }).join();
  ASSERT_TRUE(WaitFor([&] { return h.closes.load() == 1; }));
  EXPECT_EQ(h.LastReason().code(), absl::StatusCode::kAborted);
  auto got = ReadToEof(fd);
  EXPECT_TRUE(got.has_value() && got->empty());
  // ConnRef::Close after close is a harmless no-op.
  h.First().Close();
  CloseClient(fd);
  DrainLoops(f.engine);  // the Close above has run
  EXPECT_EQ(h.closes.load(), 1) << "OnClose exactly once";
}

TEST(ConnTest, PeerEofAndResetReasons) {
  RecordingHandler h;
  EngineFixture f(h);
  ASSERT_TRUE(f.ok());
  SocketHandle a = Connect(f.uri());
  ASSERT_TRUE(WaitFor([&] { return h.opens.load() == 1; }));
  CloseClient(a);  // FIN
  ASSERT_TRUE(WaitFor([&] { return h.closes.load() == 1; }));
  EXPECT_TRUE(IsPeerClosed(h.LastReason())) << h.LastReason();
  SocketHandle b = Connect(f.uri());
  ASSERT_TRUE(WaitFor([&] { return h.opens.load() == 2; }));
  ResetClient(b);  // RST
  ASSERT_TRUE(WaitFor([&] { return h.closes.load() == 2; }));
  EXPECT_EQ(GetCloseReason(h.LastReason()), CloseReason::kReset) << h.LastReason();
}

// Echoes after the peer's FIN too (half-close): reply goes out, then close.
class SlowEcho : public EventHandler {
 public:
  Action OnTraffic(Conn& conn) override {
    ByteView b = conn.Next();
    std::string copy;
    b.AppendTo(&copy);
    EXPECT_TRUE(conn.Write(copy).ok());
    return Action::kNone;
  }
};

TEST(ConnTest, HalfCloseStillReceivesWholeReply) {
  SlowEcho h;
  Options o;
  o.socket.send_buffer_bytes = 32 * 1024;
  EngineFixture f(h, o);
  ASSERT_TRUE(f.ok());
  SocketHandle fd = Connect(f.uri());
  std::string data = Pattern(4 << 20, 5);
  std::thread writer([&] {
    EXPECT_TRUE(WriteAll(fd, data));
    ShutdownClientWrite(fd);
  });
  auto got = ReadToEof(fd, 8 << 20);
  writer.join();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->size(), data.size());
  EXPECT_TRUE(*got == data);
  CloseClient(fd);
}

// Answers each byte received with 256 KiB, to a client that does not read,
// and honours backpressure: while paused it leaves the rest of the requests
// unread (however the kernel split them into reads).
class Flooder : public EventHandler {
 public:
  Action OnTraffic(Conn& conn) override {
    if (paused_now.load()) traffic_while_paused.fetch_add(1);
    const std::string chunk(256 * 1024, 'f');
    while (!paused_now.load() && conn.Discard(1) == 1) {
      (void)conn.Write(chunk);
      max_buffered.store(std::max(max_buffered.load(), conn.OutboundBuffered()));
    }
    return Action::kNone;
  }
  void OnClose(Conn&, const absl::Status&) override { closes.fetch_add(1); }
  void OnBackpressure(Conn& conn, bool paused) override {
    (paused ? pauses : resumes).fetch_add(1);
    paused_now.store(paused);
  }
  std::atomic<size_t> max_buffered{0};
  std::atomic<int> pauses{0}, resumes{0}, closes{0};
  std::atomic<bool> paused_now{false};
  std::atomic<int> traffic_while_paused{0};
};

TEST(ConnTest, BackpressureHoldsMemoryAtTheMark) {
  Flooder h;
  Options o;
  o.write_high_water = 1 << 20;
  o.write_low_water = 256 * 1024;
  o.socket.send_buffer_bytes = 64 * 1024;
  EngineFixture f(h, o);
  ASSERT_TRUE(f.ok());
  SocketHandle fd = Connect(f.uri());
  // Each byte asks for 256 KiB (50 MiB in all, more than the kernel's socket
  // buffers absorb); a client that does not read yet.
  ASSERT_TRUE(WriteAll(fd, std::string(200, 'r')));
  ASSERT_TRUE(WaitFor([&] { return h.pauses.load() >= 1; }));
  // Reading stopped: outbound stays near the mark (one chunk past it at most).
  EXPECT_LE(h.max_buffered.load(), (1u << 20) + 256 * 1024);
  // Drain: the client reads everything that was sent, reading resumes.
  char buf[65536];
  auto deadline = absl::Now() + absl::Seconds(20);
  size_t drained = 0;
  while (h.resumes.load() == 0 && absl::Now() < deadline) {
    long n = testing::ReceiveNow(fd, buf, sizeof(buf));
    if (n > 0) drained += n;
    if (n <= 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // Reading resumed only because the client read (how much depends on how
  // much the kernel's socket buffers absorbed, so only > 0 is certain).
  EXPECT_GT(drained, 0u);
  EXPECT_GE(h.resumes.load(), 1) << "pauses " << h.pauses.load() << " max "
                                 << h.max_buffered.load();
  EXPECT_EQ(h.traffic_while_paused.load(), 0) << "reading must stop while paused";
  CloseClient(fd);
}

TEST(ConnTest, IdleTimeoutClosesOnlyTheIdleConnection) {
  RecordingHandler h;
  Options o;
  o.idle_timeout = absl::Seconds(1);
  EngineFixture f(h, o);
  ASSERT_TRUE(f.ok());
  SocketHandle idle = Connect(f.uri());
  SocketHandle busy = Connect(f.uri());
  ASSERT_TRUE(WaitFor([&] { return h.opens.load() == 2; }));
  // Traffic on `busy` every 10 ms (a 100x margin on the timeout) until the
  // idle one is closed, at most 20 s.
  for (int i = 0; i < 2000 && h.closes.load() == 0; ++i) {
    ASSERT_TRUE(WriteAll(busy, "x"));
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(h.closes.load(), 1);
  EXPECT_TRUE(absl::IsDeadlineExceeded(h.LastReason())) << h.LastReason();
  auto eof = ReadToEof(idle);
  EXPECT_TRUE(eof.has_value());
  CloseClient(idle);
  CloseClient(busy);
}

// Streams to its peer on every Wake until the write fails.
class Streamer : public EventHandler {
 public:
  Action OnTraffic(Conn& conn) override {
    conn.Discard();
    std::string chunk(64 * 1024, 'z');
    for (int i = 0; i < 64 && conn.is_open(); ++i) {
      if (!conn.Write(chunk).ok()) {
        write_failed.store(true);
        break;
      }
    }
    return Action::kNone;
  }
  void OnClose(Conn&, const absl::Status& r) override {
    std::lock_guard<std::mutex> lock(mu);
    reason = r;
    closed.store(true);
  }
  std::atomic<bool> write_failed{false}, closed{false};
  std::mutex mu;
  absl::Status reason;
};

TEST(ConnTest, WritingToAResetPeerNeverRaisesSigpipe) {
  Streamer h;
  EngineFixture f(h);
  ASSERT_TRUE(f.ok());
#ifndef _WIN32
  // Undo the engine's process-wide SIG_IGN: only MSG_NOSIGNAL protects now.
  signal(SIGPIPE, SIG_DFL);
#endif
  SocketHandle fd = Connect(f.uri());
  ASSERT_TRUE(WriteAll(fd, "go"));
  ASSERT_TRUE(ReadExactly(fd, 1).has_value()) << "the server is streaming";
  ResetClient(fd);  // RST while the server is writing
  ASSERT_TRUE(WaitFor([&] { return h.closed.load(); }));
  std::lock_guard<std::mutex> lock(h.mu);
  EXPECT_EQ(GetCloseReason(h.reason), CloseReason::kReset) << h.reason;
#ifndef _WIN32
  // Still alive: a SIGPIPE would have killed the test binary.
  signal(SIGPIPE, SIG_IGN);
#endif
}

// A client engine dialling a server engine.
class DialHandler : public EventHandler {
 public:
  Action OnOpen(Conn& conn) override {
    if (conn.is_client()) (void)conn.Write("ping");
    opens.fetch_add(1);
    return Action::kNone;
  }
  Action OnTraffic(Conn& conn) override {
    std::string got;
    conn.Next().AppendTo(&got);
    if (conn.is_client()) {
      reply += got;
      if (reply == "pong") done.store(true);
    } else if (got == "ping") {
      (void)conn.Write("pong");
    }
    return Action::kNone;
  }
  void OnClose(Conn& conn, const absl::Status& reason) override {
    if (conn.is_client()) {
      std::lock_guard<std::mutex> lock(mu);
      client_reason = reason;
      client_closed.store(true);
    }
  }
  std::atomic<int> opens{0};
  std::atomic<bool> done{false}, client_closed{false};
  std::string reply;
  std::mutex mu;
  absl::Status client_reason;
};

TEST(DialTest, ExchangesDataWithAServerEngine) {
  DialHandler server_h, client_h;
  EngineFixture server(server_h);
  ASSERT_TRUE(server.ok());
  Engine client;
  Options o;
  o.loops = 1;
  ASSERT_TRUE(client.Start(client_h, {}, o).ok());
  auto ref = client.Dial(server.uri());
  ASSERT_TRUE(ref.ok());
  EXPECT_TRUE(WaitFor([&] { return client_h.done.load(); }));
  client.Stop(absl::Now() + absl::Seconds(2));
  EXPECT_TRUE(client.Wait().ok());
}

TEST(DialTest, RefusedPortReportsConnectFailedWithoutOnOpen) {
#ifdef _WIN32
  GTEST_SKIP() << "finds a free port with POSIX socket calls";
#else
  // Bind a port and close it again: nothing listens there.
  int probe = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(probe, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(probe, reinterpret_cast<sockaddr*>(&a), &len);
  CloseClient(probe);
  DialHandler h;
  Engine client;
  Options o;
  o.loops = 1;
  ASSERT_TRUE(client.Start(h, {}, o).ok());
  auto ref = client.Dial("tcp://127.0.0.1:" + std::to_string(ntohs(a.sin_port)));
  // Loopback may refuse at once (Dial's own error) or a moment later
  // (OnClose); either way the refusal must be reported.
  if (ref.ok()) {
    ASSERT_TRUE(WaitFor([&] { return h.client_closed.load(); }));
    std::lock_guard<std::mutex> lock(h.mu);
    EXPECT_EQ(GetCloseReason(h.client_reason), CloseReason::kConnectFailed) << h.client_reason;
  } else {
    EXPECT_TRUE(absl::IsUnavailable(ref.status())) << ref.status();
    EXPECT_NE(ref.status().message().find("refused"), absl::string_view::npos) << ref.status();
  }
  EXPECT_EQ(h.opens.load(), 0);
  EXPECT_FALSE(client.Dial("tcp://nonsense").ok()) << "bad addresses fail at once";
  client.Stop(absl::Now() + absl::Seconds(2));
  EXPECT_TRUE(client.Wait().ok());
#endif
}

// Queues `bytes` of output on open and remembers the connection.
class GreetingHandler : public RecordingHandler {
 public:
  explicit GreetingHandler(size_t bytes) : data(Pattern(bytes, 3)) {}
  Action OnOpen(Conn& conn) override {
    EXPECT_TRUE(conn.Write(data).ok());
    pending_after_open.store(conn.OutboundBuffered());
    return RecordingHandler::OnOpen(conn);
  }
  std::string data;
  std::atomic<size_t> pending_after_open{0};
};

TEST(ConnTest, ConnRefCloseFromAnotherThreadDrainsPendingBytesFirst) {
  GreetingHandler h(8 << 20);
  Options o;
  o.write_high_water = 0;
  o.socket.send_buffer_bytes = 64 * 1024;
  EngineFixture f(h, o);
  ASSERT_TRUE(f.ok());
  SocketHandle fd = Connect(f.uri(), 30);
  ASSERT_TRUE(WaitFor([&] { return h.opens.load() == 1; }));
  ASSERT_GT(h.pending_after_open.load(), 0u) << "bytes must still be pending for this test";
  std::thread([&] { h.First().Close(); }).join();
  auto got = ReadToEof(fd, 16 << 20);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->size(), h.data.size());
  EXPECT_TRUE(*got == h.data) << "every pending byte arrives, then EOF";
  ASSERT_TRUE(WaitFor([&] { return h.closes.load() == 1; }));
  EXPECT_TRUE(h.LastReason().ok()) << h.LastReason();
  CloseClient(fd);
}

TEST(ConnTest, HalfClosedPeerThatNeverReadsIsClosedAfterTheDrainTimeout) {
  GreetingHandler h(16 << 20);
  Options o;
  o.write_high_water = 0;
  o.socket.send_buffer_bytes = 64 * 1024;
  o.close_drain_timeout = absl::Milliseconds(300);
  EngineFixture f(h, o);
  ASSERT_TRUE(f.ok());
  SocketHandle fd = Connect(f.uri());
  ASSERT_TRUE(WaitFor([&] { return h.opens.load() == 1; }));
  ASSERT_GT(h.pending_after_open.load(), 0u);
  ShutdownClientWrite(fd);  // FIN, and then never read
  ASSERT_TRUE(WaitFor([&] { return h.closes.load() == 1; }, 10000))
      << "a half-closed peer that never reads held the connection";
  EXPECT_TRUE(absl::IsDeadlineExceeded(h.LastReason())) << h.LastReason();
  CloseClient(fd);
}

TEST(ConnTest, AsyncWritevAndRunAfterClose) {
  RecordingHandler h;
  EngineFixture f(h);
  ASSERT_TRUE(f.ok());
  SocketHandle fd = Connect(f.uri());
  ASSERT_TRUE(WaitFor([&] { return h.opens.load() == 1; }));
  ConnRef ref = h.First();
  EXPECT_TRUE(ref.valid());
  std::atomic<int> done{0};
  ref.AsyncWritev({"ab", "", "cde", std::string(70000, 'x')}, [&](Conn* c, absl::Status s) {
    EXPECT_NE(c, nullptr);
    EXPECT_TRUE(s.ok()) << s;
    done.fetch_add(1);
  });
  auto got = ReadExactly(fd, 5 + 70000);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->substr(0, 5), "abcde");
  EXPECT_EQ(got->substr(5), std::string(70000, 'x'));
  EXPECT_TRUE(WaitFor([&] { return done.load() == 1; }));
  std::atomic<int> ran_open{0};
  ref.Run([&](Conn* c) {
    EXPECT_NE(c, nullptr);
    if (c != nullptr) {
      EXPECT_TRUE(c->is_open());
    }
    ran_open.fetch_add(1);
  });
  EXPECT_TRUE(WaitFor([&] { return ran_open.load() == 1; }));
  CloseClient(fd);
  ASSERT_TRUE(WaitFor([&] { return h.closes.load() == 1; }));
  std::atomic<int> ran_closed{0};
  ref.Run([&](Conn* c) {
    EXPECT_EQ(c, nullptr);
    ran_closed.fetch_add(1);
  });
  ref.AsyncWritev({"late"}, [&](Conn* c, absl::Status s) {
    EXPECT_EQ(c, nullptr);
    EXPECT_FALSE(s.ok());
    ran_closed.fetch_add(1);
  });
  ref.Wake();  // no OnTraffic for a closed connection
  EXPECT_TRUE(WaitFor([&] { return ran_closed.load() == 2; }));
  EXPECT_EQ(h.traffic.load(), 0);
  ConnRef().AsyncWrite("nowhere");  // an empty ref is a no-op
}

// Replies, then half-closes its side; keeps reading what the peer sends.
class ShutdownWriter : public EventHandler {
 public:
  Action OnTraffic(Conn& conn) override {
    std::string got;
    conn.Next().AppendTo(&got);
    std::lock_guard<std::mutex> lock(mu);
    received += got;
    if (!replied) {
      replied = true;
      EXPECT_TRUE(conn.Write(std::string(200000, 'r')).ok());
      conn.ShutdownWrite();  // FIN after the 200000 bytes
    }
    return Action::kNone;
  }
  std::mutex mu;
  std::string received;
  bool replied = false;
};

TEST(ConnTest, ShutdownWriteSendsFinAfterPendingBytesAndKeepsReading) {
  ShutdownWriter h;
  EngineFixture f(h);
  ASSERT_TRUE(f.ok());
  SocketHandle fd = Connect(f.uri());
  ASSERT_TRUE(WriteAll(fd, "q"));
  auto got = ReadToEof(fd);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, std::string(200000, 'r'));
  ASSERT_TRUE(WriteAll(fd, "after-fin"));
  EXPECT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(h.mu);
    return h.received == "qafter-fin";
  }));
  CloseClient(fd);
}

// Half-closes on open, then (the loop held up until the test says so)
// counts what the peer sends before its FIN.
class HalfCloseThenCount : public EventHandler {
 public:
  Action OnOpen(Conn& conn) override {
    conn.ShutdownWrite();
    // Keeps this loop from looking at the socket until the peer has sent
    // everything and closed: the next event then carries EPOLLHUP along
    // with several read buffers' worth of bytes.
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return peer_done; });
    return Action::kNone;
  }
  Action OnTraffic(Conn& conn) override {
    std::lock_guard<std::mutex> lock(mu);
    received += conn.Discard();
    return Action::kNone;
  }
  void OnClose(Conn&, const absl::Status& reason) override {
    std::lock_guard<std::mutex> lock(mu);
    close_reason = reason;
    closed = true;
  }
  std::mutex mu;
  std::condition_variable cv;
  bool peer_done = false;
  size_t received = 0;
  bool closed = false;
  absl::Status close_reason;
};

TEST(ConnTest, BytesQueuedBeforeAHangUpAreAllDelivered) {
  HalfCloseThenCount h;
  Options o;
  o.loops = 1;
  o.socket.receive_buffer_bytes = 4 << 20;  // room for it all while unread
  EngineFixture f(h, o);
  ASSERT_TRUE(f.ok());
  SocketHandle fd = Connect(f.uri());
  ASSERT_TRUE(IsValidSocket(fd));
  testing::SetClientSendBuffer(fd, 4 << 20);
  constexpr size_t kBytes = 512 * 1024;  // eight of the loop's read buffers
  ASSERT_TRUE(WriteAll(fd, std::string(kBytes, 'x')));
  ASSERT_TRUE(ReadToEof(fd).has_value());  // the server's FIN: it is open
  CloseClient(fd);
  {
    std::lock_guard<std::mutex> lock(h.mu);
    h.peer_done = true;
  }
  h.cv.notify_all();
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(h.mu);
    return h.closed;
  }));
  std::lock_guard<std::mutex> lock(h.mu);
  EXPECT_EQ(h.received, kBytes);
  EXPECT_TRUE(IsPeerClosed(h.close_reason)) << h.close_reason;
}

// Detaches on the first bytes and hands the socket to the test.
class Detacher : public EventHandler {
 public:
  Action OnTraffic(Conn& conn) override {
    auto d = conn.Detach();
    EXPECT_TRUE(d.ok()) << d.status();
    if (d.ok()) {
      std::lock_guard<std::mutex> lock(mu);
      detached = std::move(*d);
      has.store(true);
    }
    return Action::kNone;
  }
  void OnClose(Conn&, const absl::Status&) override { closes.fetch_add(1); }
  std::mutex mu;
  DetachedConn detached;
  std::atomic<bool> has{false};
  std::atomic<int> closes{0};
};

TEST(ConnTest, DetachHandsOverTheSocketAndUnreadBytes) {
#ifdef _WIN32
  GTEST_SKIP() << "Detach is not served on IOCP yet";
#else
  Detacher h;
  EngineFixture f(h);
  ASSERT_TRUE(f.ok());
  SocketHandle fd = Connect(f.uri());
  ASSERT_TRUE(WriteAll(fd, "unread-bytes"));
  ASSERT_TRUE(WaitFor([&] { return h.has.load(); }));
  std::lock_guard<std::mutex> lock(h.mu);
  EXPECT_EQ(h.detached.unread, "unread-bytes");
  EXPECT_TRUE(h.detached.remote.is_ip());
  EXPECT_TRUE(WaitFor([&] { return f.engine.CountConnections() == 0; }));
  ASSERT_TRUE(WriteAll(h.detached.fd, "raw"));
  auto got = ReadExactly(fd, 3);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, "raw");
  close(h.detached.fd);
  CloseClient(fd);
  DrainLoops(f.engine);
  EXPECT_EQ(h.closes.load(), 0) << "no OnClose for a detached connection";
#endif
}

// A client that sends "ping" on open to the server echo; records context.
class UnixDialHandler : public DialHandler {
 public:
  Action OnOpen(Conn& conn) override {
    if (conn.is_client()) {
      context_seen.store(conn.context());
      loop_seen.store(conn.loop_index());
    }
    return DialHandler::OnOpen(conn);
  }
  std::atomic<void*> context_seen{nullptr};
  std::atomic<int> loop_seen{-1};
};

TEST(DialTest, UnixSocketWithContextAndChosenLoop) {
#ifdef _WIN32
  GTEST_SKIP() << "AF_UNIX dials are not served on Windows yet";
#else
  std::string path = "/tmp/netloop_dial_test_" + std::to_string(getpid()) + ".sock";
  DialHandler server_h;
  EngineFixture server(server_h, {}, {"unix://" + path});
  ASSERT_TRUE(server.ok());
  UnixDialHandler client_h;
  Engine client;
  Options o;
  o.loops = 3;
  ASSERT_TRUE(client.Start(client_h, {}, o).ok());
  int marker = 0;
  DialOptions d;
  d.context = &marker;
  d.loop = 2;
  auto ref = client.Dial("unix://" + path, d);
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_TRUE(WaitFor([&] { return client_h.done.load(); }));
  EXPECT_EQ(client_h.context_seen.load(), &marker);
  EXPECT_EQ(client_h.loop_seen.load(), 2);
  EXPECT_EQ(client.stats().dialled, 1u);
  client.Stop(absl::Now() + absl::Seconds(2));
  EXPECT_TRUE(client.Wait().ok());
  unlink(path.c_str());
#endif
}

// A listener whose accept queue is full drops new SYNs, so a connect stays in
// progress on loopback: the one deterministic way to hit the dial timeout.
TEST(DialTest, ConnectTimeoutReportsConnectFailed) {
#ifdef _WIN32
  GTEST_SKIP() << "fills a listen backlog with POSIX socket calls";
#else
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(listen(lfd, 0), 0);
  socklen_t len = sizeof(a);
  getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len);
  // Fill the accept queue (never accepted).
  std::vector<int> fillers;
  for (int i = 0; i < 3; ++i) {
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    connect(c, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    fillers.push_back(c);
    usleep(20 * 1000);
  }
  DialHandler h;
  Engine client;
  Options o;
  o.loops = 1;
  ASSERT_TRUE(client.Start(h, {}, o).ok());
  DialOptions d;
  d.timeout = absl::Milliseconds(300);
  absl::Time start = absl::Now();
  auto ref = client.Dial("tcp://127.0.0.1:" + std::to_string(ntohs(a.sin_port)), d);
  ASSERT_TRUE(ref.ok());
  ASSERT_TRUE(WaitFor([&] { return h.client_closed.load(); }));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(250));
  {
    std::lock_guard<std::mutex> lock(h.mu);
    EXPECT_EQ(GetCloseReason(h.client_reason), CloseReason::kConnectFailed) << h.client_reason;
  }
  EXPECT_EQ(h.opens.load(), 0);
  client.Stop(absl::Now() + absl::Seconds(2));
  EXPECT_TRUE(client.Wait().ok());
  for (int c : fillers) close(c);
  CloseClient(lfd);
#endif
}

// "127.1" is no address inet_pton takes, so Dial treats it as a host name and
// looks it up on the resolver thread; getaddrinfo reads it as 127.0.0.1
// without asking any name server, so the test needs no network.
TEST(DialTest, HostNamesAreLookedUpOffTheLoopAndConnect) {
  DialHandler server_h, client_h;
  EngineFixture server(server_h);
  ASSERT_TRUE(server.ok());
  Engine client;
  Options o;
  o.loops = 1;
  ASSERT_TRUE(client.Start(client_h, {}, o).ok());
  auto ref = client.Dial("tcp://127.1:" + std::to_string(testing::PortOf(server.uri())));
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_TRUE(WaitFor([&] { return client_h.done.load(); }));
  client.Stop(absl::Now() + absl::Seconds(2));
  EXPECT_TRUE(client.Wait().ok());
}

// A lookup that fails is reported through OnClose (the name's error in the
// reason), never by blocking Dial.
TEST(DialTest, FailedLookupReportsConnectFailed) {
  if (!FaultInjection::Available()) GTEST_SKIP() << "no fault seam in -c opt";
  DialHandler h;
  Engine client;
  Options o;
  o.loops = 1;
  ASSERT_TRUE(client.Start(h, {}, o).ok());
  FaultPlan every_lookup_fails;
  every_lookup_fails.rate = 1.0;
  every_lookup_fails.delays = false;
  every_lookup_fails.spurious_eagain = false;
  every_lookup_fails.connection_errors = false;
  every_lookup_fails.accept_errors = false;
  {
    ScopedFaultInjection faults(every_lookup_fails);
    auto ref = client.Dial("tcp://some-host.example:80");
    ASSERT_TRUE(ref.ok()) << ref.status();
    ASSERT_TRUE(WaitFor([&] { return h.client_closed.load(); }));
  }
  {
    std::lock_guard<std::mutex> lock(h.mu);
    EXPECT_EQ(GetCloseReason(h.client_reason), CloseReason::kConnectFailed) << h.client_reason;
    EXPECT_NE(h.client_reason.message().find("some-host.example"), absl::string_view::npos)
        << h.client_reason;
  }
  EXPECT_EQ(h.opens.load(), 0);
  client.Stop(absl::Now() + absl::Seconds(2));
  EXPECT_TRUE(client.Wait().ok());
}

// Loop code outside any callback (here a timer) may write to and close an
// open Conn; the Conn must still be freed after OnClose (ASan's leak check
// fails this test if it is not).
class TimerCloser : public EventHandler {
 public:
  Action OnOpen(Conn& conn) override {
    Conn* c = &conn;
    conn.loop().RunAfter(absl::Milliseconds(1), [c] {
      (void)c->Write("bye");
      c->Close();
    });
    return Action::kNone;
  }
  void OnClose(Conn&, const absl::Status&) override { closes.fetch_add(1); }
  std::atomic<int> closes{0};
};

TEST(ConnTest, WriteAndCloseFromALoopTimerFreeTheConn) {
  TimerCloser h;
  EngineFixture f(h);
  ASSERT_TRUE(f.ok());
  for (int i = 0; i < 20; ++i) {
    SocketHandle fd = Connect(f.uri());
    ASSERT_TRUE(IsValidSocket(fd));
    EXPECT_EQ(ReadToEof(fd), "bye");
    CloseClient(fd);
  }
  EXPECT_TRUE(WaitFor([&] { return h.closes.load() == 20; }));
  EXPECT_TRUE(WaitFor([&] { return f.engine.CountConnections() == 0; }));
}

// A name server that does not answer: the Dial's own timeout ends it
// (ETIMEDOUT through OnClose) while the lookup is still blocked.
TEST(DialTest, TheDialTimeoutCoversAStuckLookup) {
  if (!FaultInjection::Available()) GTEST_SKIP() << "no lookup hold in -c opt";
  DialHandler h;
  Engine client;
  Options o;
  o.loops = 1;
  ASSERT_TRUE(client.Start(h, {}, o).ok());
  FaultInjection::HoldLookups(true);
  DialOptions d;
  d.timeout = absl::Milliseconds(50);
  auto ref = client.Dial("tcp://127.1:9", d);
  ASSERT_TRUE(ref.ok()) << ref.status();
  const bool closed = WaitFor([&] { return h.client_closed.load(); });
  FaultInjection::HoldLookups(false);  // only now may the lookup finish
  ASSERT_TRUE(closed) << "the timeout did not fire while the lookup was stuck";
  {
    std::lock_guard<std::mutex> lock(h.mu);
    EXPECT_EQ(GetCloseReason(h.client_reason), CloseReason::kConnectFailed) << h.client_reason;
    EXPECT_NE(h.client_reason.message().find("errno " + std::to_string(ETIMEDOUT)),
              absl::string_view::npos)
        << h.client_reason;
  }
  EXPECT_EQ(h.opens.load(), 0);
  client.Stop(absl::Now() + absl::Seconds(2));
  EXPECT_TRUE(client.Wait().ok());
}

}  // namespace
}  // namespace netloop
