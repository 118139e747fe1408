// struct iovec on every platform netloop builds for.
//
// Conn::Writev, RingBuffer and the backends speak in iovecs. POSIX has them
// in <sys/uio.h>; Windows has no iovec (Winsock's WSABUF has its fields the
// other way round and a 32-bit length), so this header declares the POSIX
// layout there, and the Windows backend converts at the Winsock call.
#ifndef NETLOOP_REACTOR_IOVEC_H_
#define NETLOOP_REACTOR_IOVEC_H_

#ifdef _WIN32
#include <cstddef>

struct iovec {
  void* iov_base;
  size_t iov_len;
};
#else
#include <sys/uio.h>
#endif

#endif  // NETLOOP_REACTOR_IOVEC_H_
