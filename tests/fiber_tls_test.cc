// TLS in the fiber model over real loopback sockets, on every backend: a
// FiberServer with Options::tls serves openssl s_client and fiber::DialTls;
// DialTls refuses a wrong name and an untrusted chain; a silent client is cut
// off by the handshake timeout without reaching the handler; close_notify
// ends the conversation in both directions.
#include <stdio.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "fiberbridge/fiber_conn.h"
#include "fiberbridge/server.h"
#include "fiberbridge/sync.h"
#include "gtest/gtest.h"
#include "reactor/errors.h"
#include "reactor/tls.h"
#include "tests/fiber_test_util.h"
#include "tests/test_util.h"
#include "tests/tls_test_certs.h"

namespace netloop::fiber {
namespace {

using netloop::testing::Pattern;
using netloop::testing::WaitFor;

class FiberTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto& certs = netloop::testing::MakeTestCertificates();
    ASSERT_TRUE(certs.has_value()) << "the openssl tool could not make certificates";
    certs_ = *certs;
    tls::ServerConfig config;
    config.certificate = {certs_.leaf, certs_.leaf_key};
    config.alpn = {"http/1.1"};
    auto ctx = tls::Context::NewServer(config);
    ASSERT_TRUE(ctx.ok()) << ctx.status();
    Options o;
    o.loops = 2;
    o.tls = *ctx;
    o.tls_handshake_timeout = absl::Milliseconds(300);
    // Echo until the peer's close_notify (or anything else) ends it.
    ASSERT_TRUE(server_
                    .Start({"tcp://127.0.0.1:0"}, o,
                           [this](FiberConn& conn) {
                             handled_.fetch_add(1);
                             {
                               std::lock_guard<std::mutex> lock(mu_);
                               server_info_ = conn.TlsInfo();
                             }
                             char buf[16 * 1024];
                             for (;;) {
                               absl::StatusOr<size_t> n = conn.Read(buf);
                               if (!n.ok()) {
                                 std::lock_guard<std::mutex> lock(mu_);
                                 server_end_ = n.status();
                                 return;
                               }
                               std::string_view got(buf, *n);
                               if (!conn.WriteAll(got).ok()) return;
                               if (got.size() >= 4 && got.substr(got.size() - 4) == "bye\n") return;
                             }
                           })
                    .ok());
    uri_ = server_.ListenAddresses()[0];
  }
  void TearDown() override {
    server_.Stop(absl::Now() + absl::Seconds(5));
    EXPECT_TRUE(server_.Wait().ok());
  }

  std::shared_ptr<const tls::Context> Client(const std::string& ca) {
    tls::ClientConfig config;
    config.ca_file = ca;
    config.alpn = {"http/1.1"};
    auto ctx = tls::Context::NewClient(config);
    EXPECT_TRUE(ctx.ok()) << ctx.status();
    return ctx.ok() ? *ctx : nullptr;
  }

  netloop::testing::TestCertificates certs_;
  FiberServer server_;
  std::string uri_;
  std::atomic<int> handled_{0};
  std::mutex mu_;
  tls::SessionInfo server_info_;
  absl::Status server_end_;
};

TEST_F(FiberTlsTest, OpensslSClientIsServedByAFiberHandler) {
  const std::string command =
      "printf 'hello fiber\\nbye\\n' | timeout 20 openssl s_client -connect 127.0.0.1:" +
      std::to_string(netloop::testing::PortOf(uri_)) + " -ign_eof -servername localhost -CAfile " +
      certs_.ca + " 2>&1";
  FILE* p = popen(command.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  pclose(p);
  EXPECT_NE(out.find("Verify return code: 0 (ok)"), std::string::npos) << out;
  EXPECT_NE(out.find("hello fiber\nbye\n"), std::string::npos) << out;
  EXPECT_EQ(handled_.load(), 1);
}

TEST_F(FiberTlsTest, DialTlsCarriesAMegabyteAndEndsWithCloseNotify) {
  testing::Loops loops;
  ASSERT_TRUE(loops.status().ok());
  const std::string data = Pattern(1 << 20, 3);
  std::string received;
  absl::Status status, end;
  tls::SessionInfo info;
  ASSERT_TRUE(loops.Run([&] {
    absl::StatusOr<std::unique_ptr<FiberConn>> conn =
        DialTls(uri_, Client(certs_.ca), absl::Now() + absl::Seconds(10), "localhost");
    if (!conn.ok()) {
      status = conn.status();
      return;
    }
    info = (*conn)->TlsInfo();
    // One fiber writes everything and then close_notify; this one reads
    // the echo (the server stops reading while its writes are blocked).
    FiberConn* c = conn->get();
    WaitGroup writer_done;
    writer_done.Add(1);
    Spawn([&] {
      status = c->WriteAll(data);
      if (status.ok()) status = c->CloseWrite();
      writer_done.Done();
    });
    char buf[16 * 1024];
    for (;;) {
      absl::StatusOr<size_t> n = c->Read(buf);
      if (!n.ok()) {
        end = n.status();
        break;
      }
      received.append(buf, *n);
    }
    (void)writer_done.Wait();
  }));
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(info.version, "TLSv1.3");
  EXPECT_EQ(info.alpn, "http/1.1");
  EXPECT_TRUE(received == data) << "got " << received.size() << " bytes";
  // The server's handler saw our close_notify, returned, and its
  // connection sent its own: both ends are orderly.
  EXPECT_TRUE(IsPeerClosed(end)) << end;
  EXPECT_EQ(end.message().find("without"), absl::string_view::npos) << end;
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(mu_);
    return !server_end_.ok();
  }));
  std::lock_guard<std::mutex> lock(mu_);
  EXPECT_TRUE(IsPeerClosed(server_end_)) << server_end_;
  EXPECT_EQ(server_end_.message().find("without"), absl::string_view::npos) << server_end_;
  EXPECT_EQ(server_info_.alpn, "http/1.1");
}

