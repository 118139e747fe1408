// A connection for blocking-style code running in a fiber. Read and Write
// look blocking; underneath, it depends on the loop's backend:
// - epoll: EAGAIN parks the fiber on the connection's read or write waiter
//   slot and the loop resumes it on readiness, as Go's netpoller parks a
//   goroutine on its pollDesc. The fd is registered once, edge-triggered, for
//   both directions: no epoll_ctl per operation; a read that drained the
//   socket makes the next Read park at once, without a read that would only
//   say EAGAIN.
// - io_uring: no readiness step. Read submits a receive into the caller's
//   buffer and parks until it completes; Write submits a send of the caller's
//   bytes. A deadline or Close cancels the operation, and the call returns
//   only once the kernel is done with the buffer.
// - IOCP (Windows): as io_uring, each Read and Write one overlapped call
//   (WSARecv into the caller's buffer, WSASend), cancelled with CancelIoEx.
//   A socket is bound to its loop's completion port for life.
//
// Thread rules: use a FiberConn from fibers of the loop that owns it (the one
// it was opened on). One reader and one writer may be parked at the same time
// (two fibers). From other threads use FiberConnRef.
//
// Deadlines follow Go exactly: absolute times; an expired deadline wakes a
// parked fiber with DeadlineExceeded and fails later calls until it is moved;
// moving or clearing it while a fiber is parked takes effect at once.
#ifndef NETLOOP_FIBERBRIDGE_FIBER_CONN_H_
#define NETLOOP_FIBERBRIDGE_FIBER_CONN_H_

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "reactor/address.h"
#include "reactor/event_loop.h"
#include "reactor/socket_handle.h"
#include "reactor/tls.h"

namespace netloop::fiber {

class FiberConnCore;
class FiberConn;

// Inside a fiber: connects, parking until connected or `deadline`. Errors:
// ConnectFailed (refused, unreachable), DeadlineExceeded, NotFound (a name
// that does not resolve), InvalidArgument (a malformed address), Closed (the
// scheduler stopped).
//
// Never blocks the loop thread: unix paths and numeric hosts ("127.0.0.1",
// "[::1]") are parsed in place; any other host, "localhost" included, is
// resolved with getaddrinfo on the offload pool while the fiber parks, and
// `deadline` bounds that wait too (a lookup that outlives it finishes on the
// pool and is dropped).
absl::StatusOr<std::unique_ptr<FiberConn>> Dial(std::string_view address,
                                                absl::Time deadline = absl::InfiniteFuture());

// Dial, then StartTls as a client (Go's tls.Dial), all within `deadline`.
// `server_name` is what the server's certificate must be issued for and the
// SNI sent; empty: the address's host (its name, or its IP address).
// Errors: Dial's, and TlsError (IsTlsError) when the handshake failed or
// the server did not verify.
absl::StatusOr<std::unique_ptr<FiberConn>> DialTls(std::string_view address,
                                                   std::shared_ptr<const tls::Context> context,
                                                   absl::Time deadline = absl::InfiniteFuture(),
                                                   std::string_view server_name = {});

namespace internal {
// Resolves a Dial address that names a host, on an offload pool thread.
using DialResolver = absl::StatusOr<NetAddress> (*)(const std::string& address);
// For tests: replaces the resolver (nullptr restores the default,
// ParseAddress). Any thread; affects Dials that start afterwards.
void SetDialResolverForTesting(DialResolver resolver);
}  // namespace internal

// A handle usable from any thread, safe after the connection is gone.
class FiberConnRef {
 public:
  FiberConnRef() = default;
  // Closes the connection on its loop: parked fibers wake with Closed.
  void Close() const;

 private:
  friend class FiberConn;
  EventLoop* loop_ = nullptr;
  std::weak_ptr<FiberConnCore> core_;
};

class FiberConn {
 public:
  // Who owns the fd, for Adopt and Serve alike (they share one code path):
  // the FiberConn side, from the moment of the call, whatever is returned.
  // Every failure closes `fd` before returning (off a loop thread, Serve
  // outside a fiber, the loop refusing to watch it); on success the
  // connection closes it (Close, ~FiberConn, or Serve once the handler
  // returns). On a stopping scheduler both succeed with a connection that is
  // already closed (its fd too). The caller must not touch `fd` afterwards.

  // Adopts a connected, non-blocking socket on the current loop. Loop
  // thread (in a fiber or not). `unread` holds bytes already read from it
  // (Conn::Detach).
  static absl::StatusOr<std::unique_ptr<FiberConn>> Adopt(SocketHandle fd, std::string unread = {});
  // Adopt, then run `handler` with the connection kept on the calling fiber's
  // stack (no separate allocation), closing it when the handler returns.
  // Inside a fiber. The handler is not called on failure.
  static absl::Status Serve(SocketHandle fd, std::string unread,
                            absl::FunctionRef<void(FiberConn&)> handler);

