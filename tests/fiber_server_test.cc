// FiberServer and HandOff beyond fiber_bridge_test: Stop waits for handlers
// that are busy after the Closed wake-up, one server mixing callback and
// fiber connections, HandOff refused while output is pending, unix sockets.
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "fiberbridge/fiber_conn.h"
#include "fiberbridge/offload.h"
#include "fiberbridge/scheduler.h"
#include "fiberbridge/server.h"
#include "gtest/gtest.h"
#include "reactor/errors.h"
#include "reactor/netloop.h"
#include "tests/test_util.h"

namespace netloop::fiber {
namespace {

using netloop::testing::CloseClient;
using netloop::testing::Connect;
using netloop::testing::Pattern;
using netloop::testing::ReadExactly;
using netloop::testing::ReadToEof;
using netloop::testing::WaitFor;
using netloop::testing::WriteAll;

void EchoHandler(FiberConn& conn) {
  for (;;) {
    absl::StatusOr<std::string_view> bytes = conn.ReadView();
    if (!bytes.ok() || !conn.WriteAll(*bytes).ok()) return;
  }
}

// After the Closed wake-up a handler may still have work to finish (here a
// blocking call through Offload, which cannot be interrupted): Stop must wait
// for it, up to its deadline, rather than abandon it.
TEST(FiberServerStopTest, WaitsForHandlersFinishingAfterTheWakeUp) {
  std::atomic<int> woken_closed{0};
  std::atomic<int> finished{0};
  FiberServer server;
  Options o;
  o.loops = 2;
  o.accept_mode = AcceptMode::kAcceptor;
  ASSERT_TRUE(server
                  .Start({"tcp://127.0.0.1:0"}, o,
                         [&](FiberConn& c) {
                           char buf[8];
                           absl::StatusOr<size_t> n = c.Read(buf);
                           if (GetCloseReason(n.status()) == CloseReason::kClosed) {
                             woken_closed++;
                           }
                           Offload([] {  // cleanup that blocks
                             std::this_thread::sleep_for(std::chrono::milliseconds(200));
                           });
                           finished++;
                         })
                  .ok());
  std::vector<SocketHandle> fds;
  for (int i = 0; i < 6; ++i) fds.push_back(Connect(server.ListenAddresses()[0]));
  ASSERT_TRUE(WaitFor([&] { return server.CountConnections() == 6; }));
  absl::Time start = absl::Now();
  server.Stop(start + absl::Seconds(20));
  EXPECT_TRUE(server.Wait().ok());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(190)) << "returned before the handlers";
  EXPECT_EQ(woken_closed.load(), 6);
  EXPECT_EQ(finished.load(), 6);
  EXPECT_EQ(server.CountConnections(), 0u);
  for (SocketHandle fd : fds) CloseClient(fd);
}

TEST(FiberServerTest, ServesOnAUnixSocket) {
  const std::string path = netloop::testing::ShortTempPath("fiber_server.sock");
  FiberServer server;
  absl::Status started = server.Start({"unix://" + path}, Options{.loops = 1}, EchoHandler);
#if defined(_WIN32)
  if (absl::IsUnimplemented(started)) GTEST_SKIP() << started;  // no AF_UNIX here
#endif
  ASSERT_TRUE(started.ok()) << started;
  SocketHandle fd = Connect("unix://" + path);
  ASSERT_NE(fd, kInvalidSocket);
  std::string msg = Pattern(300000, 5);
  std::thread w([&] { EXPECT_TRUE(WriteAll(fd, msg)); });
  auto got = ReadExactly(fd, msg.size());
  w.join();
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(*got == msg);
  CloseClient(fd);
  server.Stop(absl::Now() + absl::Seconds(2));
  EXPECT_TRUE(server.Wait().ok());
  netloop::testing::RemoveFile(path);
}

// One engine, both models: connections whose first byte is 'F' are handed to
// a fiber in OnTraffic; the others stay callback-driven. Stop closes the
// parked fibers and still waits for them.
class MixedHandler : public EventHandler {
 public:
  Action OnTraffic(Conn& conn) override {
    if (conn.context() == nullptr) {
      std::string_view first = conn.PeekContiguous(1);
      if (first == "F") {
        conn.Discard(1);
        absl::Status s = HandOff(conn, [this](FiberConn& fc) {
          fibers++;
          char buf[256];
          for (;;) {
            absl::StatusOr<size_t> n = fc.Read(buf);
            if (!n.ok()) {
              if (GetCloseReason(n.status()) == CloseReason::kClosed) fibers_closed++;
              return;
            }
            std::string reply = "f:" + std::string(buf, *n);
            if (!fc.WriteAll(reply).ok()) return;
          }
        });
        EXPECT_TRUE(s.ok()) << s;
        return Action::kNone;
      }
      conn.set_context(this);  // marks it callback-driven
    }
    std::string data;
    conn.Next().AppendTo(&data);
    (void)conn.Write("c:" + data);
    return Action::kNone;
  }
  void OnClose(Conn&, const absl::Status&) override { callback_closes++; }
  std::atomic<int> fibers{0};
  std::atomic<int> fibers_closed{0};
  std::atomic<int> callback_closes{0};
};

TEST(HandOffTest, OneServerMixesCallbackAndFiberConnections) {
  MixedHandler h;
  Engine engine;
  Options o;
  o.loops = 2;
  ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, o).ok());
  std::vector<SocketHandle> fiber_fds, callback_fds;
  for (int i = 0; i < 4; ++i) {
    SocketHandle f = Connect(engine.ListenAddresses()[0]);
    SocketHandle c = Connect(engine.ListenAddresses()[0]);
    ASSERT_TRUE(WriteAll(f, "F"));
    ASSERT_TRUE(WriteAll(c, "C"));
    auto got = ReadExactly(c, 3);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(*got, "c:C");
    fiber_fds.push_back(f);
    callback_fds.push_back(c);
  }
  ASSERT_TRUE(WaitFor([&] { return h.fibers.load() == 4; }));
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(WriteAll(fiber_fds[i], "x"));
    auto got = ReadExactly(fiber_fds[i], 3);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(*got, "f:x");
    ASSERT_TRUE(WriteAll(callback_fds[i], "y"));
    got = ReadExactly(callback_fds[i], 3);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(*got, "c:y");
  }
  engine.Stop(absl::Now() + absl::Seconds(5));
  EXPECT_TRUE(engine.Wait().ok());
  EXPECT_EQ(h.fibers_closed.load(), 4) << "Stop woke the parked fibers with Closed";
  EXPECT_EQ(h.callback_closes.load(), 4) << "only the callback connections";
  for (SocketHandle fd : fiber_fds) {
    auto rest = ReadToEof(fd);
    EXPECT_TRUE(rest.has_value() && rest->empty());
    CloseClient(fd);
  }
  for (SocketHandle fd : callback_fds) CloseClient(fd);
}