TEST_F(FiberTlsTest, DialTlsRefusesAWrongNameAndAnUntrustedChain) {
  testing::Loops loops;
  ASSERT_TRUE(loops.status().ok());
  absl::Status wrong_name, untrusted;
  ASSERT_TRUE(loops.Run([&] {
    wrong_name =
        DialTls(uri_, Client(certs_.ca), absl::Now() + absl::Seconds(10), "wrong.example").status();
    untrusted =
        DialTls(uri_, Client(certs_.rogue_ca), absl::Now() + absl::Seconds(10), "localhost")
            .status();
  }));
  EXPECT_TRUE(IsTlsError(wrong_name)) << wrong_name;
  EXPECT_NE(wrong_name.message().find("hostname mismatch"), absl::string_view::npos)
      << wrong_name;
  EXPECT_TRUE(IsTlsError(untrusted)) << untrusted;
  // Neither reached the handler.
  EXPECT_TRUE(WaitFor([&] { return server_.tls_handshake_failures() == 2; }));
  EXPECT_EQ(handled_.load(), 0);
}

TEST_F(FiberTlsTest, ASilentClientIsCutOffBeforeTheHandler) {
  int fd = netloop::testing::Connect(uri_);
  ASSERT_GE(fd, 0);
  // The handshake timeout closes it; this read returns at EOF.
  ASSERT_TRUE(netloop::testing::ReadToEof(fd).has_value());
  close(fd);
  EXPECT_TRUE(WaitFor([&] { return server_.tls_handshake_failures() == 1; }));
  EXPECT_EQ(handled_.load(), 0);
}

TEST_F(FiberTlsTest, ADialTlsDeadlineBoundsASilentServer) {
  // A plain listener that never answers the ClientHello.
  Engine silent;
  EventHandler nothing;
  Options o;
  o.loops = 1;
  ASSERT_TRUE(silent.Start(nothing, {"tcp://127.0.0.1:0"}, o).ok());
  testing::Loops loops;
  ASSERT_TRUE(loops.status().ok());
  absl::Status status;
  ASSERT_TRUE(loops.Run([&] {
    status = DialTls(silent.ListenAddresses()[0], Client(certs_.ca),
                     absl::Now() + absl::Milliseconds(200), "localhost")
                 .status();
  }));
  EXPECT_TRUE(absl::IsDeadlineExceeded(status)) << status;
  silent.Stop(absl::Now() + absl::Seconds(2));
  EXPECT_TRUE(silent.Wait().ok());
}

TEST_F(FiberTlsTest, AWriteThatFailsMidRecordFailsEveryLaterWrite) {
  // A second server whose handler writes 16 MiB under a short deadline to a
  // client that never reads: the deadline cuts a record in half, so the
  // stream is broken and later writes must not pretend otherwise.
  tls::ServerConfig config;
  config.certificate = {certs_.leaf, certs_.leaf_key};
  auto ctx = tls::Context::NewServer(config);
  ASSERT_TRUE(ctx.ok());
  Options o;
  o.loops = 1;
  o.tls = *ctx;
  std::mutex mu;
  absl::Status first, second;
  bool done = false;
  FiberServer writer;
  ASSERT_TRUE(writer
                  .Start({"tcp://127.0.0.1:0"}, o,
                         [&](FiberConn& conn) {
                           const std::string data = Pattern(16 << 20, 5);  // beyond both socket buffers
                           conn.SetWriteDeadline(absl::Now() + absl::Milliseconds(200));
                           absl::Status a = conn.WriteAll(data);
                           conn.SetWriteDeadline(absl::InfiniteFuture());
                           absl::Status b = conn.WriteAll("more");
                           std::lock_guard<std::mutex> lock(mu);
                           first = a;
                           second = b;
                           done = true;
                         })
                  .ok());
  testing::Loops loops;
  ASSERT_TRUE(loops.status().ok());
  std::unique_ptr<FiberConn> client;
  ASSERT_TRUE(loops.Run([&] {
    auto conn = DialTls(writer.ListenAddresses()[0], Client(certs_.ca),
                        absl::Now() + absl::Seconds(10), "localhost");
    if (conn.ok()) client = *std::move(conn);  // kept open, never read
  }));
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(mu);
    return done;
  }));
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_TRUE(absl::IsDeadlineExceeded(first)) << first;
    EXPECT_TRUE(absl::IsDeadlineExceeded(second)) << second;  // sticky, nothing sent
  }
  ASSERT_TRUE(loops.Run([&] { client.reset(); }));
  writer.Stop(absl::Now() + absl::Seconds(5));
  EXPECT_TRUE(writer.Wait().ok());
}

}  // namespace
}  // namespace netloop::fiber
