// A connection served by an engine loop, as the callback handler sees it.
//
// Thread rules. Everything here runs on the connection's loop thread (inside
// EventHandler callbacks, or tasks and timers on that loop), except the
// methods marked "any thread". A Conn is freed right after OnClose returns, so
// other threads must never keep a Conn& or Conn*: they keep a ConnRef, which
// stays safe to use after the connection is gone. Loop code outside a
// callback (a timer, a task) may hold a Conn* while the connection is open
// (clear it in OnClose); a Write, Close, CloseWithError, Flush, ShutdownWrite
// or Detach it makes may close and free the Conn before returning.
//
// Memory. An open connection that has nothing buffered owns no buffer: reads
// land in the loop's shared buffer and OnTraffic sees them there, zero-copy.
// Only bytes the handler leaves unconsumed are copied, once, into a
// per-connection ring allocated on demand and freed when it empties; the same
// holds for bytes the socket would not take.
#ifndef NETLOOP_REACTOR_CONN_H_
#define NETLOOP_REACTOR_CONN_H_

#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "reactor/address.h"
#include "reactor/internal/backend.h"
#include "reactor/ring_buffer.h"
#include "reactor/socket_handle.h"
#include "reactor/timer_queue.h"
#include "reactor/tls.h"

namespace netloop {

class Conn;
class EventLoop;
namespace internal {
class Worker;
class TlsSession;
class DatagramSocket;
struct OutboundFiles;
}

inline constexpr size_t kAll = std::numeric_limits<size_t>::max();

// Inbound bytes as up to two contiguous pieces: `second` is non-empty only when
// the bytes wrap around the end of the connection's ring buffer. Neither piece
// is a copy.
struct ByteView {
  std::string_view first;
  std::string_view second;
  size_t size() const { return first.size() + second.size(); }
  bool empty() const { return first.empty() && second.empty(); }
  // Appends both pieces to *out (the one place a copy is made, on request).
  void AppendTo(std::string* out) const {
    out->append(first);
    out->append(second);
  }
};

// Called on the connection's loop thread once an AsyncWrite's bytes were
// written to the socket or queued in its outbound buffer. `conn` is nullptr
// (and `status` an error) when the connection had closed first.
using WriteCallback = absl::AnyInvocable<void(Conn* conn, absl::Status status)>;

// A copyable handle to a connection, safe from any thread and after the
// connection closed (operations on a closed connection report or do nothing).
// Valid while the Engine that made it exists.
class ConnRef {
 public:
  ConnRef() = default;
  bool valid() const { return worker_ != nullptr; }
  uint64_t id() const { return id_; }

  // Any thread. Queues `data` to be written in order with the caller's other
  // async writes to this connection.
  void AsyncWrite(std::string data, WriteCallback done = nullptr) const;
  void AsyncWritev(std::vector<std::string> parts, WriteCallback done = nullptr) const;
  // Any thread. Calls OnTraffic on the loop thread with no new bytes (gnet's
  // Wake): the way to make a handler look at the connection again.
  void Wake() const;
  // Any thread. Conn::Close / CloseWithError on the loop thread.
  void Close() const;
  void CloseWithError(absl::Status reason) const;
  // Any thread. Runs fn on the loop thread with the Conn, or with nullptr if
  // the connection is already closed.
  void Run(absl::AnyInvocable<void(Conn*)> fn) const;

 private:
  friend class Conn;
  friend class Engine;
  friend class internal::Worker;
  ConnRef(internal::Worker* worker, uint64_t id) : worker_(worker), id_(id) {}
  internal::Worker* worker_ = nullptr;
  uint64_t id_ = 0;
};

// What Conn::Detach hands over: the socket (still open, still non-blocking,
// no longer watched by the engine), the inbound bytes no handler consumed,
// and the outbound bytes Write accepted that the socket has not taken yet
// (the new owner sends them first; HandOff does).
struct DetachedConn {
  SocketHandle fd = kInvalidSocket;
  std::string unread;
  std::string unsent;
  SocketAddress remote;
};

// The backend sees a Conn as an internal::Stream (private: not part of the
// API).
class Conn final : private internal::Stream {
 public:
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // ---- Reading. Views stay valid until the current callback returns, or
  // until PeekContiguous is called, whichever comes first. ----

