// What differs between POSIX and Windows at the level of single socket calls
// (engine internal): starting Winsock, closing a socket, and reading a failed
// call's error as an errno value.
//
// The engine speaks errno everywhere (sinks get -errno, CloseReason maps
// errno values, tests check them). On Windows a failed Winsock call leaves
// its reason in WSAGetLastError(); LastSocketError() turns it into the errno
// value with the same meaning (WSAECONNRESET -> ECONNRESET, WSAEWOULDBLOCK ->
// EAGAIN, ...), so code above this header tests errno values on both.
//
// Any thread.
#ifndef NETLOOP_REACTOR_INTERNAL_PLATFORM_H_
#define NETLOOP_REACTOR_INTERNAL_PLATFORM_H_

#include <errno.h>

#include "reactor/socket_handle.h"
#include "reactor/socket_types.h"

#include <cstddef>
#include <cstdint>

#ifndef _WIN32
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#endif

namespace netloop::internal {

#ifdef _WIN32
// WSAStartup(2.2), once per process; later calls return at once. Every
// entry point that may make the process's first Winsock call runs it.
void EnsureWinsock();
// The errno value for a Winsock (WSAE*) or Win32 (ERROR_*) error code;
// EIO for one it does not know.
int ErrnoFromWindowsError(unsigned long code);
// The calling thread's last Winsock error, as an errno value.
int LastSocketError();
// closesocket(2): 0, or -1 with errno set.
int CloseSocket(SocketHandle h);
// shutdown(SD_SEND): 0, or -1 with errno set.
int ShutdownSocketWrite(SocketHandle h);
// Whether `h` is a socket (getsockopt SO_TYPE answers).
bool IsSocket(SocketHandle h);
// A new C runtime descriptor for the file `fd` is open on (not inherited
// by children), or -1 with errno set.
int FileDup(int fd);
// Reads up to `n` bytes of the file at `offset` without moving its file
// position: the count (0 at the end), or -1 with errno set.
long FilePread(int fd, void* buf, size_t n, uint64_t offset);
#else
inline void EnsureWinsock() {}
inline int LastSocketError() { return errno; }
inline int CloseSocket(SocketHandle h) { return ::close(h); }
inline int ShutdownSocketWrite(SocketHandle h) { return ::shutdown(h, SHUT_WR); }
inline bool IsSocket(SocketHandle h) {
  struct stat st;
  return fstat(h, &st) == 0 && S_ISSOCK(st.st_mode);
}
inline int FileDup(int fd) { return fcntl(fd, F_DUPFD_CLOEXEC, 0); }
inline long FilePread(int fd, void* buf, size_t n, uint64_t offset) {
  return ::pread(fd, buf, n, static_cast<off_t>(offset));
}
#endif

}  // namespace netloop::internal

#endif  // NETLOOP_REACTOR_INTERNAL_PLATFORM_H_