  // Closes if still open.
  ~FiberConn();
  FiberConn(const FiberConn&) = delete;
  FiberConn& operator=(const FiberConn&) = delete;

  // TLS over this connection from here on (Go's tls.Server / tls.Client):
  // runs the handshake, parking as Read and Write do and bounded by the
  // read and write deadlines (set them first: a peer that never answers
  // otherwise holds the fiber). A server context makes this the server side;
  // a client context the client, verifying the server for `server_name`
  // (sent as SNI when it is a name). Afterwards Read, ReadView and Write
  // carry plaintext; Close and the end of Serve send close_notify first;
  // CloseWrite sends close_notify and then the FIN. Errors: TlsError
  // (IsTlsError) for a failed handshake or a server that did not verify,
  // and Read's and Write's. Inside a fiber, before any Read or Write; once.
  absl::Status StartTls(const std::shared_ptr<const tls::Context>& context,
                        std::string_view server_name = {});
  // What the handshake agreed on; empty without TLS.
  tls::SessionInfo TlsInfo() const;

  // Reads what is available (at least 1 byte), parking until some is.
  // Errors: IsPeerClosed (EOF; with TLS, the peer's close_notify, or a FIN
  // without it, whose message then says so), a reset error, Closed,
  // DeadlineExceeded, and with TLS a TlsError for a bad record.
  absl::StatusOr<size_t> Read(std::span<char> buf);
  // Read into the loop's shared buffer (zero-copy on epoll; on io_uring the
  // kernel fills one of the loop's provided buffers, copied here so that no
  // connection ever holds one). The view stays valid until this fiber next
  // parks or yields (any blocking call), so consume it, or pass it straight
  // to Write/WriteAll (which keep their own copy of bytes they must wait to
  // send). On io_uring, Read into a buffer of your own is the zero-copy way.
  // On IOCP a zero-byte receive waits for bytes, which are then read into
  // the shared buffer: zero-copy, as on epoll.
  absl::StatusOr<std::string_view> ReadView();
  // Reads exactly buf.size() bytes (io.ReadFull).
  absl::Status ReadFull(std::span<char> buf);

  // Writes all of `data`, parking while the socket buffer is full. On error
  // some prefix may have been sent. With TLS, one writing fiber at a time.
  absl::Status WriteAll(std::string_view data);
  // Go's Write: returns bytes written, == data.size() unless an error.
  absl::StatusOr<size_t> Write(std::string_view data);

  // Sends `length` bytes of the file `file_fd` from `offset` (Go's
  // io.Copy from an *os.File to a TCP connection): with sendfile(2),
  // parking while the socket is full, bounded by the write deadline; with
  // TLS, or where sendfile does not apply, read and written 64 KiB at a
  // time. Returns the bytes sent; DataLoss when the file ends before
  // `length`, else Write's errors (some prefix may have been sent). The
  // caller keeps `file_fd`. Inside a fiber; one writer at a time.
  absl::StatusOr<uint64_t> SendFile(int file_fd, uint64_t offset, uint64_t length);

  // Closes the socket; fibers parked on it wake with Closed. Idempotent.
  void Close();
  // Half-close (FIN) of the write side.
  absl::Status CloseWrite();

  // Absolute deadlines; absl::InfiniteFuture() clears.
  void SetDeadline(absl::Time t);
  void SetReadDeadline(absl::Time t);
  void SetWriteDeadline(absl::Time t);

  SocketAddress LocalAddress() const;
  SocketAddress RemoteAddress() const;
  SocketHandle fd() const;
  EventLoop& loop() const;
  FiberConnRef Ref() const;

 private:
  friend absl::StatusOr<std::unique_ptr<FiberConn>> Dial(std::string_view, absl::Time);
  explicit FiberConn(std::shared_ptr<FiberConnCore> core) : core_(std::move(core)) {}
  // The socket itself: what Read, ReadView and Write do without TLS, and
  // how the TLS session's records travel with it.
  absl::StatusOr<size_t> ReadSocket(std::span<char> buf);
  absl::StatusOr<std::string_view> ReadSocketView();
  absl::StatusOr<size_t> WriteSocket(std::string_view data);
  // The plaintext side of a TLS connection.
  absl::StatusOr<size_t> ReadTls(std::span<char> buf);
  absl::StatusOr<size_t> WriteTls(std::string_view data);
  // Queues close_notify and sends it if the socket takes it at once (a
  // close never waits for a peer).
  void SendCloseNotify();
  // Sends what the session has sealed (parking as Write does); a failure
  // is sticky for later writes.
  absl::Status SendSealed();
  std::shared_ptr<FiberConnCore> core_;
};

}  // namespace netloop::fiber

#endif  // NETLOOP_FIBERBRIDGE_FIBER_CONN_H_
