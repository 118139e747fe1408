// TLS in the callback model over real loopback sockets, on every backend:
// the engine serves `openssl s_client` and its own TLS Dial, refuses what
// it must (a wrong host name, an untrusted chain, garbage, a truncated or
// silent handshake) without opening a connection for it, and ends with
// close_notify.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "reactor/internal/tls_session.h"
#include "reactor/netloop.h"
#include "reactor/tls.h"
#include "tests/test_util.h"
#include "tests/tls_test_certs.h"

namespace netloop {
namespace {

using testing::Connect;
using testing::Pattern;
using testing::WaitFor;
using testing::WriteAll;

// Server connections echo and close (with close_notify) after a line
// "bye"; client connections (Dial) write `to_send` once open and close once
// it all came back.
class TlsEchoHandler : public EventHandler {
 public:
  Action OnOpen(Conn& conn) override {
    std::lock_guard<std::mutex> lock(mu);
    if (conn.is_client()) {
      client_info = conn.TlsInfo();
      client_opened = true;
      EXPECT_TRUE(conn.Write(to_send).ok());
    } else {
      server_info = conn.TlsInfo();
      ++server_opens;
    }
    return Action::kNone;
  }
  Action OnTraffic(Conn& conn) override {
    std::string bytes;
    conn.Next().AppendTo(&bytes);
    if (conn.is_client()) {
      std::lock_guard<std::mutex> lock(mu);
      received += bytes;
      if (client_closes && received.size() >= to_send.size()) return Action::kClose;
      return Action::kNone;
    }
    EXPECT_TRUE(conn.Write(bytes).ok());
    if (bytes.size() >= 4 && bytes.compare(bytes.size() - 4, 4, "bye\n") == 0) {
      return Action::kClose;
    }
    return Action::kNone;
  }
  void OnClose(Conn& conn, const absl::Status& reason) override {
    std::lock_guard<std::mutex> lock(mu);
    if (conn.is_client()) {
      client_reason = reason;
      client_closed = true;
    } else {
      server_reasons.push_back(reason);
    }
  }

  std::mutex mu;
  std::string to_send;
  bool client_closes = true;  // else the server's close ends it
  std::string received;
  bool client_opened = false;
  bool client_closed = false;
  absl::Status client_reason;
  tls::SessionInfo client_info, server_info;
  int server_opens = 0;
  std::vector<absl::Status> server_reasons;
};

class TlsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto& certs = testing::MakeTestCertificates();
    ASSERT_TRUE(certs.has_value()) << "the openssl tool could not make certificates";
    certs_ = *certs;
    tls::ServerConfig config;
    config.certificate = {certs_.leaf, certs_.leaf_key};
    config.alpn = {"h2", "http/1.1"};
    auto ctx = tls::Context::NewServer(config);
    ASSERT_TRUE(ctx.ok()) << ctx.status();
    Options o;
    o.loops = 2;
    o.tls = *ctx;
    o.tls_handshake_timeout = absl::Milliseconds(300);
    ASSERT_TRUE(engine_.Start(handler_, {"tcp://127.0.0.1:0"}, o).ok());
    uri_ = engine_.ListenAddresses()[0];
    port_ = testing::PortOf(uri_);
  }
  void TearDown() override {
    engine_.Stop(absl::Now() + absl::Seconds(5));
    EXPECT_TRUE(engine_.Wait().ok());
  }

  std::shared_ptr<const tls::Context> ClientContext(const std::string& ca,
                                                    std::vector<std::string> alpn = {}) {
    tls::ClientConfig config;
    config.ca_file = ca;
    config.alpn = std::move(alpn);
    auto ctx = tls::Context::NewClient(config);
    EXPECT_TRUE(ctx.ok()) << ctx.status();
    return ctx.ok() ? *ctx : nullptr;
  }

  // Dials the engine itself with TLS, sends `data`, and waits until the
  // client connection closed.
  void DialAndEcho(std::shared_ptr<const tls::Context> ctx, const std::string& server_name,
                   const std::string& data) {
    {
      std::lock_guard<std::mutex> lock(handler_.mu);
      handler_.to_send = data;
    }
    DialOptions dial;
    dial.tls = std::move(ctx);
    dial.server_name = server_name;
    ASSERT_TRUE(engine_.Dial(uri_, dial).ok());
    ASSERT_TRUE(WaitFor([&] {
      std::lock_guard<std::mutex> lock(handler_.mu);
      return handler_.client_closed;
    }));
  }

