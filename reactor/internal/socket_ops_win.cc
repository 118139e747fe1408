// Windows half of reactor/internal/socket_ops.h (Winsock 2).
//
// Differences from POSIX, each a Windows fact rather than a choice:
// - Sockets are made overlapped (for the completion port) and FIONBIO, and
//   not inheritable (WSA_FLAG_NO_HANDLE_INHERIT plays close-on-exec's part).
// - There is no SO_REUSEPORT: Listen refuses reuse_port. Listeners take
//   SO_EXCLUSIVEADDRUSE, so no other process can bind the same port over
//   them (Windows' SO_REUSEADDR would let it); `reuse_addr` is then moot,
//   since Windows lets a listener bind over connections in TIME_WAIT anyway.
// - Keepalive timing goes through SIO_KEEPALIVE_VALS, which has no probe
//   count: keepalive_count is left to the system's default.
// - No SIGPIPE exists, so IgnoreSigpipeOnce does nothing.
#include "reactor/internal/socket_ops.h"

// After socket_ops.h, which brings in Winsock (socket_types.h): mstcpip.h
// needs its types.
#include <mstcpip.h>
#include <mswsock.h>
#include <string.h>

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "reactor/internal/errno_text.h"
#include "reactor/internal/platform.h"
#include "reactor/internal/sys_io.h"
#include "reactor/logging.h"

