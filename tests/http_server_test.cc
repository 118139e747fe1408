// Both HTTP servers (callback and fiber) against a real client over
// loopback: keep-alive, pipelining, 400 and 431 paths, idle timeout.
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace netloop {
namespace {

using testing::Connect;
using testing::ReadToEof;
using testing::WriteAll;

// Starts a server binary from the runfiles with an ephemeral port.
class ServerBinary {
 public:
  explicit ServerBinary(const std::string& rel) {
    std::string path = std::string(getenv("TEST_SRCDIR")) + "/netloop/" + rel;
    int out[2];
    pipe(out);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      execl(path.c_str(), path.c_str(), "--address", "tcp://127.0.0.1:0", "--loops", "2",
            "--idle-timeout", "1", nullptr);
      _exit(127);
    }
    close(out[1]);
    FILE* f = fdopen(out[0], "r");
    char line[256] = {0};
    if (fgets(line, sizeof(line), f) != nullptr) {
      std::string l(line);
      uri_ = l.substr(l.find("tcp://"));
      uri_.erase(uri_.find_last_not_of("\n") + 1);
    }
  }
  ~ServerBinary() {
    kill(pid_, SIGTERM);
    int status;
    waitpid(pid_, &status, 0);
    exit_ok_ = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  const std::string& uri() const { return uri_; }

 private:
  pid_t pid_;
  std::string uri_;
  bool exit_ok_ = false;
};

// Reads until `n` complete responses ("Hello, World!" bodies) arrived.
std::string ReadResponses(int fd, int n) {
  std::string got;
  char buf[65536];
  int seen = 0;
  while (seen < n) {
    ssize_t r = recv(fd, buf, sizeof(buf), 0);
    if (r <= 0) break;
    got.append(buf, static_cast<size_t>(r));
    seen = 0;
    for (size_t p = 0; (p = got.find("HTTP/1.1 ", p)) != std::string::npos; ++p) ++seen;
  }
  return got;
}

class HttpServerTest : public ::testing::TestWithParam<const char*> {};

TEST_P(HttpServerTest, KeepAlivePipeliningAndErrors) {
  ServerBinary server(GetParam());
  ASSERT_FALSE(server.uri().empty());
  int fd = Connect(server.uri());
  ASSERT_GE(fd, 0);
  // Keep-alive: three requests, one at a time, same connection.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(WriteAll(fd, "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n"));
    std::string r = ReadResponses(fd, 1);
    EXPECT_EQ(r.find("HTTP/1.1 200 OK"), 0u);
    EXPECT_NE(r.find("\r\nDate: "), std::string::npos);
    EXPECT_NE(r.find("Hello, World!"), std::string::npos);
  }
  // Pipelining: 16 requests in one write, split oddly, answered in order.
  std::string batch;
  for (int i = 0; i < 16; ++i) batch += "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_TRUE(WriteAll(fd, batch.substr(0, 100)));
  usleep(2000);
  ASSERT_TRUE(WriteAll(fd, batch.substr(100)));
  std::string r = ReadResponses(fd, 16);
  int oks = 0;
  for (size_t p = 0; (p = r.find("Hello, World!", p)) != std::string::npos; ++p) ++oks;
  EXPECT_EQ(oks, 16);
  close(fd);

  // Malformed: 400 and close.
  fd = Connect(server.uri());
  ASSERT_TRUE(WriteAll(fd, "NOT A REQUEST\x01\r\n\r\n"));
  auto bad = ReadToEof(fd);
  ASSERT_TRUE(bad.has_value());
  EXPECT_EQ(bad->find("HTTP/1.1 400"), 0u) << *bad;
  close(fd);

  // Too large a header section: 431 and close.
  fd = Connect(server.uri());
  std::string huge = "GET / HTTP/1.1\r\nX: " + std::string(10000, 'a') + "\r\n\r\n";
  WriteAll(fd, huge);
  auto big = ReadToEof(fd);
  ASSERT_TRUE(big.has_value());
  EXPECT_EQ(big->find("HTTP/1.1 431"), 0u);
  close(fd);

  // Idle timeout (1 s here): a silent client is closed.
  fd = Connect(server.uri());
  absl::Time start = absl::Now();
  auto idle = ReadToEof(fd);
  ASSERT_TRUE(idle.has_value());
  EXPECT_TRUE(idle->empty());
  EXPECT_LT(absl::Now() - start, absl::Seconds(8));
  close(fd);
}

INSTANTIATE_TEST_SUITE_P(BothModels, HttpServerTest,
                         ::testing::Values("examples/http/http_server",
                                           "examples/http/http_fiber_server"));

}  // namespace
}  // namespace netloop
