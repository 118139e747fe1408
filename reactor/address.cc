#include "reactor/address.h"

#include <string.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "reactor/internal/sys_io.h"

namespace netloop {
namespace {

absl::string_view AbslView(std::string_view s) { return {s.data(), s.size()}; }

absl::Status BadAddress(std::string_view uri, std::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("bad address \"", AbslView(uri), "\": ", AbslView(why)));
}

}  // namespace

SocketAddress::SocketAddress() { memset(&storage_, 0, sizeof(storage_)); }

SocketAddress::SocketAddress(const sockaddr* sa, socklen_t len) : SocketAddress() {
  if (len > sizeof(storage_)) len = sizeof(storage_);
  memcpy(&storage_, sa, len);
  len_ = len;
}

SocketAddress SocketAddress::Ipv4(const in_addr& ip, uint16_t port) {
  SocketAddress a;
  a.storage_.v4.sin_family = AF_INET;
  a.storage_.v4.sin_addr = ip;
  a.storage_.v4.sin_port = htons(port);
  a.len_ = sizeof(sockaddr_in);
  return a;
}

SocketAddress SocketAddress::Ipv6(const in6_addr& ip, uint16_t port) {
  SocketAddress a;
  a.storage_.v6.sin6_family = AF_INET6;
  a.storage_.v6.sin6_addr = ip;
  a.storage_.v6.sin6_port = htons(port);
  a.len_ = sizeof(sockaddr_in6);
  return a;
}

absl::StatusOr<SocketAddress> SocketAddress::Unix(std::string_view path) {
  SocketAddress a;
  if (path.empty()) return absl::InvalidArgumentError("empty unix socket path");
  if (path.size() >= sizeof(a.storage_.un.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unix socket path too long: ", AbslView(path)));
  }
  a.storage_.un.sun_family = AF_UNIX;
  memcpy(a.storage_.un.sun_path, path.data(), path.size());
  // A leading '@' names an abstract socket, as in ss(8) and Go; so does a
  // leading NUL, as the kernel sees it. Abstract names are counted exactly
  // (every byte is part of the name); paths get their terminator.
  const bool abstract = path[0] == '@' || path[0] == '\0';
  a.storage_.un.sun_path[0] = abstract ? '\0' : path[0];
  a.len_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() +
                                  (abstract ? 0 : 1));
  return a;
}

uint16_t SocketAddress::port() const {
  switch (family()) {
    case AF_INET:
      return ntohs(storage_.v4.sin_port);
    case AF_INET6:
      return ntohs(storage_.v6.sin6_port);
    default:
      return 0;
  }
}

std::string_view SocketAddress::HostBytes() const {
  switch (family()) {
    case AF_INET:
      return {reinterpret_cast<const char*>(&storage_.v4.sin_addr), 4};
    case AF_INET6:
      return {reinterpret_cast<const char*>(&storage_.v6.sin6_addr), 16};
    case AF_UNIX: {
      size_t n = len_ > offsetof(sockaddr_un, sun_path)
                     ? len_ - offsetof(sockaddr_un, sun_path)
                     : 0;
      std::string_view p(storage_.un.sun_path, n);
      // A path ends at its terminator; an abstract name (leading NUL) is
      // exactly its length, NULs included.
      if (!p.empty() && p[0] != '\0') p = p.substr(0, p.find('\0'));
      return p;
    }
    default:
      return {};
  }
}

std::string SocketAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN];
  switch (family()) {
    case AF_INET:
      inet_ntop(AF_INET, &storage_.v4.sin_addr, buf, sizeof(buf));
      return absl::StrCat(buf, ":", port());
    case AF_INET6:
      inet_ntop(AF_INET6, &storage_.v6.sin6_addr, buf, sizeof(buf));
      return absl::StrCat("[", buf, "]:", port());
    case AF_UNIX: {
      std::string p(HostBytes());
      if (!p.empty() && p[0] == '\0') p[0] = '@';
      return p;
    }
    default:
      return "<unspecified>";
  }
}

std::string SocketAddress::IpToString() const {
  char buf[INET6_ADDRSTRLEN];
  switch (family()) {
    case AF_INET:
      return inet_ntop(AF_INET, &storage_.v4.sin_addr, buf, sizeof(buf)) != nullptr ? buf : "";
    case AF_INET6:
      return inet_ntop(AF_INET6, &storage_.v6.sin6_addr, buf, sizeof(buf)) != nullptr ? buf : "";
    default:
      return "";
  }
}

std::string SocketAddress::ToUri() const {
  if (family() == AF_UNIX) return absl::StrCat("unix://", ToString());
  if (family() == AF_UNSPEC) return "<unspecified>";
  return absl::StrCat("tcp://", ToString());
}

