// Connection storms over loopback: a burst of connections that all arrive
// before the loop accepts any must all be accepted, in every accept mode and
// trigger mode, and a burst of resets must give every descriptor back.

#include <atomic>
#include <string>
#include <thread>
#include <tuple>

#include "gtest/gtest.h"
#include "reactor/netloop.h"
#include "tests/client_process.h"
#include "tests/test_util.h"

namespace netloop {
namespace {

using testing::ClientProcess;
using testing::WaitFor;

class CountingEcho : public EventHandler {
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
  void OnClose(Conn&, const absl::Status&) override { closes.fetch_add(1); }
  std::atomic<int> opens{0}, closes{0};
};


using StormConfig = std::tuple<AcceptMode, bool /*edge*/>;
class AcceptStormTest : public ::testing::TestWithParam<StormConfig> {};

// Regression: with edge-triggered epoll the listener accepted a fixed batch
// per readiness event and then waited for the next edge; once every client had
// connected no edge came, and the rest stayed in the backlog for good.
TEST_P(AcceptStormTest, EveryConnectionOfABurstIsAcceptedAndResetsFreeEveryFd) {
  constexpr int kConns = 1000;
  testing::RaiseFdLimit();
  ClientProcess clients({.connections = kConns});  // before any engine thread
  ASSERT_TRUE(clients.forked());
  const int baseline = testing::OpenDescriptors();

  auto [mode, edge] = GetParam();
  CountingEcho h;
  {
    Engine engine;
    Options o;
    o.loops = 2;
    o.accept_mode = mode;
    o.edge_triggered = edge;
    o.backlog = 4096;
    ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, o).ok());
    // Hold every worker loop until all clients are queued in the backlog, so
    // the burst reaches a listener as one readiness event (in reuse-port
    // mode the worker loops own the listeners).
    std::atomic<bool> release{false};
    for (int i = 0; i < engine.num_loops(); ++i) {
      engine.loop(i).RunInLoop([&release] {
        while (!release.load()) std::this_thread::yield();
      });
    }
    clients.Begin(testing::PortOf(engine.ListenAddresses()[0]));
    bool connected = clients.WaitConnected(60000);
    release.store(true);
    ASSERT_TRUE(connected);
    ASSERT_TRUE(clients.WaitReady(60000))
        << "accepted " << h.opens.load() << " of " << kConns;
    EXPECT_EQ(engine.CountConnections(), static_cast<size_t>(kConns));

    // Every client resets at once: each connection closes exactly once and
    // its descriptor is returned.
    ASSERT_TRUE(clients.Finish(/*reset=*/true));
    EXPECT_TRUE(WaitFor([&] { return engine.CountConnections() == 0; }, 30000));
    EXPECT_EQ(h.closes.load(), kConns);
    engine.Stop(absl::Now() + absl::Seconds(5));
    EXPECT_TRUE(engine.Wait().ok());
  }
  EXPECT_EQ(h.opens.load(), kConns);
  EXPECT_EQ(h.closes.load(), kConns);
  EXPECT_EQ(testing::OpenDescriptors(), baseline);
}

INSTANTIATE_TEST_SUITE_P(
    AllModes, AcceptStormTest,
    ::testing::Combine(::testing::Values(AcceptMode::kReusePort, AcceptMode::kAcceptor),
                       ::testing::Bool()),
    [](const auto& info) {
      return std::string(std::get<0>(info.param) == AcceptMode::kReusePort ? "ReusePort"
                                                                           : "Acceptor") +
             (std::get<1>(info.param) ? "Edge" : "Level");
    });

}  // namespace
}  // namespace netloop
