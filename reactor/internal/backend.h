// The seam between an EventLoop and the kernel's I/O interface (engine
// internal). One Backend per loop, used from that loop's thread only (setup
// calls made before the loop runs excepted).
//
// A backend serves two kinds of clients:
// - Streams (connected sockets: callback Conns) and listening sockets. For
//   these the backend owns the operations themselves (receive, send,
//   shutdown, close, accept, connect) and reports outcomes to the owner's
//   sink methods. A readiness backend (epoll; kqueue would be another)
//   implements each operation as "wait for readiness, then make the
//   syscall". A completion backend (io_uring; IOCP would be another) submits
//   the operation and owns whatever it points at until the final completion:
//   received bytes land in buffers the backend provides, and a send's bytes
//   (in the owner's outbound ring) are kept alive by keeping the owner alive.
// - Plain readiness watchers (IoWatcher): the loop's wake-up fd and the fiber
//   bridge's pollDescs. Every backend serves these, a completion backend with
//   multishot polls.
//
// Handles are `int` descriptors here; the Windows backend would widen
// StreamState::fd to SOCKET (uintptr_t) behind a typedef, not change the
// shape of this interface.
#ifndef NETLOOP_REACTOR_INTERNAL_BACKEND_H_
#define NETLOOP_REACTOR_INTERNAL_BACKEND_H_

#include <errno.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "reactor/io_watcher.h"
#include "reactor/iovec.h"
#include "reactor/options.h"
#include "reactor/socket_handle.h"
#include "reactor/socket_types.h"

namespace netloop {
class SocketAddress;
class EventLoop;
}  // namespace netloop

namespace netloop::internal {

// A connected socket as its loop's backend sees it. The owner (Conn)
// inherits it privately; the backend keeps its per-stream state here, so a
// stream costs no allocation of its own.
//
// Lifetime: the owner is freed by Free() once it has been released
// (MarkReleased) and nothing holds it. A hold is taken by code on the stack
// that may close the stream (Conn::Guard) and by every operation a
// completion backend has in flight, so no completion ever finds its owner
// gone.
class Stream {
 public:
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  SocketHandle stream_fd() const { return fd_; }

  void Hold() { ++holds_; }
  void Unhold() {
    if (--holds_ == 0 && released_) Free();
  }
  // The owner is done (closed or detached): freed when the last hold goes.
  void MarkReleased() { released_ = true; }
  bool released() const { return released_; }

  // ---- Sink: called by the backend on the loop thread, under a hold. ----

  // Bytes arrived. `bytes` lies in a backend buffer (the loop's shared read
  // buffer, or a kernel-filled provided buffer) and is valid until this
  // returns. Returns true to go on receiving in this round.
  virtual bool OnReceived(std::string_view bytes) = 0;
  // The receive side ended: 0 is the peer's FIN, otherwise an errno.
  virtual void OnReceiveEnded(int err) = 0;
  // Readiness backends: the socket can take more (a send returned
  // kSendAgain before). Completion backends: the submitted send finished;
  // `result` is the byte count or -errno.
  virtual void OnSendReady(int result) = 0;
  // A connect started with AwaitConnect finished: 0 or an errno.
  virtual void OnConnected(int err) = 0;
  // The socket reported an error or hang-up outside any operation.
  virtual void OnHangup(int err) = 0;
  // Completion backends, right before they submit a send: the bytes to send
  // as up to kMaxPendingPieces pieces (a lent receive buffer's bytes, then
  // the outbound ring's two); returns the count. They stay in place until
  // OnSendReady.
  static constexpr int kMaxPendingPieces = 3;
  virtual int PendingOutput(struct iovec iov[kMaxPendingPieces]) = 0;

 protected:
  Stream() = default;
  ~Stream() = default;
  // Frees the owner (delete this).
  virtual void Free() = 0;

  SocketHandle fd_ = kInvalidSocket;

