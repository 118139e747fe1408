// EMFILE at accept: the listener backs off instead of spinning, nothing queued
// in the backlog is lost, and accepting resumes once descriptors free up.
// A binary of its own because it exhausts the process's descriptor table.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "reactor/netloop.h"
#include "tests/test_util.h"

namespace netloop {
namespace {

class Echo : public EventHandler {
 public:
  Action OnOpen(Conn&) override {
    opens.fetch_add(1);
    return Action::kNone;
  }
  Action OnTraffic(Conn& conn) override {
    ByteView b = conn.Next();
    std::string_view pieces[] = {b.first, b.second};
    (void)conn.Writev(pieces);
    return Action::kNone;
  }
  std::atomic<int> opens{0};
};

// The two clients, in a forked child with its own descriptor table: they
// connect (the kernel queues them in the backlog), report, wait for the go,
// then check an echo. Raw syscalls only (we forked a threaded process).
[[noreturn]] void RunClients(uint16_t port, int report_fd, int go_fd) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  int fds[2];
  for (int& fd : fds) {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) _exit(2);
  }
  char c = 'c';
  if (write(report_fd, &c, 1) != 1 || read(go_fd, &c, 1) != 1) _exit(3);
  for (int fd : fds) {
    if (write(fd, "still here", 10) != 10) _exit(4);
    char buf[10];
    size_t got = 0;
    while (got < 10) {
      ssize_t n = read(fd, buf + got, 10 - got);
      if (n <= 0) _exit(5);
      got += static_cast<size_t>(n);
    }
    if (memcmp(buf, "still here", 10) != 0) _exit(6);
  }
  _exit(0);
}

TEST(EmfileTest, AcceptSurvivesDescriptorExhaustion) {
  for (AcceptMode mode : {AcceptMode::kReusePort, AcceptMode::kAcceptor}) {
    Echo h;
    Engine engine;
    Options o;
    o.loops = 1;
    o.accept_mode = mode;
    ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, o).ok());
    std::string uri = engine.ListenAddresses()[0];
    // Serve one client first, so first-use work (lazy allocations, runtime
    // checks) is done while descriptors are still available.
    {
      int warm = testing::Connect(uri, 10);
      ASSERT_GE(warm, 0);
      ASSERT_TRUE(testing::WriteAll(warm, "warm"));
      ASSERT_TRUE(testing::ReadExactly(warm, 4).has_value());
      close(warm);
      ASSERT_TRUE(testing::WaitFor([&] { return engine.CountConnections() == 0; }));
    }
    const int warm_opens = h.opens.load();
    int report[2], go[2];
    ASSERT_EQ(pipe(report), 0);
    ASSERT_EQ(pipe(go), 0);
    // Take every descriptor this process may have.
    std::vector<int> fillers;
    for (int fd; (fd = dup(0)) >= 0 && fillers.size() < 200000;) fillers.push_back(fd);
    ASSERT_FALSE(fillers.empty());
    pid_t pid = fork();
    if (pid == 0) {
      for (int i = 0; i < 8; ++i) close(fillers[i]);  // the child's own copy
      RunClients(testing::PortOf(uri), report[1], go[0]);
    }
    ASSERT_GT(pid, 0);
    pollfd pfd{report[0], POLLIN, 0};
    ASSERT_EQ(poll(&pfd, 1, 10000), 1) << "the clients did not connect";
    char c;
    ASSERT_EQ(read(report[0], &c, 1), 1);
    usleep(300 * 1000);
    uint64_t pauses = engine.stats().accept_pauses;
    EXPECT_GT(pauses, 0u) << "accept must have hit EMFILE";
    EXPECT_LT(pauses, 60u) << "backing off, not spinning";
    EXPECT_EQ(h.opens.load(), warm_opens);
    // Free descriptors: the queued clients are accepted and served.
    for (int fd : fillers) close(fd);
    ASSERT_EQ(write(go[1], "g", 1), 1);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "client status " << status;
    EXPECT_EQ(h.opens.load(), warm_opens + 2);
    for (int fd : {report[0], report[1], go[0], go[1]}) close(fd);
    engine.Stop(absl::Now() + absl::Seconds(2));
    EXPECT_TRUE(engine.Wait().ok());
  }
}

// Start itself running out of descriptors part-way (some loops created, the
// next one or a listener not) fails cleanly: no hang in Wait or ~Engine.
TEST(EmfileTest, StartFailsCleanlyWhenDescriptorsRunOut) {
  std::vector<int> fillers;
  for (int fd; (fd = dup(0)) >= 0 && fillers.size() < 200000;) fillers.push_back(fd);
  ASSERT_GT(fillers.size(), 8u);
  int failures = 0;
  for (int free_fds : {0, 1, 2, 3, 4, 5, 6}) {
    for (int i = 0; i < free_fds; ++i) {
      close(fillers.back());
      fillers.pop_back();
    }
    Echo h;
    {
      Engine engine;
      Options o;
      o.loops = 2;
      absl::Status s = engine.Start(h, {"tcp://127.0.0.1:0"}, o);
      if (!s.ok()) {
        ++failures;
        EXPECT_FALSE(engine.Wait().ok());
      } else {
        engine.Stop(absl::Now());
        EXPECT_TRUE(engine.Wait().ok());
      }
    }
    // Take back whatever the engine released, for the next round.
    for (int fd; (fd = dup(0)) >= 0;) fillers.push_back(fd);
  }
  EXPECT_GT(failures, 0);
  for (int fd : fillers) close(fd);
}

}  // namespace
}  // namespace netloop
