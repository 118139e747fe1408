// FiberConn::SendFile over real loopback sockets, on every backend: a file
// between two writes arrives whole and in order, in plaintext and through
// TLS; a peer that does not read is bounded by the write deadline.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <string>

#include "fiberbridge/fiber_conn.h"
#include "fiberbridge/server.h"
#include "gtest/gtest.h"
#include "reactor/tls.h"
#include "tests/fiber_test_util.h"
#include "tests/test_util.h"
#include "tests/tls_test_certs.h"

namespace netloop::fiber {
namespace {

using netloop::testing::Pattern;
using netloop::testing::WaitFor;

// A file under the test's temporary directory holding `content`, open for
// reading.
int MakeFile(const std::string& name, const std::string& content) {
  const std::string path = std::string(getenv("TEST_TMPDIR")) + "/" + name;
  int w = open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
  size_t done = 0;
  while (w >= 0 && done < content.size()) {
    ssize_t n = write(w, content.data() + done, content.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  if (w >= 0) close(w);
  return open(path.c_str(), O_RDONLY | O_CLOEXEC);
}

class FiberSendFileTest : public ::testing::Test {
 protected:
  // Starts a server whose handler reads the client's first bytes, then
  // writes "A", the file, "B", and returns (closing).
  void StartServer(const std::shared_ptr<const tls::Context>& tls = nullptr) {
    content_ = Pattern(24 << 20, 9);
    file_ = MakeFile("served", content_);
    ASSERT_GE(file_, 0);
    Options o;
    o.loops = 1;
    o.tls = tls;
    ASSERT_TRUE(server_
                    .Start({"tcp://127.0.0.1:0"}, o,
                           [this](FiberConn& conn) {
                             char buf[16];
                             if (!conn.Read(buf).ok()) return;
                             absl::StatusOr<uint64_t> sent;
                             if (conn.WriteAll("A").ok()) {
                               sent = conn.SendFile(file_, 0, content_.size());
                             }
                             if (sent.ok()) (void)conn.WriteAll("B");
                             std::lock_guard<std::mutex> lock(mu_);
                             result_ = sent;
                             done_ = true;
                           })
                    .ok());
  }
  void TearDown() override {
    if (file_ < 0) return;  // no server started
    server_.Stop(absl::Now() + absl::Seconds(5));
    EXPECT_TRUE(server_.Wait().ok());
    close(file_);
  }

  std::string content_;
  int file_ = -1;
  FiberServer server_;
  std::mutex mu_;
  absl::StatusOr<uint64_t> result_ = absl::UnknownError("not yet");
  bool done_ = false;
};

TEST_F(FiberSendFileTest, AFileBetweenTwoWritesArrivesWholeAndInOrder) {
  StartServer();
  int fd = netloop::testing::Connect(server_.ListenAddresses()[0]);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(netloop::testing::WriteAll(fd, "go"));
  std::optional<std::string> got = netloop::testing::ReadToEof(fd);
  close(fd);
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(*got == "A" + content_ + "B") << got->size();
  std::lock_guard<std::mutex> lock(mu_);
  ASSERT_TRUE(result_.ok()) << result_.status();
  EXPECT_EQ(*result_, content_.size());
}

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
  StartServer(*server_ctx);
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

TEST_F(FiberSendFileTest, APeerThatDoesNotReadIsBoundedByTheWriteDeadline) {
  const std::string content = Pattern(64 << 20, 10);  // beyond both socket buffers
  const int file = MakeFile("unread", content);
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
  int fd = netloop::testing::Connect(server.ListenAddresses()[0]);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(mu);
    return done;
  }));
  close(fd);
  server.Stop(absl::Now() + absl::Seconds(5));
  EXPECT_TRUE(server.Wait().ok());
  close(file);
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_TRUE(absl::IsDeadlineExceeded(result.status())) << result.status();
}

}  // namespace
}  // namespace netloop::fiber