 private:
  friend class EpollBackend;
  friend class IocpBackend;
  friend class IoUringBackend;
  uint16_t holds_ = 0;
  bool released_ = false;
  // Backend state. epoll: the interest registered. io_uring: which
  // operations are in flight.
  uint8_t io_interest_ = 0;
  uint8_t io_flags_ = 0;
  uint8_t io_lent_ = 0;  // io_uring: whether a receive buffer is lent to it
  uint32_t io_send_size_ = 0;  // io_uring: bytes the send in flight asked for
  uint16_t io_lent_buffer_ = 0;  // io_uring: the receive buffer lent to it
};

// A listening socket's owner (Listener).
class AcceptSink {
 public:
  // A connection was accepted: `fd` is non-blocking, close-on-exec, owned by
  // the sink from here on. Returns false to stop accepting in this round.
  virtual bool OnAccepted(SocketHandle fd, const SocketAddress& peer) = 0;
  // accept failed with `err` (EMFILE and such): the backend stopped
  // accepting on this socket until StartAccepting is called again.
  virtual void OnAcceptFailed(int err) = 0;

 protected:
  ~AcceptSink() = default;
};

// A UDP socket's owner (DatagramSocket), when its backend receives and sends
// datagrams itself (see Backend::StartReceivingDatagrams).
class DatagramSink {
 public:
  // One datagram from `from`: `bytes` lies in a backend buffer and is valid
  // until this returns; `truncated` says it was longer than max_datagram.
  virtual void OnDatagram(std::string_view bytes, const sockaddr* from, socklen_t from_len,
                          bool truncated) = 0;
  // The backend stopped serving the socket (it could not set up its
  // buffers, or the receive failed for good): it hears nothing more from
  // it, and the sink serves the socket through readiness from here on.
  virtual void OnDatagramServingEnded(const absl::Status& why) = 0;
  // A datagram queued with Backend::SendDatagram was not sent (`err`: a
  // full send buffer, unreachable, too long). UDP may drop; the sink counts.
  virtual void OnDatagramSendFailed(int err) = 0;

 protected:
  ~DatagramSink() = default;
};

// One operation a completion backend runs on behalf of a fiber (FiberConn):
// the fiber fills this in, submits it, parks, and resumes from OnComplete.
// There is no readiness step: the receive goes to the kernel at once and
// completes when bytes are there.
//
// Lifetime: the operation and the memory it points at must stay alive until
// OnComplete has been called, also after CancelOperation (a cancelled
// operation still completes: with -ECANCELED, or with its result when the
// cancellation lost the race). A fiber that parks until then keeps both on
// its own stack.
class Operation {
 public:
  enum class Kind : uint8_t {
    kReceive,        // into [data, data + size)
    kReceiveBuffer,  // into a buffer the backend picks: see `buffer`
    kSend,           // [data, data + size)
    kWaitWritable,   // a non-blocking connect finishing
    kWaitReadable,   // bytes, the FIN or an error to read (result >= 0)
    kConnect,        // connects the socket to *peer (on Windows: bound, unconnected)
    kReceiveFrom,    // one datagram into [data, data + size), its sender into *from
    kSendTo,         // one datagram [data, data + size) to *peer
  };

  Operation(const Operation&) = delete;
  Operation& operator=(const Operation&) = delete;

  // Loop thread, once, from the backend's Poll: the byte count, or -errno.
  // kReceiveBuffer with a count above 0: the bytes are at `buffer`, which
  // belongs to the caller until Backend::ReleaseBuffer(buffer_id).
  virtual void OnComplete(int result) = 0;