  // The first min(n, InboundBuffered()) unconsumed bytes, without consuming.
  ByteView Peek(size_t n = kAll);
  // Peek then Discard: the returned bytes are consumed but the view stays
  // valid as stated above.
  ByteView Next(size_t n = kAll);
  // Consumes up to n bytes; returns how many.
  size_t Discard(size_t n = kAll);
  size_t InboundBuffered() const { return fresh_.size() + inbound_.size(); }
  // Like Peek but as one piece: when the bytes wrap the ring it rotates them
  // in place (a memmove inside the ring, no allocation when they fit),
  // invalidating earlier views. For parsers that need contiguous input.
  std::string_view PeekContiguous(size_t n = kAll);

  // ---- Writing. ----

  // epoll: writes to the socket now; whatever it does not take is kept in
  // the outbound ring and flushed when the socket is writable (EPOLLOUT is
  // armed only while bytes wait). io_uring: submits one send at the end of
  // the loop iteration (writes made in the same callback go out together);
  // bytes that lie in the buffer OnTraffic is reading (an echo of Next())
  // are sent from that buffer, anything else is copied into the outbound
  // ring first. Errors: FailedPrecondition after Close,
  // or the socket error (the connection is then closing with that reason;
  // on io_uring a send error arrives later, through OnClose).
  absl::Status Write(std::string_view data);
  // The same for several pieces, in one sendmsg.
  absl::Status Writev(std::span<const std::string_view> pieces);
  // Tries to push buffered outbound bytes now (normally done by the loop).
  absl::Status Flush();
  // Bytes accepted for sending and not sent yet, files included.
  size_t OutboundBuffered() const { return OutboundSize(); }

  // Sends `length` bytes of the file `file_fd` from `offset`, after
  // everything written before and before anything written after. The file
  // is dup()ed: the caller may close its descriptor at once. Its bytes count
  // in OutboundBuffered (so the write high-water mark pauses reading, and
  // OnBackpressure fires, as for written bytes), but nothing of the file is
  // held in memory on epoll: it goes from the page cache to the socket with
  // sendfile(2) as the socket takes it. On io_uring (which has no sendfile),
  // with TLS (which must encrypt), and on sockets sendfile refuses, it is
  // read 64 KiB at a time, each chunk once the previous one is sent. A file
  // that turns out shorter than `length` closes the connection with
  // DataLoss. Errors: FailedPrecondition after Close, or the dup's errno.
  // Loop thread.
  absl::Status SendFile(int file_fd, uint64_t offset, uint64_t length);

  // ---- Any thread (through Ref(), or directly while the Conn is alive). ----
  ConnRef Ref() const;
  void AsyncWrite(std::string data, WriteCallback done = nullptr) const {
    Ref().AsyncWrite(std::move(data), std::move(done));
  }
  void AsyncWritev(std::vector<std::string> parts, WriteCallback done = nullptr) const {
    Ref().AsyncWritev(std::move(parts), std::move(done));
  }
  void Wake() const { Ref().Wake(); }

  // ---- Closing (loop thread; other threads use ConnRef). ----

  // Stops reading, lets unsent bytes drain (up to Options::close_drain_timeout),
  // then closes; OnClose gets OK. Inside a callback the close happens after
  // the callback returns.
  void Close();
  // Closes now, dropping unsent bytes; OnClose gets `reason`.
  void CloseWithError(absl::Status reason);
  // Half-close: sends FIN once unsent bytes have drained; reading continues.
  void ShutdownWrite();
  // Hands the socket over (to a fiber handler, say): the engine stops
  // serving it and will not call OnClose for it. Outbound bytes not sent yet
  // travel in DetachedConn::unsent (on io_uring, a send in flight is
  // cancelled first and what it sent is subtracted). Fails if the
  // connection is not open, or is TLS (its session state cannot travel).
  absl::StatusOr<DetachedConn> Detach();

