// Conn::SendFile over real loopback sockets, on every backend: files keep
// their place among writes, go whole however large, hold no memory while a
// peer does not read, end the connection with DataLoss when shorter than
// promised, travel through TLS, and drain before Close completes.
#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "reactor/netloop.h"
#include "tests/test_util.h"
#if !defined(_WIN32)  // no mingw OpenSSL here: TLS is Linux-only
#include "reactor/tls.h"
#include "tests/tls_test_certs.h"
#endif

namespace netloop {
namespace {

using testing::CloseClient;
using testing::Connect;
using testing::Pattern;
using testing::ReadExactly;
using testing::ReadToEof;
using testing::TempFile;
using testing::WaitFor;
using testing::WriteAll;

// On the first bytes from a client, runs `plan` with the connection.
class PlanHandler : public EventHandler {
 public:
  std::function<void(Conn&)> plan;
  Action OnTraffic(Conn& conn) override {
    conn.Discard();
    if (!planned_) {
      planned_ = true;
      plan(conn);
    }
    return Action::kNone;
  }
  void OnBackpressure(Conn& conn, bool paused) override {
    if (paused) paused_.fetch_add(1);
    (void)conn;
  }
  void OnClose(Conn&, const absl::Status& reason) override {
    std::lock_guard<std::mutex> lock(mu);
    reasons.push_back(reason);
  }
  std::mutex mu;
  std::vector<absl::Status> reasons;
  std::atomic<int> paused_{0};

 private:
  bool planned_ = false;  // one connection per test, on its loop
};

class SendFileTest : public ::testing::Test {
 protected:
  void Start(Options o = {}) {
    if (o.loops == 0) o.loops = 1;
    ASSERT_TRUE(engine_.Start(handler_, {"tcp://127.0.0.1:0"}, o).ok());
    uri_ = engine_.ListenAddresses()[0];
  }
  void TearDown() override {
    engine_.Stop(absl::Now() + absl::Seconds(5));
    EXPECT_TRUE(engine_.Wait().ok());
  }
  absl::Status CloseReason() {
    std::lock_guard<std::mutex> lock(handler_.mu);
    return handler_.reasons.empty() ? absl::UnknownError("not closed") : handler_.reasons[0];
  }
  PlanHandler handler_;
  Engine engine_;
  std::string uri_;
};

TEST_F(SendFileTest, FilesKeepTheirPlaceAmongWrites) {
  const std::string one = Pattern(1 << 20, 1), two = Pattern(300000, 2);
  TempFile f1(one), f2(two);
  // The plan runs on the loop thread: it captures values, not the test
  // body's locals.
  handler_.plan = [fd1 = f1.fd(), fd2 = f2.fd(), size1 = one.size()](Conn& c) {
    EXPECT_TRUE(c.Write("A").ok());
    EXPECT_TRUE(c.SendFile(fd1, 0, size1).ok());
    EXPECT_TRUE(c.Write("B").ok());
    EXPECT_TRUE(c.SendFile(fd2, 1000, 5000).ok());  // a range
    std::string_view tail[] = {"C", "D"};
    EXPECT_TRUE(c.Writev(tail).ok());
    c.Close();
  };
  Start();
  SocketHandle fd = Connect(uri_);
  ASSERT_TRUE(WriteAll(fd, "go"));
  std::optional<std::string> got = ReadToEof(fd);
  CloseClient(fd);
  ASSERT_TRUE(got.has_value());
  const std::string want = "A" + one + "B" + two.substr(1000, 5000) + "CD";
  EXPECT_TRUE(*got == want) << "got " << got->size() << " bytes of " << want.size();
  ASSERT_TRUE(WaitFor([&] { return !CloseReason().message().empty() || CloseReason().ok(); }));
  EXPECT_TRUE(CloseReason().ok()) << CloseReason();
}

TEST_F(SendFileTest, FilesKeepTheirPlaceWithEdgeTriggeredEpoll) {
  // Edge-triggered: no new edge comes for room already there, so every
  // chunk and the bytes after a file must go on in the same event.
  const std::string one = Pattern(1 << 20, 1), two = Pattern(300000, 2);
  TempFile f1(one), f2(two);
  // The plan runs on the loop thread: it captures values, not the test
  // body's locals.
  handler_.plan = [fd1 = f1.fd(), fd2 = f2.fd(), size1 = one.size()](Conn& c) {
    EXPECT_TRUE(c.Write("A").ok());
    EXPECT_TRUE(c.SendFile(fd1, 0, size1).ok());
    EXPECT_TRUE(c.Write("B").ok());
    EXPECT_TRUE(c.SendFile(fd2, 1000, 5000).ok());  // a range
    std::string_view tail[] = {"C", "D"};
    EXPECT_TRUE(c.Writev(tail).ok());
    c.Close();
  };
  Options o;
  o.edge_triggered = true;
  Start(o);
  SocketHandle fd = Connect(uri_);
  ASSERT_TRUE(WriteAll(fd, "go"));
  std::optional<std::string> got = ReadToEof(fd);
  CloseClient(fd);
  ASSERT_TRUE(got.has_value());
  const std::string want = "A" + one + "B" + two.substr(1000, 5000) + "CD";
  EXPECT_TRUE(*got == want) << "got " << got->size() << " bytes of " << want.size();
  ASSERT_TRUE(WaitFor([&] { return !CloseReason().message().empty() || CloseReason().ok(); }));
  EXPECT_TRUE(CloseReason().ok()) << CloseReason();
}

TEST_F(SendFileTest, AReaderThatStopsHoldsTheFileOutOfMemory) {
  // 48 MiB to a peer that reads nothing at first: reading pauses (the file
  // counts toward the high-water mark), the engine's buffers stay within a
  // chunk, and once the peer reads, every byte arrives.
  const std::string content = Pattern(48 << 20, 3);
  TempFile file(content);
  handler_.plan = [fd = file.fd(), size = content.size()](Conn& c) {
    EXPECT_TRUE(c.SendFile(fd, 0, size).ok());
    EXPECT_GE(c.OutboundBuffered(), size / 2);
  };
  Start();
  SocketHandle fd = Connect(uri_);
  ASSERT_TRUE(WriteAll(fd, "go"));
  ASSERT_TRUE(WaitFor([&] { return handler_.paused_.load() > 0; }));
  EXPECT_LE(engine_.stats().buffered_bytes, 256u * 1024) << "file bytes held in memory";
  std::optional<std::string> got = ReadExactly(fd, content.size());
  CloseClient(fd);
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(*got == content);
}

TEST_F(SendFileTest, AFileShorterThanPromisedEndsWithDataLoss) {
  const std::string content = Pattern(100000, 4);
  TempFile file(content);
  handler_.plan = [fd = file.fd(), size = content.size()](Conn& c) {
    EXPECT_TRUE(c.SendFile(fd, 0, size + 5000).ok());
  };
  Start();
  SocketHandle fd = Connect(uri_);
  ASSERT_TRUE(WriteAll(fd, "go"));
  std::optional<std::string> got = ReadToEof(fd);
  CloseClient(fd);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, content);  // all there was, then the close
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(handler_.mu);
    return !handler_.reasons.empty();
  }));
  EXPECT_TRUE(absl::IsDataLoss(CloseReason())) << CloseReason();
}

