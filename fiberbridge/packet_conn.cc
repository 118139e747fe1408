#include "fiberbridge/packet_conn.h"

#include <errno.h>

#include <algorithm>
#include <utility>

#include "fiberbridge/internal/fiber_conn_core.h"
#include "reactor/internal/platform.h"
#include "reactor/internal/socket_ops.h"
#include "reactor/socket_types.h"

namespace netloop::fiber {

absl::StatusOr<std::unique_ptr<PacketConn>> PacketConn::Listen(std::string_view address) {
  Scheduler* s = Scheduler::Current();
  if (s == nullptr) return absl::FailedPreconditionError("PacketConn::Listen off a loop thread");
  absl::StatusOr<NetAddress> parsed = ParseAddressNoLookup(address);
  if (!parsed.ok()) return parsed.status();
  if (!IsDatagram(parsed->network) || !parsed->unresolved_host.empty()) {
    return absl::InvalidArgumentError(
        "PacketConn::Listen: a udp://, udp4:// or udp6:// address with a numeric host");
  }
  absl::StatusOr<SocketHandle> fd = BindDatagram(*parsed, /*reuse_port=*/true);
  if (!fd.ok()) return fd.status();
  // Readiness (the socket watched once, edge-triggered), except where the
  // backend runs datagram operations itself (IOCP, which has no readiness).
  const bool readiness = !s->loop().backend().serves_datagram_operations();
  auto core = std::make_shared<FiberConnCore>(s, *fd, std::string(), /*readiness_only=*/readiness);
  if (absl::Status st = core->Register(); !st.ok()) return st;  // ~FiberConnCore closes
  return std::unique_ptr<PacketConn>(new PacketConn(std::move(core)));
}

PacketConn::~PacketConn() { core_->Close(); }

absl::StatusOr<PacketConn::Datagram> PacketConn::ReadFrom(std::span<char> buf) {
  FiberConnCore& c = *core_;
  while (c.backend_ != nullptr) {
    FiberConnCore::PendingOp op;
    sockaddr_storage from{};
    op.kind = netloop::internal::Operation::Kind::kReceiveFrom;
    op.data = buf.data();
    op.size = std::min<size_t>(buf.size(), 0x7fffffff);
    op.from = &from;
    op.from_len = static_cast<int>(sizeof(from));
    if (absl::Status st = c.Run(c.read_, op); !st.ok()) return st;
    if (c.closed_) return c.Check(c.read_);
    if (op.result >= 0 || op.result == -EMSGSIZE) {
      Datagram d;
      d.size = op.result >= 0 ? static_cast<size_t>(op.result) : op.size;
      d.from = SocketAddress(reinterpret_cast<const sockaddr*>(&from),
                             static_cast<socklen_t>(op.from_len));
      d.truncated = op.result < 0;
      return d;
    }
    // An ICMP error a send provoked: not the socket's end.
    if (op.result == -ECONNRESET) continue;
    if (absl::Status st = c.FailedOp(c.read_, op.result); !st.ok()) return st;
  }
  for (;;) {
    if (absl::Status st = c.Check(c.read_); !st.ok()) return st;
    sockaddr_storage from{};
#if defined(_WIN32)
    // No recvmsg: recvfrom, where a datagram longer than the buffer fills it
    // and fails with WSAEMSGSIZE.
    int from_len = sizeof(from);
    const int len = buf.size() > 0x7fffffff ? 0x7fffffff : static_cast<int>(buf.size());
    const int n = ::recvfrom(static_cast<SOCKET>(c.fd_), buf.data(), len, 0,
                             reinterpret_cast<sockaddr*>(&from), &from_len);
    const int err = n >= 0 ? 0 : WSAGetLastError();
    if (n >= 0 || err == WSAEMSGSIZE) {
      Datagram d;
      d.size = n >= 0 ? static_cast<size_t>(n) : buf.size();
      d.from = SocketAddress(reinterpret_cast<const sockaddr*>(&from), from_len);
      d.truncated = n < 0;
      return d;
    }
    errno = netloop::internal::ErrnoFromWindowsError(static_cast<unsigned long>(err));
#else
    iovec iov{buf.data(), buf.size()};
    msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof(from);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    const ssize_t n = ::recvmsg(c.fd_, &msg, MSG_DONTWAIT);
    if (n >= 0) {
      Datagram d;
      d.size = static_cast<size_t>(n);
      d.from = SocketAddress(reinterpret_cast<const sockaddr*>(&from), msg.msg_namelen);
      d.truncated = (msg.msg_flags & MSG_TRUNC) != 0;
      return d;
    }
#endif
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return ResetError(errno);
    if (absl::Status st = c.Wait(c.read_); !st.ok()) return st;
  }
}

absl::Status PacketConn::WriteTo(std::string_view data, const SocketAddress& to) {
  FiberConnCore& c = *core_;
  while (c.backend_ != nullptr) {
    FiberConnCore::PendingOp op;
    op.kind = netloop::internal::Operation::Kind::kSendTo;
    op.data = const_cast<char*>(data.data());  // only read from
    op.size = data.size();
    op.peer = &to;
    if (absl::Status st = c.Run(c.write_, op); !st.ok()) return st;
    if (op.result >= 0) return absl::OkStatus();
    if (c.closed_) return c.Check(c.write_);
    if (op.result == -ECANCELED) {
      if (absl::Status st = c.Check(c.write_); !st.ok()) return st;
      continue;  // cancelled for a reason that no longer holds
    }
    return absl::ErrnoToStatus(static_cast<int>(-op.result), "udp: send");
  }
  iovec iov{const_cast<char*>(data.data()), data.size()};
  for (;;) {
    if (absl::Status st = c.Check(c.write_); !st.ok()) return st;
    const int err = SendDatagramTo(c.fd_, &iov, 1, to.sockaddr_ptr(), to.length());
    if (err == 0) return absl::OkStatus();
    if (err != EAGAIN && err != EWOULDBLOCK && err != ENOBUFS) {
      return absl::ErrnoToStatus(err, "udp: send");
    }
    if (absl::Status st = c.Wait(c.write_); !st.ok()) return st;
  }
}

void PacketConn::SetDeadline(absl::Time t) {
  SetReadDeadline(t);
  SetWriteDeadline(t);
}
void PacketConn::SetReadDeadline(absl::Time t) { core_->SetDeadline(core_->read_, t); }
void PacketConn::SetWriteDeadline(absl::Time t) { core_->SetDeadline(core_->write_, t); }
void PacketConn::Close() { core_->Close(); }
SocketAddress PacketConn::LocalAddress() const { return LocalAddressOf(core_->fd_); }

}  // namespace netloop::fiber
