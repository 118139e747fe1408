// Socket addresses and the "network://host:port" strings users pass to
// Engine::Start and Dial.
//
//   tcp://127.0.0.1:8080   tcp://[::1]:8080   tcp://:8080 (all interfaces)
//   tcp4://localhost:0     tcp6://[::]:0      unix:///tmp/app.sock
//   udp://127.0.0.1:5353   udp4://:0          udp6://[::1]:0
//   127.0.0.1:8080         (no scheme means tcp)
// Port 0 asks the kernel for an ephemeral port; Engine::ListenAddresses() tells
// which one it got.
#ifndef NETLOOP_REACTOR_ADDRESS_H_
#define NETLOOP_REACTOR_ADDRESS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "reactor/socket_handle.h"
#include "reactor/socket_types.h"

namespace netloop {

enum class Network { kTcp, kTcp4, kTcp6, kUnix, kUdp, kUdp4, kUdp6 };

inline bool IsDatagram(Network n) {
  return n == Network::kUdp || n == Network::kUdp4 || n == Network::kUdp6;
}

// A value type wrapping sockaddr_in / sockaddr_in6 / sockaddr_un.
class SocketAddress {
 public:
  // Zeroed whole: a union's `{}` sets only its first member, and bytes left
  // over (sin6_scope_id, a unix path's terminator) would reach the kernel.
  SocketAddress();
  // Copies `len` bytes of `sa`; len must not exceed sizeof(sockaddr_un).
  SocketAddress(const sockaddr* sa, socklen_t len);

  static SocketAddress Ipv4(const in_addr& ip, uint16_t port);
  static SocketAddress Ipv6(const in6_addr& ip, uint16_t port);
  static absl::StatusOr<SocketAddress> Unix(std::string_view path);

  const sockaddr* sockaddr_ptr() const { return &storage_.sa; }
  sockaddr* mutable_sockaddr_ptr() { return &storage_.sa; }
  socklen_t length() const { return len_; }
  void set_length(socklen_t len) { len_ = len; }
  int family() const { return len_ == 0 ? AF_UNSPEC : storage_.sa.sa_family; }
  bool is_ip() const { return family() == AF_INET || family() == AF_INET6; }
  // 0 for unix sockets.
  uint16_t port() const;
  // The address bytes without the port (4 or 16 bytes), or the unix path.
  // The view is valid while this object lives and is unchanged.
  std::string_view HostBytes() const;
  // "127.0.0.1:80", "[::1]:80", "/tmp/x.sock" (or "@abstract").
  std::string ToString() const;
  // The IP address alone ("127.0.0.1", "::1"); empty for other families.
  std::string IpToString() const;
  // "tcp://127.0.0.1:80", "unix:///tmp/x.sock".
  std::string ToUri() const;

 private:
  union Storage {
    sockaddr sa;
    sockaddr_in v4;
    sockaddr_in6 v6;
    sockaddr_un un;
  };
  Storage storage_{};
  socklen_t len_ = 0;
};

struct NetAddress {
  Network network = Network::kTcp;
  SocketAddress address;
  // Set only by ParseAddressNoLookup for a host name that needs a lookup;
  // `address` is then empty and ResolveAddress fills it in.
  std::string unresolved_host;
  uint16_t unresolved_port = 0;
};

// Parses a URI as above. Names other than numeric addresses and "localhost"
// are resolved with getaddrinfo, which blocks: call it off the loop threads.
absl::StatusOr<NetAddress> ParseAddress(std::string_view uri);

// Parses a URI as above without ever blocking: a host name that needs a
// lookup is returned in unresolved_host (with the port), for ResolveAddress
// on a thread that may block. Any thread.
absl::StatusOr<NetAddress> ParseAddressNoLookup(std::string_view uri);

// Resolves addr->unresolved_host with getaddrinfo (blocking) and clears it.
// A no-op for an address that needs no lookup. Any thread but a loop's.
absl::Status ResolveAddress(NetAddress* addr);

}  // namespace netloop

#endif  // NETLOOP_REACTOR_ADDRESS_H_
