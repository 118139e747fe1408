// FiberConn::SendFile over real loopback sockets, on every backend: a file
// between two writes arrives whole and in order, in plaintext and through
// TLS; a peer that does not read is bounded by the write deadline.
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "fiberbridge/fiber_conn.h"
#include "fiberbridge/server.h"
#include "gtest/gtest.h"
#include "tests/fiber_test_util.h"
#include "tests/test_util.h"
#if !defined(_WIN32)  // no mingw OpenSSL here: TLS is Linux-only
#include "reactor/tls.h"
#include "tests/tls_test_certs.h"
#endif

namespace netloop::fiber {
namespace {

using netloop::testing::CloseClient;
using netloop::testing::Pattern;
using netloop::testing::TempFile;
using netloop::testing::WaitFor;

class FiberSendFileTest : public ::testing::Test {
 protected:
  // Starts a server whose handler reads the client's first bytes, then
  // writes "A", the file, "B", and returns (closing).
  void StartServer(std::function<void(Options&)> configure = nullptr) {
    content_ = Pattern(24 << 20, 9);
    file_ = std::make_unique<TempFile>(content_);
    ASSERT_GE(file_->fd(), 0);
    Options o;
    o.loops = 1;
    if (configure) configure(o);
    ASSERT_TRUE(server_
                    .Start({"tcp://127.0.0.1:0"}, o,
                           [this](FiberConn& conn) {
                             char buf[16];
                             if (!conn.Read(buf).ok()) return;
                             absl::StatusOr<uint64_t> sent;
                             if (conn.WriteAll("A").ok()) {
                               sent = conn.SendFile(file_->fd(), 0, content_.size());
                             }
                             if (sent.ok()) (void)conn.WriteAll("B");
                             std::lock_guard<std::mutex> lock(mu_);
                             result_ = sent;
                             done_ = true;
                           })
                    .ok());
  }
  void TearDown() override {
    if (file_ == nullptr) return;  // no server started
    server_.Stop(absl::Now() + absl::Seconds(5));
    EXPECT_TRUE(server_.Wait().ok());
  }

  std::string content_;
  std::unique_ptr<TempFile> file_;
  FiberServer server_;
  std::mutex mu_;
  absl::StatusOr<uint64_t> result_ = absl::UnknownError("not yet");
  bool done_ = false;
};

TEST_F(FiberSendFileTest, AFileBetweenTwoWritesArrivesWholeAndInOrder) {
  StartServer();
  SocketHandle fd = netloop::testing::Connect(server_.ListenAddresses()[0]);
  ASSERT_NE(fd, kInvalidSocket);
  ASSERT_TRUE(netloop::testing::WriteAll(fd, "go"));
  std::optional<std::string> got = netloop::testing::ReadToEof(fd);
  CloseClient(fd);
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(*got == "A" + content_ + "B") << got->size();
  std::lock_guard<std::mutex> lock(mu_);
  ASSERT_TRUE(result_.ok()) << result_.status();
  EXPECT_EQ(*result_, content_.size());
}

#if !defined(_WIN32)
TEST_F(FiberSendFileTest, AFileGoesThroughTls) {
  const auto& certs = netloop::testing::MakeTestCertificates();
  ASSERT_TRUE(certs.has_value());
  tls::ServerConfig sc;
  sc.certificate = {certs->leaf, certs->leaf_key};
  auto server_ctx = tls::Context::NewServer(sc);
  tls::ClientConfig cc;
  cc.ca_file = certs->ca;
  auto client_ctx = tls::Context::NewClient(cc);
  ASSERT_TRUE(server_ctx.ok() && client_ctx.ok());
  StartServer([&](Options& o) { o.tls = *server_ctx; });
  testing::Loops loops;
  ASSERT_TRUE(loops.status().ok());
  std::string got;
  absl::Status end;
  ASSERT_TRUE(loops.Run([&] {
    auto conn = DialTls(server_.ListenAddresses()[0], *client_ctx,
                        absl::Now() + absl::Seconds(10), "localhost");
    if (!conn.ok()) {
      end = conn.status();
      return;
    }
    if (!(*conn)->WriteAll("go").ok()) return;
    char buf[16 * 1024];
    for (;;) {
      absl::StatusOr<size_t> n = (*conn)->Read(buf);
      if (!n.ok()) {
        end = n.status();
        return;
      }
      got.append(buf, *n);
    }
  }));
  EXPECT_TRUE(got == "A" + content_ + "B") << got.size();
  EXPECT_TRUE(IsPeerClosed(end)) << end;
  EXPECT_EQ(end.message().find("without"), absl::string_view::npos) << end;  // close_notify
}
#endif  // !_WIN32

TEST_F(FiberSendFileTest, APeerThatDoesNotReadIsBoundedByTheWriteDeadline) {
  const std::string content = Pattern(64 << 20, 10);  // beyond both socket buffers
  TempFile unread(content);
  const int file = unread.fd();
  ASSERT_GE(file, 0);
  Options o;
  o.loops = 1;
  std::mutex mu;
  absl::StatusOr<uint64_t> result = absl::UnknownError("not yet");
  bool done = false;
  FiberServer server;
  ASSERT_TRUE(server
                  .Start({"tcp://127.0.0.1:0"}, o,
                         [&](FiberConn& conn) {
                           conn.SetWriteDeadline(absl::Now() + absl::Milliseconds(200));
                           absl::StatusOr<uint64_t> r = conn.SendFile(file, 0, content.size());
                           std::lock_guard<std::mutex> lock(mu);
                           result = r;
                           done = true;
                         })
                  .ok());
  SocketHandle fd = netloop::testing::Connect(server.ListenAddresses()[0]);
  ASSERT_NE(fd, kInvalidSocket);
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(mu);
    return done;
  }));
  CloseClient(fd);
  server.Stop(absl::Now() + absl::Seconds(5));
  EXPECT_TRUE(server.Wait().ok());
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_TRUE(absl::IsDeadlineExceeded(result.status())) << result.status();
}

}  // namespace
}  // namespace netloop::fiber
