// TlsSession over memory only: a client and a server session pass their
// ciphertext to each other by hand, so every outcome (a verified handshake,
// a refused one, garbage, resumption, close_notify, renegotiation) is
// checked without sockets or timing. The certificates are made fresh by the
// openssl tool.
#include "reactor/internal/tls_session.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "reactor/errors.h"
#include "reactor/tls.h"
#include "tests/tls_test_certs.h"

namespace netloop {
namespace {

using internal::TlsSession;

absl::StatusOr<std::unique_ptr<TlsSession>> NewServerSession(
    const std::shared_ptr<const tls::Context>& ctx) {
  return internal::NewTlsSession(*ctx, "");
}
absl::StatusOr<std::unique_ptr<TlsSession>> NewClientSession(
    const std::shared_ptr<const tls::Context>& ctx, std::string_view name) {
  return internal::NewTlsSession(*ctx, name);
}

// Moves ciphertext both ways until neither side has any to send, running
// each side's handshake until it completes or fails. Returns each side's
// first failure (OK when it completed).
struct PumpResult {
  absl::Status client;
  absl::Status server;
};

PumpResult Pump(TlsSession& client, TlsSession& server) {
  PumpResult result;
  bool client_failed = false, server_failed = false;
  for (int round = 0; round < 50; ++round) {
    if (!client_failed && !client.handshake_complete()) {
      absl::StatusOr<bool> done = client.Handshake();
      if (!done.ok()) {
        result.client = done.status();
        client_failed = true;
      }
    }
    std::string to_server;
    client.TakeCipher(&to_server);
    if (!to_server.empty()) server.Feed(to_server);
    if (!server_failed && !server.handshake_complete()) {
      absl::StatusOr<bool> done = server.Handshake();
      if (!done.ok()) {
        result.server = done.status();
        server_failed = true;
      }
    }
    std::string to_client;
    server.TakeCipher(&to_client);
    if (!to_client.empty()) client.Feed(to_client);
    if (to_server.empty() && to_client.empty()) break;
  }
  if (!client_failed && !client.handshake_complete()) result.client = absl::UnknownError("stalled");
  if (!server_failed && !server.handshake_complete()) result.server = absl::UnknownError("stalled");
  return result;
}

// Sends `plain` from one side and reads it on the other.
std::string Transfer(TlsSession& from, TlsSession& to, const std::string& plain) {
  EXPECT_TRUE(from.Write(plain).ok());
  std::string cipher;
  from.TakeCipher(&cipher);
  to.Feed(cipher);
  std::string got;
  char buf[4096];
  for (;;) {
    absl::StatusOr<size_t> n = to.Read(buf);
    if (!n.ok() || *n == 0) break;
    got.append(buf, *n);
  }
  std::string back;  // tickets or key updates the reader answers with
  to.TakeCipher(&back);
  if (!back.empty()) from.Feed(back);
  return got;
}

class TlsSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto& certs = testing::MakeTestCertificates();
    ASSERT_TRUE(certs.has_value()) << "the openssl tool could not make certificates";
    certs_ = *certs;
  }

  std::shared_ptr<const tls::Context> Server(std::vector<std::string> alpn = {}) {
    tls::ServerConfig config;
    config.certificate = {certs_.leaf, certs_.leaf_key};
    config.sni_certificates = {{certs_.other, certs_.other_key}};
    config.alpn = std::move(alpn);
    auto ctx = tls::Context::NewServer(config);
    EXPECT_TRUE(ctx.ok()) << ctx.status();
    return ctx.ok() ? *ctx : nullptr;
  }
  std::shared_ptr<const tls::Context> Client(std::vector<std::string> alpn = {},
                                             std::string ca = "") {
    tls::ClientConfig config;
    config.ca_file = ca.empty() ? certs_.ca : ca;
    config.alpn = std::move(alpn);
    auto ctx = tls::Context::NewClient(config);
    EXPECT_TRUE(ctx.ok()) << ctx.status();
    return ctx.ok() ? *ctx : nullptr;
  }