  Kind kind = Kind::kReceive;
  SocketHandle fd = kInvalidSocket;
  char* data = nullptr;
  size_t size = 0;
  const char* buffer = nullptr;
  uint32_t buffer_id = 0;
  const SocketAddress* peer = nullptr;  // kConnect, kSendTo
  // kReceiveFrom: the sender's address and its length (in: the room).
  // A datagram longer than `size` completes with -EMSGSIZE, `size` bytes
  // of it in the buffer.
  sockaddr_storage* from = nullptr;
  int from_len = 0;
  void* backend_slot = nullptr;         // the backend's own record while in flight
  // kReceive: the caller expects no bytes yet (its last receive drained the
  // socket), so the backend waits for data before the first attempt rather
  // than make one that can only fail (io_uring's POLL_FIRST).
  bool expect_empty = false;

 protected:
  Operation() = default;
  ~Operation() = default;
};

// What Send returns besides a byte count.
inline constexpr long kSendAgain = -1;    // readiness: socket full, OnSendReady follows
inline constexpr long kSendPending = -2;  // completion: submitted, OnSendReady follows

class Backend {
 public:
  virtual ~Backend() = default;

  virtual const char* name() const = 0;
  virtual BackendKind kind() const = 0;
  // Whether operations complete later (the backend owns their buffers until
  // then) rather than being made when the socket is ready.
  virtual bool completion() const = 0;
  // epoll with EPOLLET: readers and writers go on until EAGAIN.
  virtual bool edge_triggered() const = 0;

  // ---- Readiness watching (IoWatcher; see EventLoop::Watch). ----
  virtual absl::Status Watch(SocketHandle fd, uint32_t interest, IoWatcher* watcher) = 0;
  virtual absl::Status Modify(SocketHandle fd, uint32_t interest, IoWatcher* watcher) = 0;
  // Nothing more reaches `watcher` afterwards, not even events already
  // collected: it may be freed.
  virtual absl::Status Unwatch(SocketHandle fd, IoWatcher* watcher) = 0;

  // Any thread, async-signal-safe where the platform has signals: makes the
  // loop's Poll return soon. Only backends that own the loop's wake-up (IOCP,
  // through PostQueuedCompletionStatus) implement it; on POSIX the loop
  // wakes through an eventfd it watches like any other descriptor.
  virtual void Wakeup() {}

  // Called once by the loop thread before its first Poll (io_uring makes its
  // ring here: see io_uring_backend.cc).
  virtual void StartOnLoopThread() {}

  // Waits up to `timeout_ns` (negative: forever; 0: not at all), submits
  // what was queued, and dispatches what completed or became ready.
  virtual int Poll(int64_t timeout_ns) = 0;
  // True when the next Poll has work without waiting (a reader or listener
  // whose budget ran out): the loop then polls with a zero timeout.
  virtual bool HasPendingWork() const = 0;
  // Stream operations whose final completion has not come yet (always 0 on
  // readiness backends). A quitting loop polls until this is 0, so no stream
  // is left held.
  virtual size_t OperationsInFlight() const = 0;
  // One-shot Operations (fibers) submitted and not completed yet. Not part
  // of OperationsInFlight: a fiber parked on one keeps its stack (and so the
  // operation's memory) even when its loop quits without stopping it, and
  // the ring's teardown ends the operation.
  virtual size_t OneShotOperationsInFlight() const { return 0; }

  // ---- Streams. ----

