// Address parsing and formatting: the URIs users pass to Engine::Start/Dial.
#include "reactor/address.h"

#include <string>

#include "gtest/gtest.h"

namespace netloop {
namespace {

TEST(ParseAddressTest, Ipv4WithAndWithoutScheme) {
  for (const char* uri : {"tcp://127.0.0.1:8080", "127.0.0.1:8080", "tcp4://127.0.0.1:8080"}) {
    auto a = ParseAddress(uri);
    ASSERT_TRUE(a.ok()) << uri << ": " << a.status();
    EXPECT_EQ(a->address.family(), AF_INET) << uri;
    EXPECT_EQ(a->address.port(), 8080) << uri;
    EXPECT_EQ(a->address.ToString(), "127.0.0.1:8080") << uri;
    EXPECT_EQ(a->address.ToUri(), "tcp://127.0.0.1:8080") << uri;
    EXPECT_EQ(a->address.HostBytes(), std::string("\x7f\0\0\x01", 4)) << uri;
  }
  EXPECT_EQ(ParseAddress("tcp4://1.2.3.4:0")->network, Network::kTcp4);
  EXPECT_EQ(ParseAddress("1.2.3.4:0")->network, Network::kTcp);
}

TEST(ParseAddressTest, Ipv6) {
  auto a = ParseAddress("tcp://[::1]:443");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->address.family(), AF_INET6);
  EXPECT_EQ(a->address.port(), 443);
  EXPECT_EQ(a->address.ToString(), "[::1]:443");
  EXPECT_EQ(a->address.ToUri(), "tcp://[::1]:443");
  EXPECT_EQ(a->address.HostBytes().size(), 16u);
  EXPECT_EQ(a->address.HostBytes().back(), '\x01');
  auto any6 = ParseAddress("tcp6://[::]:0");
  ASSERT_TRUE(any6.ok());
  EXPECT_EQ(any6->network, Network::kTcp6);
  EXPECT_EQ(any6->address.ToString(), "[::]:0");
}

TEST(ParseAddressTest, EmptyHostMeansAllInterfaces) {
  auto a = ParseAddress("tcp://:9000");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->address.ToString(), "0.0.0.0:9000");
  auto b = ParseAddress("tcp6://:9000");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->address.ToString(), "[::]:9000");
}

TEST(ParseAddressTest, LocalhostFollowsTheFamily) {
  EXPECT_EQ(ParseAddress("tcp://localhost:1")->address.ToString(), "127.0.0.1:1");
  EXPECT_EQ(ParseAddress("tcp4://localhost:1")->address.ToString(), "127.0.0.1:1");
  EXPECT_EQ(ParseAddress("tcp6://localhost:1")->address.ToString(), "[::1]:1");
}

TEST(ParseAddressTest, UnixPathsAndAbstractNames) {
  auto a = ParseAddress("unix:///tmp/x.sock");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->network, Network::kUnix);
  EXPECT_EQ(a->address.family(), AF_UNIX);
  EXPECT_EQ(a->address.port(), 0);
  EXPECT_EQ(a->address.HostBytes(), "/tmp/x.sock");
  EXPECT_EQ(a->address.ToUri(), "unix:///tmp/x.sock");
  EXPECT_FALSE(a->address.is_ip());

  auto abs = ParseAddress("unix://@netloop-abstract");
  ASSERT_TRUE(abs.ok()) << abs.status();
  EXPECT_EQ(abs->address.HostBytes(), std::string("\0netloop-abstract", 17));
  EXPECT_EQ(abs->address.ToString(), "@netloop-abstract");
  EXPECT_EQ(abs->address.ToUri(), "unix://@netloop-abstract");
}