  testing::TestCertificates certs_;
};

TEST_F(TlsSessionTest, HandshakeVerifiesTheServerAndCarriesDataBothWays) {
  auto server_ctx = Server();
  auto client_ctx = Client();
  auto server = NewServerSession(server_ctx);
  auto client = NewClientSession(client_ctx, "localhost");
  ASSERT_TRUE(server.ok() && client.ok());
  PumpResult r = Pump(**client, **server);
  ASSERT_TRUE(r.client.ok()) << r.client;
  ASSERT_TRUE(r.server.ok()) << r.server;
  EXPECT_EQ((*client)->Info().version, "TLSv1.3");
  EXPECT_EQ((*server)->Info().server_name, "localhost");
  const std::string big(100000, 'x');
  EXPECT_EQ(Transfer(**client, **server, "hello"), "hello");
  EXPECT_EQ(Transfer(**server, **client, big), big);
}

TEST_F(TlsSessionTest, AnIpAddressIsCheckedAgainstTheCertificatesAddresses) {
  auto server = NewServerSession(Server());
  auto client = NewClientSession(Client(), "127.0.0.1");
  ASSERT_TRUE(server.ok() && client.ok());
  PumpResult r = Pump(**client, **server);
  EXPECT_TRUE(r.client.ok()) << r.client;
  EXPECT_TRUE((*server)->Info().server_name.empty());  // no SNI for an address
}

TEST_F(TlsSessionTest, AWrongHostNameIsRejected) {
  auto server = NewServerSession(Server());
  auto client = NewClientSession(Client(), "example.com");
  ASSERT_TRUE(server.ok() && client.ok());
  PumpResult r = Pump(**client, **server);
  ASSERT_FALSE(r.client.ok());
  EXPECT_TRUE(IsTlsError(r.client)) << r.client;
  EXPECT_NE(r.client.message().find("certificate verify failed"), absl::string_view::npos)
      << r.client;
  EXPECT_FALSE((*server)->handshake_complete() && (*client)->handshake_complete());
}

TEST_F(TlsSessionTest, AnUntrustedChainIsRejected) {
  tls::ServerConfig config;
  config.certificate = {certs_.rogue_leaf, certs_.rogue_leaf_key};
  auto rogue = tls::Context::NewServer(config);
  ASSERT_TRUE(rogue.ok()) << rogue.status();
  auto server = NewServerSession(*rogue);
  auto client = NewClientSession(Client(), "localhost");
  ASSERT_TRUE(server.ok() && client.ok());
  PumpResult r = Pump(**client, **server);
  ASSERT_FALSE(r.client.ok());
  EXPECT_TRUE(IsTlsError(r.client)) << r.client;
}

TEST_F(TlsSessionTest, VerifyingNeedsTheNameDialled) {
  auto client = NewClientSession(Client(), "");
  EXPECT_FALSE(client.ok());
}

