// Fuzzes ParseAddress and SocketAddress (reactor/address.h).
//
// The input is used twice: as a URI for ParseAddress, and as the raw bytes
// of a sockaddr (with each family forced in turn) for the SocketAddress
// constructor and the formatting calls. What is checked beyond "no crash":
//   - the network picks the family (tcp4: IPv4, tcp6: IPv6, unix: AF_UNIX,
//     tcp: either), unix addresses have port 0, IP HostBytes are 4 or 16
//     bytes, and a unix path comes back from HostBytes as given ("@name" as
//     "\0name");
//   - ToUri round-trips: a parsed address printed and parsed again is the
//     same address (family, port, HostBytes, length) and prints the same;
//   - an IPv4/IPv6 sockaddr from raw bytes prints as a URI that parses back
//     to its address and port (ToString drops scope and flow info, which the
//     comparison leaves out).
//
// Names that are not numeric reach getaddrinfo, which could block on DNS:
// this file replaces getaddrinfo with a call to the real one restricted to
// numeric hosts (AI_NUMERICHOST), which keeps the glibc-only forms such as
// "127.1" and "fe80::1%1" (getaddrinfo accepts them, inet_pton does not)
// and never touches the network.
#include <dlfcn.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fuzz/check.h"
#include "reactor/address.h"

extern "C" int getaddrinfo(const char* node, const char* service, const struct addrinfo* hints,
                           struct addrinfo** res) {
  using Fn = int (*)(const char*, const char*, const struct addrinfo*, struct addrinfo**);
  static const Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "getaddrinfo"));
  struct addrinfo numeric = hints != nullptr ? *hints : addrinfo{};
  numeric.ai_flags |= AI_NUMERICHOST | AI_NUMERICSERV;
  return real(node, service, &numeric, res);
}

