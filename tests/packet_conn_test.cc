// PacketConn (UDP in fibers) over loopback, on every backend: datagrams
// keep their boundaries both ways (64 KiB ones too), a short buffer reports
// truncation, the read deadline and Close wake a parked reader.
#include <atomic>
#include <string>

#include "fiberbridge/packet_conn.h"
#include "fiberbridge/scheduler.h"
#include "gtest/gtest.h"
#include "reactor/errors.h"
#include "tests/fiber_test_util.h"
#include "tests/test_util.h"

namespace netloop::fiber {
namespace {

using netloop::testing::CloseClient;
using netloop::testing::Pattern;
using netloop::testing::ReceiveDatagram;
using netloop::testing::SendNow;
using netloop::testing::UdpClient;
using netloop::testing::WaitFor;

TEST(PacketConnTest, AnEchoFiberKeepsDatagramBoundaries) {
  testing::Loops loops;
  ASSERT_TRUE(loops.status().ok());
  std::atomic<uint16_t> port{0};
  std::atomic<int> echoed{0};
  std::atomic<bool> truncated_seen{false};
  Spawn(loops.loop(), [&] {
    auto pc = PacketConn::Listen("udp://127.0.0.1:0");
    if (!pc.ok()) {
      port = 1;
      return;
    }
    port = (*pc)->LocalAddress().port();
    std::string buf(65536, '\0');
    for (int i = 0; i < 4; ++i) {
      absl::StatusOr<PacketConn::Datagram> d = (*pc)->ReadFrom(std::span<char>(buf));
      if (!d.ok()) return;
      if (d->truncated) truncated_seen = true;
      if (!(*pc)->WriteTo(std::string_view(buf.data(), d->size), d->from).ok()) return;
      echoed.fetch_add(1);
    }
  });
  ASSERT_TRUE(WaitFor([&] { return port.load() != 0; }));
  ASSERT_NE(port.load(), 1) << "Listen failed";
  SocketHandle fd = UdpClient(port.load());
  const std::string big = Pattern(65507, 4);
  netloop::testing::SetClientReceiveBuffer(fd, 1 << 20);
  ASSERT_EQ(SendNow(fd, "a", 1), 1);
  EXPECT_EQ(ReceiveDatagram(fd), "a");
  ASSERT_EQ(SendNow(fd, std::string(1000, 'b').data(), 1000), 1000);
  EXPECT_EQ(ReceiveDatagram(fd), std::string(1000, 'b'));
  ASSERT_EQ(SendNow(fd, big.data(), big.size()), 65507);
  EXPECT_TRUE(ReceiveDatagram(fd) == big);
  ASSERT_EQ(SendNow(fd, "c", 1), 1);
  EXPECT_EQ(ReceiveDatagram(fd), "c");
  CloseClient(fd);
  EXPECT_TRUE(WaitFor([&] { return echoed.load() == 4; }));
  EXPECT_FALSE(truncated_seen.load());
}

TEST(PacketConnTest, AShortBufferReportsTruncation) {
  testing::Loops loops;
  ASSERT_TRUE(loops.status().ok());
  std::atomic<uint16_t> port{0};
  PacketConn::Datagram got;
  absl::Status status = absl::UnknownError("not run");
  std::atomic<bool> done{false};
  Spawn(loops.loop(), [&] {
    auto pc = PacketConn::Listen("udp://127.0.0.1:0");
    if (!pc.ok()) {
      status = pc.status();
      port = 1;
      done = true;
      return;
    }
    port = (*pc)->LocalAddress().port();
    char small[16];
    absl::StatusOr<PacketConn::Datagram> d = (*pc)->ReadFrom(small);
    status = d.status();
    if (d.ok()) got = *d;
    done = true;
  });
  ASSERT_TRUE(WaitFor([&] { return port.load() != 0; }));
  SocketHandle fd = UdpClient(port.load());
  ASSERT_EQ(SendNow(fd, std::string(100, 'x').data(), 100), 100);
  ASSERT_TRUE(WaitFor([&] { return done.load(); }));
  CloseClient(fd);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(got.size, 16u);
  EXPECT_TRUE(got.truncated);
  EXPECT_EQ(got.from.IpToString(), "127.0.0.1");
}

TEST(PacketConnTest, TheReadDeadlineAndCloseWakeAParkedReader) {
  testing::Loops loops;
  ASSERT_TRUE(loops.status().ok());
  absl::Status by_deadline, by_close;
  ASSERT_TRUE(loops.Run([&] {
    auto pc = PacketConn::Listen("udp://127.0.0.1:0");
    if (!pc.ok()) {
      by_deadline = pc.status();
      return;
    }
    char buf[64];
    (*pc)->SetReadDeadline(absl::Now() + absl::Milliseconds(50));
    by_deadline = (*pc)->ReadFrom(buf).status();
    (*pc)->SetReadDeadline(absl::InfiniteFuture());
    PacketConn* raw = pc->get();
    Spawn([raw] { raw->Close(); });  // runs once this fiber parks
    by_close = (*pc)->ReadFrom(buf).status();
  }));
  EXPECT_TRUE(absl::IsDeadlineExceeded(by_deadline)) << by_deadline;
  EXPECT_EQ(GetCloseReason(by_close), CloseReason::kClosed) << by_close;
}

TEST(PacketConnTest, ListenRefusesWhatIsNotUdp) {
  testing::Loops loops;
  ASSERT_TRUE(loops.status().ok());
  absl::Status tcp;
  ASSERT_TRUE(loops.Run([&] { tcp = PacketConn::Listen("tcp://127.0.0.1:0").status(); }));
  EXPECT_TRUE(absl::IsInvalidArgument(tcp)) << tcp;
}

}  // namespace
}  // namespace netloop::fiber
