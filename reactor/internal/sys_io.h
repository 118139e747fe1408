// The syscalls the engine makes on live sockets (accept, connect, read, send,
// sendmsg, name resolution), behind one seam, and the matching points of the
// completion backends (a receive completed, a send submitted). In optimised builds each is the
// plain syscall, inlined. In test builds (NETLOOP_FAULT_INJECTION, set by
// //reactor:sys_io outside -c opt) each first asks the installed fault
// injector (reactor/fault_injection.h) whether to fail, shorten or delay the
// call, so tests can drive every error path from a seed.
//
// Engine internal: not part of the public API. Any thread.
#ifndef NETLOOP_REACTOR_INTERNAL_SYS_IO_H_
#define NETLOOP_REACTOR_INTERNAL_SYS_IO_H_

#include <errno.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>

#include "reactor/internal/platform.h"
#include "reactor/socket_handle.h"
#include "reactor/socket_types.h"

#ifndef _WIN32
#include <netdb.h>
#include <sys/sendfile.h>
#include <unistd.h>
#endif

namespace netloop::internal {

// Send flags for SysSend: no SIGPIPE, and no blocking whatever the
// socket's mode. Windows has no SIGPIPE, and its sockets are FIONBIO for
// life, so both are 0 there.
#ifdef _WIN32
inline constexpr int kSendNoSignal = 0;
inline constexpr int kSendDontWait = 0;
#else
inline constexpr int kSendNoSignal = MSG_NOSIGNAL;
inline constexpr int kSendDontWait = MSG_DONTWAIT;
#endif

// ---- The plain calls, failing with -1 and errno set on every platform. ----
#ifdef _WIN32
// Winsock takes int lengths and reports through WSAGetLastError; these
// clamp and translate, so callers test errno as on POSIX. Sockets are
// FIONBIO (non-blocking) for life, so no MSG_DONTWAIT is needed (or exists).
inline ssize_t RawRead(SocketHandle fd, void* buf, size_t n) {
  const int len = n > 0x7fffffff ? 0x7fffffff : static_cast<int>(n);
  const int got = ::recv(static_cast<SOCKET>(fd), static_cast<char*>(buf), len, 0);
  if (got == SOCKET_ERROR) errno = LastSocketError();
  return got;
}
inline ssize_t RawSend(SocketHandle fd, const void* buf, size_t n, int flags) {
  const int len = n > 0x7fffffff ? 0x7fffffff : static_cast<int>(n);
  const int sent = ::send(static_cast<SOCKET>(fd), static_cast<const char*>(buf), len, flags);
  if (sent == SOCKET_ERROR) errno = LastSocketError();
  return sent;
}
inline int RawConnect(SocketHandle fd, const sockaddr* addr, socklen_t len) {
  const int rc = ::connect(static_cast<SOCKET>(fd), addr, len);
  if (rc == SOCKET_ERROR) errno = LastSocketError();
  return rc;
}
inline int RawGetAddrInfo(const char* host, const char* service, const addrinfo* hints,
                          addrinfo** res) {
  EnsureWinsock();
  return ::getaddrinfo(host, service, hints, res);
}
#else
inline ssize_t RawRead(SocketHandle fd, void* buf, size_t n) { return ::read(fd, buf, n); }
inline ssize_t RawSend(SocketHandle fd, const void* buf, size_t n, int flags) {
  return ::send(fd, buf, n, flags);
}
inline ssize_t RawSendMsg(SocketHandle fd, const msghdr* msg, int flags) {
  return ::sendmsg(fd, msg, flags);
}
inline int RawAccept4(SocketHandle fd, sockaddr* addr, socklen_t* len, int flags) {
  return ::accept4(fd, addr, len, flags);
}
inline int RawConnect(SocketHandle fd, const sockaddr* addr, socklen_t len) {
  return ::connect(fd, addr, len);
}
inline int RawGetAddrInfo(const char* host, const char* service, const addrinfo* hints,
                          addrinfo** res) {
  return ::getaddrinfo(host, service, hints, res);
}
#endif

// ---- The seam: the plain calls, or the injector's say first. ----
#ifdef NETLOOP_FAULT_INJECTION
ssize_t SysRead(SocketHandle fd, void* buf, size_t n);
ssize_t SysSend(SocketHandle fd, const void* buf, size_t n, int flags);
#ifndef _WIN32
ssize_t SysSendMsg(SocketHandle fd, const msghdr* msg, int flags);
int SysAccept4(SocketHandle fd, sockaddr* addr, socklen_t* len, int flags);
#endif
int SysConnect(SocketHandle fd, const sockaddr* addr, socklen_t len);
int SysGetAddrInfo(const char* host, const char* service, const addrinfo* hints,
                   addrinfo** res);
// Completion backends, which make no such syscalls: what the injector makes
// of a receive that completed with `n` bytes (n; fewer, to be delivered
// first, the rest after; or -errno, the connection failing), and of a send
// about to be submitted (n; fewer, a short send; or -errno).
ssize_t FaultCompletedReceive(size_t n);
ssize_t FaultSubmittedSend(size_t n);
// An accept a completion backend is about to post (AcceptEx): 0, or the
// errno it fails with at once (descriptor or memory exhaustion, an aborted
// connection). Decided before the call, so no connection is lost to it.
int FaultPostedAccept();
// Whether this thread's last SysRead was shortened by the injector. A short
// read from the kernel means the socket was drained (an edge-triggered
// reader may wait for the next edge); a shortened one does not.
bool LastReadWasShortened();
#else
inline ssize_t SysRead(SocketHandle fd, void* buf, size_t n) { return RawRead(fd, buf, n); }
inline ssize_t SysSend(SocketHandle fd, const void* buf, size_t n, int flags) {
  return RawSend(fd, buf, n, flags);
}
#ifndef _WIN32
inline ssize_t SysSendMsg(SocketHandle fd, const msghdr* msg, int flags) {
  return RawSendMsg(fd, msg, flags);
}
inline int SysAccept4(SocketHandle fd, sockaddr* addr, socklen_t* len, int flags) {
  return RawAccept4(fd, addr, len, flags);
}
#endif
inline int SysConnect(SocketHandle fd, const sockaddr* addr, socklen_t len) {
  return RawConnect(fd, addr, len);
}
inline int SysGetAddrInfo(const char* host, const char* service, const addrinfo* hints,
                          addrinfo** res) {
  return RawGetAddrInfo(host, service, hints, res);
}
inline ssize_t FaultCompletedReceive(size_t n) { return static_cast<ssize_t>(n); }
inline ssize_t FaultSubmittedSend(size_t n) { return static_cast<ssize_t>(n); }
inline int FaultPostedAccept() { return 0; }
inline bool LastReadWasShortened() { return false; }
#endif

#ifdef _WIN32
// No sendfile(2): callers copy (TransmitFile would be the IOCP route).
inline long SendFileOnce(SocketHandle, int, uint64_t*, size_t) { return -ENOSYS; }
#else
// Not injected (yet): sendfile from a file to a socket.
inline ssize_t SysSendFile(SocketHandle socket_fd, int file_fd, off_t* offset, size_t count) {
  return ::sendfile(socket_fd, file_fd, offset, count);
}

// One non-blocking sendfile, EINTR retried, *offset advanced: the bytes
// sent, or -errno (-EAGAIN when the socket is full).
inline long SendFileOnce(SocketHandle socket_fd, int file_fd, uint64_t* offset, size_t count) {
  off_t off = static_cast<off_t>(*offset);
  ssize_t n;
  do {
    n = SysSendFile(socket_fd, file_fd, &off, count);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -(errno == EWOULDBLOCK ? EAGAIN : errno);
  *offset = static_cast<uint64_t>(off);
  return n;
}
#endif

}  // namespace netloop::internal

#endif  // NETLOOP_REACTOR_INTERNAL_SYS_IO_H_