namespace netloop::fuzz {
namespace {

// Fills the stack below the caller with non-zero bytes, so a field that a
// constructor leaves uninitialised reads as garbage rather than as whatever
// zeroes happen to be there. (How much of `Storage storage_{}` a compiler
// zeroes differs: gcc zeroes the whole union, clang only its first member.)
__attribute__((noinline)) void DirtyStack() {
  volatile unsigned char junk[16384];
  for (size_t i = 0; i < sizeof(junk); ++i) junk[i] = 0xa5;
}

bool InsideObject(std::string_view bytes, const SocketAddress& a) {
  const char* begin = reinterpret_cast<const char*>(&a);
  return bytes.empty() ||
         (bytes.data() >= begin && bytes.data() + bytes.size() <= begin + sizeof(a));
}

// Exercises every accessor; the checks are the ones that hold for any
// address, however it was made.
void CheckAccessors(const SocketAddress& a) {
  const std::string_view host = a.HostBytes();
  FUZZ_CHECK(InsideObject(host, a), "HostBytes outside the object");
  const std::string text = a.ToString();
  const std::string uri = a.ToUri();
  FUZZ_CHECK(a.is_ip() == (a.family() == AF_INET || a.family() == AF_INET6));
  if (a.family() == AF_INET) FUZZ_CHECK(host.size() == 4);
  if (a.family() == AF_INET6) FUZZ_CHECK(host.size() == 16);
  if (a.is_ip()) {
    FUZZ_CHECK(text.ends_with(":" + std::to_string(a.port())), "%s", Escape(text).c_str());
    FUZZ_CHECK(uri == "tcp://" + text, "%s", Escape(uri).c_str());
  } else {
    FUZZ_CHECK(a.port() == 0);
  }
  if (a.family() == AF_UNIX) FUZZ_CHECK(uri == "unix://" + text, "%s", Escape(uri).c_str());
}

void CheckSame(const SocketAddress& a, const SocketAddress& b, std::string_view what) {
  FUZZ_CHECK(a.family() == b.family() && a.port() == b.port() && a.HostBytes() == b.HostBytes(),
             "%s: %s is not %s (host %s vs %s)", std::string(what).c_str(),
             Escape(a.ToUri()).c_str(), Escape(b.ToUri()).c_str(), Escape(a.HostBytes()).c_str(),
             Escape(b.HostBytes()).c_str());
}

// The bytes the kernel reads beyond the address itself must be zero: an IPv6
// scope id picks the interface for a link-local address.
void CheckIpv6Extras(const SocketAddress& a) {
  const auto* v6 = reinterpret_cast<const sockaddr_in6*>(a.sockaddr_ptr());
  // regressions/address_fuzz/ipv6_scope_uninitialised: a union's `{}` once
  // left these bytes indeterminate under clang.
  FUZZ_CHECK(v6->sin6_scope_id == 0 && v6->sin6_flowinfo == 0,
             "%s: scope id %#x, flow info %#x (uninitialised?)", Escape(a.ToUri()).c_str(),
             v6->sin6_scope_id, v6->sin6_flowinfo);
}

// The bugs regressions/address_fuzz/unix_* reproduce: a path's terminator
// left indeterminate; an abstract name's trailing NUL taken for one; a leading
// NUL (abstract to the kernel) given a terminator as if it were a path.
void CheckUnixBytes(const SocketAddress& a, std::string_view path) {
  const auto* un = reinterpret_cast<const sockaddr_un*>(a.sockaddr_ptr());
  const bool abstract = path[0] == '@' || path[0] == '\0';
  const size_t name_len = a.length() - offsetof(sockaddr_un, sun_path);
  if (abstract) {
    FUZZ_CHECK(name_len == path.size(), "abstract %s counted as %zu bytes",
               Escape(path).c_str(), name_len);
  } else {
    FUZZ_CHECK(name_len == path.size() + 1 && un->sun_path[path.size()] == '\0',
               "path %s: no terminator", Escape(path).c_str());
  }
}

void CheckParse(std::string_view uri) {
  DirtyStack();
  const absl::StatusOr<NetAddress> parsed = ParseAddress(uri);
  if (!parsed.ok()) {
    // Malformed input, or a name the numeric-only resolver could not use.
    FUZZ_CHECK(absl::IsInvalidArgument(parsed.status()) || absl::IsNotFound(parsed.status()),
               "%s", std::string(parsed.status().message()).c_str());
    return;
  }
  const SocketAddress& a = parsed->address;
  CheckAccessors(a);
  switch (parsed->network) {
    case Network::kTcp: FUZZ_CHECK(a.is_ip()); break;
    case Network::kTcp4: FUZZ_CHECK(a.family() == AF_INET); break;
    case Network::kTcp6: FUZZ_CHECK(a.family() == AF_INET6); break;
    case Network::kUnix: {
      FUZZ_CHECK(a.family() == AF_UNIX);
      const std::string_view path = uri.substr(uri.find("://") + 3);
      CheckUnixBytes(a, path);
      const std::string expected =
          path.starts_with('@') ? '\0' + std::string(path.substr(1)) : std::string(path);
      FUZZ_CHECK(a.HostBytes() == expected, "unix path %s came back as %s",
                 Escape(path).c_str(), Escape(a.HostBytes()).c_str());
      break;
    }
  }

  // Only getaddrinfo, for "fe80::1%1", sets a scope id.
  if (a.family() == AF_INET6 && uri.find('%') == std::string_view::npos) CheckIpv6Extras(a);

  const std::string printed = a.ToUri();
  const absl::StatusOr<NetAddress> again = ParseAddress(printed);
  FUZZ_CHECK(again.ok(), "%s parsed, but its ToUri %s does not: %s", Escape(uri).c_str(),
             Escape(printed).c_str(), std::string(again.status().message()).c_str());
  CheckSame(again->address, a, "ToUri round trip");
  FUZZ_CHECK(again->address.length() == a.length(), "%s: length %u, again %u",
             Escape(printed).c_str(), a.length(), again->address.length());
  FUZZ_CHECK(again->address.ToUri() == printed);
}

// The input as the bytes of a sockaddr of `family`, `len` bytes long.
void CheckRaw(std::string_view bytes, sa_family_t family, socklen_t len) {
  sockaddr_un raw{};  // the largest of the three
  std::memcpy(&raw, bytes.data(), std::min(bytes.size(), sizeof(raw)));
  raw.sun_family = family;
  const SocketAddress a(reinterpret_cast<const sockaddr*>(&raw), len);
  CheckAccessors(a);
  if (!a.is_ip()) return;  // an unnamed or odd unix address need not print parseably
  const absl::StatusOr<NetAddress> again = ParseAddress(a.ToUri());
  FUZZ_CHECK(again.ok(), "%s: %s", Escape(a.ToUri()).c_str(),
             std::string(again.status().message()).c_str());
  CheckSame(again->address, a, "raw sockaddr round trip");
}

// The factories, on bytes from the input.
void CheckFactories(std::string_view bytes) {
  in6_addr ip6{};
  std::memcpy(&ip6, bytes.data(), std::min(bytes.size(), sizeof(ip6)));
  const uint16_t port = bytes.size() >= 2 ? static_cast<uint16_t>(bytes[0] << 8 | bytes[1]) : 0;
  DirtyStack();
  const SocketAddress a6 = SocketAddress::Ipv6(ip6, port);
  CheckAccessors(a6);
  CheckIpv6Extras(a6);
  FUZZ_CHECK(a6.port() == port && a6.HostBytes() == std::string_view(
                                                         reinterpret_cast<const char*>(&ip6), 16));
  in_addr ip4{};
  std::memcpy(&ip4, bytes.data(), std::min(bytes.size(), sizeof(ip4)));
  const SocketAddress a4 = SocketAddress::Ipv4(ip4, port);
  CheckAccessors(a4);
  FUZZ_CHECK(a4.port() == port && a4.length() == sizeof(sockaddr_in));
}

}  // namespace
}  // namespace netloop::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using netloop::fuzz::CheckRaw;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  netloop::fuzz::CheckParse(bytes);
  netloop::fuzz::CheckFactories(bytes);
  CheckRaw(bytes, AF_INET, sizeof(sockaddr_in));
  CheckRaw(bytes, AF_INET6, sizeof(sockaddr_in6));
  // Any length the constructor accepts, taken from the input; as accept()
  // and getpeername() report it for a unix peer.
  const socklen_t unix_len = size == 0 ? 0 : data[0] % (sizeof(sockaddr_un) + 1);
  CheckRaw(bytes, AF_UNIX, unix_len);
  // Whatever family the bytes name.
  netloop::SocketAddress any(reinterpret_cast<const sockaddr*>(data),
                             static_cast<socklen_t>(std::min(size, sizeof(sockaddr_un))));
  netloop::fuzz::CheckAccessors(any);
  return 0;
}
