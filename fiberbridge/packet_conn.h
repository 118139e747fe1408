// UDP for blocking-style fiber code (Go's net.PacketConn): ReadFrom parks
// until a datagram arrives, WriteTo parks while the socket buffer is full,
// both under Go-style absolute deadlines.
//
//   auto pc = netloop::fiber::PacketConn::Listen("udp://127.0.0.1:0");
//   char buf[65536];
//   while (auto d = (*pc)->ReadFrom(buf)) {
//     (void)(*pc)->WriteTo({buf, d->size}, d->from);
//   }
//
// Thread rules as FiberConn: fibers of the loop it was opened on; one
// reader and one writer may be parked at once. epoll and io_uring serve it
// through readiness, a recvmsg per ReadFrom as Go's ReadFrom makes (the
// callback model's UDP is the one io_uring receives for itself); IOCP, which
// has no readiness, runs each ReadFrom and WriteTo as one overlapped
// WSARecvFrom or WSASendTo.
#ifndef NETLOOP_FIBERBRIDGE_PACKET_CONN_H_
#define NETLOOP_FIBERBRIDGE_PACKET_CONN_H_

#include <cstddef>
#include <memory>
#include <span>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "reactor/address.h"

namespace netloop::fiber {

class FiberConnCore;

class PacketConn {
 public:
  // Binds a UDP socket to `address` (udp://, udp4://, udp6://; SO_REUSEPORT,
  // so each loop may bind one to the same port: the kernel spreads peers
  // over them). Loop thread (in a fiber or not).
  static absl::StatusOr<std::unique_ptr<PacketConn>> Listen(std::string_view address);

  ~PacketConn();  // closes
  PacketConn(const PacketConn&) = delete;
  PacketConn& operator=(const PacketConn&) = delete;

  struct Datagram {
    size_t size = 0;      // bytes placed in the buffer
    SocketAddress from;   // the sender
    bool truncated = false;  // the datagram was longer than the buffer
  };
  // The next datagram, parking until one arrives. Errors: Closed,
  // DeadlineExceeded, a socket error. Inside a fiber.
  absl::StatusOr<Datagram> ReadFrom(std::span<char> buf);
  // Sends one datagram, parking while the socket buffer is full. Errors:
  // Closed, DeadlineExceeded, EMSGSIZE and other socket errors. Inside a
  // fiber.
  absl::Status WriteTo(std::string_view data, const SocketAddress& to);

  void SetDeadline(absl::Time t);
  void SetReadDeadline(absl::Time t);
  void SetWriteDeadline(absl::Time t);
  // Wakes parked fibers with Closed. Idempotent.
  void Close();
  SocketAddress LocalAddress() const;

 private:
  explicit PacketConn(std::shared_ptr<FiberConnCore> core) : core_(std::move(core)) {}
  std::shared_ptr<FiberConnCore> core_;
};

}  // namespace netloop::fiber

#endif  // NETLOOP_FIBERBRIDGE_PACKET_CONN_H_
