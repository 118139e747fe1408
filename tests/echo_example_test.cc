// The //examples/echo binary end to end: flags, several listeners, echo over
// TCP and a unix socket, graceful exit on SIGTERM, usage errors.
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace netloop {
namespace {

using testing::Connect;
using testing::Pattern;
using testing::ReadExactly;
using testing::WriteAll;

std::string EchoPath() {
  const char* srcdir = getenv("TEST_SRCDIR");
  return std::string(srcdir != nullptr ? srcdir : ".") + "/netloop/examples/echo/echo";
}

// Runs the echo binary with `args`; collects its "listening on" lines.
class EchoProcess {
 public:
  explicit EchoProcess(std::vector<std::string> args) {
    int out[2];
    if (pipe(out) != 0) return;
    std::string path = EchoPath();
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      std::vector<char*> argv;
      argv.push_back(path.data());
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(path.c_str(), argv.data());
      _exit(127);
    }
    close(out[1]);
    out_ = out[0];
  }
  ~EchoProcess() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (out_ >= 0) close(out_);
  }

  // Reads stdout until `n` "listening on" lines arrived (10 s at most).
  std::vector<std::string> ListeningUris(size_t n) {
    std::vector<std::string> uris;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (uris.size() < n && std::chrono::steady_clock::now() < deadline) {
      pollfd p{out_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      char buf[512];
      ssize_t r = read(out_, buf, sizeof(buf));
      if (r <= 0) break;
      text_.append(buf, static_cast<size_t>(r));
      size_t nl;
      while ((nl = text_.find('\n')) != std::string::npos) {
        std::string line = text_.substr(0, nl);
        text_.erase(0, nl + 1);
        const std::string prefix = "listening on ";
        if (line.rfind(prefix, 0) == 0) uris.push_back(line.substr(prefix.size()));
      }
    }
    return uris;
  }

  // Signals the process and returns its wait status, or -1 after 10 s.
  int StopAndWait(int sig) {
    kill(pid_, sig);
    return WaitExit();
  }
  int WaitExit() {
    for (int i = 0; i < 1000; ++i) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        reaped_ = true;
        return status;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  bool reaped_ = false;
  std::string text_;
};

void ExpectEcho(const std::string& uri, size_t bytes) {
  int fd = Connect(uri);
  ASSERT_GE(fd, 0) << uri;
  std::string msg = Pattern(bytes, 11);
  std::thread writer([&] { EXPECT_TRUE(WriteAll(fd, msg)); });
  auto got = ReadExactly(fd, msg.size());
  writer.join();
  ASSERT_TRUE(got.has_value()) << uri;
  EXPECT_TRUE(*got == msg) << uri;
  close(fd);
}

TEST(EchoExampleTest, ServesEveryListenerAndExitsCleanlyOnSigterm) {
  std::string sock = "/tmp/netloop_echo_example_" + std::to_string(getpid()) + ".sock";
  for (const char* mode : {"reuseport", "acceptor"}) {
    EchoProcess p({"--address", "tcp://127.0.0.1:0", "--address", "unix://" + sock, "--loops",
                   "2", "--mode", mode, "--policy", "least-connections"});
    std::vector<std::string> uris = p.ListeningUris(2);
    ASSERT_EQ(uris.size(), 2u) << "the server did not report its listeners (" << mode << ")";
    EXPECT_NE(testing::PortOf(uris[0]), 0);
    EXPECT_EQ(uris[1], "unix://" + sock);
    for (const std::string& uri : uris) ExpectEcho(uri, 1 << 20);
    int status = p.StopAndWait(SIGTERM);
    EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "status " << status << " (" << mode << ")";
  }
  unlink(sock.c_str());
}

TEST(EchoExampleTest, EdgeTriggeredWithSigint) {
  EchoProcess p({"--address", "tcp://127.0.0.1:0", "--loops", "1", "--et"});
  std::vector<std::string> uris = p.ListeningUris(1);
  ASSERT_EQ(uris.size(), 1u);
  ExpectEcho(uris[0], 3 << 20);
  int status = p.StopAndWait(SIGINT);
  EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST(EchoExampleTest, RejectsBadFlags) {
  for (std::vector<std::string> args :
       {std::vector<std::string>{"--mode", "bogus"}, {"--policy", "bogus"}, {"--no-such-flag"}}) {
    EchoProcess p(args);
    int status = p.WaitExit();
    ASSERT_NE(status, -1) << args[0] << " did not exit";
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << args[0];
  }
  // A bad address is reported as a start failure.
  EchoProcess bad({"--address", "tcp://nonsense"});
  int status = bad.WaitExit();
  EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 1) << status;
}

}  // namespace
}  // namespace netloop