  // Runs `openssl s_client` with `input` on its stdin; returns what it
  // printed (stdout and stderr). It exits when the server closes.
  // With `interactive`, s_client takes commands ("R" renegotiates) and
  // closes at the end of its input.
  std::string RunSClient(const std::string& flags, const std::string& input,
                         bool interactive = false) {
    std::string command = "printf '" + input + "' | timeout 20 openssl s_client -connect 127.0.0.1:" +
                          std::to_string(port_) + (interactive ? " " : " -ign_eof ") + flags +
                          " 2>&1";
    FILE* p = popen(command.c_str(), "r");
    if (p == nullptr) return "popen failed";
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
    pclose(p);
    return out;
  }

  uint64_t HandshakeFailures() { return engine_.stats().tls_handshake_failures; }

  testing::TestCertificates certs_;
  TlsEchoHandler handler_;
  Engine engine_;
  std::string uri_;
  uint16_t port_ = 0;
};

TEST_F(TlsServerTest, OpensslSClientVerifiesTheServerAndGetsItsBytesBack) {
  std::string out = RunSClient("-CAfile " + certs_.ca + " -servername localhost -alpn http/1.1",
                               "hello over tls\\nbye\\n");
  EXPECT_NE(out.find("Verify return code: 0 (ok)"), std::string::npos) << out;
  EXPECT_NE(out.find("hello over tls\nbye\n"), std::string::npos) << out;
  EXPECT_NE(out.find("ALPN protocol: http/1.1"), std::string::npos) << out;
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(handler_.mu);
    return handler_.server_reasons.size() == 1;
  }));
  std::lock_guard<std::mutex> lock(handler_.mu);
  EXPECT_EQ(handler_.server_opens, 1);
  EXPECT_EQ(handler_.server_info.alpn, "http/1.1");
  EXPECT_EQ(handler_.server_info.server_name, "localhost");
  EXPECT_TRUE(handler_.server_reasons[0].ok()) << handler_.server_reasons[0];
}

TEST_F(TlsServerTest, ATlsDialVerifiesAndCarriesAMegabyteBothWays) {
  const std::string data = Pattern(1 << 20, 7);
  DialAndEcho(ClientContext(certs_.ca, {"http/1.1"}), "localhost", data);
  std::lock_guard<std::mutex> lock(handler_.mu);
  EXPECT_TRUE(handler_.client_opened);
  EXPECT_TRUE(handler_.received == data) << "got " << handler_.received.size() << " bytes";
  EXPECT_TRUE(handler_.client_reason.ok()) << handler_.client_reason;
  EXPECT_EQ(handler_.client_info.version, "TLSv1.3");
  EXPECT_EQ(handler_.client_info.alpn, "http/1.1");
}

TEST_F(TlsServerTest, ADialToAnAddressVerifiesTheCertificatesIpEntry) {
  // No server_name: the dialled 127.0.0.1 is what the leaf must cover.
  DialAndEcho(ClientContext(certs_.ca), "", "by address");
  std::lock_guard<std::mutex> lock(handler_.mu);
  EXPECT_TRUE(handler_.client_opened) << handler_.client_reason;
  EXPECT_EQ(handler_.received, "by address");
}

TEST_F(TlsServerTest, ADialRefusesAWrongHostName) {
  DialAndEcho(ClientContext(certs_.ca), "wrong.example", "x");
  std::lock_guard<std::mutex> lock(handler_.mu);
  EXPECT_FALSE(handler_.client_opened);
  EXPECT_TRUE(IsTlsError(handler_.client_reason)) << handler_.client_reason;
  EXPECT_NE(handler_.client_reason.message().find("hostname mismatch"), absl::string_view::npos)
      << handler_.client_reason;
}

TEST_F(TlsServerTest, ADialRefusesAnUntrustedChain) {
  DialAndEcho(ClientContext(certs_.rogue_ca), "localhost", "x");
  std::lock_guard<std::mutex> lock(handler_.mu);
  EXPECT_FALSE(handler_.client_opened);
  EXPECT_TRUE(IsTlsError(handler_.client_reason)) << handler_.client_reason;
}

TEST_F(TlsServerTest, ServerCloseSendsCloseNotify) {
  // The server closes after "bye\n"; the client sees close_notify, an
  // orderly end, not a bare FIN.
  {
    std::lock_guard<std::mutex> lock(handler_.mu);
    handler_.client_closes = false;
  }
  DialAndEcho(ClientContext(certs_.ca), "localhost", "bye\n");
  std::lock_guard<std::mutex> lock(handler_.mu);
  EXPECT_EQ(handler_.received, "bye\n");
  EXPECT_TRUE(IsPeerClosed(handler_.client_reason)) << handler_.client_reason;
  EXPECT_EQ(handler_.client_reason.message().find("without close_notify"),
            absl::string_view::npos)
      << handler_.client_reason;
}

