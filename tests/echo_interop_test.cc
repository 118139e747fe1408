// The Windows servers (//examples/echo and //examples/http:http_server built
// with mingw-w64, the IOCP backend) under wine, driven by Linux clients over
// 127.0.0.1. Echo: random binary data comes back exactly, 500 clients that
// reset mid-stream leave it serving, and a client that sends without reading
// cannot make it buffer without bound (the server's backpressure stops
// reading from it). HTTP: keep-alive and pipelining.
//
// Figures under wine are not Windows figures; this checks behaviour only.
#include <errno.h>
#include <signal.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "tests/echo_exerciser.h"
#include "tests/server_process.h"
#include "tests/test_util.h"

namespace netloop {
namespace {

using testing::EchoPlan;
using testing::EchoRunResult;
using testing::ServerProcess;

// The wine launcher from this test's runfiles; an .exe that
// tools/mingw/interop_test built (NETLOOP_WINDOWS_ECHO, NETLOOP_WINDOWS_HTTP).
std::unique_ptr<ServerProcess> StartWindowsServer(const std::string& exe,
                                                  const std::vector<std::string>& extra = {},
                                                  const std::string& address = "tcp://127.0.0.1:0") {
  std::vector<std::string> args{exe, "--address", address, "--loops", "2"};
  args.insert(args.end(), extra.begin(), extra.end());
  return std::make_unique<ServerProcess>("tools/mingw/wine_test_runner", std::move(args));
}

// Every client's bytes came back, all of them, unchanged.
void ExpectAllEchoed(const EchoRunResult& run) {
  EXPECT_FALSE(run.timed_out);
  for (const auto& c : run.clients) {
    EXPECT_TRUE(c.error.empty()) << c.error;
    EXPECT_FALSE(c.corrupt);
    EXPECT_FALSE(c.closed_early);
    EXPECT_EQ(c.received, c.to_send);
  }
}

// The echo checks against the Windows server the environment variable
// `exe_var` names: random data, resetting clients, a client that never reads.
void ExpectEchoServerUnderWine(const char* exe_var, const std::vector<std::string>& extra) {
  const char* exe = getenv(exe_var);
  ASSERT_NE(exe, nullptr) << exe_var << ": run through tools/mingw/interop_test, which builds the .exe";
  std::unique_ptr<ServerProcess> server = StartWindowsServer(exe, extra);
  // Wine's first start in a fresh prefix takes seconds; then the server
  // prints its listening line (10 s at most after that).
  std::string uri;
  for (int i = 0; i < 6 && uri.empty() && server->Running(); ++i) uri = server->uri();
  ASSERT_FALSE(uri.empty()) << "the Windows echo server did not start under wine";

  // Random binary data, echoed exactly.
  EchoPlan plan;
  plan.uri = uri;
  plan.clients = 32;
  plan.seed = 11;
  plan.min_bytes = 1;
  plan.max_bytes = 1 << 20;
  plan.max_chunk = 64 * 1024;
  plan.slow_readers = true;
  plan.timeout_ms = 60000;
  EchoRunResult run = testing::RunEchoClients(plan);
  ASSERT_EQ(run.clients.size(), 32u);
  ExpectAllEchoed(run);

  // 500 clients, many of which reset mid-stream: the server goes on.
  EchoPlan resets;
  resets.uri = uri;
  resets.clients = 500;
  resets.seed = 12;
  resets.max_bytes = 64 * 1024;
  resets.resets = true;
  resets.timeout_ms = 60000;
  EchoRunResult reset_run = testing::RunEchoClients(resets);
  EXPECT_FALSE(reset_run.timed_out);
  int reset_by_us = 0;
  for (const auto& c : reset_run.clients) {
    EXPECT_FALSE(c.corrupt) << c.error;
    if (c.reset_by_us) {
      ++reset_by_us;
    } else {
      EXPECT_EQ(c.received, c.to_send) << c.error;
    }
  }
  EXPECT_GT(reset_by_us, 0) << "the plan is meant to reset some clients";
  ASSERT_TRUE(server->Running());

  // A client that sends and never reads: the server stops reading from it
  // once its replies back up, so memory stays bounded however long it
  // sends. It may send what the two sockets' buffers and the server's
  // high-water mark hold; then its sends find no room.
  const int64_t rss_before = server->RssBytes();
  ASSERT_GT(rss_before, 0);
  SocketHandle hog = testing::Connect(uri, 2);
  ASSERT_TRUE(IsValidSocket(hog));
  const std::string chunk = testing::Pattern(256 * 1024, 13);
  size_t pushed = 0;
  for (int i = 0; i < 1024; ++i) {  // 256 MiB at most
    const ssize_t n = send(hog, chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (n <= 0) break;  // the 2 s send timeout: no room any more
    pushed += static_cast<size_t>(n);
  }
  const int64_t rss_after = server->RssBytes();
  EXPECT_LT(pushed, size_t{128} << 20) << "the server read on although its replies backed up";
  EXPECT_LT(rss_after - rss_before, int64_t{64} << 20)
      << "before " << rss_before << " after " << rss_after << " pushed " << pushed;
  std::printf("non-reading client: pushed %zu KiB; server RSS %lld KiB before, %lld KiB after\n",
              pushed >> 10, static_cast<long long>(rss_before >> 10),
              static_cast<long long>(rss_after >> 10));
  testing::CloseClient(hog);

  // Still serving.
  EchoPlan after;
  after.uri = uri;
  after.clients = 4;
  after.seed = 14;
  after.timeout_ms = 30000;
  ExpectAllEchoed(testing::RunEchoClients(after));
  EXPECT_TRUE(server->Running());
}

// The callback echo server (//examples/echo).
TEST(EchoInteropTest, WindowsServerUnderWineEchoesResetsAndHoldsMemory) {
  ExpectEchoServerUnderWine("NETLOOP_WINDOWS_ECHO", {});
}

// The fiber echo server (//examples/echo_fiber): blocking-style handlers on
// OS fibers, FiberConn on IOCP, both read paths.
TEST(EchoInteropTest, WindowsFiberServerUnderWineEchoesResetsAndHoldsMemory) {
  ExpectEchoServerUnderWine("NETLOOP_WINDOWS_ECHO_FIBER", {});
}
TEST(EchoInteropTest, WindowsFiberServerWithReadViewUnderWine) {
  ExpectEchoServerUnderWine("NETLOOP_WINDOWS_ECHO_FIBER", {"--read-view"});
}

// Reads until `n` "Hello, World!" bodies arrived (or EOF, error, timeout).
int ReadHellos(SocketHandle fd, int n, std::string* got) {
  char buf[16384];
  int seen = 0;
  while (seen < n) {
    const ssize_t r = recv(fd, buf, sizeof(buf), 0);
    if (r <= 0) break;
    got->append(buf, static_cast<size_t>(r));
    seen = 0;
    for (size_t at = got->find("Hello, World!"); at != std::string::npos;
         at = got->find("Hello, World!", at + 1)) {
      ++seen;
    }
  }
  return seen;
}

// An HTTP server built for Windows (the .exe `exe_var` names): keep-alive
// and pipelining over 127.0.0.1.
void ExpectHttpServerUnderWine(const char* exe_var) {
  const char* exe = getenv(exe_var);
  ASSERT_NE(exe, nullptr) << exe_var << ": run through tools/mingw/interop_test, which builds the .exe";
  std::unique_ptr<ServerProcess> server = StartWindowsServer(exe);
  std::string uri;
  for (int i = 0; i < 6 && uri.empty() && server->Running(); ++i) uri = server->uri();
  ASSERT_FALSE(uri.empty()) << "the Windows HTTP server did not start under wine";
  SocketHandle fd = testing::Connect(uri);
  ASSERT_TRUE(IsValidSocket(fd));
  const std::string get = "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";
  // Keep-alive: ten requests one after another on one connection.
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(testing::WriteAll(fd, get));
    std::string got;
    ASSERT_EQ(ReadHellos(fd, 1, &got), 1) << got;
    EXPECT_EQ(got.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << got;
  }
  // Pipelining: sixteen requests in one write, sixteen answers in order.
  std::string batch;
  for (int i = 0; i < 16; ++i) batch += get;
  ASSERT_TRUE(testing::WriteAll(fd, batch));
  std::string got;
  EXPECT_EQ(ReadHellos(fd, 16, &got), 16);
  size_t statuses = 0;
  for (size_t at = got.find("HTTP/1.1 200 OK"); at != std::string::npos;
       at = got.find("HTTP/1.1 200 OK", at + 1)) {
    ++statuses;
  }
  EXPECT_EQ(statuses, 16u);
  testing::CloseClient(fd);
  EXPECT_TRUE(server->Running());
}

// Callbacks (//examples/http:http_server).
TEST(EchoInteropTest, WindowsHttpServerUnderWineKeepsAliveAndPipelines) {
  ExpectHttpServerUnderWine("NETLOOP_WINDOWS_HTTP");
}

// Fibers (//examples/http:http_fiber_server).
TEST(EchoInteropTest, WindowsHttpFiberServerUnderWineKeepsAliveAndPipelines) {
  ExpectHttpServerUnderWine("NETLOOP_WINDOWS_HTTP_FIBER");
}

// The UDP echo example (//examples/udp_echo) built for Windows, callbacks and
// fibers: datagrams up to 64 KiB come back whole and in order.
void ExpectUdpEchoUnderWine(const std::vector<std::string>& extra) {
  const char* exe = getenv("NETLOOP_WINDOWS_UDP_ECHO");
  ASSERT_NE(exe, nullptr) << "run through tools/mingw/interop_test, which builds the .exe";
  std::unique_ptr<ServerProcess> server = StartWindowsServer(exe, extra, "udp://127.0.0.1:0");
  std::string uri;
  for (int i = 0; i < 6 && uri.empty() && server->Running(); ++i) uri = server->uri();
  ASSERT_EQ(uri.rfind("udp://", 0), 0u) << "the Windows UDP server did not start: " << uri;
  SocketHandle fd = testing::UdpClient(testing::PortOf(uri));
  ASSERT_TRUE(IsValidSocket(fd));
  testing::SetClientReceiveBuffer(fd, 1 << 20);
  for (size_t size : {size_t{1}, size_t{1200}, size_t{65507}}) {
    const std::string msg = testing::Pattern(size, static_cast<uint32_t>(size));
    ASSERT_EQ(testing::SendNow(fd, msg.data(), msg.size()), static_cast<long>(size));
    EXPECT_TRUE(testing::ReceiveDatagram(fd) == msg) << size;
  }
  testing::CloseClient(fd);
  EXPECT_TRUE(server->Running());
}

TEST(EchoInteropTest, WindowsUdpEchoUnderWine) { ExpectUdpEchoUnderWine({}); }
TEST(EchoInteropTest, WindowsUdpFiberEchoUnderWine) { ExpectUdpEchoUnderWine({"--fiber"}); }

}  // namespace
}  // namespace netloop
