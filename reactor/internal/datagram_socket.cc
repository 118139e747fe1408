#include "reactor/internal/datagram_socket.h"

#include <errno.h>
#include <string.h>

#include <algorithm>
#include <string_view>

#include "reactor/conn.h"
#include "reactor/event_loop.h"
#include "reactor/internal/platform.h"
#include "reactor/internal/socket_ops.h"
#include "reactor/internal/worker.h"
#include "reactor/logging.h"

namespace netloop::internal {
namespace {

// recvmmsg rounds per readiness event before other work on the loop gets a
// turn (the rest is read next iteration).
constexpr int kRoundsPerEvent = 4;

}  // namespace

DatagramSocket::DatagramSocket(Worker* worker, SocketHandle fd, size_t max_datagram, size_t batch)
    : worker_(worker),
      fd_(fd),
      max_datagram_(max_datagram > 0 ? max_datagram : 65535),
      batch_(batch > 0 ? batch : 1),
      conn_(worker->NewDatagramConn(fd)) {}

DatagramSocket::~DatagramSocket() {
  Close();
  worker_->DeleteDatagramConn(conn_);
}

absl::Status DatagramSocket::Watch() {
  absl::Status served =
      worker_->loop().backend().StartReceivingDatagrams(fd_, this, max_datagram_, batch_);
  if (served.ok()) {
    backend_served_ = true;
    return served;
  }
  if (!absl::IsUnimplemented(served)) return served;
  return worker_->loop().Watch(fd_, kIoReadable | kIoEdgeTriggered, this);
}

void DatagramSocket::Close() {
  if (!IsValidSocket(fd_)) return;
  if (backend_served_) {
    worker_->loop().backend().StopReceivingDatagrams(fd_, this);
  } else {
    (void)worker_->loop().Unwatch(fd_, this);
  }
  CloseSocket(fd_);
  fd_ = kInvalidSocket;
  worker_->DatagramSocketClosed(conn_);
}

void DatagramSocket::OnIoReady(uint32_t events) {
  if (!IsValidSocket(fd_)) return;
#ifdef _WIN32
  // Windows serves UDP through its completion backend only.
  (void)events;
  (void)kRoundsPerEvent;
#else
  if (buffers_ == nullptr) {
    buffers_.reset(new char[max_datagram_ * batch_]);
    headers_.resize(batch_);
    iovecs_.resize(batch_);
    peers_.resize(batch_);
  }
  for (int round = 0; round < kRoundsPerEvent; ++round) {
    for (size_t i = 0; i < batch_; ++i) {
      iovecs_[i] = {buffers_.get() + i * max_datagram_, max_datagram_};
      msghdr& h = headers_[i].msg_hdr;
      memset(&h, 0, sizeof(h));
      h.msg_name = &peers_[i];
      h.msg_namelen = sizeof(peers_[i]);
      h.msg_iov = &iovecs_[i];
      h.msg_iovlen = 1;
      headers_[i].msg_len = 0;
    }
    int n;
    do {
      n = recvmmsg(fd_, headers_.data(), static_cast<unsigned>(batch_), MSG_DONTWAIT, nullptr);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) return;  // EAGAIN: drained (errors on a UDP socket are per datagram)
    // Replies written while the batch is delivered leave together after it.
    worker_->SetDatagramBatch(conn_, this);
    for (int i = 0; i < n && IsValidSocket(fd_); ++i) {
      const msghdr& h = headers_[i].msg_hdr;
      const SocketAddress from(reinterpret_cast<const sockaddr*>(&peers_[i]), h.msg_namelen);
      worker_->DeliverDatagram(
          conn_, std::string_view(static_cast<const char*>(iovecs_[i].iov_base),
                                  headers_[i].msg_len),
          from, (h.msg_flags & MSG_TRUNC) != 0);
    }
    worker_->SetDatagramBatch(conn_, nullptr);
    FlushReplies();
    if (static_cast<size_t>(n) < batch_) return;  // the socket is empty
  }
  // Budget spent with datagrams perhaps still queued: edge-triggered, so
  // come back next iteration rather than wait for a new edge.
  worker_->loop().ReinvokeNextIteration(this, events);
#endif
}

void DatagramSocket::OnDatagram(std::string_view bytes, const sockaddr* from,
                                socklen_t from_len, bool truncated) {
  if (!IsValidSocket(fd_)) return;
  worker_->SetDatagramBatch(conn_, this);
  worker_->DeliverDatagram(conn_, bytes, SocketAddress(from, from_len), truncated);
  worker_->SetDatagramBatch(conn_, nullptr);
}

void DatagramSocket::OnDatagramServingEnded(const absl::Status& why) {
  backend_served_ = false;
  if (!IsValidSocket(fd_)) return;
  absl::Status watched = worker_->loop().Watch(fd_, kIoReadable | kIoEdgeTriggered, this);
  NETLOOP_LOG(kWarning) << "udp: io_uring stopped serving the socket (" << why.message()
                        << "); " << (watched.ok() ? "served through readiness now"
                                                  : "not served: " + watched.ToString());
}

void DatagramSocket::OnDatagramSendFailed(int) { worker_->CountUdpSendDrop(); }

void DatagramSocket::QueueReply(std::span<const std::string_view> pieces, const sockaddr* to,
                                socklen_t to_len) {
  if (backend_served_) {
    if (!worker_->loop().backend().SendDatagram(this, pieces, to, to_len)) {
      worker_->CountUdpSendDrop();
    }
    return;
  }
  Reply r;
  r.offset = reply_bytes_.size();
  for (std::string_view p : pieces) reply_bytes_.append(p);
  r.size = reply_bytes_.size() - r.offset;
  memcpy(&r.to, to, std::min<size_t>(to_len, sizeof(r.to)));
  r.to_len = to_len;
  replies_.push_back(r);
}

void DatagramSocket::FlushReplies() {
  if (replies_.empty()) return;
  const size_t count = replies_.size();
#ifdef _WIN32
  for (size_t i = 0; i < count && IsValidSocket(fd_); ++i) {
    Reply& r = replies_[i];
    iovec piece{reply_bytes_.data() + r.offset, r.size};
    if (SendDatagramTo(fd_, &piece, 1, reinterpret_cast<const sockaddr*>(&r.to), r.to_len) !=
        0) {
      worker_->CountUdpSendDrop();
    }
  }
#else
  reply_headers_.resize(count);
  reply_iovecs_.resize(count);
  for (size_t i = 0; i < count; ++i) {
    Reply& r = replies_[i];
    reply_iovecs_[i] = {reply_bytes_.data() + r.offset, r.size};
    msghdr& h = reply_headers_[i].msg_hdr;
    memset(&h, 0, sizeof(h));
    h.msg_name = &r.to;
    h.msg_namelen = r.to_len;
    h.msg_iov = &reply_iovecs_[i];
    h.msg_iovlen = 1;
  }
  size_t next = 0;
  while (next < count && IsValidSocket(fd_)) {
    int n;
    do {
      n = sendmmsg(fd_, reply_headers_.data() + next, static_cast<unsigned>(count - next),
                   MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
      next += static_cast<size_t>(n);
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
      // The socket's buffer is full: the rest is dropped, as UDP may.
      for (; next < count; ++next) worker_->CountUdpSendDrop();
      break;
    }
    worker_->CountUdpSendDrop();  // this one failed (EMSGSIZE, unreachable)
    ++next;
  }
#endif
  replies_.clear();
  reply_bytes_.clear();
}

}  // namespace netloop::internal