  // ---- Identity and user data. ----
  void* context() const { return context_; }
  // The handler owns what it stores here; free it in OnClose.
  void set_context(void* context) { context_ = context; }
  // The connection's socket (an int on POSIX, a SOCKET on Windows), for
  // socket options; reading or writing it behind the engine's back breaks
  // the stream. Invalid once closed. Loop thread.
  SocketHandle fd() const { return fd_; }
  uint64_t id() const { return id_; }
  bool is_client() const { return is_client_; }
  bool is_open() const { return state_ == State::kOpen; }
  // TLS (Options::tls, DialOptions::tls): what the handshake agreed on;
  // empty for a plaintext connection. Loop thread, from OnOpen on.
  bool is_tls() const { return tls_ != nullptr; }
  // UDP: the one Conn of a loop's socket for a udp:// address. OnTraffic
  // runs once per datagram: Peek/Next show that datagram alone (what the
  // handler leaves unread is dropped), RemoteAddress() is its sender, and
  // Write/Writev send one datagram back to that sender, now (a full socket
  // buffer drops it: ResourceExhausted, counted in
  // EngineStats::udp_send_drops). Replies written from OnTraffic leave
  // together with sendmmsg once the received batch has been delivered; a
  // drop there is only counted. No OnOpen or OnClose; Close, Detach and
  // SendFile do not apply; keep no pointer to it past the callback.
  bool is_datagram() const { return datagram_; }
  // The datagram was longer than Options::udp_max_datagram and was cut.
  bool DatagramTruncated() const { return datagram_truncated_; }
  tls::SessionInfo TlsInfo() const;
  // For unix sockets: the peer's bound path, usually empty (getpeername).
  SocketAddress RemoteAddress() const;
  SocketAddress LocalAddress() const;  // getsockname
  EventLoop& loop() const;
  int loop_index() const;
  class Engine& engine() const;

 private:
  friend class internal::Worker;
  friend class ConnRef;
  // kHandshaking: TLS, after connecting and before OnOpen.
  enum class State : uint8_t { kConnecting, kHandshaking, kOpen, kClosing, kClosed, kDetached };

  // Keeps the Conn alive while code that may close it is on the stack; the
  // last guard out frees a closed Conn.
  class Guard {
   public:
    explicit Guard(Conn* c) : c_(c) { c_->Hold(); }
    ~Guard() { c_->Unhold(); }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;

   private:
    Conn* c_;
  };

  Conn(internal::Worker* worker, SocketHandle fd, uint64_t id, bool is_client,
       const SocketAddress& remote);
  ~Conn();

  // internal::Stream: what the backend reports.
  bool OnReceived(std::string_view bytes) override;
  void OnReceiveEnded(int err) override;
  void OnSendReady(int result) override;
  void OnConnected(int err) override;
  void OnHangup(int err) override;
  int PendingOutput(struct iovec iov[kMaxPendingPieces]) override;
  void Free() override { delete this; }

  internal::Backend& backend() const;
  // Bytes the handler will see: zero-copy in fresh_ or appended to the
  // inbound ring (held while backpressure pauses reading), then OnTraffic.
  void DeliverInbound(std::string_view bytes);
  // Write's and Writev's second half: plaintext, or ciphertext with TLS.
  absl::Status WriteBytes(std::string_view data);
  absl::Status WritevBytes(std::span<const std::string_view> pieces);

  // TLS. BeginTls takes the session and starts the handshake (a client
  // sends its hello at once); OnCipherReceived feeds what arrived and moves
  // the handshake or the records along; SendCipher writes what the session
  // has to send.
  void BeginTls(std::unique_ptr<internal::TlsSession> session);
  bool OnCipherReceived(std::string_view cipher);
  void AdvanceHandshake();
  void DecryptAndDeliver();
  absl::Status SendCipher();
  // close_notify now, or, while files wait, once the last one is sealed.
  absl::Status QueueCloseNotify();
  // TLS: seals `plain` (and what the session had waiting) into the
  // outbound ring. False when the session failed (the connection closes).
  bool SealIntoRing(std::string_view plain);
  // Ends a connection that never opened with `reason`.
  void FailHandshake(absl::Status reason);
  // UDP: shows one datagram to OnTraffic; sends one back to its sender.
  void DeliverDatagram(std::string_view bytes, const SocketAddress& from, bool truncated);
  absl::Status SendDatagram(std::span<const std::string_view> pieces);
  void HandleConnected();
  void HandlePeerEof();
  void DispatchTraffic();
  void AfterCallback();
  void ApplyAction(int action);
  void CloseNow(absl::Status reason);
  void FailIo(int err);
  // After a failed send (FailIo) nothing more may leave: the bytes of that
  // send are lost, so later ones would open a gap in the stream (with TLS,
  // a record the peer cannot decrypt). The error Write then returns.
  absl::Status BrokenStreamError() const;
  void UpdateInterest();
  void AfterOutboundGrew();
  void AfterOutboundShrank();
  bool SendBuffered();
  // Completion backends: the submitted send finished with `result`.
  void OnSendCompleted(int result);
  // Appends to the outbound ring without moving bytes a send in flight
  // points at.
  void AppendOutbound(std::string_view data);
  // Completion backends: queues bytes to send, from the receive buffer being
  // delivered when they lie in it (the backend lends it), else copied.
  void QueueOutbound(std::string_view data);
  // Drops n sent bytes from the front of what waits to be sent.
  void DiscardSent(size_t n);
  // Copies what is left of lent_ into the front of the outbound ring and
  // gives the lent buffer back. No send may be in flight.
  void UnlendRest();
  size_t OutboundSize() const {
    return lent_.size() + outbound_.size() + (files_ != nullptr ? FileBytes() : 0);
  }
  bool OutboundEmpty() const { return lent_.empty() && outbound_.empty() && files_ == nullptr; }
  size_t FileBytes() const;
  // Moves the file queue along once the ring is empty: sendfile(2) on a
  // readiness backend, else one chunk read into the ring. False when it
  // must wait (the socket is full) or the connection failed.
  bool PumpFiles();
  void ArmIdleTimer();
  void ArmDrainTimer();
  void OnIdleTimer();
  void OnDrainTimer();
  // Bytes went out: traffic for the idle timer, progress for the drain one.
  void NoteSent() { last_active_ns_ = loop_now_ns(); }
  int64_t loop_now_ns() const;
  // Brings the worker's buffer accounting up to date with this connection's
  // ring capacities; enforces the budget when they grew. Free when nothing
  // changed (the common case: no ring is allocated).
  void AccountBuffers();

