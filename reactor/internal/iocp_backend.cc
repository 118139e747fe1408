// The IOCP backend (Windows): one completion port per loop.
//
// A completion backend like io_uring, with one difference in how streams
// receive. io_uring receives into buffers the kernel picks from a provided
// ring, so no buffer is pinned per idle connection. Windows has no such
// ring: an overlapped WSARecv pins the buffer it is given until it
// completes. So a stream posts a *zero-byte* WSARecv, which pins nothing and
// completes when bytes (or the FIN, or a reset) are there, and then reads
// them with non-blocking recv into the loop's shared read buffer, as the
// epoll backend does. An idle connection owns no buffer, and OnReceived sees
// the loop's buffer directly.
//
// Sends are overlapped WSASends of what the stream's PendingOutput says,
// one per stream per round, made at the start of the next Poll (so a
// round's writes leave in one send, and nothing is issued from inside a sink
// callback). The bytes stay in the stream's outbound ring, kept alive by the
// stream's hold, until the completion.
//
// Accepts are AcceptEx calls, several outstanding per listener, each with a
// socket made for it.
//
// Every socket is associated with the port once, with
// FILE_SKIP_COMPLETION_PORT_ON_SUCCESS: an operation that succeeds at once
// posts no packet. Its completion is queued (inline_done_) and dispatched by
// the same Poll, never from inside the call that issued it.
//
// The loop's wake-up is PostQueuedCompletionStatus, coalesced: at most one
// wake-up packet is queued at a time.
//
// Dials are ConnectEx calls on a socket StartConnect bound (and did not
// connect).
//
// Fibers (FiberConn) submit one-shot Operations, each one overlapped call:
// WSARecv straight into the fiber's buffer, WSASend from it, ConnectEx, and
// a zero-byte WSARecv for "readable" (a fiber then reads into the loop's
// shared buffer itself, as on epoll). A deadline or Close cancels one with
// CancelIoEx; the fiber stays parked until its completion comes.
//
// UDP sockets keep `batch` overlapped WSARecvFrom calls outstanding, each
// into a buffer of the socket's own (max_datagram bytes), re-posted as each
// completes; replies are WSASendTo calls from a copy the operation keeps.
//
// Not yet served here (each returns a clear error, see docs/issue11-plan.md):
// readiness watching (EventLoop::Watch), kReceiveBuffer and kWaitWritable
// operations, and DetachStream while a send is in flight.
#include "reactor/internal/platform.h"  // Winsock first: mswsock.h needs it

#include <mswsock.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "reactor/address.h"
#include "reactor/internal/backend.h"
#include "reactor/internal/retained_blocks.h"
#include "reactor/internal/socket_ops.h"
#include "reactor/internal/sys_io.h"
#include "reactor/logging.h"

namespace netloop::internal {
namespace {

// Completion keys. Sockets are associated with key 0; the wake-up packet
// carries its own key and no OVERLAPPED.
constexpr ULONG_PTR kSocketKey = 0;
constexpr ULONG_PTR kWakeKey = 1;

// Stream::io_flags_ bits.
constexpr uint8_t kRecvArmed = 1;   // a zero-byte WSARecv is in flight
constexpr uint8_t kRecvWanted = 2;  // the owner wants to receive
constexpr uint8_t kSendBusy = 4;    // a send is queued or in flight
constexpr uint8_t kConnecting = 8;  // a ConnectEx is in flight
constexpr uint8_t kDead = 16;       // closed: deliver nothing more
constexpr uint8_t kAttached = 32;   // associated with this loop's port
constexpr uint8_t kReinvoke = 64;   // in reinvokes_: read again next Poll

// Stream::io_interest_ bits (unused otherwise on this backend).
constexpr uint8_t kNoSkip = 1;  // skip-on-success could not be set: every call posts

// AcceptEx wants room for each address plus 16 bytes.
constexpr DWORD kAcceptAddressBytes = sizeof(sockaddr_storage) + 16;
// AcceptEx calls kept outstanding per listening socket.
constexpr int kAcceptsPerListener = 16;
constexpr size_t kInitialEntries = 256;
constexpr size_t kMaxEntries = 4096;
// Datagram sends out at once per loop; beyond, a reply is dropped (counted).
constexpr size_t kMaxDatagramSends = 4096;

// The bytes an overlapped call moved, or -errno; for a call that completed
// through the port (its status in ov.Internal).
long OverlappedResult(SocketHandle socket, OVERLAPPED* ov, DWORD transferred) {
  if (ov->Internal == 0) return static_cast<long>(transferred);  // STATUS_SUCCESS
  // Cancelled (CancelIoEx, or its socket closed): said without asking the
  // socket, which may be closed by now.
  if (ov->Internal == 0xC0000120) return -ECANCELED;  // STATUS_CANCELLED
  DWORD bytes = 0;
  DWORD flags = 0;
  if (WSAGetOverlappedResult(static_cast<SOCKET>(socket), ov, &bytes, FALSE, &flags)) {
    return static_cast<long>(bytes);
  }
  const int err = LastSocketError();
  return -(err == 0 ? EIO : err);
}

}  // namespace

class IocpBackend final : public Backend {
 public:
  IocpBackend(HANDLE port, const BackendOptions& options)
      : port_(port),
        read_buffer_(options.read_buffer),
        read_buffer_size_(options.read_buffer_size),
        read_budget_(options.read_budget_per_event),
        entries_(kInitialEntries) {}

  ~IocpBackend() override {
    // The kernel writes each operation's OVERLAPPED when it completes: wait
    // (boundedly) for those still out, whose sockets are closed by now.
    for (int round = 0; round < 100 && ops_out_ > 0; ++round) {
      ULONG n = 0;
      if (!GetQueuedCompletionStatusEx(port_, entries_.data(),
                                       static_cast<ULONG>(entries_.size()), &n, 10, FALSE)) {
        continue;
      }
      for (ULONG i = 0; i < n; ++i) {
        if (entries_[i].lpOverlapped != nullptr) --ops_out_;
      }
    }
    if (ops_out_ > 0) {
      // Leak rather than free memory the kernel may still write.
      NETLOOP_LOG(kWarning) << "iocp: " << ops_out_ << " operations still out at teardown";
      for (auto& op : all_ops_) (void)op.release();
    }
    CloseHandle(port_);
  }

