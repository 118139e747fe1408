#include "reactor/internal/socket_ops.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"
#include "reactor/logging.h"
#include "reactor/internal/sys_io.h"

namespace netloop {
namespace {

absl::Status ErrnoStatus(const char* what, int err) {
  return absl::Status(absl::ErrnoToStatusCode(err),
                      absl::StrCat(what, ": ", strerror(err)));
}

void SetIntOpt(SocketHandle fd, int level, int name, int value, const char* label) {
  if (setsockopt(fd, level, name, &value, sizeof(value)) != 0) {
    NETLOOP_LOG(kWarning) << "setsockopt(" << label << "): " << strerror(errno);
  }
}

// Removes a unix socket file left by a dead process; refuses to touch a live
// listener or a non-socket file.
void RemoveStaleUnixSocket(const SocketAddress& addr) {
  std::string path(addr.HostBytes());
  if (path.empty() || path[0] == '\0') return;  // abstract namespace
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return;
  int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0) return;
  if (connect(probe, addr.sockaddr_ptr(), addr.length()) != 0 &&
      errno == ECONNREFUSED) {
    unlink(path.c_str());
  }
  close(probe);
}

}  // namespace

absl::StatusOr<SocketHandle> Listen(const NetAddress& addr, bool reuse_addr,
                           bool reuse_port, int backlog) {
  const SocketAddress& sa = addr.address;
  int fd = socket(sa.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus("socket", errno);
  if (sa.is_ip()) {
    if (reuse_addr) SetIntOpt(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
    if (reuse_port) SetIntOpt(fd, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
    if (sa.family() == AF_INET6) {
      // tcp6:// means IPv6 only; plain tcp:// on [::] takes both families.
      SetIntOpt(fd, IPPROTO_IPV6, IPV6_V6ONLY,
                addr.network == Network::kTcp6 ? 1 : 0, "IPV6_V6ONLY");
    }
  } else {
    RemoveStaleUnixSocket(sa);
  }
  if (bind(fd, sa.sockaddr_ptr(), sa.length()) != 0) {
    int err = errno;
    close(fd);
    return absl::Status(absl::ErrnoToStatusCode(err),
                        absl::StrCat("bind ", sa.ToUri(), ": ", strerror(err)));
  }
  if (listen(fd, backlog) != 0) {
    int err = errno;
    close(fd);
    return ErrnoStatus("listen", err);
  }
  return fd;
}

absl::StatusOr<SocketHandle> BindDatagram(const NetAddress& addr, bool reuse_port) {
  const SocketAddress& sa = addr.address;
  int fd = socket(sa.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus("socket", errno);
  if (reuse_port) SetIntOpt(fd, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
  if (sa.family() == AF_INET6) {
    SetIntOpt(fd, IPPROTO_IPV6, IPV6_V6ONLY, addr.network == Network::kUdp6 ? 1 : 0,
              "IPV6_V6ONLY");
  }
  if (bind(fd, sa.sockaddr_ptr(), sa.length()) != 0) {
    int err = errno;
    close(fd);
    return absl::Status(absl::ErrnoToStatusCode(err),
                        absl::StrCat("bind udp ", sa.ToString(), ": ", strerror(err)));
  }
  return fd;
}

int SendDatagramTo(SocketHandle fd, const iovec* iov, int count, const sockaddr* to, socklen_t to_len) {
  msghdr msg{};
  msg.msg_name = const_cast<sockaddr*>(to);
  msg.msg_namelen = to_len;
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = static_cast<size_t>(count);
  ssize_t n;
  do {
    n = ::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n >= 0 ? 0 : errno;
}

absl::StatusOr<SocketHandle> StartConnect(const SocketAddress& addr, bool* in_progress) {
  int fd = socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus("socket", errno);
  *in_progress = false;
  int rc;
  do {
    rc = internal::SysConnect(fd, addr.sockaddr_ptr(), addr.length());
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    // Unix sockets answer EAGAIN when the listener's backlog is full.
    if (errno == EINPROGRESS || errno == EAGAIN) {
      *in_progress = true;
    } else {
      int err = errno;
      close(fd);
      return absl::Status(absl::ErrnoToStatusCode(err),
                          absl::StrCat("connect ", addr.ToUri(), ": ", strerror(err)));
    }
  }
  return fd;
}

void ApplySocketTuning(SocketHandle fd, int family, const SocketTuning& t) {
  if (family != AF_INET && family != AF_INET6) return;
  if (t.tcp_nodelay) SetIntOpt(fd, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
  if (t.keepalive_idle > absl::ZeroDuration()) {
    SetIntOpt(fd, SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE");
    SetIntOpt(fd, IPPROTO_TCP, TCP_KEEPIDLE,
              static_cast<int>(absl::ToInt64Seconds(t.keepalive_idle)) + 0, "TCP_KEEPIDLE");
    SetIntOpt(fd, IPPROTO_TCP, TCP_KEEPINTVL,
              std::max(1, static_cast<int>(absl::ToInt64Seconds(t.keepalive_interval))),
              "TCP_KEEPINTVL");
    SetIntOpt(fd, IPPROTO_TCP, TCP_KEEPCNT, std::max(1, t.keepalive_count), "TCP_KEEPCNT");
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
  socklen_t len = sizeof(sockaddr_un);
  if (getsockname(fd, a.mutable_sockaddr_ptr(), &len) == 0) a.set_length(len);
  return a;
}

SocketAddress PeerAddressOf(SocketHandle fd) {
  SocketAddress a;
  socklen_t len = sizeof(sockaddr_un);
  if (getpeername(fd, a.mutable_sockaddr_ptr(), &len) == 0) a.set_length(len);
  return a;
}

int SocketError(SocketHandle fd) {
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

void IgnoreSigpipeOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    if (sigaction(SIGPIPE, nullptr, &sa) == 0 && sa.sa_handler == SIG_DFL) {
      sa.sa_handler = SIG_IGN;
      sigaction(SIGPIPE, &sa, nullptr);
    }
  });
}

}  // namespace netloop
