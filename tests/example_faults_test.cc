// The example servers (callback and fiber echo, callback and fiber HTTP,
// both HTTP servers again serving HTTPS) run as child processes with faults injected at their syscall
// boundary (NETLOOP_FAULTS in their environment, see
// reactor/fault_injection.h), for many seeds each. Per seed: every echoed
// byte matches what was sent, every HTTP response is whole and correct, in
// order (a connection may end early, never garbled: over TLS no record is
// ever refused by the client), nothing hangs, and the server survives and
// exits cleanly on SIGTERM.
//
//   bazel test //tests:example_faults_test --test_env=NETLOOP_FAULT_SEEDS=2000
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "reactor/fault_injection.h"
#include "tests/echo_exerciser.h"
#include "tests/server_process.h"
#include "tests/test_util.h"
#include "tests/tls_test_certs.h"

namespace netloop {
namespace {

using testing::ServerProcess;

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = getenv(name);
  return v != nullptr && *v != '\0' ? strtoull(v, nullptr, 10) : fallback;
}

struct Server {
  const char* name;
  const char* binary;
  std::vector<std::string> extra_args;
  bool http;
  // Registered edge-triggered: the callback server with --et, and every
  // fiber connection (FiberConn registers once, edge-triggered, as Go's
  // pollDesc does). Spurious EAGAIN is then off: a socket with data that
  // answers EAGAIN is no fault a kernel makes, and no edge would follow it.
  bool edge;
  // Serves HTTPS (the test's certificate is added to the arguments).
  bool tls = false;
};

std::string PlanFor(uint64_t seed, bool edge) {
  FaultPlan plan;
  plan.seed = seed;
  plan.rate = 0.03;
  plan.spurious_eagain = !edge;
  return "NETLOOP_FAULTS=" + plan.ToString();
}

std::string Replay(const Server& s, uint64_t seed) {
  return absl::StrCat("replay: bazel test //tests:example_faults_test",
                      " --test_env=NETLOOP_FAULT_FIRST_SEED=", seed,
                      " --test_env=NETLOOP_FAULT_SEEDS=1 --test_filter='*", s.name, "*'");
}

// Checks that `bytes` is a sequence of whole "200 Hello, World!" responses,
// possibly cut short at a response boundary or inside the last one. Returns
// the number of whole responses, or -1 if any byte is wrong.
int CountGoodResponses(const std::string& bytes) {
  int good = 0;
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t end = bytes.find("\r\n\r\n", pos);
    if (end == std::string::npos) return good;  // cut inside a head
    std::string_view head(bytes.data() + pos, end - pos);
    if (head.substr(0, 15) != "HTTP/1.1 200 OK") return -1;
    size_t cl = head.find("Content-Length: ");
    if (cl == std::string_view::npos) return -1;
    size_t eol = head.find("\r\n", cl);
    size_t len = 0;
    if (!absl::SimpleAtoi(absl::string_view(head.data() + cl + 16, eol == std::string_view::npos
                                                                     ? head.size() - cl - 16
                                                                     : eol - cl - 16),
                          &len) ||
        len != 13) {
      return -1;
    }
    size_t body = end + 4;
    if (bytes.size() < body + len) return good;  // cut inside the body
    if (bytes.compare(body, len, "Hello, World!") != 0) return -1;
    ++good;
    pos = body + len;
  }
  return good;
}

// `n` pipelined GETs, the last asking to close.
std::string PipelinedRequests(int n) {
  std::string requests;
  for (int i = 0; i < n; ++i) {
    requests += "GET /plaintext HTTP/1.1\r\nHost: test\r\n";
    requests += i + 1 == n ? "Connection: close\r\n\r\n" : "\r\n";
  }
  return requests;
}

// Sends `n` pipelined requests (the last asks to close) on each of a few
// connections and checks every response. Returns "" or what broke; adds the
// whole responses seen to *good.
std::string RunHttpClients(const std::string& uri, uint64_t seed, int* good) {
  constexpr int kConns = 3;
  const int n = 1 + static_cast<int>(seed % 40);
  const std::string requests = PipelinedRequests(n);
  for (int c = 0; c < kConns; ++c) {
    int fd = testing::Connect(uri);
    if (fd < 0) return "connect failed";
    (void)testing::WriteAll(fd, requests);  // the server may cut us off
    std::string got;
    char buf[65536];
    for (;;) {
      ssize_t r = recv(fd, buf, sizeof(buf), 0);
      if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
          close(fd);
          return "hang: no response and no close within 10 s";
        }
        break;  // EOF or reset
      }
      got.append(buf, static_cast<size_t>(r));
    }
    close(fd);
    int k = CountGoodResponses(got);
    if (k < 0) return "a malformed or wrong response:\n" + got.substr(0, 512);
    if (k > n) return "more responses than requests";
    *good += k;
  }
  return "";
}