TEST_F(TlsSessionTest, GarbageInsteadOfAClientHelloFailsTheHandshake) {
  auto server = NewServerSession(Server());
  ASSERT_TRUE(server.ok());
  (*server)->Feed("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
  absl::StatusOr<bool> done = (*server)->Handshake();
  ASSERT_FALSE(done.ok());
  EXPECT_TRUE(IsTlsError(done.status())) << done.status();
}

TEST_F(TlsSessionTest, AHandshakeFedOneByteAtATimeCompletes) {
  auto server = NewServerSession(Server());
  auto client = NewClientSession(Client(), "localhost");
  ASSERT_TRUE(server.ok() && client.ok());
  for (int round = 0; round < 20 && !(*server)->handshake_complete(); ++round) {
    ASSERT_TRUE((*client)->Handshake().ok());
    std::string to_server;
    (*client)->TakeCipher(&to_server);
    for (char c : to_server) {
      (*server)->Feed(std::string_view(&c, 1));
      ASSERT_TRUE((*server)->Handshake().ok());
    }
    std::string to_client;
    (*server)->TakeCipher(&to_client);
    for (char c : to_client) {
      (*client)->Feed(std::string_view(&c, 1));
      ASSERT_TRUE((*client)->Handshake().ok());
    }
  }
  EXPECT_TRUE((*server)->handshake_complete());
  EXPECT_TRUE((*client)->handshake_complete());
}

TEST_F(TlsSessionTest, AlpnPicksTheServersPreferenceAmongTheClientsOffers) {
  auto server = NewServerSession(Server({"h2", "http/1.1"}));
  auto client = NewClientSession(Client({"http/1.1", "h2"}), "localhost");
  ASSERT_TRUE(server.ok() && client.ok());
  ASSERT_TRUE(Pump(**client, **server).client.ok());
  EXPECT_EQ((*client)->Info().alpn, "h2");
  EXPECT_EQ((*server)->Info().alpn, "h2");

  // No overlap: no protocol, and still a connection.
  auto server2 = NewServerSession(Server({"h2"}));
  auto client2 = NewClientSession(Client({"spdy/3"}), "localhost");
  ASSERT_TRUE(server2.ok() && client2.ok());
  ASSERT_TRUE(Pump(**client2, **server2).client.ok());
  EXPECT_EQ((*client2)->Info().alpn, "");
}

TEST_F(TlsSessionTest, SniPicksTheCertificateIssuedForTheNameAsked) {
  auto server_ctx = Server();
  auto server = NewServerSession(server_ctx);
  auto client = NewClientSession(Client(), "other.test");
  ASSERT_TRUE(server.ok() && client.ok());
  PumpResult r = Pump(**client, **server);
  EXPECT_TRUE(r.client.ok()) << r.client;  // verified as other.test
  EXPECT_EQ((*server)->Info().server_name, "other.test");
}

TEST_F(TlsSessionTest, ASecondConnectionResumesWithTheFirstOnesTicket) {
  auto server_ctx = Server();
  auto client_ctx = Client();
  {
    auto server = NewServerSession(server_ctx);
    auto client = NewClientSession(client_ctx, "localhost");
    ASSERT_TRUE(server.ok() && client.ok());
    ASSERT_TRUE(Pump(**client, **server).client.ok());
    EXPECT_FALSE((*client)->Info().resumed);
    // TLS 1.3 tickets come after the handshake: the client takes them in
    // with its first read.
    EXPECT_EQ(Transfer(**server, **client, "ticket?"), "ticket?");
  }
  auto server = NewServerSession(server_ctx);
  auto client = NewClientSession(client_ctx, "localhost");
  ASSERT_TRUE(server.ok() && client.ok());
  ASSERT_TRUE(Pump(**client, **server).client.ok());
  EXPECT_TRUE((*client)->Info().resumed);
  EXPECT_TRUE((*server)->Info().resumed);
}

TEST_F(TlsSessionTest, CloseNotifyReadsAsThePeerClosing) {
  auto server = NewServerSession(Server());
  auto client = NewClientSession(Client(), "localhost");
  ASSERT_TRUE(server.ok() && client.ok());
  ASSERT_TRUE(Pump(**client, **server).client.ok());
  (*server)->Shutdown();
  std::string cipher;
  ASSERT_GT((*server)->TakeCipher(&cipher), 0u);
  EXPECT_FALSE((*server)->Write("after").ok());
  (*client)->Feed(cipher);
  char buf[64];
  absl::StatusOr<size_t> n = (*client)->Read(buf);
  ASSERT_FALSE(n.ok());
  EXPECT_TRUE(IsPeerClosed(n.status())) << n.status();
}

TEST_F(TlsSessionTest, RenegotiationIsRefused) {
  // Renegotiation exists up to TLS 1.2 only: a client held to 1.2 asks for
  // it, the server refuses, and no second handshake happens.
  auto server = NewServerSession(Server());
  ASSERT_TRUE(server.ok());
  SSL_CTX* raw_ctx = SSL_CTX_new(TLS_client_method());
  ASSERT_NE(raw_ctx, nullptr);
  SSL_CTX_set_max_proto_version(raw_ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(raw_ctx, SSL_VERIFY_NONE, nullptr);
  SSL* raw = SSL_new(raw_ctx);
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(in, -1);
  BIO_set_mem_eof_return(out, -1);
  SSL_set_bio(raw, in, out);
  SSL_set_connect_state(raw);
  auto exchange = [&] {
    for (int i = 0; i < 20; ++i) {
      char buf[16384];
      int n = BIO_read(out, buf, sizeof(buf));
      if (n > 0) (*server)->Feed(std::string_view(buf, static_cast<size_t>(n)));
      if (!(*server)->handshake_complete()) (void)(*server)->Handshake();
      char plain[64];
      absl::StatusOr<size_t> got = (*server)->handshake_complete()
                                       ? (*server)->Read(plain)
                                       : absl::StatusOr<size_t>(0);
      (void)got;
      std::string back;
      (*server)->TakeCipher(&back);
      if (!back.empty()) BIO_write(in, back.data(), static_cast<int>(back.size()));
      if (n <= 0 && back.empty()) (void)SSL_do_handshake(raw);
    }
  };
  exchange();
  ASSERT_EQ(SSL_is_init_finished(raw), 1) << "the TLS 1.2 handshake did not complete";
  EXPECT_EQ(std::string(SSL_get_version(raw)), "TLSv1.2");
  ASSERT_EQ(SSL_renegotiate(raw), 1);
  ASSERT_LE(SSL_do_handshake(raw), 0);  // the new ClientHello, then it waits
  char hello[16384];
  const int hello_len = BIO_read(out, hello, sizeof(hello));
  ASSERT_GT(hello_len, 0);
  (*server)->Feed(std::string_view(hello, static_cast<size_t>(hello_len)));
  char plain[64];
  absl::StatusOr<size_t> got = (*server)->Read(plain);
  ASSERT_TRUE(got.ok()) << got.status();  // a refusal, not a failure on the server
  EXPECT_EQ(*got, 0u);
  std::string answer;
  ASSERT_GT((*server)->TakeCipher(&answer), 0u) << "the server did not answer";
  BIO_write(in, answer.data(), static_cast<int>(answer.size()));
  // Refused: the answer is a no_renegotiation alert, which ends the
  // client's attempt (OpenSSL's client gives up the connection on it).
  ERR_clear_error();
  const int r = SSL_do_handshake(raw);
  EXPECT_LE(r, 0);
  EXPECT_EQ(SSL_get_error(raw, r), SSL_ERROR_SSL) << "the client did not see the refusal";
  EXPECT_EQ(ERR_GET_REASON(ERR_peek_last_error()), SSL_R_NO_RENEGOTIATION);
  ERR_clear_error();
  SSL_free(raw);
  SSL_CTX_free(raw_ctx);
}

TEST_F(TlsSessionTest, ContextsReportBadFiles) {
  tls::ServerConfig config;
  config.certificate = {"/nonexistent.crt", certs_.leaf_key};
  EXPECT_FALSE(tls::Context::NewServer(config).ok());
  config.certificate = {certs_.leaf, certs_.other_key};  // a key of another certificate
  absl::StatusOr<std::shared_ptr<const tls::Context>> mismatched = tls::Context::NewServer(config);
  ASSERT_FALSE(mismatched.ok());
  EXPECT_NE(mismatched.status().message().find("does not match"), absl::string_view::npos)
      << mismatched.status();
  tls::ClientConfig client;
  client.ca_file = "/nonexistent-ca.crt";
  EXPECT_FALSE(tls::Context::NewClient(client).ok());
}

}  // namespace
}  // namespace netloop