absl::StatusOr<NetAddress> ParseAddressNoLookup(std::string_view uri) {
  NetAddress out;
  // C APIs below (inet_pton, getaddrinfo) would stop at a NUL and parse
  // another address than the one given.
  if (uri.find('\0') != std::string_view::npos) return BadAddress("", "contains a NUL byte");
  std::string_view rest = uri;
  size_t scheme_end = rest.find("://");
  if (scheme_end != std::string_view::npos) {
    std::string_view scheme = rest.substr(0, scheme_end);
    rest.remove_prefix(scheme_end + 3);
    if (scheme == "tcp") {
      out.network = Network::kTcp;
    } else if (scheme == "tcp4") {
      out.network = Network::kTcp4;
    } else if (scheme == "tcp6") {
      out.network = Network::kTcp6;
    } else if (scheme == "udp") {
      out.network = Network::kUdp;
    } else if (scheme == "udp4") {
      out.network = Network::kUdp4;
    } else if (scheme == "udp6") {
      out.network = Network::kUdp6;
    } else if (scheme == "unix") {
      out.network = Network::kUnix;
      auto a = SocketAddress::Unix(rest);
      if (!a.ok()) {
        return BadAddress(uri, std::string(a.status().message()));
      }
      out.address = *a;
      return out;
    } else {
      return BadAddress(uri, "unknown scheme (tcp, tcp4, tcp6, udp, udp4, udp6, unix)");
    }
  }
  // host:port, [v6]:port, :port
  std::string host;
  std::string_view port_text;
  if (!rest.empty() && rest[0] == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos || close + 1 >= rest.size() ||
        rest[close + 1] != ':') {
      return BadAddress(uri, "expected [ipv6]:port");
    }
    host = std::string(rest.substr(1, close - 1));
    port_text = rest.substr(close + 2);
  } else {
    size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) return BadAddress(uri, "missing :port");
    host = std::string(rest.substr(0, colon));
    port_text = rest.substr(colon + 1);
  }
  uint32_t port = 0;
  if (!absl::SimpleAtoi(AbslView(port_text), &port) || port > 65535) {
    return BadAddress(uri, "bad port");
  }
  bool want4 = out.network != Network::kTcp6 && out.network != Network::kUdp6;
  bool want6 = out.network != Network::kTcp4 && out.network != Network::kUdp4;
  if (host.empty()) {
    // All interfaces; plain tcp prefers IPv4 like most servers' defaults.
    if (want4) {
      in_addr any;
      any.s_addr = htonl(INADDR_ANY);
      out.address = SocketAddress::Ipv4(any, static_cast<uint16_t>(port));
    } else {
      out.address = SocketAddress::Ipv6(in6addr_any, static_cast<uint16_t>(port));
    }
    return out;
  }
  if (host == "localhost") host = want4 ? "127.0.0.1" : "::1";
  in_addr v4;
  in6_addr v6;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    if (!want4) return BadAddress(uri, "an IPv6-only scheme with an IPv4 address");
    out.address = SocketAddress::Ipv4(v4, static_cast<uint16_t>(port));
    return out;
  }
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    if (!want6) return BadAddress(uri, "an IPv4-only scheme with an IPv6 address");
    out.address = SocketAddress::Ipv6(v6, static_cast<uint16_t>(port));
    return out;
  }
  out.unresolved_host = std::move(host);
  out.unresolved_port = static_cast<uint16_t>(port);
  return out;
}

absl::Status ResolveAddress(NetAddress* addr) {
  if (addr->unresolved_host.empty()) return absl::OkStatus();
  const bool want4 = addr->network != Network::kTcp6 && addr->network != Network::kUdp6;
  const bool want6 = addr->network != Network::kTcp4 && addr->network != Network::kUdp4;
  addrinfo hints{};
  hints.ai_family = want4 && want6 ? AF_UNSPEC : (want4 ? AF_INET : AF_INET6);
  hints.ai_socktype = IsDatagram(addr->network) ? SOCK_DGRAM : SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = internal::SysGetAddrInfo(addr->unresolved_host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || res == nullptr) {
    return absl::NotFoundError(absl::StrCat("cannot resolve \"", addr->unresolved_host,
                                            "\": ", gai_strerror(rc)));
  }
  addr->address = SocketAddress(res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  const uint16_t port = htons(addr->unresolved_port);
  if (addr->address.family() == AF_INET) {
    reinterpret_cast<sockaddr_in*>(addr->address.mutable_sockaddr_ptr())->sin_port = port;
  } else {
    reinterpret_cast<sockaddr_in6*>(addr->address.mutable_sockaddr_ptr())->sin6_port = port;
  }
  addr->unresolved_host.clear();
  addr->unresolved_port = 0;
  return absl::OkStatus();
}

absl::StatusOr<NetAddress> ParseAddress(std::string_view uri) {
  absl::StatusOr<NetAddress> out = ParseAddressNoLookup(uri);
  if (!out.ok()) return out;
  if (absl::Status s = ResolveAddress(&*out); !s.ok()) return s;
  return out;
}

}  // namespace netloop
