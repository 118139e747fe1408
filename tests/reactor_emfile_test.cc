// EMFILE at accept: the listener backs off instead of spinning, nothing queued
// in the backlog is lost, and accepting resumes once descriptors free up.
// A binary of its own because it lowers RLIMIT_NOFILE for the process.
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
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

TEST(EmfileTest, AcceptSurvivesDescriptorExhaustion) {
  for (AcceptMode mode : {AcceptMode::kReusePort, AcceptMode::kAcceptor}) {
    Echo h;
    Engine engine;
    Options o;
    o.loops = 1;
    o.accept_mode = mode;
    ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, o).ok());
    std::string uri = engine.ListenAddresses()[0];

    rlimit old;
    getrlimit(RLIMIT_NOFILE, &old);
    // Fill the table, leaving room for exactly two client sockets.
    std::vector<int> fillers;
    for (;;) {
      int fd = dup(0);
      if (fd < 0) break;
      fillers.push_back(fd);
      if (fillers.size() > 100000) break;
    }
    ASSERT_GT(fillers.size(), 3u);
    close(fillers.back());
    fillers.pop_back();
    close(fillers.back());
    fillers.pop_back();
    // Both clients connect (the kernel completes the handshake into the
    // backlog) but the server has no descriptor to accept them with.
    int a = testing::Connect(uri, 10);
    int b = testing::Connect(uri, 10);
    ASSERT_GE(a, 0);
    ASSERT_GE(b, 0);
    usleep(300 * 1000);
    uint64_t pauses = engine.stats().accept_pauses;
    EXPECT_GT(pauses, 0u) << "accept must have hit EMFILE";
    EXPECT_LT(pauses, 60u) << "backing off, not spinning";
    EXPECT_EQ(h.opens.load(), 0);
    // Free descriptors: the queued clients are accepted and served.
    for (int fd : fillers) close(fd);
    fillers.clear();
    for (int fd : {a, b}) {
      ASSERT_TRUE(testing::WriteAll(fd, "still here"));
      auto got = testing::ReadExactly(fd, 10);
      ASSERT_TRUE(got.has_value());
      EXPECT_EQ(*got, "still here");
      close(fd);
    }
    EXPECT_EQ(h.opens.load(), 2);
    engine.Stop(absl::Now() + absl::Seconds(2));
    EXPECT_TRUE(engine.Wait().ok());
  }
}

}  // namespace
}  // namespace netloop