TEST_F(TlsServerTest, GarbageInsteadOfAClientHelloClosesOnlyThatConnection) {
  int fd = Connect(uri_);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(WriteAll(fd, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  // The server answers with an alert and closes.
  ASSERT_TRUE(testing::ReadToEof(fd).has_value());
  close(fd);
  EXPECT_TRUE(WaitFor([&] { return HandshakeFailures() == 1; }));
  DialAndEcho(ClientContext(certs_.ca), "localhost", "still served");
  std::lock_guard<std::mutex> lock(handler_.mu);
  EXPECT_EQ(handler_.received, "still served");
  EXPECT_EQ(handler_.server_opens, 1);  // the garbage connection never opened
}

TEST_F(TlsServerTest, ATruncatedHandshakeNeverOpens) {
  // Half of a real ClientHello, then FIN.
  auto client = internal::NewTlsSession(*ClientContext(certs_.ca), "localhost");
  ASSERT_TRUE(client.ok());
  ASSERT_FALSE(*(*client)->Handshake());
  std::string hello;
  ASSERT_GT((*client)->TakeCipher(&hello), 10u);
  int fd = Connect(uri_);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(WriteAll(fd, hello.substr(0, hello.size() / 2)));
  shutdown(fd, SHUT_WR);
  ASSERT_TRUE(testing::ReadToEof(fd).has_value());
  close(fd);
  EXPECT_TRUE(WaitFor([&] { return HandshakeFailures() == 1; }));
  std::lock_guard<std::mutex> lock(handler_.mu);
  EXPECT_EQ(handler_.server_opens, 0);
  EXPECT_TRUE(handler_.server_reasons.empty());
}

TEST_F(TlsServerTest, ASilentClientIsClosedAtTheHandshakeTimeout) {
  const int before = testing::OpenDescriptors();
  int fd = Connect(uri_);
  ASSERT_GE(fd, 0);
  // Nothing sent: the server gives up after tls_handshake_timeout and
  // closes; this read returns at EOF.
  ASSERT_TRUE(testing::ReadToEof(fd).has_value());
  close(fd);
  EXPECT_TRUE(WaitFor([&] { return HandshakeFailures() == 1; }));
  EXPECT_TRUE(WaitFor([&] { return testing::OpenDescriptors() == before; }));
  std::lock_guard<std::mutex> lock(handler_.mu);
  EXPECT_EQ(handler_.server_opens, 0);
}

TEST_F(TlsServerTest, SClientsRenegotiationIsRefused) {
  // "R" asks for renegotiation (TLS 1.2 only); the server refuses and the
  // echo never comes back through a second handshake.
  std::string out = RunSClient("-CAfile " + certs_.ca + " -servername localhost -tls1_2",
                               "R\\nbye\\n", /*interactive=*/true);
  EXPECT_NE(out.find("RENEGOTIATING"), std::string::npos) << out;
  EXPECT_EQ(out.find("bye\n"), std::string::npos) << out;
}

// A netloop TLS client against `openssl s_server -rev` (which answers each
// line reversed): the client verifies OpenSSL's server like any other,
// offers ALPN, and gets its bytes back transformed.
class ReverseClient : public EventHandler {
 public:
  Action OnOpen(Conn& conn) override {
    EXPECT_TRUE(conn.Write("hello netloop\n").ok());
    std::lock_guard<std::mutex> lock(mu);
    info = conn.TlsInfo();
    return Action::kNone;
  }
  Action OnTraffic(Conn& conn) override {
    std::lock_guard<std::mutex> lock(mu);
    conn.Next().AppendTo(&received);
    return received.find('\n') != std::string::npos ? Action::kClose : Action::kNone;
  }
  void OnClose(Conn&, const absl::Status& r) override {
    std::lock_guard<std::mutex> lock(mu);
    reason = r;
    closed = true;
  }
  std::mutex mu;
  std::string received;
  tls::SessionInfo info;
  absl::Status reason;
  bool closed = false;
};

TEST(TlsInteropTest, ANetloopClientTalksToOpensslSServer) {
  const auto& certs = testing::MakeTestCertificates();
  ASSERT_TRUE(certs.has_value());
  // A free port for s_server (bound, read, released).
  int probe = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(probe, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  socklen_t len = sizeof(a);
  getsockname(probe, reinterpret_cast<sockaddr*>(&a), &len);
  const std::string port = std::to_string(ntohs(a.sin_port));
  close(probe);
  const pid_t pid = fork();
  if (pid == 0) {
    execlp("openssl", "openssl", "s_server", "-accept", ("127.0.0.1:" + port).c_str(), "-cert",
           certs->leaf.c_str(), "-key", certs->leaf_key.c_str(), "-rev", "-quiet", "-alpn",
           "h2,http/1.1", static_cast<char*>(nullptr));
    _exit(127);
  }
  ASSERT_GT(pid, 0);
  const std::string uri = "tcp://127.0.0.1:" + port;
  EXPECT_TRUE(WaitFor([&] {
    int fd = Connect(uri, 1);
    if (fd < 0) return false;
    close(fd);
    return true;
  }));
  tls::ClientConfig cc;
  cc.ca_file = certs->ca;
  cc.alpn = {"http/1.1"};
  auto ctx = tls::Context::NewClient(cc);
  ASSERT_TRUE(ctx.ok());
  ReverseClient h;
  Engine engine;
  Options o;
  o.loops = 1;
  ASSERT_TRUE(engine.Start(h, {}, o).ok());
  DialOptions dial;
  dial.tls = *ctx;
  dial.server_name = "localhost";
  ASSERT_TRUE(engine.Dial(uri, dial).ok());
  EXPECT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(h.mu);
    return h.closed;
  }));
  engine.Stop(absl::Now() + absl::Seconds(5));
  EXPECT_TRUE(engine.Wait().ok());
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  std::lock_guard<std::mutex> lock(h.mu);
  EXPECT_EQ(h.received, "poolten olleh\n") << h.reason;  // "hello netloop", reversed
  EXPECT_EQ(h.info.alpn, "http/1.1");
  EXPECT_EQ(h.info.version, "TLSv1.3");
}

