// The four example servers (callback and fiber echo, callback and fiber
// HTTP) run as child processes with faults injected at their syscall
// boundary (NETLOOP_FAULTS in their environment, see
// reactor/fault_injection.h), for many seeds each. Per seed: every echoed
// byte matches what was sent, every HTTP response is whole and correct, in
// order (a connection may end early, never garbled), nothing hangs, and the
// server survives and exits cleanly on SIGTERM.
//
//   bazel test //tests:example_faults_test --test_env=NETLOOP_FAULT_SEEDS=2000
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

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

// Sends `n` pipelined requests (the last asks to close) on each of a few
// connections and checks every response. Returns "" or what broke; adds the
// whole responses seen to *good.
std::string RunHttpClients(const std::string& uri, uint64_t seed, int* good) {
  constexpr int kConns = 3;
  const int n = 1 + static_cast<int>(seed % 40);
  std::string requests;
  for (int i = 0; i < n; ++i) {
    requests += "GET /plaintext HTTP/1.1\r\nHost: test\r\n";
    requests += i + 1 == n ? "Connection: close\r\n\r\n" : "\r\n";
  }
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

class ExampleFaultTest : public ::testing::TestWithParam<Server> {};

TEST_P(ExampleFaultTest, SurvivesFaultsWithEveryByteRight) {
  if (!FaultInjection::Available()) GTEST_SKIP() << "-c opt: no fault seam";
  const Server& s = GetParam();
  const uint64_t first = EnvOr("NETLOOP_FAULT_FIRST_SEED", 1);
  const uint64_t count = EnvOr("NETLOOP_FAULT_SEEDS", 150) / 6 + 1;
  size_t echoed = 0;
  int good_responses = 0;
  for (uint64_t seed = first; seed < first + count; ++seed) {
    std::vector<std::string> args = {"--address", "tcp://127.0.0.1:0", "--loops", "1"};
    args.insert(args.end(), s.extra_args.begin(), s.extra_args.end());
    ServerProcess server(s.binary, args, {PlanFor(seed, s.edge)});
    const std::string uri = server.uri();
    ASSERT_FALSE(uri.empty()) << "seed " << seed << ": no listening line\n" << Replay(s, seed);
    std::string failure;
    if (s.http) {
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
                      Server{"HttpFiber", "examples/http/http_fiber_server", {}, true, true}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace netloop