namespace netloop {
namespace {

using internal::CloseSocket;
using internal::EnsureWinsock;
using internal::LastSocketError;

absl::Status ErrnoStatus(std::string_view what, int err) {
  return absl::Status(absl::ErrnoToStatusCode(err),
                      absl::StrCat(absl::string_view(what.data(), what.size()), ": ",
                                   internal::ErrnoText(err)));
}

void SetIntOpt(SocketHandle fd, int level, int name, int value, const char* label) {
  if (setsockopt(static_cast<SOCKET>(fd), level, name, reinterpret_cast<const char*>(&value),
                 sizeof(value)) != 0) {
    NETLOOP_LOG(kWarning) << "setsockopt(" << label << "): " << internal::ErrnoText(LastSocketError());
  }
}

// An overlapped, non-inheritable, non-blocking socket.
absl::StatusOr<SocketHandle> NewSocket(int family, int type, int protocol) {
  EnsureWinsock();
  SOCKET s = WSASocketW(family, type, protocol, nullptr, 0,
                        WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
  if (s == INVALID_SOCKET) {
    const int err = LastSocketError();
    if (family == AF_UNIX && (err == EAFNOSUPPORT || err == EPROTONOSUPPORT)) {
      return absl::UnimplementedError(
          "unix sockets are not available on this system (no AF_UNIX provider)");
    }
    return ErrnoStatus("socket", err);
  }
  u_long non_blocking = 1;
  if (ioctlsocket(s, FIONBIO, &non_blocking) != 0) {
    const int err = LastSocketError();
    closesocket(s);
    return ErrnoStatus("ioctlsocket(FIONBIO)", err);
  }
  return static_cast<SocketHandle>(s);
}

// Removes a unix socket file left by a dead process; refuses to touch a
// live listener. (Windows has no S_ISSOCK to tell a socket file apart; a
// path nobody answers on, that a connect is refused at, is taken as one.)
void RemoveStaleUnixSocket(const SocketAddress& addr) {
  std::string path(addr.HostBytes());
  if (path.empty() || path[0] == '\0') return;
  if (GetFileAttributesA(path.c_str()) == INVALID_FILE_ATTRIBUTES) return;
  SOCKET probe = socket(AF_UNIX, SOCK_STREAM, 0);
  if (probe == INVALID_SOCKET) return;
  if (connect(probe, addr.sockaddr_ptr(), addr.length()) != 0 &&
      LastSocketError() == ECONNREFUSED) {
    DeleteFileA(path.c_str());
  }
  closesocket(probe);
}

int ProtocolOf(int family, int type) {
  if (family == AF_UNIX) return 0;
  return type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP;
}

}  // namespace

absl::StatusOr<SocketHandle> Listen(const NetAddress& addr, bool reuse_addr, bool reuse_port,
                                    int backlog) {
  (void)reuse_addr;
  if (reuse_port) {
    return absl::InvalidArgumentError(
        "no SO_REUSEPORT on Windows: use AcceptMode::kAcceptor");
  }
  const SocketAddress& sa = addr.address;
  absl::StatusOr<SocketHandle> fd =
      NewSocket(sa.family(), SOCK_STREAM, ProtocolOf(sa.family(), SOCK_STREAM));
  if (!fd.ok()) return fd.status();
  if (sa.is_ip()) {
    SetIntOpt(*fd, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, 1, "SO_EXCLUSIVEADDRUSE");
    if (sa.family() == AF_INET6) {
      SetIntOpt(*fd, IPPROTO_IPV6, IPV6_V6ONLY, addr.network == Network::kTcp6 ? 1 : 0,
                "IPV6_V6ONLY");
    }
  } else {
    RemoveStaleUnixSocket(sa);
  }
  if (bind(static_cast<SOCKET>(*fd), sa.sockaddr_ptr(), sa.length()) != 0) {
    const int err = LastSocketError();
    CloseSocket(*fd);
    return absl::Status(absl::ErrnoToStatusCode(err),
                        absl::StrCat("bind ", sa.ToUri(), ": ", internal::ErrnoText(err)));
  }
  if (listen(static_cast<SOCKET>(*fd), backlog) != 0) {
    const int err = LastSocketError();
    CloseSocket(*fd);
    return ErrnoStatus("listen", err);
  }
  return fd;
}

absl::StatusOr<SocketHandle> BindDatagram(const NetAddress& addr, bool reuse_port) {
  (void)reuse_port;  // one UDP socket per address on Windows, served by one loop
  const SocketAddress& sa = addr.address;
  absl::StatusOr<SocketHandle> fd = NewSocket(sa.family(), SOCK_DGRAM, IPPROTO_UDP);
  if (!fd.ok()) return fd.status();
  SetIntOpt(*fd, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, 1, "SO_EXCLUSIVEADDRUSE");
  if (sa.family() == AF_INET6) {
    SetIntOpt(*fd, IPPROTO_IPV6, IPV6_V6ONLY, addr.network == Network::kUdp6 ? 1 : 0,
              "IPV6_V6ONLY");
  }
  // A datagram that bounces (ICMP port unreachable) would otherwise fail the
  // socket's next receive with WSAECONNRESET.
  BOOL report_resets = FALSE;
  DWORD unused = 0;
  (void)WSAIoctl(static_cast<SOCKET>(*fd), SIO_UDP_CONNRESET, &report_resets,
                 sizeof(report_resets), nullptr, 0, &unused, nullptr, nullptr);
  if (bind(static_cast<SOCKET>(*fd), sa.sockaddr_ptr(), sa.length()) != 0) {
    const int err = LastSocketError();
    CloseSocket(*fd);
    return absl::Status(absl::ErrnoToStatusCode(err),
                        absl::StrCat("bind udp ", sa.ToString(), ": ", internal::ErrnoText(err)));
  }
  return fd;
}

int SendDatagramTo(SocketHandle fd, const iovec* iov, int count, const sockaddr* to,
                   socklen_t to_len) {
  WSABUF bufs[8];
  if (count > 8) return EMSGSIZE;
  for (int i = 0; i < count; ++i) {
    bufs[i].buf = static_cast<char*>(iov[i].iov_base);
    bufs[i].len = static_cast<ULONG>(iov[i].iov_len);
  }
  DWORD sent = 0;
  if (WSASendTo(static_cast<SOCKET>(fd), bufs, static_cast<DWORD>(count), &sent, 0, to, to_len,
                nullptr, nullptr) != 0) {
    return LastSocketError();
  }
  return 0;
}

absl::StatusOr<SocketHandle> StartConnect(const SocketAddress& addr, bool* in_progress) {
  // ConnectEx (the backend's AwaitConnect) wants a bound socket that has not
  // started connecting: bind to the wildcard address and leave the rest to
  // it, so the result always comes later.
  if (!addr.is_ip()) {
    return absl::UnimplementedError(
        absl::StrCat("connect ", addr.ToUri(), ": only TCP dials on Windows so far"));
  }
  absl::StatusOr<SocketHandle> fd =
      NewSocket(addr.family(), SOCK_STREAM, ProtocolOf(addr.family(), SOCK_STREAM));
  if (!fd.ok()) return fd.status();
  SocketAddress any;
  if (addr.family() == AF_INET) {
    in_addr ip;
    ip.s_addr = htonl(INADDR_ANY);
    any = SocketAddress::Ipv4(ip, 0);
  } else {
    any = SocketAddress::Ipv6(in6addr_any, 0);
  }
  if (bind(static_cast<SOCKET>(*fd), any.sockaddr_ptr(), any.length()) != 0) {
    const int err = LastSocketError();
    CloseSocket(*fd);
    return absl::Status(absl::ErrnoToStatusCode(err),
                        absl::StrCat("connect ", addr.ToUri(), ": bind: ", internal::ErrnoText(err)));
  }
  *in_progress = true;
  return fd;
}

void ApplySocketTuning(SocketHandle fd, int family, const SocketTuning& t) {
  if (family != AF_INET && family != AF_INET6) return;
  if (t.tcp_nodelay) SetIntOpt(fd, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
  if (t.keepalive_idle > absl::ZeroDuration()) {
    tcp_keepalive ka{};
    ka.onoff = 1;
    ka.keepalivetime = static_cast<ULONG>(absl::ToInt64Milliseconds(t.keepalive_idle));
    ka.keepaliveinterval = static_cast<ULONG>(
        std::max<int64_t>(1000, absl::ToInt64Milliseconds(t.keepalive_interval)));
    DWORD unused = 0;
    if (WSAIoctl(static_cast<SOCKET>(fd), SIO_KEEPALIVE_VALS, &ka, sizeof(ka), nullptr, 0,
                 &unused, nullptr, nullptr) != 0) {
      NETLOOP_LOG(kWarning) << "WSAIoctl(SIO_KEEPALIVE_VALS): "
                            << internal::ErrnoText(LastSocketError());
    }
  }
  if (t.send_buffer_bytes > 0) {
    SetIntOpt(fd, SOL_SOCKET, SO_SNDBUF, t.send_buffer_bytes, "SO_SNDBUF");
  }
  if (t.receive_buffer_bytes > 0) {
    SetIntOpt(fd, SOL_SOCKET, SO_RCVBUF, t.receive_buffer_bytes, "SO_RCVBUF");
  }
}

SocketAddress LocalAddressOf(SocketHandle fd) {
  SocketAddress a;
  int len = static_cast<int>(sizeof(sockaddr_un));
  if (getsockname(static_cast<SOCKET>(fd), a.mutable_sockaddr_ptr(), &len) == 0) {
    a.set_length(len);
  }
  return a;
}

SocketAddress PeerAddressOf(SocketHandle fd) {
  SocketAddress a;
  int len = static_cast<int>(sizeof(sockaddr_un));
  if (getpeername(static_cast<SOCKET>(fd), a.mutable_sockaddr_ptr(), &len) == 0) {
    a.set_length(len);
  }
  return a;
}

int SocketError(SocketHandle fd) {
  int err = 0;
  int len = sizeof(err);
  if (getsockopt(static_cast<SOCKET>(fd), SOL_SOCKET, SO_ERROR, reinterpret_cast<char*>(&err),
                 &len) != 0) {
    return LastSocketError();
  }
  return internal::ErrnoFromWindowsError(static_cast<unsigned long>(err));
}

void IgnoreSigpipeOnce() {}

}  // namespace netloop