// RunHttpClients over TLS: an OpenSSL client that trusts the test CA and
// verifies "localhost". The connection may be cut (reset, EOF with or
// without close_notify, at any point of the handshake); what must never
// happen is a record or handshake message the client refuses, a wrong
// response, or a hang.
std::string RunHttpsClients(const std::string& uri, uint64_t seed, const std::string& ca,
                            int* good) {
  constexpr int kConns = 3;
  const int n = 1 + static_cast<int>(seed % 40);
  const std::string requests = PipelinedRequests(n);
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr || SSL_CTX_load_verify_locations(ctx, ca.c_str(), nullptr) != 1) {
    SSL_CTX_free(ctx);
    return "client context";
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  // A failure that is the connection being cut, not a protocol error.
  auto cut = [](int ssl_error) {
    if (ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_ZERO_RETURN) return true;
    const unsigned long e = ERR_peek_error();
    return ssl_error == SSL_ERROR_SSL &&
           ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
  };
  std::string failure;
  for (int c = 0; c < kConns && failure.empty(); ++c) {
    int fd = testing::Connect(uri);
    if (fd < 0) {
      failure = "connect failed";
      break;
    }
    ERR_clear_error();
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "localhost");
    SSL_set1_host(ssl, "localhost");
    std::string got;
    int rc = SSL_connect(ssl);
    if (rc != 1) {
      const int err = SSL_get_error(ssl, rc);
      if (errno == EAGAIN && err == SSL_ERROR_SYSCALL) {
        failure = "hang: the handshake neither finished nor was cut within 10 s";
      } else if (!cut(err)) {
        char text[256];
        ERR_error_string_n(ERR_peek_error(), text, sizeof(text));
        failure = std::string("handshake refused by the client: ") + text;
      }
    } else {
      size_t sent = 0;
      while (sent < requests.size()) {
        const int w = SSL_write(ssl, requests.data() + sent,
                                static_cast<int>(requests.size() - sent));
        if (w <= 0) break;  // cut off: read what came before
        sent += static_cast<size_t>(w);
      }
      char buf[16384];
      for (;;) {
        ERR_clear_error();
        const int r = SSL_read(ssl, buf, sizeof(buf));
        if (r > 0) {
          got.append(buf, static_cast<size_t>(r));
          continue;
        }
        const int err = SSL_get_error(ssl, r);
        if (err == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK)) {
          failure = "hang: no response and no close within 10 s";
        } else if (!cut(err)) {
          char text[256];
          ERR_error_string_n(ERR_peek_error(), text, sizeof(text));
          failure = std::string("a record refused by the client: ") + text;
        }
        break;
      }
    }
    SSL_free(ssl);
    close(fd);
    if (!failure.empty()) break;
    const int k = CountGoodResponses(got);
    if (k < 0) failure = "a malformed or wrong response:\n" + got.substr(0, 512);
    if (k > n) failure = "more responses than requests";
    if (k > 0) *good += k;
  }
  SSL_CTX_free(ctx);
  return failure;
}

class ExampleFaultTest : public ::testing::TestWithParam<Server> {};

TEST_P(ExampleFaultTest, SurvivesFaultsWithEveryByteRight) {
  if (!FaultInjection::Available()) GTEST_SKIP() << "-c opt: no fault seam";
  signal(SIGPIPE, SIG_IGN);  // SSL_write to a connection the server cut
  const Server& s = GetParam();
  const uint64_t first = EnvOr("NETLOOP_FAULT_FIRST_SEED", 1);
  const uint64_t count = EnvOr("NETLOOP_FAULT_SEEDS", 150) / 6 + 1;
  size_t echoed = 0;
  int good_responses = 0;
  for (uint64_t seed = first; seed < first + count; ++seed) {
    std::vector<std::string> args = {"--address", "tcp://127.0.0.1:0", "--loops", "1"};
    args.insert(args.end(), s.extra_args.begin(), s.extra_args.end());
    std::string ca;
    if (s.tls) {
      const auto& certs = testing::MakeTestCertificates();
      ASSERT_TRUE(certs.has_value()) << "the openssl tool could not make certificates";
      args.insert(args.end(), {"--tls-cert", certs->leaf, "--tls-key", certs->leaf_key});
      ca = certs->ca;
    }
    ServerProcess server(s.binary, args, {PlanFor(seed, s.edge)});
    const std::string uri = server.uri();
    ASSERT_FALSE(uri.empty()) << "seed " << seed << ": no listening line\n" << Replay(s, seed);
    std::string failure;
    if (s.tls) {
      failure = RunHttpsClients(uri, seed, ca, &good_responses);
    } else if (s.http) {
      failure = RunHttpClients(uri, seed, &good_responses);
    } else {
      testing::EchoPlan plan;
      plan.uri = uri;
      plan.seed = seed;
      plan.clients = 3;
      plan.resets = seed % 4 == 0;
      testing::EchoRunResult run = RunEchoClients(plan);
      echoed += run.total_received();
      if (run.timed_out) failure = "hang: a client neither finished nor was closed";
      for (const auto& c : run.clients) {
        if (c.corrupt || !c.error.empty()) failure = c.error;
      }
    }
    ASSERT_EQ(failure, "") << "seed " << seed << "\n" << Replay(s, seed);
    ASSERT_TRUE(server.Running()) << "seed " << seed << ": the server died\n"
                                  << Replay(s, seed);
    int status = server.Signal(SIGTERM);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "seed " << seed << ": exit status " << status << "\n"
        << Replay(s, seed);
  }
  // Faults must not have made every run trivial.
  if (s.http) {
    EXPECT_GT(good_responses, 0);
  } else {
    EXPECT_GT(echoed, 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Servers, ExampleFaultTest,
    ::testing::Values(Server{"EchoLevel", "examples/echo/echo", {}, false, false},
                      Server{"EchoEdge", "examples/echo/echo", {"--et"}, false, true},
                      Server{"EchoFiber", "examples/echo_fiber/echo_fiber", {}, false, true},
                      Server{"HttpCallback", "examples/http/http_server", {}, true, false},
                      Server{"HttpFiber", "examples/http/http_fiber_server", {}, true, true},
                      Server{"HttpsCallback", "examples/http/http_server", {}, true, false, true},
                      Server{"HttpsFiber", "examples/http/http_fiber_server", {}, true, true,
                             true}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace netloop