// HandOff must not strand bytes the callback side still has to send: they
// travel with the socket and the fiber sends them first.
class PendingOutputHandler : public EventHandler {
 public:
  Action OnTraffic(Conn& conn) override {
    conn.Discard();
    (void)conn.Write(std::string(16 << 20, 'p'));  // far more than the socket takes
    handoff_status = HandOff(conn, [](FiberConn&) {});
    handoff_done = true;
    return Action::kNone;
  }
  absl::Status handoff_status;
  std::atomic<bool> handoff_done{false};
};

TEST(HandOffTest, PendingOutputTravelsWithTheSocket) {
  PendingOutputHandler h;
  Engine engine;
  ASSERT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, Options{.loops = 1}).ok());
  SocketHandle fd = Connect(engine.ListenAddresses()[0]);
  ASSERT_TRUE(WriteAll(fd, "go"));
  ASSERT_TRUE(WaitFor([&] { return h.handoff_done.load(); }));
  EXPECT_TRUE(h.handoff_status.ok()) << h.handoff_status;
  // Every byte arrives, then the fiber handler returns and the socket closes.
  auto got = ReadToEof(fd);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->size(), size_t{16} << 20);
  EXPECT_EQ(got->find_first_not_of('p'), std::string::npos);
  CloseClient(fd);
  engine.Stop(absl::Now() + absl::Seconds(2));
  EXPECT_TRUE(engine.Wait().ok());
}

}  // namespace
}  // namespace netloop::fiber
