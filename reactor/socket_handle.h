// The type of a socket handle on every platform netloop builds for.
//
// POSIX names a socket by a small int descriptor; Windows by a SOCKET, an
// unsigned pointer-sized handle whose invalid value is ~0. Everything that
// crosses the engine's seams with a socket (Conn::fd, DetachedConn::fd,
// FiberConn::Adopt, EventLoop::Watch, the backends) uses SocketHandle, so the
// Linux build keeps plain ints (same layout, same code) and the Windows build
// passes SOCKETs through unnarrowed.
//
// File descriptors (Conn::SendFile's file) stay `int`: on Windows they are
// C runtime descriptors, not sockets.
#ifndef NETLOOP_REACTOR_SOCKET_HANDLE_H_
#define NETLOOP_REACTOR_SOCKET_HANDLE_H_

#include <cstdint>

namespace netloop {

#ifdef _WIN32
using SocketHandle = uintptr_t;  // == SOCKET (UINT_PTR): pass it to Winsock as is
inline constexpr SocketHandle kInvalidSocket = ~uintptr_t{0};  // INVALID_SOCKET
#else
using SocketHandle = int;
inline constexpr SocketHandle kInvalidSocket = -1;
#endif

// Whether `h` names a socket (open or not: this is no syscall).
inline constexpr bool IsValidSocket(SocketHandle h) { return h != kInvalidSocket; }

}  // namespace netloop

#endif  // NETLOOP_REACTOR_SOCKET_HANDLE_H_
