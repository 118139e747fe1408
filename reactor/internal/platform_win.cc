// Windows half of reactor/internal/platform.h.
#include "reactor/internal/platform.h"

#include <fcntl.h>
#include <io.h>

#include <mutex>

namespace netloop::internal {
namespace {

// Not in the mingw-w64 10 headers; wine reports it for an operation on a
// socket closed locally (Windows reports ERROR_OPERATION_ABORTED there).
constexpr unsigned long kErrorHandlesClosed = 676;

}  // namespace

void EnsureWinsock() {
  // Never WSACleanup: sockets may outlive any scope that could own the
  // start-up, and the process's exit tears Winsock down anyway.
  static std::once_flag once;
  std::call_once(once, [] {
    WSADATA data;
    (void)WSAStartup(MAKEWORD(2, 2), &data);
  });
}

int ErrnoFromWindowsError(unsigned long code) {
  switch (code) {
    case 0:
      return 0;
    case WSAEWOULDBLOCK:
    case WSA_IO_PENDING:
    case WSA_IO_INCOMPLETE:
      return EAGAIN;
    case WSAEINTR:
      return EINTR;
    case WSAEINPROGRESS:
      return EINPROGRESS;
    case WSAEALREADY:
      return EALREADY;
    case WSAENOTSOCK:
      return ENOTSOCK;
    case WSAEBADF:
    case ERROR_INVALID_HANDLE:
      return EBADF;
    case WSAEACCES:
    case ERROR_ACCESS_DENIED:
      return EACCES;
    case WSAEFAULT:
      return EFAULT;
    case WSAEINVAL:
    case ERROR_INVALID_PARAMETER:
      return EINVAL;
    case WSAEMFILE:
    case ERROR_TOO_MANY_OPEN_FILES:
      return EMFILE;
    case WSAENOBUFS:
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY:
    case ERROR_NO_SYSTEM_RESOURCES:
    case ERROR_NOT_ENOUGH_QUOTA:
    case ERROR_INVALID_USER_BUFFER:
      return ENOBUFS;
    case WSAEMSGSIZE:
    case ERROR_MORE_DATA:
      return EMSGSIZE;
    case WSAEAFNOSUPPORT:
    case WSAEPFNOSUPPORT:
      return EAFNOSUPPORT;
    case WSAEPROTONOSUPPORT:
    case WSAESOCKTNOSUPPORT:
      return EPROTONOSUPPORT;
    case WSAENOPROTOOPT:
      return ENOPROTOOPT;
    case WSAEOPNOTSUPP:
      return EOPNOTSUPP;
    case WSAEDESTADDRREQ:
      return EDESTADDRREQ;
    case WSAEADDRINUSE:
      return EADDRINUSE;
    case WSAEADDRNOTAVAIL:
      return EADDRNOTAVAIL;
    case WSAENETDOWN:
    case ERROR_NETWORK_UNREACHABLE:
      return code == WSAENETDOWN ? ENETDOWN : ENETUNREACH;
    case WSAENETUNREACH:
      return ENETUNREACH;
    case WSAEHOSTUNREACH:
    case WSAEHOSTDOWN:
    case ERROR_HOST_UNREACHABLE:
      return EHOSTUNREACH;
    case WSAENETRESET:
    case ERROR_NETNAME_DELETED:
      return code == WSAENETRESET ? ENETRESET : ECONNRESET;
    case WSAECONNRESET:
    case WSAEDISCON:
      return ECONNRESET;
    case WSAECONNABORTED:
    case ERROR_CONNECTION_ABORTED:
    case ERROR_REQUEST_ABORTED:
    case ERROR_UNEXP_NET_ERR:  // wine: a client reset before AcceptEx took it
      return ECONNABORTED;
    case WSAECONNREFUSED:
    case ERROR_CONNECTION_REFUSED:
    case ERROR_PORT_UNREACHABLE:
      return ECONNREFUSED;
    case WSAETIMEDOUT:
    case ERROR_SEM_TIMEOUT:
    case ERROR_TIMEOUT:
      return ETIMEDOUT;
    case WSAEISCONN:
      return EISCONN;
    case WSAENOTCONN:
      return ENOTCONN;
    case WSAESHUTDOWN:
    case ERROR_GRACEFUL_DISCONNECT:
    case ERROR_BROKEN_PIPE:
    case ERROR_NO_DATA:
      return EPIPE;
    case WSAEPROTOTYPE:
      return EPROTOTYPE;
    case WSA_OPERATION_ABORTED:  // == ERROR_OPERATION_ABORTED: CancelIoEx, closesocket
    case kErrorHandlesClosed:
      return ECANCELED;
    default:
      return EIO;
  }
}

int LastSocketError() { return ErrnoFromWindowsError(static_cast<unsigned long>(WSAGetLastError())); }

int CloseSocket(SocketHandle h) {
  if (closesocket(static_cast<SOCKET>(h)) == 0) return 0;
  errno = LastSocketError();
  return -1;
}

int ShutdownSocketWrite(SocketHandle h) {
  if (::shutdown(static_cast<SOCKET>(h), SD_SEND) == 0) return 0;
  errno = LastSocketError();
  return -1;
}

bool IsSocket(SocketHandle h) {
  int type = 0;
  int len = sizeof(type);
  return getsockopt(static_cast<SOCKET>(h), SOL_SOCKET, SO_TYPE, reinterpret_cast<char*>(&type),
                    &len) == 0;
}

int FileDup(int fd) {
  // A handle of its own to the same file (ReOpenFile), not a duplicate: a
  // duplicate would share the caller's file position, which FilePread's
  // ReadFile moves. Not inheritable, as F_DUPFD_CLOEXEC is on POSIX.
  const HANDLE file = reinterpret_cast<HANDLE>(_get_osfhandle(fd));
  if (file == INVALID_HANDLE_VALUE) {
    errno = EBADF;
    return -1;
  }
  const HANDLE own = ReOpenFile(file, GENERIC_READ,
                                FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, 0);
  if (own == INVALID_HANDLE_VALUE) {
    errno = ErrnoFromWindowsError(GetLastError());
    return -1;
  }
  const int dup = _open_osfhandle(reinterpret_cast<intptr_t>(own), _O_RDONLY);
  if (dup < 0) CloseHandle(own);
  return dup;
}

long FilePread(int fd, void* buf, size_t n, uint64_t offset) {
  const HANDLE file = reinterpret_cast<HANDLE>(_get_osfhandle(fd));
  if (file == INVALID_HANDLE_VALUE) {
    errno = EBADF;
    return -1;
  }
  // An offset in the OVERLAPPED makes ReadFile read there (on a handle
  // opened for synchronous I/O it still waits for the bytes, and moves that
  // handle's position: FileDup gives each queued file a handle of its own).
  OVERLAPPED at{};
  at.Offset = static_cast<DWORD>(offset);
  at.OffsetHigh = static_cast<DWORD>(offset >> 32);
  DWORD got = 0;
  const DWORD want = n > 0x7fffffff ? 0x7fffffff : static_cast<DWORD>(n);
  if (!ReadFile(file, buf, want, &got, &at)) {
    const DWORD err = GetLastError();
    if (err == ERROR_HANDLE_EOF) return 0;
    errno = ErrnoFromWindowsError(err);
    return -1;
  }
  return static_cast<long>(got);
}

}  // namespace netloop::internal