TEST_F(SendFileTest, CloseDrainsTheFileFirst) {
  const std::string content = Pattern(8 << 20, 5);
  TempFile file(content);
  handler_.plan = [fd = file.fd(), size = content.size()](Conn& c) {
    EXPECT_TRUE(c.SendFile(fd, 0, size).ok());
    c.Close();
    EXPECT_FALSE(c.Write("late").ok());  // closing: nothing new
  };
  Start();
  SocketHandle fd = Connect(uri_);
  ASSERT_TRUE(WriteAll(fd, "go"));
  std::optional<std::string> got = ReadToEof(fd);
  CloseClient(fd);
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(*got == content) << got->size();
}

// TLS: the file is read and encrypted a chunk at a time.
#if !defined(_WIN32)
class TlsFileClient : public EventHandler {
 public:
  Action OnOpen(Conn& conn) override {
    if (conn.is_client()) EXPECT_TRUE(conn.Write("go").ok());
    return Action::kNone;
  }
  Action OnTraffic(Conn& conn) override {
    std::string bytes;
    conn.Next().AppendTo(&bytes);
    if (!conn.is_client()) {
      // Records sealed before, for and after the file leave in that order.
      EXPECT_TRUE(conn.Write("head").ok());
      EXPECT_TRUE(conn.SendFile(file_fd, 0, size).ok());
      EXPECT_TRUE(conn.Write("tail").ok());
      conn.Close();
      return Action::kNone;
    }
    std::lock_guard<std::mutex> lock(mu);
    received += bytes;
    return Action::kNone;
  }
  void OnClose(Conn& conn, const absl::Status& reason) override {
    std::lock_guard<std::mutex> lock(mu);
    if (conn.is_client()) {
      client_reason = reason;
      client_closed = true;
    }
  }
  int file_fd = -1;
  size_t size = 0;
  std::mutex mu;
  std::string received;
  absl::Status client_reason;
  bool client_closed = false;
};

void FileThroughTls(bool edge_triggered) {
  const auto& certs = testing::MakeTestCertificates();
  ASSERT_TRUE(certs.has_value());
  tls::ServerConfig sc;
  sc.certificate = {certs->leaf, certs->leaf_key};
  auto server_ctx = tls::Context::NewServer(sc);
  tls::ClientConfig cc;
  cc.ca_file = certs->ca;
  auto client_ctx = tls::Context::NewClient(cc);
  ASSERT_TRUE(server_ctx.ok() && client_ctx.ok());
  const std::string content = Pattern(3 << 20, 6);
  TempFile file(content);
  TlsFileClient h;
  h.file_fd = file.fd();
  h.size = content.size();
  Options o;
  o.loops = 2;
  o.tls = *server_ctx;
  o.edge_triggered = edge_triggered;
  Engine engine;
  ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, o).ok());
  DialOptions dial;
  dial.tls = *client_ctx;
  dial.server_name = "localhost";
  ASSERT_TRUE(engine.Dial(engine.ListenAddresses()[0], dial).ok());
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(h.mu);
    return h.client_closed;
  }));
  engine.Stop(absl::Now() + absl::Seconds(5));
  EXPECT_TRUE(engine.Wait().ok());
  std::lock_guard<std::mutex> lock(h.mu);
  EXPECT_TRUE(h.received == "head" + content + "tail") << h.received.size();
  EXPECT_TRUE(IsPeerClosed(h.client_reason)) << h.client_reason;  // with close_notify
  EXPECT_EQ(h.client_reason.message().find("without"), absl::string_view::npos);
}

TEST(SendFileTlsTest, AFileGoesThroughTls) { FileThroughTls(false); }
// Edge-triggered (epoll): each sealed chunk sits in the ring when no new
// edge comes; it must go on in the same event.
TEST(SendFileTlsTest, AFileGoesThroughTlsWithEdgeTriggeredEpoll) { FileThroughTls(true); }
#endif  // !_WIN32

}  // namespace
}  // namespace netloop