// A client that sends 2 MiB and then close_notify (ShutdownWrite) to a
// server whose write high-water mark is small: the server keeps pausing,
// holds what it decrypted meanwhile, and still echoes every byte before it
// answers the close_notify with its own.
class HalfClosingClient : public EventHandler {
 public:
  Action OnOpen(Conn& conn) override {
    if (!conn.is_client()) return Action::kNone;
    EXPECT_TRUE(conn.Write(data).ok());
    conn.ShutdownWrite();
    return Action::kNone;
  }
  Action OnTraffic(Conn& conn) override {
    std::string bytes;
    conn.Next().AppendTo(&bytes);
    if (!conn.is_client()) {
      EXPECT_TRUE(conn.Write(bytes).ok());
      return Action::kNone;
    }
    std::lock_guard<std::mutex> lock(mu);
    received += bytes;
    return Action::kNone;
  }
  void OnClose(Conn& conn, const absl::Status& reason) override {
    std::lock_guard<std::mutex> lock(mu);
    (conn.is_client() ? client_reason : server_reason) = reason;
    ++closes;
  }
  std::string data;
  std::mutex mu;
  std::string received;
  absl::Status client_reason, server_reason;
  int closes = 0;
};

TEST(TlsBackpressureTest, HeldBytesAreEchoedBeforeTheCloseNotifyIsAnswered) {
  const auto& certs = testing::MakeTestCertificates();
  ASSERT_TRUE(certs.has_value());
  tls::ServerConfig server_config;
  server_config.certificate = {certs->leaf, certs->leaf_key};
  auto server_ctx = tls::Context::NewServer(server_config);
  ASSERT_TRUE(server_ctx.ok());
  tls::ClientConfig client_config;
  client_config.ca_file = certs->ca;
  auto client_ctx = tls::Context::NewClient(client_config);
  ASSERT_TRUE(client_ctx.ok());
  HalfClosingClient handler;
  handler.data = Pattern(2 << 20, 11);
  Options o;
  o.loops = 2;
  o.tls = *server_ctx;
  o.write_high_water = 16 * 1024;
  Engine engine;
  ASSERT_TRUE(engine.Start(handler, {"tcp://127.0.0.1:0"}, o).ok());
  DialOptions dial;
  dial.tls = *client_ctx;
  dial.server_name = "localhost";
  dial.loop = 0;
  ASSERT_TRUE(engine.Dial(engine.ListenAddresses()[0], dial).ok());
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(handler.mu);
    return handler.closes == 2;
  }, 30000));
  engine.Stop(absl::Now() + absl::Seconds(5));
  EXPECT_TRUE(engine.Wait().ok());
  std::lock_guard<std::mutex> lock(handler.mu);
  EXPECT_TRUE(handler.received == handler.data)
      << "got " << handler.received.size() << " of " << handler.data.size() << " bytes";
  // Both ends saw the other's close_notify: no truncation either way.
  EXPECT_TRUE(IsPeerClosed(handler.server_reason)) << handler.server_reason;
  EXPECT_EQ(handler.server_reason.message().find("without"), absl::string_view::npos)
      << handler.server_reason;
  EXPECT_TRUE(IsPeerClosed(handler.client_reason)) << handler.client_reason;
  EXPECT_EQ(handler.client_reason.message().find("without"), absl::string_view::npos)
      << handler.client_reason;
}

}  // namespace
}  // namespace netloop
