// Thin, errno-to-Status wrappers over the socket calls the engine makes. All
// sockets are created non-blocking and close-on-exec. Callable from any thread.
#ifndef NETLOOP_REACTOR_INTERNAL_SOCKET_OPS_H_
#define NETLOOP_REACTOR_INTERNAL_SOCKET_OPS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "reactor/address.h"
#include "reactor/iovec.h"
#include "reactor/options.h"
#include "reactor/socket_handle.h"

namespace netloop {

// Creates, binds and listens. `reuse_port` sets SO_REUSEPORT (TCP only). A
// stale unix socket file (nobody listening) is removed first.
// A non-blocking UDP socket bound to addr (SO_REUSEPORT when asked, so that
// each loop can bind its own to the same port).
absl::StatusOr<SocketHandle> BindDatagram(const NetAddress& addr, bool reuse_port);
// One datagram of `count` pieces to `to`, without blocking: 0, or the errno.
int SendDatagramTo(SocketHandle fd, const struct iovec* iov, int count, const sockaddr* to,
                   socklen_t to_len);
absl::StatusOr<SocketHandle> Listen(const NetAddress& addr, bool reuse_addr,
                           bool reuse_port, int backlog);

// Starts a non-blocking connect. *in_progress is true when the result comes
// later (EINPROGRESS): wait for writability, then read SocketError().
absl::StatusOr<SocketHandle> StartConnect(const SocketAddress& addr, bool* in_progress);

// Applies TCP options; a no-op for unix sockets. Errors are logged, not fatal:
// a missing knob must not cost the connection.
void ApplySocketTuning(SocketHandle fd, int family, const SocketTuning& tuning);

SocketAddress LocalAddressOf(SocketHandle fd);
SocketAddress PeerAddressOf(SocketHandle fd);
// SO_ERROR (clears it).
int SocketError(SocketHandle fd);

// Ignores SIGPIPE for the process once. Writes use MSG_NOSIGNAL anyway; this
// covers writes a user's own code makes on a connection's fd.
void IgnoreSigpipeOnce();

}  // namespace netloop

#endif  // NETLOOP_REACTOR_INTERNAL_SOCKET_OPS_H_