  // What the owner wants from its stream now: to receive (off for
  // backpressure or after the peer's FIN), and, on readiness backends, to
  // hear when the socket can take more (bytes wait to be sent).
  // `backlogged` says the owner is behind (input left unread, or output
  // waiting): a completion backend then receives one buffer at a time
  // rather than keeping a multishot receive armed. The first call starts
  // serving the stream (its fd set by the owner). A completion backend may
  // still deliver bytes that were in flight when receiving went off.
  virtual absl::Status SetStreamInterest(Stream* stream, bool receive, bool want_writable,
                                         bool backlogged) = 0;
  // Readiness backends: sends `iov` now and returns the bytes sent,
  // kSendAgain or -errno. Completion backends: a send goes out with the
  // loop's next submission, of whatever PendingOutput then says (so the
  // writes of one round leave in one send); returns kSendPending or -errno.
  virtual long Send(Stream* stream, const struct iovec* iov, int count) = 0;
  // sendfile(2) of up to `count` bytes of `file_fd` from *offset
  // (advanced) to the stream now: the bytes sent, kSendAgain, or -errno
  // (-EINVAL: this socket cannot take sendfile; copy instead). A completion
  // backend makes the syscall too (io_uring has no sendfile operation), but
  // only while none of the stream's sends is queued or in flight
  // (kSendPending otherwise); it gives no readiness, so on kSendAgain the
  // owner sends a copied chunk, whose completion says when to try again.
  // -ENOSYS: no sendfile at all; copy.
  virtual long SendFile(Stream* stream, int file_fd, uint64_t* offset, size_t count) {
    (void)stream;
    (void)file_fd;
    (void)offset;
    (void)count;
    return -ENOSYS;
  }
  // Whether a send submitted earlier has not completed yet.
  virtual bool SendInFlight(const Stream* stream) const = 0;
  // Completion backends: frees `block` (storage of the stream's outbound
  // ring, moved or released while a send pointed into it) once the send in
  // flight has completed. Readiness backends free it now.
  virtual void RetainUntilSent(Stream* stream, void* block) = 0;
  // Zero-copy output from a completion backend's receive buffer. Called from
  // inside `stream`'s OnReceived, with bytes its handler writes: when they
  // lie in the buffer being delivered, the backend keeps that buffer out of
  // the receive pool (it is "lent" to the stream) and returns true, and the
  // stream may send straight from it until it calls ReturnLentBuffer. A
  // stream holds at most one lent buffer; a stream that is behind (a short
  // send), bytes of another delivery or another stream, and a loop whose
  // lent buffers reach a quarter of its pool all get false: the bytes are
  // then copied. Readiness backends always say false.
  virtual bool LendDeliveredBuffer(Stream* stream, std::string_view bytes) {
    (void)stream;
    (void)bytes;
    return false;
  }
  // The stream no longer needs its lent buffer: it goes back to the pool
  // now, or, while a send that points into it is in flight, when that send
  // completes.
  virtual void ReturnLentBuffer(Stream* stream) { (void)stream; }
  // shutdown(SHUT_WR).
  virtual void ShutdownWrite(Stream* stream) = 0;
  // Waits for the connect to `peer` started on the stream's fd (a
  // non-blocking connect on POSIX; on Windows the socket is only bound, and
  // the backend connects it itself with ConnectEx): OnConnected.
  virtual absl::Status AwaitConnect(Stream* stream, const SocketAddress& peer) = 0;
  // Stops every operation and closes the fd (operations in flight keep
  // their hold until their final completion).
  virtual void CloseStream(Stream* stream) = 0;
  // Stops every operation and hands the fd back, still open. Bytes that
  // were received but not yet delivered are appended to *unread; *sent is
  // how many bytes of the outbound ring a send in flight had sent.
  virtual absl::Status DetachStream(Stream* stream, std::string* unread, size_t* sent) = 0;

  // ---- One-shot operations (completion backends only; see Operation). ----
  // Gets `fd` ready for operations, once, before its first Submit (IOCP:
  // associates it with the loop's port, for good).
  virtual absl::Status PrepareSocket(SocketHandle fd) {
    (void)fd;
    return absl::OkStatus();
  }
  // Whether kReceiveBuffer is served (io_uring's provided buffers). Where it
  // is not, a fiber waits with kWaitReadable and reads into the loop's
  // shared buffer itself.
  virtual bool lends_receive_buffers() const { return false; }
  // Whether kReceiveFrom and kSendTo are served (IOCP). Where they are not,
  // a fiber's UDP socket waits through readiness.
  virtual bool serves_datagram_operations() const { return false; }
  // Queues `op` for the loop's next submission.
  virtual void Submit(Operation* op) = 0;
  // Asks for `op` to end early; its OnComplete still comes. When
  // `closing_fd`, the caller closes op->fd right after: the backend makes
  // sure the operation reached the kernel first (so it cannot land on a
  // reused descriptor number).
  virtual void CancelOperation(Operation* op, bool closing_fd) = 0;
  // Gives a kReceiveBuffer operation's buffer back to the backend.
  virtual void ReleaseBuffer(uint32_t buffer_id) = 0;