  const char* name() const override { return "iocp"; }
  BackendKind kind() const override { return BackendKind::kIocp; }
  bool completion() const override { return true; }
  bool edge_triggered() const override { return false; }

  // ---------------------------------------------------------- watchers

  absl::Status Watch(SocketHandle, uint32_t, IoWatcher*) override {
    return absl::UnimplementedError("iocp: readiness watching (EventLoop::Watch) is not served");
  }
  absl::Status Modify(SocketHandle, uint32_t, IoWatcher*) override {
    return absl::UnimplementedError("iocp: readiness watching (EventLoop::Watch) is not served");
  }
  absl::Status Unwatch(SocketHandle, IoWatcher*) override { return absl::OkStatus(); }

  void Wakeup() override {
    if (!wake_pending_.exchange(true, std::memory_order_acq_rel) &&
        !PostQueuedCompletionStatus(port_, 0, kWakeKey, nullptr)) {
      // Not queued: the next Wakeup must try again.
      wake_pending_.store(false, std::memory_order_release);
    }
  }

  // ---------------------------------------------------------- the loop

  int Poll(int64_t timeout_ns) override {
    FlushSends();
    PostDeferredAccepts();
    int dispatched = RunReinvokes();
    DWORD timeout_ms;
    if (HasPendingWork() || dispatched > 0) {
      timeout_ms = 0;
    } else if (timeout_ns < 0) {
      timeout_ms = INFINITE;
    } else {
      // Round up: waking early would spin on a timer that is not due yet.
      const int64_t ms = (timeout_ns + 999'999) / 1'000'000;
      timeout_ms = static_cast<DWORD>(std::min<int64_t>(ms, 3'600'000));
    }
    ULONG n = 0;
    // The count is read only when the call succeeds: wine sets it on a
    // timeout too.
    const BOOL got = GetQueuedCompletionStatusEx(
        port_, entries_.data(), static_cast<ULONG>(entries_.size()), &n, timeout_ms, FALSE);
    // Awake now, whatever woke the wait: the next Wakeup posts again (tied
    // to the wake-up packet instead, a packet left unread would leave every
    // later Wakeup coalesced into nothing). The exchange also makes the
    // tasks queued before a coalesced Wakeup visible to this thread.
    wake_pending_.exchange(false, std::memory_order_acq_rel);
    if (got) {
      for (ULONG i = 0; i < n; ++i) {
        const OVERLAPPED_ENTRY& e = entries_[i];
        if (e.lpOverlapped == nullptr) continue;  // the wake-up packet
        IocpOp* op = CONTAINING_RECORD(e.lpOverlapped, IocpOp, ov);
        --ops_out_;
        Complete(op, e.dwNumberOfBytesTransferred);
        ++dispatched;
      }
      // A full batch suggests more are waiting: grow (a handful of times
      // per loop lifetime, never in steady state).
      if (n == entries_.size() && entries_.size() < kMaxEntries) {
        entries_.resize(entries_.size() * 2);
      }
    }
    dispatched += RunInlineCompletions();
    ReapAccepts();
    return dispatched;
  }

  bool HasPendingWork() const override {
    return !inline_done_.empty() || !reinvokes_.empty() || !pending_sends_.empty() ||
           !injected_ops_.empty() || !deferred_accepts_.empty();
  }
  size_t OperationsInFlight() const override { return in_flight_; }
  size_t OneShotOperationsInFlight() const override { return one_shot_in_flight_; }

  // ---------------------------------------------------------- streams

  absl::Status SetStreamInterest(Stream* s, bool receive, bool, bool) override {
    if (s->io_flags_ & kDead) return absl::OkStatus();
    if (absl::Status a = Attach(s); !a.ok()) return a;
    if (receive) {
      s->io_flags_ |= kRecvWanted;
    } else {
      s->io_flags_ &= ~kRecvWanted;
    }
    // Receiving or not, a zero-byte receive stays armed: it pins no buffer,
    // and it is how a reset (or the peer's FIN) reaches a stream that has
    // stopped reading (epoll reports EPOLLERR and EPOLLHUP whatever the
    // interest). When it completes while receiving is off and bytes are
    // there, it is armed again only once receiving is back on.
    if (!(s->io_flags_ & kRecvArmed)) ArmRecv(s);
    return absl::OkStatus();
  }

  long Send(Stream* s, const iovec*, int) override {
    if (s->io_flags_ & (kSendBusy | kDead)) return kSendPending;
    s->io_flags_ |= kSendBusy;
    HoldOp(s);
    pending_sends_.push_back(s);
    return kSendPending;
  }

  bool SendInFlight(const Stream* s) const override { return s->io_flags_ & kSendBusy; }

  void RetainUntilSent(Stream* s, void* block) override {
    if (!(s->io_flags_ & kSendBusy)) {
      ::operator delete(block);
      return;
    }
    retained_.Keep(s, block);
  }

  void ShutdownWrite(Stream* s) override {
    if (IsValidSocket(s->fd_)) ::shutdown(static_cast<SOCKET>(s->fd_), SD_SEND);
  }

  absl::Status AwaitConnect(Stream* s, const SocketAddress& peer) override {
    // StartConnect only bound the socket: ConnectEx connects it, and its
    // completion is the connect's outcome.
    if (absl::Status a = Attach(s); !a.ok()) return a;
    if (absl::Status c = LoadConnectEx(s->fd_); !c.ok()) return c;
    IocpOp* op = NewOp();
    op->kind = OpKind::kConnect;
    op->stream = s;
    s->io_flags_ |= kConnecting;
    HoldOp(s);
    const BOOL ok = connect_ex_(static_cast<SOCKET>(s->fd_), peer.sockaddr_ptr(), peer.length(),
                                nullptr, 0, nullptr, &op->ov);
    Issued(op, ok ? 0 : SOCKET_ERROR, 0, Skips(s));
    return absl::OkStatus();
  }

  void CloseStream(Stream* s) override {
    s->io_flags_ |= kDead;
    s->io_flags_ &= ~kRecvWanted;
    // Cancelled, then closed: each operation in flight completes (aborted)
    // through the port and drops its hold then. (closesocket alone was seen
    // to leave a send to a peer that does not read pending under wine.)
    if (IsValidSocket(s->fd_)) {
      CancelIoEx(reinterpret_cast<HANDLE>(s->fd_), nullptr);
      CloseSocket(s->fd_);
    }
    s->fd_ = kInvalidSocket;
  }

  absl::Status DetachStream(Stream* s, std::string* unread, size_t* sent) override {
    // A Windows socket belongs to this port for life: the new owner must be
    // on this same loop (HandOff is; FiberConn::Adopt elsewhere is not).
    (void)unread;  // a zero-byte receive takes no bytes: nothing is held here
    *sent = 0;
    if (s->io_flags_ & kConnecting) {
      return absl::FailedPreconditionError("detach: connect in flight");
    }
    auto queued = std::find(pending_sends_.begin(), pending_sends_.end(), s);
    if ((s->io_flags_ & kSendBusy) && queued == pending_sends_.end()) {
      // Cancelling an overlapped send leaves a TCP connection in an
      // undefined state on Windows, and waiting for it could wait forever
      // on a peer that does not read.
      return absl::UnavailableError(
          "detach: a send is in flight (IOCP cannot take it back); retry after OnWritten");
    }
    if (queued != pending_sends_.end()) {
      // Not issued yet: it has sent nothing.
      pending_sends_.erase(queued);
      s->io_flags_ &= ~kSendBusy;
      ReleaseAfterSend(s);
      UnholdOp(s);  // the caller holds the stream too
    }
    // What is still out (the zero-byte receive) is cancelled and completes
    // later as for a closed stream: delivering nothing, touching nothing of
    // the socket, which is the new owner's by then.
    s->io_flags_ &= ~kRecvWanted;
    s->io_flags_ |= kDead;
    if ((s->io_flags_ & kRecvArmed) && IsValidSocket(s->fd_)) {
      CancelIoEx(reinterpret_cast<HANDLE>(s->fd_), nullptr);
    }
    return absl::OkStatus();
  }

  // ---------------------------------------------------------- operations

  bool serves_datagram_operations() const override { return true; }

  absl::Status PrepareSocket(SocketHandle fd) override {
    // Operations complete inline when they can (see Issued); a layered
    // provider that refuses this is not served for fibers.
    absl::StatusOr<bool> skips = Associate(fd, "a socket");
    if (!skips.ok()) return skips.status();
    if (!*skips) {
      return absl::UnimplementedError(absl::StrCat(
          "iocp: the socket refuses skip-on-success completions (a layered provider?): error ",
          GetLastError()));
    }
    // Non-blocking for good: a fiber's plain send or read (tried before an
    // overlapped call) must never block the loop, whatever mode the socket
    // was handed over in.
    u_long non_blocking = 1;
    ioctlsocket(static_cast<SOCKET>(fd), FIONBIO, &non_blocking);
    // UDP: an ICMP error is not the socket's end (fails harmlessly on TCP).
    BOOL off = FALSE;
    DWORD bytes = 0;
    WSAIoctl(static_cast<SOCKET>(fd), SIO_UDP_CONNRESET, &off, sizeof(off), nullptr, 0, &bytes,
             nullptr, nullptr);
    return absl::OkStatus();
  }

  void Submit(Operation* op) override {
    const SOCKET sock = static_cast<SOCKET>(op->fd);
    size_t size = std::min<size_t>(op->size, 0x7fffffff);
    if (op->kind == Operation::Kind::kSend) {
      const ssize_t allowed = FaultSubmittedSend(size);
      if (allowed < 0) {
        // Completes in the next Poll, as every completion does: never
        // inside Submit, before the fiber has parked.
        injected_ops_.emplace_back(op, static_cast<int>(allowed));
        return;
      }
      size = std::min(size, static_cast<size_t>(allowed));
    }
    IocpOp* io = NewOp();
    io->kind = OpKind::kFiber;
    io->fiber_op = op;
    op->backend_slot = io;
    ++one_shot_in_flight_;
    WSABUF buf{static_cast<ULONG>(size), op->data};
    DWORD bytes = 0;
    DWORD flags = 0;
    int rc = SOCKET_ERROR;
    switch (op->kind) {
      case Operation::Kind::kReceive:
        rc = WSARecv(sock, &buf, 1, &bytes, &flags, &io->ov, nullptr);
        break;
      case Operation::Kind::kWaitReadable:
        buf = WSABUF{0, nullptr};
        rc = WSARecv(sock, &buf, 1, &bytes, &flags, &io->ov, nullptr);
        break;
      case Operation::Kind::kSend:
        rc = WSASend(sock, &buf, 1, &bytes, 0, &io->ov, nullptr);
        break;
      case Operation::Kind::kConnect: {
        if (absl::Status c = LoadConnectEx(op->fd); !c.ok() || op->peer == nullptr) {
          WSASetLastError(WSAEINVAL);
          break;
        }
        rc = connect_ex_(sock, op->peer->sockaddr_ptr(), op->peer->length(), nullptr, 0,
                         nullptr, &io->ov)
                 ? 0
                 : SOCKET_ERROR;
        break;
      }
      case Operation::Kind::kReceiveFrom:
        rc = WSARecvFrom(sock, &buf, 1, &bytes, &flags, reinterpret_cast<sockaddr*>(op->from),
                         &op->from_len, &io->ov, nullptr);
        break;
      case Operation::Kind::kSendTo:
        rc = WSASendTo(sock, &buf, 1, &bytes, 0, op->peer->sockaddr_ptr(), op->peer->length(),
                       &io->ov, nullptr);
        break;
      case Operation::Kind::kReceiveBuffer:  // lends_receive_buffers() is false
      case Operation::Kind::kWaitWritable:   // no readiness here; Dial uses kConnect
        WSASetLastError(WSAEOPNOTSUPP);
        break;
    }
    Issued(io, rc, static_cast<long>(bytes), /*skips=*/true);
  }

  void CancelOperation(Operation* op, bool) override {
    // Issued at once, so there is nothing queued to flush before a close.
    // Not found (it has completed, its result waiting for this Poll): no-op.
    auto* io = static_cast<IocpOp*>(op->backend_slot);
    if (io != nullptr) CancelIoEx(reinterpret_cast<HANDLE>(op->fd), &io->ov);
  }
  void ReleaseBuffer(uint32_t) override {}

  // ---------------------------------------------------------- listeners

  absl::Status StartAccepting(SocketHandle fd, AcceptSink* sink) override {
    auto reg = std::make_unique<AcceptReg>();
    reg->fd = fd;
    reg->sink = sink;
    reg->family = LocalAddressOf(fd).family();
    // (A listener paused at EMFILE and started again is associated already.)
    absl::StatusOr<bool> skips = Associate(fd, "a listener");
    if (!skips.ok()) return skips.status();
    reg->skips = *skips;
    if (accept_ex_ == nullptr) {
      GUID guid = WSAID_ACCEPTEX;
      DWORD bytes = 0;
      if (WSAIoctl(static_cast<SOCKET>(fd), SIO_GET_EXTENSION_FUNCTION_POINTER, &guid,
                   sizeof(guid), &accept_ex_, sizeof(accept_ex_), &bytes, nullptr,
                   nullptr) != 0) {
        return absl::InternalError(
            absl::StrCat("iocp: AcceptEx: error ", WSAGetLastError()));
      }
    }
    AcceptReg* r = reg.get();
    accepts_.push_back(std::move(reg));
    for (int i = 0; i < kAcceptsPerListener && !r->dead && !r->stopped; ++i) PostAccept(r, NewOp());
    return absl::OkStatus();
  }

  void StopAccepting(SocketHandle fd, AcceptSink* sink) override {
    for (auto& reg : accepts_) {
      if (reg->fd != fd || reg->sink != sink || reg->dead) continue;
      reg->dead = true;
      reg->sink = nullptr;
      // The caller closes the socket next, which ends the AcceptEx calls;
      // each frees its accept socket when its completion comes.
      CancelIoEx(reinterpret_cast<HANDLE>(fd), nullptr);
    }
  }

  // ---------------------------------------------------------- datagrams

  absl::Status StartReceivingDatagrams(SocketHandle fd, DatagramSink* sink, size_t max_datagram,
                                       size_t batch) override {
    absl::StatusOr<bool> skips = Associate(fd, "a UDP socket");
    if (!skips.ok()) return skips.status();
    if (!*skips) {
      return absl::UnimplementedError("iocp: the UDP socket refuses skip-on-success completions");
    }
    // A datagram to a closed port comes back as an ICMP error, which Windows
    // would report on this socket's next receive as a reset: not the
    // socket's end for UDP, so it is turned off.
    BOOL off = FALSE;
    DWORD bytes = 0;
    WSAIoctl(static_cast<SOCKET>(fd), SIO_UDP_CONNRESET, &off, sizeof(off), nullptr, 0, &bytes,
             nullptr, nullptr);
    auto reg = std::make_unique<DatagramReg>();
    reg->fd = fd;
    reg->sink = sink;
    reg->max_datagram = std::max<size_t>(max_datagram, 1);
    batch = std::clamp<size_t>(batch, 1, 256);
    reg->buffers.reset(new char[reg->max_datagram * batch]);
    DatagramReg* r = reg.get();
    datagrams_.push_back(std::move(reg));
    for (size_t i = 0; i < batch; ++i) {
      IocpOp* op = NewOp();
      op->kind = OpKind::kRecvFrom;
      op->dgram = r;
      op->slot = r->buffers.get() + i * r->max_datagram;
      PostRecvFrom(op);
    }
    return absl::OkStatus();
  }

  void StopReceivingDatagrams(SocketHandle fd, DatagramSink* sink) override {
    for (auto& reg : datagrams_) {
      if (reg->fd != fd || reg->sink != sink || reg->dead) continue;
      reg->dead = true;
      reg->sink = nullptr;
      // The caller closes the socket next; each call out completes then,
      // and the buffers go once the last has.
      CancelIoEx(reinterpret_cast<HANDLE>(fd), nullptr);
    }
  }

  bool SendDatagram(DatagramSink* sink, std::span<const std::string_view> pieces,
                    const sockaddr* to, socklen_t to_len) override {
    DatagramReg* reg = nullptr;
    for (auto& r : datagrams_) {
      if (r->sink == sink && !r->dead) reg = r.get();
    }
    if (reg == nullptr || datagram_sends_ >= kMaxDatagramSends ||
        to_len > static_cast<socklen_t>(sizeof(sockaddr_storage))) {
      return false;
    }
    IocpOp* op = NewOp();
    op->kind = OpKind::kSendTo;
    op->dgram = reg;
    op->payload.clear();
    for (std::string_view p : pieces) op->payload.append(p);
    memcpy(op->addresses, to, static_cast<size_t>(to_len));
    ++reg->outstanding;
    ++datagram_sends_;
    WSABUF buf{static_cast<ULONG>(op->payload.size()), op->payload.data()};
    DWORD sent = 0;
    const int rc = WSASendTo(static_cast<SOCKET>(reg->fd), &buf, 1, &sent, 0,
                             reinterpret_cast<const sockaddr*>(op->addresses), to_len, &op->ov,
                             nullptr);
    Issued(op, rc, static_cast<long>(sent), /*skips=*/true);
    return true;
  }

 private:
  enum class OpKind : uint8_t { kRecv, kSend, kAccept, kConnect, kFiber, kRecvFrom, kSendTo };

  struct IocpOp;

  // A UDP socket served here: its receive buffers, and the receives out.
  struct DatagramReg {
    SocketHandle fd = kInvalidSocket;
    DatagramSink* sink = nullptr;
    size_t max_datagram = 0;
    std::unique_ptr<char[]> buffers;  // one max_datagram slot per receive
    // The receives out, in the order posted: Winsock fills them in that
    // order, and they are delivered in it (completions may be dispatched
    // in another: one inline, the next through the port).
    std::deque<IocpOp*> posted;
    int outstanding = 0;              // receives and sends whose completion is due
    bool dead = false;                // StopReceivingDatagrams: deliver nothing more
  };

  struct AcceptReg {
    SocketHandle fd = kInvalidSocket;
    AcceptSink* sink = nullptr;
    int family = AF_INET;
    int outstanding = 0;
    bool skips = true;     // skip-on-success is set on the listening socket
    bool stopped = false;  // out of sockets: no more AcceptEx, successes still delivered
    bool dead = false;     // StopAccepting: the sink hears nothing more
  };

  // One overlapped call. From a free list: steady state does not allocate.
  struct IocpOp {
    OVERLAPPED ov;  // what the port hands back
    OpKind kind = OpKind::kRecv;
    Stream* stream = nullptr;
    AcceptReg* reg = nullptr;
    SocketHandle accept_socket = kInvalidSocket;
    Operation* fiber_op = nullptr;  // kFiber
    DatagramReg* dgram = nullptr;   // kRecvFrom, kSendTo
    char* slot = nullptr;           // kRecvFrom: its buffer
    int from_len = 0;               // kRecvFrom: the sender's address length
    std::string payload;            // kSendTo: the datagram (capacity kept across reuse)
    bool received = false;          // kRecvFrom: completed, waiting its turn (inline_result)
    long inline_result = 0;  // an inline completion's bytes or -errno
    char addresses[2 * kAcceptAddressBytes];
  };

  IocpOp* NewOp() {
    IocpOp* op;
    if (!free_ops_.empty()) {
      op = free_ops_.back();
      free_ops_.pop_back();
    } else {
      all_ops_.push_back(std::make_unique<IocpOp>());
      op = all_ops_.back().get();
    }
    memset(&op->ov, 0, sizeof(op->ov));
    op->stream = nullptr;
    op->reg = nullptr;
    op->accept_socket = kInvalidSocket;
    op->fiber_op = nullptr;
    op->dgram = nullptr;
    op->slot = nullptr;
    op->received = false;
    op->inline_result = 0;
    return op;
  }
  void FreeOp(IocpOp* op) { free_ops_.push_back(op); }

  static bool Skips(const Stream* s) { return !(s->io_interest_ & kNoSkip); }

  // Associates `fd` with this loop's port (Windows refuses a second
  // association, ERROR_INVALID_PARAMETER: a socket belongs to one port for
  // life, and that is this one), then asks for skip-on-success completions.
  // The association's error, or whether skipping is on (refused where a
  // non-IFS layered provider sits on the socket; GetLastError says why).
  absl::StatusOr<bool> Associate(SocketHandle fd, const char* what) {
    const HANDLE h = reinterpret_cast<HANDLE>(fd);
    if (CreateIoCompletionPort(h, port_, kSocketKey, 0) == nullptr &&
        GetLastError() != ERROR_INVALID_PARAMETER) {
      return absl::InternalError(
          absl::StrCat("iocp: associating ", what, ": error ", GetLastError()));
    }
    return SetFileCompletionNotificationModes(
               h, FILE_SKIP_COMPLETION_PORT_ON_SUCCESS | FILE_SKIP_SET_EVENT_ON_HANDLE) != 0;
  }

  void HoldOp(Stream* s) {
    s->Hold();
    ++in_flight_;
  }
  void UnholdOp(Stream* s) {
    --in_flight_;
    s->Unhold();
  }

  absl::Status Attach(Stream* s) {
    if (s->io_flags_ & kAttached) return absl::OkStatus();
    absl::StatusOr<bool> skips = Associate(s->fd_, "a connection");
    if (!skips.ok()) return skips.status();
    // Without skipping, every call posts its packet, successes included
    // (see Issued).
    if (!*skips) s->io_interest_ |= kNoSkip;
    s->io_flags_ |= kAttached;
    return absl::OkStatus();
  }

  // Issued an overlapped call that returned `rc` (0: done at once, and no
  // packet follows when the socket `skips` them; otherwise WSA_IO_PENDING: a
  // packet follows; anything else: it failed, no packet follows).
  void Issued(IocpOp* op, int rc, long done_bytes, bool skips) {
    if (rc == 0 && !skips) {
      ++ops_out_;  // its packet comes like any other
      return;
    }
    if (rc == 0) {
      op->inline_result = done_bytes;
      inline_done_.push_back(op);
      return;
    }
    const int wsa = WSAGetLastError();
    if (wsa == WSA_IO_PENDING) {
      ++ops_out_;
      return;
    }
    const int err = ErrnoFromWindowsError(static_cast<unsigned long>(wsa));
    op->inline_result = -(err == 0 ? EIO : err);
    inline_done_.push_back(op);
  }

  void ArmRecv(Stream* s) {
    IocpOp* op = NewOp();
    op->kind = OpKind::kRecv;
    op->stream = s;
    s->io_flags_ |= kRecvArmed;
    HoldOp(s);
    WSABUF none{0, nullptr};
    DWORD flags = 0;
    DWORD got = 0;
    const int rc =
        WSARecv(static_cast<SOCKET>(s->fd_), &none, 1, &got, &flags, &op->ov, nullptr);
    Issued(op, rc, 0, Skips(s));
  }

  // Right before the wait: one send per stream with output this round.
  void FlushSends() {
    if (pending_sends_.empty()) return;
    // Taken out first: a failure below runs OnClose, whose handler may
    // write to another stream and queue its send for the next round.
    flushing_.swap(pending_sends_);
    for (Stream* s : flushing_) {
      if (s->io_flags_ & kDead) {
        s->io_flags_ &= ~kSendBusy;
        ReleaseAfterSend(s);
        UnholdOp(s);
        continue;
      }
      iovec iov[Stream::kMaxPendingPieces];
      const int count = s->PendingOutput(iov);
      size_t total = 0;
      for (int i = 0; i < count; ++i) total += iov[i].iov_len;
      const ssize_t allowed = FaultSubmittedSend(total);
      if (total == 0 || allowed < 0) {
        s->io_flags_ &= ~kSendBusy;
        ReleaseAfterSend(s);
        if (allowed < 0) s->OnSendReady(static_cast<int>(allowed));
        UnholdOp(s);
        continue;
      }
      WSABUF bufs[Stream::kMaxPendingPieces];
      size_t left = static_cast<size_t>(allowed);  // fewer: an injected short send
      int used = 0;
      for (int i = 0; i < count && left > 0; ++i) {
        const size_t piece = std::min({iov[i].iov_len, left, size_t{0x7fffffff}});
        bufs[used].buf = static_cast<char*>(iov[i].iov_base);
        bufs[used].len = static_cast<ULONG>(piece);
        left -= piece;
        ++used;
      }
      IocpOp* op = NewOp();
      op->kind = OpKind::kSend;
      op->stream = s;
      DWORD sent = 0;
      const int rc = WSASend(static_cast<SOCKET>(s->fd_), bufs, static_cast<DWORD>(used), &sent,
                             0, &op->ov, nullptr);
      Issued(op, rc, static_cast<long>(sent), Skips(s));
    }
    flushing_.clear();
  }

  void Complete(IocpOp* op, DWORD transferred) {
    switch (op->kind) {
      case OpKind::kRecv: {
        Stream* s = op->stream;
        const long result = (s->io_flags_ & kDead)
                                ? -ECANCELED
                                : OverlappedResult(s->fd_, &op->ov, transferred);
        FreeOp(op);
        OnRecvSignalled(s, result);
        return;
      }
      case OpKind::kSend: {
        Stream* s = op->stream;
        const long result = (s->io_flags_ & kDead)
                                ? -ECANCELED
                                : OverlappedResult(s->fd_, &op->ov, transferred);
        FreeOp(op);
        OnSent(s, result);
        return;
      }
      case OpKind::kAccept: {
        AcceptReg* reg = op->reg;
        const long result =
            reg->dead ? -ECANCELED : OverlappedResult(reg->fd, &op->ov, transferred);
        OnAccepted(op, result);
        return;
      }
      case OpKind::kConnect: {
        Stream* s = op->stream;
        const long result = (s->io_flags_ & kDead)
                                ? -ECANCELED
                                : OverlappedResult(s->fd_, &op->ov, transferred);
        FreeOp(op);
        OnConnectDone(s, result);
        return;
      }
      case OpKind::kFiber:
        OnFiberDone(op, OverlappedResult(op->fiber_op->fd, &op->ov, transferred));
        return;
      case OpKind::kRecvFrom:
      case OpKind::kSendTo:
        OnDatagramOpDone(op, op->dgram->dead ? -ECANCELED
                                             : OverlappedResult(op->dgram->fd, &op->ov,
                                                                transferred));
        return;
    }
  }

  // A fiber's operation completed: the fiber wakes with `result`.
  void OnFiberDone(IocpOp* io, long result) {
    Operation* op = io->fiber_op;
    FreeOp(io);
    op->backend_slot = nullptr;
    --one_shot_in_flight_;
    if (op->kind == Operation::Kind::kConnect && result >= 0) {
      // As for a dialled stream: getpeername and shutdown need it.
      setsockopt(static_cast<SOCKET>(op->fd), SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, nullptr, 0);
    }
    op->OnComplete(static_cast<int>(result));
  }

  absl::Status LoadConnectEx(SocketHandle fd) {
    if (connect_ex_ != nullptr) return absl::OkStatus();
    GUID guid = WSAID_CONNECTEX;
    DWORD bytes = 0;
    if (WSAIoctl(static_cast<SOCKET>(fd), SIO_GET_EXTENSION_FUNCTION_POINTER, &guid,
                 sizeof(guid), &connect_ex_, sizeof(connect_ex_), &bytes, nullptr,
                 nullptr) != 0) {
      return absl::InternalError(absl::StrCat("iocp: ConnectEx: error ", WSAGetLastError()));
    }
    return absl::OkStatus();
  }

  void OnConnectDone(Stream* s, long result) {
    s->io_flags_ &= ~kConnecting;
    s->Hold();
    if (!(s->io_flags_ & kDead)) {
      if (result >= 0) {
        // Without this the socket is not fully connected for Winsock:
        // getpeername and shutdown fail on it.
        setsockopt(static_cast<SOCKET>(s->fd_), SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, nullptr,
                   0);
      }
      s->OnConnected(result >= 0 ? 0 : static_cast<int>(-result));
    }
    UnholdOp(s);
    s->Unhold();
  }

  int RunInlineCompletions() {
    int dispatched = 0;
    // Handlers may issue more (a re-armed receive that completes at once):
    // those run in this pass too, up to a bound, the rest next Poll.
    // Those queued before this pass only: a receive re-armed here that
    // completes at once waits for the next Poll, so one stream cannot go
    // round its read budget again and again ahead of timers and tasks.
    const size_t done = inline_done_.size();
    for (size_t i = 0; i < done; ++i) {
      IocpOp* op = inline_done_[i];
      switch (op->kind) {
        case OpKind::kRecv: {
          Stream* s = op->stream;
          const long result = (s->io_flags_ & kDead) ? -ECANCELED : op->inline_result;
          FreeOp(op);
          OnRecvSignalled(s, result);
          break;
        }
        case OpKind::kSend: {
          Stream* s = op->stream;
          const long result = op->inline_result;
          FreeOp(op);
          OnSent(s, result);
          break;
        }
        case OpKind::kAccept:
          OnAccepted(op, op->reg->dead ? -ECANCELED : op->inline_result);
          break;
        case OpKind::kConnect: {
          Stream* s = op->stream;
          const long result = op->inline_result;
          FreeOp(op);
          OnConnectDone(s, result);
          break;
        }
        case OpKind::kFiber:
          OnFiberDone(op, op->inline_result);
          break;
        case OpKind::kRecvFrom:
        case OpKind::kSendTo:
          OnDatagramOpDone(op, op->dgram->dead ? -ECANCELED : op->inline_result);
          break;
      }
      ++dispatched;
    }
    inline_done_.erase(inline_done_.begin(), inline_done_.begin() + static_cast<long>(done));
    if (!injected_ops_.empty()) {
      std::vector<std::pair<Operation*, int>> ops;
      ops.swap(injected_ops_);
      for (auto [op, result] : ops) op->OnComplete(result);
    }
    return dispatched;
  }

  // The zero-byte receive completed: bytes, the FIN or an error are there.
  void OnRecvSignalled(Stream* s, long result) {
    s->io_flags_ &= ~kRecvArmed;
    s->Hold();  // a sink may close and release the stream
    if (!(s->io_flags_ & kDead)) {
      if (result == -EAGAIN || result == -ENOBUFS) {
        // Too many overlapped calls outstanding (Winsock's WSAEWOULDBLOCK
        // and WSAENOBUFS there): not the stream's end. Read what is there,
        // or arm again.
        if (s->io_flags_ & kRecvWanted) {
          Receive(s);
        } else if (!(s->io_flags_ & kRecvArmed)) {
          ArmRecv(s);
        }
      } else if (result < 0 && result != -ECANCELED) {
        s->io_flags_ &= ~kRecvWanted;
        s->OnReceiveEnded(static_cast<int>(-result));
      } else if (s->io_flags_ & kRecvWanted) {
        Receive(s);
      }
    }
    UnholdOp(s);
    s->Unhold();
  }

  // Reads what is there into the loop's buffer, within the budget, then
  // arms the next zero-byte receive (or comes back next Poll).
  void Receive(Stream* s) {
    size_t budget = read_budget_;
    for (;;) {
      const ssize_t n = SysRead(s->fd_, read_buffer_, read_buffer_size_);
      if (n > 0) {
        const bool more = s->OnReceived(std::string_view(read_buffer_, static_cast<size_t>(n)));
        if (s->released() || (s->io_flags_ & kDead)) return;
        if (!more || !(s->io_flags_ & kRecvWanted)) break;
        if (static_cast<size_t>(n) >= budget) {
          if (!(s->io_flags_ & kReinvoke)) {
            s->io_flags_ |= kReinvoke;
            s->Hold();
            reinvokes_.push_back(s);
          }
          return;
        }
        budget -= static_cast<size_t>(n);
        continue;
      }
      if (n == 0) {
        s->io_flags_ &= ~kRecvWanted;
        s->OnReceiveEnded(0);
        return;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      s->io_flags_ &= ~kRecvWanted;
      s->OnReceiveEnded(errno);
      return;
    }
    // Wanted or not (see SetStreamInterest): watch for bytes, FIN or reset.
    if (!(s->io_flags_ & (kRecvArmed | kDead))) ArmRecv(s);
  }

  int RunReinvokes() {
    if (reinvokes_.empty()) return 0;
    reinvoking_.swap(reinvokes_);
    for (Stream* s : reinvoking_) {
      s->io_flags_ &= ~kReinvoke;
      if (!(s->io_flags_ & (kDead | kRecvArmed)) && (s->io_flags_ & kRecvWanted) &&
          !s->released()) {
        Receive(s);
      }
      s->Unhold();
    }
    const int n = static_cast<int>(reinvoking_.size());
    reinvoking_.clear();
    return n;
  }

  void OnSent(Stream* s, long result) {
    s->Hold();
    s->io_flags_ &= ~kSendBusy;
    ReleaseAfterSend(s);
    // A send refused for want of resources (too many overlapped calls) sent
    // nothing: Conn sends again.
    if (result == -EAGAIN || result == -ENOBUFS) result = 0;
    if (!(s->io_flags_ & kDead)) s->OnSendReady(static_cast<int>(result));
    UnholdOp(s);
    s->Unhold();
  }

  void ReleaseAfterSend(Stream* s) { retained_.FreeFor(s); }


  void PostAccept(AcceptReg* reg, IocpOp* op) {
    memset(&op->ov, 0, sizeof(op->ov));
    op->kind = OpKind::kAccept;
    op->reg = reg;
    if (const int fault = FaultPostedAccept(); fault != 0) {
      // Injected (test builds), as if the call failed at once: a client's
      // error is retried next round, exhaustion stops posting as a real one
      // does. No connection is lost: none was taken.
      if (PerClientAcceptError(-fault)) {
        deferred_accepts_.push_back(op);
      } else {
        FreeOp(op);
        StopPosting(reg, fault);
      }
      return;
    }
    SOCKET s = WSASocketW(reg->family, SOCK_STREAM, reg->family == AF_UNIX ? 0 : IPPROTO_TCP,
                          nullptr, 0, WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
    if (s == INVALID_SOCKET) {
      FreeOp(op);
      StopPosting(reg, LastSocketError());
      return;
    }
    op->accept_socket = static_cast<SocketHandle>(s);
    ++reg->outstanding;
    DWORD got = 0;
    const BOOL ok = accept_ex_(static_cast<SOCKET>(reg->fd), s, op->addresses, 0,
                               kAcceptAddressBytes, kAcceptAddressBytes, &got, &op->ov);
    Issued(op, ok ? 0 : SOCKET_ERROR, 0, reg->skips);
  }

  // Out of sockets or memory (or the listener broke): no more AcceptEx on
  // this registration, and the sink decides when to try again (it calls
  // StartAccepting). Calls already out stay: a client they accepted is
  // still delivered, none is lost.
  void StopPosting(AcceptReg* reg, int err) {
    if (reg->stopped || reg->dead || reg->sink == nullptr) return;
    reg->stopped = true;
    reg->sink->OnAcceptFailed(err);
  }

  // A failure that belongs to one client (it reset or gave up before the
  // accept picked it up: wine reports error 59 there): accept the next.
  static bool PerClientAcceptError(long err) {
    return err == -ECONNRESET || err == -ECONNABORTED || err == -ENETRESET ||
           err == -ETIMEDOUT || err == -EIO;
  }

  void OnAccepted(IocpOp* op, long result) {
    AcceptReg* reg = op->reg;
    --reg->outstanding;
    const SocketHandle accepted = op->accept_socket;
    op->accept_socket = kInvalidSocket;
    if (reg->dead || reg->sink == nullptr) {
      CloseSocket(accepted);
      FreeOp(op);
      return;
    }
    if (result < 0) {
      CloseSocket(accepted);
      if (PerClientAcceptError(result) && !reg->stopped) {
        PostAccept(reg, op);
      } else {
        FreeOp(op);
        StopPosting(reg, static_cast<int>(-result));
      }
      return;
    }
    const SOCKET listen_socket = static_cast<SOCKET>(reg->fd);
    setsockopt(static_cast<SOCKET>(accepted), SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT,
               reinterpret_cast<const char*>(&listen_socket), sizeof(listen_socket));
    u_long non_blocking = 1;
    ioctlsocket(static_cast<SOCKET>(accepted), FIONBIO, &non_blocking);
    const SocketAddress peer = PeerAddressOf(accepted);
    const bool go_on = reg->sink->OnAccepted(accepted, peer);
    if (reg->dead || reg->stopped) {
      FreeOp(op);
    } else if (!go_on) {
      deferred_accepts_.push_back(op);  // "not in this round": next Poll
    } else {
      PostAccept(reg, op);
    }
  }

  bool Deferred(const AcceptReg* reg) const {
    for (const IocpOp* op : deferred_accepts_) {
      if (op->reg == reg) return true;
    }
    return false;
  }

  void PostDeferredAccepts() {
    if (deferred_accepts_.empty()) return;
    std::vector<IocpOp*> ops;
    ops.swap(deferred_accepts_);
    for (IocpOp* op : ops) {
      if (op->reg->dead || op->reg->stopped) {
        FreeOp(op);
      } else {
        PostAccept(op->reg, op);
      }
    }
  }

  void PostRecvFrom(IocpOp* op) {
    DatagramReg* reg = op->dgram;
    memset(&op->ov, 0, sizeof(op->ov));
    op->from_len = static_cast<int>(sizeof(sockaddr_storage));
    op->received = false;
    ++reg->outstanding;
    reg->posted.push_back(op);
    WSABUF buf{static_cast<ULONG>(reg->max_datagram), op->slot};
    DWORD got = 0;
    DWORD flags = 0;
    const int rc = WSARecvFrom(static_cast<SOCKET>(reg->fd), &buf, 1, &got, &flags,
                               reinterpret_cast<sockaddr*>(op->addresses), &op->from_len,
                               &op->ov, nullptr);
    Issued(op, rc, static_cast<long>(got), /*skips=*/true);
  }

  // A datagram receive or send completed with `result` (bytes or -errno).
  void OnDatagramOpDone(IocpOp* op, long result) {
    DatagramReg* reg = op->dgram;
    if (op->kind == OpKind::kSendTo) {
      --reg->outstanding;
      --datagram_sends_;
      if (result < 0 && !reg->dead && reg->sink != nullptr) {
        reg->sink->OnDatagramSendFailed(static_cast<int>(-result));
      }
      FreeOp(op);
      return;
    }
    op->received = true;
    op->inline_result = result;
    // In the order posted, as far as the receives have completed.
    while (!reg->dead && !reg->posted.empty() && reg->posted.front()->received) {
      IocpOp* head = reg->posted.front();
      reg->posted.pop_front();
      --reg->outstanding;
      if (DeliverDatagram(reg, head)) PostRecvFrom(head);
      else FreeOp(head);
    }
    if (reg->dead) DropReceived(reg);
  }

  // Hands one received datagram to the sink; false when the socket is no
  // longer served (the sink stopped it, or the receive failed for good).
  bool DeliverDatagram(DatagramReg* reg, IocpOp* op) {
    const long result = op->inline_result;
    // Longer than the buffer: Windows fills it and says WSAEMSGSIZE.
    const bool truncated = result == -EMSGSIZE;
    if (result >= 0 || truncated) {
      const size_t n = truncated ? reg->max_datagram : static_cast<size_t>(result);
      reg->sink->OnDatagram(std::string_view(op->slot, n),
                            reinterpret_cast<const sockaddr*>(op->addresses),
                            static_cast<socklen_t>(op->from_len), truncated);
    } else if (result != -ECONNRESET && result != -ENETRESET && result != -EAGAIN &&
               result != -ENOBUFS && result != -ECANCELED) {
      // The socket itself failed: stop serving it, as io_uring does.
      reg->dead = true;
      DatagramSink* sink = reg->sink;
      reg->sink = nullptr;
      CancelIoEx(reinterpret_cast<HANDLE>(reg->fd), nullptr);
      sink->OnDatagramServingEnded(absl::InternalError(
          absl::StrCat("iocp: WSARecvFrom failed: ", strerror(static_cast<int>(-result)))));
      return false;
    }
    return !reg->dead;  // the sink may have stopped serving the socket meanwhile
  }

  // A socket no longer served: its completed receives will see no other
  // completion, so they go now; those still out go as they complete.
  void DropReceived(DatagramReg* reg) {
    for (auto it = reg->posted.begin(); it != reg->posted.end();) {
      if (!(*it)->received) {
        ++it;
        continue;
      }
      FreeOp(*it);
      --reg->outstanding;
      it = reg->posted.erase(it);
    }
  }

  void ReapAccepts() {
    accepts_.erase(std::remove_if(accepts_.begin(), accepts_.end(),
                                  [this](const std::unique_ptr<AcceptReg>& r) {
                                    return (r->dead || r->stopped) && r->outstanding == 0 &&
                                           !Deferred(r.get());
                                  }),
                   accepts_.end());
    datagrams_.erase(std::remove_if(datagrams_.begin(), datagrams_.end(),
                                    [](const std::unique_ptr<DatagramReg>& r) {
                                      return r->dead && r->outstanding == 0;
                                    }),
                     datagrams_.end());
  }

  const HANDLE port_;
  char* const read_buffer_;
  const size_t read_buffer_size_;
  const size_t read_budget_;
  std::vector<OVERLAPPED_ENTRY> entries_;
  std::atomic<bool> wake_pending_{false};
  LPFN_ACCEPTEX accept_ex_ = nullptr;
  LPFN_CONNECTEX connect_ex_ = nullptr;

  std::vector<std::unique_ptr<IocpOp>> all_ops_;
  std::vector<IocpOp*> free_ops_;
  std::vector<IocpOp*> inline_done_;
  size_t ops_out_ = 0;    // calls whose packet has not come yet
  size_t in_flight_ = 0;  // stream holds taken by operations
  size_t one_shot_in_flight_ = 0;  // fibers' operations not completed yet

  std::vector<Stream*> pending_sends_;
  std::vector<Stream*> flushing_;
  std::vector<Stream*> reinvokes_;
  std::vector<Stream*> reinvoking_;
  RetainedBlocks retained_;
  std::vector<std::unique_ptr<AcceptReg>> accepts_;
  std::vector<IocpOp*> deferred_accepts_;
  std::vector<std::pair<Operation*, int>> injected_ops_;
  std::vector<std::unique_ptr<DatagramReg>> datagrams_;
  size_t datagram_sends_ = 0;  // WSASendTo calls out, all sockets
};

absl::StatusOr<std::unique_ptr<Backend>> NewIocpBackend(const BackendOptions& options) {
  EnsureWinsock();
  HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, nullptr, 0, 1);
  if (port == nullptr) {
    return absl::InternalError(
        absl::StrCat("CreateIoCompletionPort: error ", GetLastError()));
  }
  return std::unique_ptr<Backend>(new IocpBackend(port, options));
}

}  // namespace netloop::internal