  internal::Worker* const worker_;
  const uint64_t id_;
  State state_ = State::kConnecting;
  uint8_t interest_ = 0;  // kIoReadable | kIoWritable as last told the backend
  bool is_client_ : 1;
  bool opened_ : 1 = false;             // OnOpen ran: OnClose is owed
  bool registered_ : 1 = false;         // the backend serves the stream
  bool read_paused_ : 1 = false;        // backpressure
  bool peer_eof_ : 1 = false;           // FIN seen; drain then close
  bool close_requested_ : 1 = false;    // close deferred until callback returns
  bool shutdown_write_pending_ : 1 = false;
  bool budget_doomed_ : 1 = false;      // to be closed for the buffer budget
  bool held_while_paused_ : 1 = false;  // inbound bytes not yet shown to OnTraffic
  bool eof_after_held_ : 1 = false;     // the peer's FIN came after them
  bool peer_close_notify_ : 1 = false;  // TLS: the peer ended with close_notify
  bool tls_close_after_files_ : 1 = false;  // TLS: close_notify waits for the files
  bool datagram_ : 1 = false;            // a UDP socket's Conn (is_datagram)
  bool datagram_truncated_ : 1 = false;  // the datagram being shown was cut
  bool io_failed_ : 1 = false;           // FailIo ran: send nothing more
  uint16_t in_callback_ = 0;
  std::string_view fresh_;  // this read's bytes, still in the loop buffer
  RingBuffer inbound_;
  RingBuffer outbound_;
  // io_uring: bytes to send that still lie in a receive buffer the backend
  // lent to this connection; they go before outbound_'s.
  std::string_view lent_;
  void* context_ = nullptr;
  int64_t last_active_ns_ = 0;
  TimerId timer_;  // idle timeout, connect timeout or close drain, one at a time
  absl::Status pending_reason_;
  // TLS only (nullptr for plaintext, so that costs one pointer).
  std::unique_ptr<internal::TlsSession> tls_;
  // Files waiting to be sent (SendFile); nullptr when none.
  std::unique_ptr<internal::OutboundFiles> files_;
  // UDP: while a received batch is delivered, the socket that sends the
  // replies together after it (else nullptr: a reply goes at once).
  internal::DatagramSocket* datagram_batch_ = nullptr;
  // IP peers only (28 bytes instead of sockaddr_un's 110: idle memory counts).
  union {
    sockaddr_in v4;
    sockaddr_in6 v6;
  } remote_{};
  uint8_t remote_len_ = 0;
  // inbound_ + outbound_ capacity as counted in the worker's buffer budget
  // (capacities are multiples of 1 KiB). Fits in the padding after
  // remote_len_.
  uint32_t accounted_kib_ = 0;
};

}  // namespace netloop

#endif  // NETLOOP_REACTOR_CONN_H_