TEST(ParseAddressTest, UdpSchemes) {
  auto any = ParseAddress("udp://127.0.0.1:5353");
  ASSERT_TRUE(any.ok());
  EXPECT_EQ(any->network, Network::kUdp);
  EXPECT_TRUE(IsDatagram(any->network));
  EXPECT_EQ(any->address.ToString(), "127.0.0.1:5353");
  EXPECT_EQ(ParseAddress("udp4://localhost:7")->address.ToString(), "127.0.0.1:7");
  EXPECT_EQ(ParseAddress("udp6://localhost:7")->address.ToString(), "[::1]:7");
  EXPECT_EQ(ParseAddress("udp6://[::1]:0")->network, Network::kUdp6);
  EXPECT_FALSE(ParseAddress("udp6://127.0.0.1:1").ok());
  EXPECT_FALSE(ParseAddress("udp4://[::1]:1").ok());
  EXPECT_FALSE(IsDatagram(ParseAddress("tcp://127.0.0.1:1")->network));
}

TEST(ParseAddressTest, RejectsMalformedInput) {
  for (const char* uri : {"sctp://1.2.3.4:5", "tcp://1.2.3.4", "tcp://1.2.3.4:", "tcp://1.2.3.4:x",
                          "tcp://1.2.3.4:65536", "tcp://[::1]", "tcp://[::1:80", "tcp://[::1]80",
                          "unix://", "tcp4://[::1]:80", "tcp6://127.0.0.1:80"}) {
    auto a = ParseAddress(uri);
    EXPECT_FALSE(a.ok()) << uri << " parsed as " << a->address.ToUri();
    if (!a.ok()) {
      EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument) << uri;
    }
  }
  std::string long_path = "unix:///tmp/" + std::string(200, 'p');
  EXPECT_FALSE(ParseAddress(long_path).ok());
}

TEST(SocketAddressTest, BuildersAndCopies) {
  in_addr ip;
  ASSERT_EQ(inet_pton(AF_INET, "10.1.2.3", &ip), 1);
  SocketAddress a = SocketAddress::Ipv4(ip, 65535);
  EXPECT_EQ(a.ToString(), "10.1.2.3:65535");
  EXPECT_EQ(a.length(), sizeof(sockaddr_in));
  SocketAddress copy(a.sockaddr_ptr(), a.length());
  EXPECT_EQ(copy.ToUri(), "tcp://10.1.2.3:65535");
  SocketAddress none;
  EXPECT_EQ(none.family(), AF_UNSPEC);
  EXPECT_FALSE(none.is_ip());
  EXPECT_EQ(none.ToUri(), "<unspecified>");
  EXPECT_FALSE(SocketAddress::Unix("").ok());
}

// Found by fuzz/address_fuzz (reproducers in fuzz/regressions/address_fuzz).
TEST(AddressTest, UnixNamesAndIpv6ExtrasAreExact) {
  // Every byte past the address is zero, whatever the compiler.
  auto v6 = ParseAddress("tcp6://[::1]:80");
  ASSERT_TRUE(v6.ok());
  const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(v6->address.sockaddr_ptr());
  EXPECT_EQ(sin6->sin6_scope_id, 0u);
  EXPECT_EQ(sin6->sin6_flowinfo, 0u);
  // An empty abstract name, and one ending in NUL, print as what they are.
  for (std::string_view name : {std::string_view("@"), std::string_view("@a\0", 3)}) {
    auto a = SocketAddress::Unix(name);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(a->HostBytes(), std::string(1, '\0') + std::string(name.substr(1)));
  }
  auto empty = ParseAddress("unix://@");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->address.ToUri(), "unix://@");
  // A leading NUL is abstract to the kernel: no terminator is counted.
  auto nul = SocketAddress::Unix(std::string_view("\0ab", 3));
  ASSERT_TRUE(nul.ok());
  EXPECT_EQ(nul->length(), offsetof(sockaddr_un, sun_path) + 3);
  EXPECT_EQ(nul->ToString(), "@ab");
  // A path gets exactly one terminator.
  auto path = SocketAddress::Unix("/tmp/netloop-address-test.sock");
  ASSERT_TRUE(path.ok());
  EXPECT_EQ(path->HostBytes(), "/tmp/netloop-address-test.sock");
  // A NUL inside a URI would make inet_pton parse a prefix: refused.
  EXPECT_FALSE(ParseAddress(std::string_view("tcp://127.0.0.1\0x:80", 21)).ok());
}

}  // namespace
}  // namespace netloop