  // ---- Listening sockets. ----
  virtual absl::Status StartAccepting(SocketHandle fd, AcceptSink* sink) = 0;
  // After this, `sink` hears nothing more and may be freed; the caller
  // closes the fd.
  virtual void StopAccepting(SocketHandle fd, AcceptSink* sink) = 0;

  // ---- Datagram sockets (UDP). ----
  // A completion backend receives on `fd` itself: a multishot recvmsg into
  // buffers of the socket's own (`max_datagram` payload bytes each, `batch`
  // of them; pages are touched only as datagrams fill them), each datagram
  // reported to `sink`. Unimplemented on readiness backends: the owner then
  // watches the socket and reads with recvmmsg.
  virtual absl::Status StartReceivingDatagrams(SocketHandle fd, DatagramSink* sink, size_t max_datagram,
                                               size_t batch) {
    (void)fd;
    (void)sink;
    (void)max_datagram;
    (void)batch;
    return absl::UnimplementedError("datagrams through readiness");
  }
  // After this, `sink` hears nothing more and may be freed; the caller
  // closes the fd.
  virtual void StopReceivingDatagrams(SocketHandle fd, DatagramSink* sink) {
    (void)fd;
    (void)sink;
  }
  // Sockets given to StartReceivingDatagrams only: queues one datagram to
  // `to` (the pieces' bytes are copied) for the loop's next submission, so
  // the replies of one round leave with it, as sendmmsg would send them.
  // False when it cannot be queued (too many in flight): the caller drops
  // it. A send that fails later reaches sink->OnDatagramSendFailed.
  virtual bool SendDatagram(DatagramSink* sink, std::span<const std::string_view> pieces,
                            const sockaddr* to, socklen_t to_len) {
    (void)sink;
    (void)pieces;
    (void)to;
    (void)to_len;
    return false;
  }
};

struct BackendOptions {
  BackendKind kind = BackendKind::kAuto;
  bool edge_triggered = false;  // epoll only
  // The loop-shared buffer a readiness backend reads into (owned by the
  // loop, which outlives its backend).
  char* read_buffer = nullptr;
  size_t read_buffer_size = 0;
  size_t read_budget_per_event = 1024 * 1024;
  size_t uring_buffer_size = 16 * 1024;
  size_t uring_buffer_count = 256;
};

// Makes the backend `options.kind` names; kAuto (or NETLOOP_BACKEND in the
// environment, which overrides kAuto only) picks io_uring when it works here
// and epoll otherwise, logging the fallback once.
absl::StatusOr<std::unique_ptr<Backend>> NewBackend(const BackendOptions& options);
// Whether io_uring, with the features this backend needs, can be set up
// here; the reason when not. Probed once per process.
absl::Status IoUringAvailable();
// The kind kAuto resolves to in this process.
BackendKind ResolveAutoBackend();

absl::StatusOr<std::unique_ptr<Backend>> NewEpollBackend(const BackendOptions& options);
absl::StatusOr<std::unique_ptr<Backend>> NewIoUringBackend(const BackendOptions& options);
absl::StatusOr<std::unique_ptr<Backend>> NewIocpBackend(const BackendOptions& options);
// Sets up (and tears down) a ring like the io_uring backend's.
absl::Status ProbeIoUring();

}  // namespace netloop::internal

#endif  // NETLOOP_REACTOR_INTERNAL_BACKEND_H_
