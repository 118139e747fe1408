// The socket address types (sockaddr, sockaddr_in/in6, sockaddr_un,
// socklen_t, AF_*) and the address conversions (inet_pton, inet_ntop,
// htons) on every platform netloop builds for.
//
// POSIX spreads them over <sys/socket.h>, <netinet/in.h> and <sys/un.h>.
// Windows has them in Winsock 2 (<winsock2.h>, <ws2tcpip.h>) and, since
// Windows 10 1803, AF_UNIX's sockaddr_un in <afunix.h>. Including those
// through <windows.h> unguarded would define min/max macros and, through
// winbase.h, a `Yield()` macro that breaks fiber::Yield; so this header
// includes Winsock lean and takes the `Yield` macro back out.
#ifndef NETLOOP_REACTOR_SOCKET_TYPES_H_
#define NETLOOP_REACTOR_SOCKET_TYPES_H_

#ifdef _WIN32
#ifndef NOMINMAX
#define NOMINMAX
#endif
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <winsock2.h>
#include <ws2tcpip.h>
#include <afunix.h>
#undef Yield
#else
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#endif

#endif  // NETLOOP_REACTOR_SOCKET_TYPES_H_
