// One loop's UDP socket for one udp:// address (engine internal): each loop
// binds its own with SO_REUSEPORT, so the kernel spreads peers over the
// loops (a peer sticks to one loop while the set of sockets is unchanged).
// Datagrams are read in batches with recvmmsg and shown to the handler one
// at a time through the socket's datagram Conn (Conn::is_datagram).
//
// On epoll the socket is watched (EventLoop::Watch) and read with recvmmsg
// in batches; replies written while a batch is delivered leave together in
// one sendmmsg. On io_uring the backend receives itself (a multishot recvmsg
// into buffers of the socket's own, Backend::StartReceivingDatagrams) and
// each reply is a SENDMSG in the loop's next submission.
//
// Loop thread only, after construction.
#ifndef NETLOOP_REACTOR_INTERNAL_DATAGRAM_SOCKET_H_
#define NETLOOP_REACTOR_INTERNAL_DATAGRAM_SOCKET_H_

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "reactor/address.h"
#include "reactor/internal/backend.h"
#include "reactor/io_watcher.h"
#include "reactor/iovec.h"
#include "reactor/socket_handle.h"
#include "reactor/socket_types.h"

namespace netloop {
class Conn;
class EventLoop;
}  // namespace netloop

namespace netloop::internal {

class Worker;

class DatagramSocket final : public IoWatcher, public DatagramSink {
 public:
  // Takes `fd` (bound, non-blocking). `max_datagram` bytes are read per
  // datagram (a longer one is truncated and says so), `batch` per recvmmsg.
  DatagramSocket(Worker* worker, SocketHandle fd, size_t max_datagram, size_t batch);
  ~DatagramSocket();
  DatagramSocket(const DatagramSocket&) = delete;
  DatagramSocket& operator=(const DatagramSocket&) = delete;

  // Starts receiving: through the backend when it serves datagrams itself,
  // through readiness otherwise.
  absl::Status Watch();
  // Stops reading and closes the socket (engine stop). Idempotent.
  void Close();

  // Readiness (epoll).
  void OnIoReady(uint32_t events) override;
  // The backend's own receives and sends (io_uring).
  void OnDatagram(std::string_view bytes, const sockaddr* from, socklen_t from_len,
                  bool truncated) override;
  void OnDatagramServingEnded(const absl::Status& why) override;
  void OnDatagramSendFailed(int err) override;

  // Called by the socket's Conn while a received batch is being delivered:
  // a reply to `to`, sent with the batch's other replies in one sendmmsg
  // once the batch has been delivered.
  void QueueReply(std::span<const std::string_view> pieces, const sockaddr* to,
                  socklen_t to_len);

 private:
  // Sends the queued replies (sendmmsg); what the socket will not take is
  // dropped and counted, as UDP may.
  void FlushReplies();

  Worker* const worker_;
  SocketHandle fd_;
  const size_t max_datagram_;
  const size_t batch_;
  Conn* conn_;  // owned: the handler's view of this socket
  bool backend_served_ = false;  // the backend receives and sends (io_uring)
  // recvmmsg's batch: allocated on the first datagram (an engine that never
  // receives one pays nothing), pages touched only as datagrams fill them.
  std::unique_ptr<char[]> buffers_;
#ifndef _WIN32
  std::vector<mmsghdr> headers_;
#endif
  std::vector<iovec> iovecs_;
  std::vector<sockaddr_storage> peers_;
  // Replies queued during one batch's delivery (bytes copied into one
  // buffer, reused across batches).
  struct Reply {
    size_t offset;
    size_t size;
    sockaddr_storage to;
    socklen_t to_len;
  };
  std::string reply_bytes_;
  std::vector<Reply> replies_;
#ifndef _WIN32
  std::vector<mmsghdr> reply_headers_;
#endif
  std::vector<iovec> reply_iovecs_;
};

}  // namespace netloop::internal

#endif  // NETLOOP_REACTOR_INTERNAL_DATAGRAM_SOCKET_H_
