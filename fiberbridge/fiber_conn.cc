#include "fiberbridge/fiber_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "fiberbridge/offload.h"
#include "fiberbridge/scheduler.h"
#include "reactor/clock.h"
#include "reactor/errors.h"
#include "reactor/internal/socket_ops.h"
#include "reactor/internal/sys_io.h"
#include "reactor/internal/tls_session.h"

namespace netloop::fiber {

// The pollDesc: fd, one waiter slot per direction with its deadline, and the
// stop hook that lets a stopping scheduler close the connection.
//
// Two ways to wait, one per kind of backend:
// - Readiness (epoll): the fd is watched once, edge-triggered; Read and
//   Write make the syscall and park on EAGAIN until the slot is woken.
// - Completion (io_uring): no readiness step and no watch. Read submits a
//   receive into the caller's buffer and parks until it completes; Write
//   submits a send. A deadline or Close cancels the operation, and the fiber
//   stays parked until its final completion, so the buffer on its stack
//   outlives the kernel's use of it.
class FiberConnCore final : public IoWatcher, public StopListener {
 public:
  // An operation in flight on a completion backend; lives on the stack of
  // the fiber parked on it.
  struct PendingOp final : netloop::internal::Operation {
    void OnComplete(int r) override {
      result = r;
      done = true;
      sched->Wake(task);
    }
    Scheduler* sched = nullptr;
    FiberTask* task = nullptr;
    int result = 0;
    bool done = false;
  };

  struct Slot {
    FiberTask* waiter = nullptr;
    PendingOp* op = nullptr;  // completion backends: the operation in flight
    int64_t deadline_ns = kNeverNanos;
    // Armed lazily and kept across parks: a server that pushes its deadline
    // forward before every read (Go's usual idle timeout) then costs a store
    // per request, not a timer insert and cancel. It re-checks the deadline
    // when it fires.
    TimerId timer;
    int64_t timer_when = kNeverNanos;
  };

  // Owns `fd` from here on: Close closes it, and so does the destructor if
  // Close never ran (Register failed).
  FiberConnCore(Scheduler* s, int fd, std::string unread)
      : sched_(s),
        backend_(s->loop().backend().completion() ? &s->loop().backend() : nullptr),
        fd_(fd) {
    if (!unread.empty()) unread_ = std::make_unique<std::string>(std::move(unread));
  }
  ~FiberConnCore() {
    if (!closed_) ::close(fd_);
  }
  FiberConnCore(const FiberConnCore&) = delete;
  FiberConnCore& operator=(const FiberConnCore&) = delete;

  absl::Status Register() {
    if (backend_ != nullptr) {
      // Nothing to register, but what a watch would refuse is refused here
      // too: operations on something that is not a socket fail at random.
      struct stat st;
      if (fstat(fd_, &st) != 0 || !S_ISSOCK(st.st_mode)) {
        return absl::PermissionDeniedError(absl::StrCat("fd ", fd_, " is not a socket"));
      }
      sched_->AddStopListener(this);
      return absl::OkStatus();
    }
    absl::Status st = sched_->loop().Watch(
        fd_, kIoReadable | kIoWritable | kIoPeerClosed | kIoEdgeTriggered, this);
    if (st.ok()) sched_->AddStopListener(this);
    return st;
  }

  void OnIoReady(uint32_t events) override {
    if (events & (kIoReadable | kIoPeerClosed | kIoError)) {
      read_ready_ = true;
      // The peer's FIN or an error may sit behind the bytes of one edge:
      // a read then returns the bytes short, and no edge follows for what
      // comes after them. From here on every Read asks the kernel.
      if (events & (kIoPeerClosed | kIoError)) read_ended_ = true;
      WakeSlot(read_);
    }
    if (events & (kIoWritable | kIoError)) WakeSlot(write_);
  }

  void OnSchedulerStop() override { Close(); }

  // Wakes the fiber parked on `slot`; one waiting for an operation is woken
  // by its completion, which this hastens by cancelling it.
  void WakeSlot(Slot& slot, bool closing_fd = false) {
    if (slot.op != nullptr) {
      if (!slot.op->done) backend_->CancelOperation(slot.op, closing_fd);
      return;
    }
    if (slot.waiter == nullptr) return;
    FiberTask* t = slot.waiter;
    slot.waiter = nullptr;
    sched_->Wake(t);
  }

  // Fails fast if the deadline already passed (Go: an expired deadline fails
  // every call until it is moved).
  absl::Status Check(const Slot& slot) {
    if (closed_) {
      // Closed by a stopping scheduler, most likely: yield, so a handler that
      // ignores the error and retries cannot keep the loop from stopping.
      if (sched_->stopping()) return sched_->FailStopping(ClosedError("use of closed connection"));
      return ClosedError("use of closed connection");
    }
    if (slot.deadline_ns != kNeverNanos && slot.deadline_ns <= MonotonicNanos()) {
      return DeadlineExceededError();
    }
    return absl::OkStatus();
  }

  // The fiber that is about to park on `slot`, or why it may not: the
  // connection is closed or past its deadline, the caller is no fiber of
  // this loop, or another fiber is parked on the same direction.
  absl::StatusOr<FiberTask*> ParkingFiber(const Slot& slot) {
    if (absl::Status st = Check(slot); !st.ok()) return st;
    FiberTask* self = Scheduler::CurrentTask();
    if (self == nullptr || self->scheduler != sched_) {
      return absl::FailedPreconditionError(
          "FiberConn used outside a fiber of its own loop");
    }
    if (slot.waiter != nullptr) {
      return absl::FailedPreconditionError(
          "another fiber is already parked on this direction");
    }
    return self;
  }

  // Parks the calling fiber until `slot` is woken by readiness, its deadline,
  // or Close. Returns what the caller should report (OK: retry the syscall).
  absl::Status Wait(Slot& slot) {
    absl::StatusOr<FiberTask*> self = ParkingFiber(slot);
    if (!self.ok()) return self.status();
    slot.waiter = *self;
    ArmTimer(slot);
    sched_->Park();
    return Check(slot);
  }

  // Completion backends: submits `op` (its kind and buffer filled in) on
  // `slot` and parks until it completes. Not OK: it was not submitted.
  absl::Status Run(Slot& slot, PendingOp& op) {
    absl::StatusOr<FiberTask*> self = ParkingFiber(slot);
    if (!self.ok()) return self.status();
    op.sched = sched_;
    op.task = *self;
    op.fd = fd_;
    op.buffer = nullptr;
    slot.waiter = *self;
    slot.op = &op;
    backend_->Submit(&op);
    ArmTimer(slot);
    while (!op.done) sched_->Park();
    slot.op = nullptr;
    slot.waiter = nullptr;
    return absl::OkStatus();
  }

  // What a completed operation that moved no bytes means: OK to try again
  // (cancelled for a reason that no longer holds), or the error to report.
  absl::Status FailedOp(const Slot& slot, int result) {
    if (closed_) return Check(slot);
    if (result == -ECANCELED || result == -EINTR || result == -EAGAIN) return Check(slot);
    if (result == 0) return PeerClosedError();
    return ResetError(-result);
  }

  // After a read of `n` bytes into room for `asked`: see read_ready_.
  void NoteRead(size_t n, size_t asked) {
    if (n < asked && !read_ended_ && !netloop::internal::LastReadWasShortened()) {
      read_ready_ = false;
    }
  }

  // Makes sure a timer fires no later than the deadline.
  void ArmTimer(Slot& slot) {
    if (slot.deadline_ns == kNeverNanos) return;
    if (slot.timer.valid() && slot.timer_when <= slot.deadline_ns) return;  // fires first
    if (slot.timer.valid() && sched_->loop().RescheduleTimer(slot.timer, slot.deadline_ns)) {
      slot.timer_when = slot.deadline_ns;
      return;
    }
    slot.timer_when = slot.deadline_ns;
    slot.timer = sched_->loop().RunAtNanos(slot.deadline_ns, [this, &slot] { OnTimer(slot); });
  }

  void OnTimer(Slot& slot) {
    slot.timer = TimerId();
    slot.timer_when = kNeverNanos;
    if (slot.waiter == nullptr || slot.deadline_ns == kNeverNanos) return;
    if (slot.deadline_ns <= MonotonicNanos()) {
      WakeSlot(slot);  // the parked call returns DeadlineExceeded
    } else {
      ArmTimer(slot);  // the deadline moved later while parked
    }
  }

  void SetDeadline(Slot& slot, absl::Time t) {
    slot.deadline_ns = ToMonotonicNanos(t);
    if (slot.waiter == nullptr || slot.deadline_ns == kNeverNanos) return;
    if (slot.deadline_ns <= MonotonicNanos()) {
      WakeSlot(slot);
    } else {
      ArmTimer(slot);
    }
  }

  void CancelTimer(Slot& slot) {
    if (slot.timer.valid()) sched_->loop().CancelTimer(slot.timer);
    slot.timer = TimerId();
    slot.timer_when = kNeverNanos;
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    // The timers point at this object, which may be freed after Close.
    CancelTimer(read_);
    CancelTimer(write_);
    sched_->RemoveStopListener(this);
    if (backend_ != nullptr) {
      // Cancelled before the fd goes; their completions wake the fibers.
      WakeSlot(read_, /*closing_fd=*/true);
      WakeSlot(write_, /*closing_fd=*/true);
      ::close(fd_);
      return;
    }
    (void)sched_->loop().Unwatch(fd_, this);
    ::close(fd_);
    WakeSlot(read_);
    WakeSlot(write_);
  }

  Scheduler* const sched_;
  netloop::internal::Backend* const backend_;  // completion backends only
  int fd_;
  bool closed_ = false;
  // Readiness backends: false once a read has drained the socket, until the
  // next edge. A read that returns less than it asked for has emptied the
  // receive queue (bytes arriving after that raise a new edge), so the next
  // Read parks at once instead of making a read that would only say EAGAIN:
  // one syscall per message saved, as Go's pollDesc keeps its ready state.
  // (TCP urgent data also stops a read short: such a peer's connection then
  // waits for its next edge or its deadline, and no other connection does.)
  bool read_ready_ = true;
  bool read_ended_ = false;  // a FIN or an error was reported: see OnIoReady
  // Rarely used, so allocated only when needed: an idle connection pays 16
  // bytes for them, not 64.
  std::unique_ptr<std::string> unread_;   // bytes read before adoption
  std::unique_ptr<std::string> pending_;  // bytes Write must keep while it waits
  // TLS (StartTls), allocated only then.
  struct TlsState {
    std::unique_ptr<netloop::internal::TlsSession> session;
    // The records of the write being sent: they must outlive its parks, and
    // the buffer is reused, so a TLS write allocates only while it grows.
    std::string cipher;
    bool writing = false;  // a fiber is sending `cipher`
    // Sticky, as in Go: a handshake that failed fails every later call; a
    // write that failed mid-record (a deadline, a reset) fails every later
    // write and suppresses close_notify, since the record stream is broken.
    absl::Status handshake_error;
    absl::Status write_error;
  };
  std::unique_ptr<TlsState> tls_;
  Slot read_;
  Slot write_;
};

// ---------------------------------------------------------------- FiberConn

namespace {

// The one way a socket becomes a FiberConn (Adopt, Serve, and through them
// Dial, FiberServer and HandOff), so that there is one ownership rule: `fd`
// is owned from the call on. Before a FiberConnCore exists it is closed here;
// after, the core closes it, on failure (its destructor) and on success
// (Close).
absl::StatusOr<std::shared_ptr<FiberConnCore>> AdoptSocket(int fd, std::string unread,
                                                           const char* who,
                                                           bool fiber_required) {
  Scheduler* s = Scheduler::Current();
  if (s == nullptr) {
    ::close(fd);
    return absl::FailedPreconditionError(std::string(who) + " off a loop thread");
  }
  if (fiber_required && Scheduler::CurrentTask() == nullptr) {
    ::close(fd);
    return absl::FailedPreconditionError(std::string(who) + " outside a fiber");
  }
  auto core = std::make_shared<FiberConnCore>(s, fd, std::move(unread));
  if (absl::Status st = core->Register(); !st.ok()) return st;  // ~FiberConnCore closes
  return core;
}

}  // namespace

absl::StatusOr<std::unique_ptr<FiberConn>> FiberConn::Adopt(int fd, std::string unread) {
  absl::StatusOr<std::shared_ptr<FiberConnCore>> core =
      AdoptSocket(fd, std::move(unread), "FiberConn::Adopt", /*fiber_required=*/false);
  if (!core.ok()) return core.status();
  return std::unique_ptr<FiberConn>(new FiberConn(std::move(*core)));
}

absl::Status FiberConn::Serve(int fd, std::string unread,
                             absl::FunctionRef<void(FiberConn&)> handler) {
  absl::StatusOr<std::shared_ptr<FiberConnCore>> core =
      AdoptSocket(fd, std::move(unread), "FiberConn::Serve", /*fiber_required=*/true);
  if (!core.ok()) return core.status();
  FiberConn conn(std::move(*core));
  handler(conn);
  return absl::OkStatus();
}

FiberConn::~FiberConn() { Close(); }

absl::StatusOr<size_t> FiberConn::Read(std::span<char> buf) {
  if (core_->tls_ != nullptr) return ReadTls(buf);
  return ReadSocket(buf);
}

absl::StatusOr<std::string_view> FiberConn::ReadView() {
  if (core_->tls_ == nullptr) return ReadSocketView();
  // Decrypted into the loop's shared buffer, once the ciphertext that
  // arrived there has been fed to the session: the same view lifetime.
  EventLoop& loop = core_->sched_->loop();
  absl::StatusOr<size_t> n = ReadTls(std::span<char>(loop.read_buffer(), loop.read_buffer_size()));
  if (!n.ok()) return n.status();
  return std::string_view(loop.read_buffer(), *n);
}

absl::StatusOr<size_t> FiberConn::Write(std::string_view data) {
  if (core_->tls_ != nullptr) return WriteTls(data);
  return WriteSocket(data);
}

// ---------------------------------------------------------------- TLS

absl::Status FiberConn::StartTls(const std::shared_ptr<const tls::Context>& context,
                                 std::string_view server_name) {
  FiberConnCore& c = *core_;
  if (context == nullptr) return absl::InvalidArgumentError("StartTls: no context");
  if (c.tls_ != nullptr) return absl::FailedPreconditionError("StartTls: TLS already started");
  if (absl::Status st = c.Check(c.read_); !st.ok()) return st;
  absl::StatusOr<std::unique_ptr<netloop::internal::TlsSession>> session =
      netloop::internal::NewTlsSession(*context, server_name);
  if (!session.ok()) return session.status();
  c.tls_ = std::make_unique<FiberConnCore::TlsState>();
  FiberConnCore::TlsState& t = *c.tls_;
  t.session = *std::move(session);
  auto fail = [&t](absl::Status why) {
    t.handshake_error = why;
    t.cipher = std::string();
    return why;
  };
  for (;;) {
    absl::StatusOr<bool> done = t.session->Handshake();
    // The next flight, or the alert that tells the peer why it failed.
    t.cipher.clear();
    if (t.session->TakeCipher(&t.cipher) > 0) {
      t.writing = true;
      absl::StatusOr<size_t> sent = WriteSocket(t.cipher);
      t.writing = false;
      if (!done.ok()) return fail(done.status());
      if (!sent.ok()) return fail(sent.status());
    }
    if (!done.ok()) return fail(done.status());
    if (*done) break;
    absl::StatusOr<std::string_view> cipher = ReadSocketView();
    if (!cipher.ok()) {
      if (IsPeerClosed(cipher.status())) {
        return fail(TlsError("the peer left during the handshake"));
      }
      return fail(cipher.status());
    }
    t.session->Feed(*cipher);
  }
  // Handshake buffers are not kept for an idle connection.
  t.cipher = std::string();
  return absl::OkStatus();
}

tls::SessionInfo FiberConn::TlsInfo() const {
  return core_->tls_ != nullptr ? core_->tls_->session->Info() : tls::SessionInfo();
}

absl::StatusOr<size_t> FiberConn::ReadTls(std::span<char> buf) {
  FiberConnCore::TlsState& t = *core_->tls_;
  if (!t.handshake_error.ok()) return t.handshake_error;
  if (buf.empty()) return 0;
  for (;;) {
    // Records already fed come first; a session's own answers (a key
    // update) leave with the next Write, so the reader never interleaves
    // its bytes with a writer's records.
    absl::StatusOr<size_t> n = t.session->Read(buf);
    if (!n.ok() || *n > 0) return n;
    absl::StatusOr<std::string_view> cipher = ReadSocketView();
    if (!cipher.ok()) {
      // A FIN with no close_notify before it may be a truncation (RFC 8446
      // 6.1): still the end, but the message says so.
      if (IsPeerClosed(cipher.status())) return PeerClosedError("without close_notify");
      return cipher.status();
    }
    t.session->Feed(*cipher);
  }
}

absl::StatusOr<size_t> FiberConn::WriteTls(std::string_view data) {
  FiberConnCore& c = *core_;
  FiberConnCore::TlsState& t = *c.tls_;
  if (absl::Status st = c.Check(c.write_); !st.ok()) return st;
  if (t.writing) {
    return absl::FailedPreconditionError("another fiber is already writing to this connection");
  }
  if (!t.handshake_error.ok()) return t.handshake_error;
  if (!t.write_error.ok()) return t.write_error;
  const size_t total = data.size();
  // Encrypted and sent a chunk at a time: memory stays near one chunk's
  // records however large the write.
  constexpr size_t kChunk = 64 * 1024;
  while (!data.empty()) {
    const std::string_view chunk = data.substr(0, kChunk);
    if (absl::Status st = t.session->Write(chunk); !st.ok()) {
      t.write_error = st;
      return st;
    }
    t.cipher.clear();
    t.session->TakeCipher(&t.cipher);
    t.writing = true;
    absl::StatusOr<size_t> sent = WriteSocket(t.cipher);
    t.writing = false;
    if (!sent.ok()) {
      t.write_error = sent.status();
      return sent.status();
    }
    data.remove_prefix(chunk.size());
  }
  // Small writes again after a large one: give its records' room back.
  if (total <= 4 * 1024 && t.cipher.capacity() > 16 * 1024) t.cipher = std::string();
  return total;
}

absl::StatusOr<uint64_t> FiberConn::SendFile(int file_fd, uint64_t offset, uint64_t length) {
  FiberConnCore& c = *core_;
  uint64_t sent = 0;
  auto ended_early = [] {
    return absl::DataLossError("SendFile: the file ended before its length");
  };
  if (c.tls_ == nullptr) {
    // Zero-copy: the page cache to the socket. One chunk per call, and a
    // yield between chunks the socket took whole, so one fiber's large
    // file does not hold the loop.
    constexpr size_t kChunk = 1024 * 1024;
    while (sent < length) {
      if (absl::Status st = c.Check(c.write_); !st.ok()) return st;
      off_t off = static_cast<off_t>(offset + sent);
      const size_t want = static_cast<size_t>(std::min<uint64_t>(length - sent, kChunk));
      const ssize_t n = netloop::internal::SysSendFile(c.fd_, file_fd, &off, want);
      if (n > 0) {
        sent += static_cast<uint64_t>(n);
        if (static_cast<size_t>(n) == want && sent < length) Yield();
        continue;
      }
      if (n == 0) return ended_early();
      if (errno == EINTR) continue;
      if (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) break;  // copy below
      if (errno != EAGAIN && errno != EWOULDBLOCK) return ResetError(errno);
      // The socket is full: park until it takes more.
      if (c.backend_ != nullptr) {
        FiberConnCore::PendingOp op;
        op.kind = netloop::internal::Operation::Kind::kWaitWritable;
        absl::Status st = c.Run(c.write_, op);
        if (st.ok() && op.result < 0) st = c.FailedOp(c.write_, op.result);
        if (!st.ok()) return st;
      } else {
        if (absl::Status st = c.Wait(c.write_); !st.ok()) return st;
      }
    }
    if (sent == length) return sent;
  }
  // Read and written a chunk at a time (TLS seals each in turn).
  constexpr size_t kCopyChunk = 64 * 1024;
  std::string chunk(static_cast<size_t>(std::min<uint64_t>(length - sent, kCopyChunk)), '\0');
  while (sent < length) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(length - sent, chunk.size()));
    const ssize_t n = ::pread(file_fd, chunk.data(), want, static_cast<off_t>(offset + sent));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, "SendFile: reading the file");
    if (n == 0) return ended_early();
    if (absl::Status st = WriteAll(std::string_view(chunk.data(), static_cast<size_t>(n)));
        !st.ok()) {
      return st;
    }
    sent += static_cast<uint64_t>(n);
  }
  return sent;
}

void FiberConn::SendCloseNotify() {
  FiberConnCore& c = *core_;
  if (c.tls_ == nullptr || c.closed_ || c.tls_->writing || !c.tls_->write_error.ok() ||
      !c.tls_->session->handshake_complete()) {
    return;
  }
  c.tls_->session->Shutdown();
  std::string alert;
  if (c.tls_->session->TakeCipher(&alert) == 0) return;
  (void)netloop::internal::SysSend(c.fd_, alert.data(), alert.size(),
                                   MSG_NOSIGNAL | MSG_DONTWAIT);
}

absl::StatusOr<size_t> FiberConn::ReadSocket(std::span<char> buf) {
  FiberConnCore& c = *core_;
  if (buf.empty()) return 0;
  if (c.unread_ != nullptr) {
    size_t n = std::min(buf.size(), c.unread_->size());
    memcpy(buf.data(), c.unread_->data(), n);
    c.unread_->erase(0, n);
    if (c.unread_->empty()) c.unread_.reset();
    return n;
  }
  if (c.backend_ != nullptr) {
    for (;;) {
      FiberConnCore::PendingOp op;
      op.kind = netloop::internal::Operation::Kind::kReceive;
      op.data = buf.data();
      op.size = std::min<size_t>(buf.size(), size_t{1} << 30);  // the SQE's length is 32-bit
      if (absl::Status st = c.Run(c.read_, op); !st.ok()) return st;
      // Bytes that won a race with a deadline are still returned (nothing
      // received is dropped), as Go does on Windows; after Close, the
      // connection is gone and so are they.
      if (op.result > 0 && !c.closed_) return static_cast<size_t>(op.result);
      if (absl::Status st = c.FailedOp(c.read_, op.result); !st.ok()) return st;
    }
  }
  for (;;) {
    if (absl::Status st = c.Check(c.read_); !st.ok()) return st;
    if (c.read_ready_) {
      ssize_t n = netloop::internal::SysRead(c.fd_, buf.data(), buf.size());
      if (n > 0) {
        c.NoteRead(static_cast<size_t>(n), buf.size());
        return static_cast<size_t>(n);
      }
      if (n == 0) return PeerClosedError();
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return ResetError(errno);
      c.read_ready_ = false;
    }
    if (absl::Status st = c.Wait(c.read_); !st.ok()) return st;
  }
}

absl::StatusOr<std::string_view> FiberConn::ReadSocketView() {
  FiberConnCore& c = *core_;
  EventLoop& loop = c.sched_->loop();
  if (c.unread_ != nullptr) {
    size_t n = std::min(loop.read_buffer_size(), c.unread_->size());
    memcpy(loop.read_buffer(), c.unread_->data(), n);
    c.unread_->erase(0, n);
    if (c.unread_->empty()) c.unread_.reset();
    return std::string_view(loop.read_buffer(), n);
  }
  if (c.backend_ != nullptr) {
    // The kernel fills one of the backend's provided buffers; its bytes move
    // to the loop's shared buffer and it goes back to the ring at once. A
    // connection never keeps a provided buffer (a peer that does not read
    // could otherwise pin one per connection until the ring runs dry), and
    // the view has the same lifetime as on epoll.
    for (;;) {
      FiberConnCore::PendingOp op;
      op.kind = netloop::internal::Operation::Kind::kReceiveBuffer;
      op.size = loop.read_buffer_size();
      if (absl::Status st = c.Run(c.read_, op); !st.ok()) return st;
      if (op.result > 0) {
        const size_t n = static_cast<size_t>(op.result);
        memcpy(loop.read_buffer(), op.buffer, n);
        c.backend_->ReleaseBuffer(op.buffer_id);
        if (c.closed_) return c.Check(c.read_);
        return std::string_view(loop.read_buffer(), n);
      }
      if (absl::Status st = c.FailedOp(c.read_, op.result); !st.ok()) return st;
    }
  }
  for (;;) {
    if (absl::Status st = c.Check(c.read_); !st.ok()) return st;
    if (c.read_ready_) {
      ssize_t n = netloop::internal::SysRead(c.fd_, loop.read_buffer(), loop.read_buffer_size());
      if (n > 0) {
        c.NoteRead(static_cast<size_t>(n), loop.read_buffer_size());
        return std::string_view(loop.read_buffer(), static_cast<size_t>(n));
      }
      if (n == 0) return PeerClosedError();
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return ResetError(errno);
      c.read_ready_ = false;
    }
    if (absl::Status st = c.Wait(c.read_); !st.ok()) return st;
  }
}

absl::Status FiberConn::ReadFull(std::span<char> buf) {
  size_t done = 0;
  while (done < buf.size()) {
    absl::StatusOr<size_t> n = Read(buf.subspan(done));
    if (!n.ok()) return n.status();
    done += *n;
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> FiberConn::WriteSocket(std::string_view data) {
  FiberConnCore& c = *core_;
  const size_t total = data.size();
  const char* shared_begin = c.sched_->loop().read_buffer();
  const char* shared_end = shared_begin + c.sched_->loop().read_buffer_size();
  bool copied = false;
  if (c.backend_ != nullptr) {
    // A send in flight reads the bytes until it completes, while other
    // fibers run: bytes in the loop's shared read buffer (a ReadView) would
    // be overwritten meanwhile. They go out with a plain non-blocking send
    // first, and what the socket does not take is copied before submitting.
    if (data.data() >= shared_begin && data.data() < shared_end) {
      if (absl::Status st = c.Check(c.write_); !st.ok()) return st;
      ssize_t n;
      do {
        n = netloop::internal::SysSend(c.fd_, data.data(), data.size(),
                                       MSG_NOSIGNAL | MSG_DONTWAIT);
      } while (n < 0 && errno == EINTR);
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return ResetError(errno);
      if (n > 0) data.remove_prefix(static_cast<size_t>(n));
      if (data.empty()) return total;
      c.pending_ = std::make_unique<std::string>(data);
      data = *c.pending_;
    }
    while (!data.empty()) {
      FiberConnCore::PendingOp op;
      op.kind = netloop::internal::Operation::Kind::kSend;
      op.data = const_cast<char*>(data.data());  // only read from
      op.size = std::min<size_t>(data.size(), size_t{1} << 30);
      absl::Status st = c.Run(c.write_, op);
      if (st.ok() && op.result >= 0) {
        data.remove_prefix(static_cast<size_t>(op.result));
        continue;
      }
      if (st.ok()) st = c.FailedOp(c.write_, op.result);
      if (!st.ok()) {
        c.pending_.reset();
        return st;
      }
    }
    c.pending_.reset();
    return total;
  }
  while (!data.empty()) {
    if (absl::Status st = c.Check(c.write_); !st.ok()) {
      c.pending_.reset();
      return st;
    }
    ssize_t n = netloop::internal::SysSend(c.fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      c.pending_.reset();
      return ResetError(errno);
    }
    // About to park: bytes that live in the loop's shared read buffer would
    // be overwritten by other connections' reads meanwhile; keep a copy.
    if (!copied && data.data() >= shared_begin && data.data() < shared_end) {
      c.pending_ = std::make_unique<std::string>(data);
      data = *c.pending_;
      copied = true;
    }
    if (absl::Status st = c.Wait(c.write_); !st.ok()) {
      c.pending_.reset();
      return st;
    }
  }
  c.pending_.reset();
  return total;
}

absl::Status FiberConn::WriteAll(std::string_view data) { return Write(data).status(); }

void FiberConn::Close() {
  SendCloseNotify();
  core_->Close();
}

absl::Status FiberConn::CloseWrite() {
  if (core_->closed_) return ClosedError();
  if (core_->tls_ != nullptr && core_->tls_->session->handshake_complete()) {
    FiberConnCore::TlsState& t = *core_->tls_;
    if (t.writing) {
      return absl::FailedPreconditionError("another fiber is already writing to this connection");
    }
    if (!t.write_error.ok()) return t.write_error;
    t.session->Shutdown();  // close_notify, then the FIN
    t.cipher.clear();
    if (t.session->TakeCipher(&t.cipher) > 0) {
      t.writing = true;
      absl::StatusOr<size_t> sent = WriteSocket(t.cipher);
      t.writing = false;
      if (!sent.ok()) {
        t.write_error = sent.status();
        return sent.status();
      }
    }
    // Closed while the fiber was parked in that send: the fd may be
    // someone else's by now.
    if (core_->closed_) return ClosedError("use of closed connection");
  }
  if (::shutdown(core_->fd_, SHUT_WR) != 0) return ResetError(errno);
  return absl::OkStatus();
}

void FiberConn::SetDeadline(absl::Time t) {
  SetReadDeadline(t);
  SetWriteDeadline(t);
}
void FiberConn::SetReadDeadline(absl::Time t) { core_->SetDeadline(core_->read_, t); }
void FiberConn::SetWriteDeadline(absl::Time t) { core_->SetDeadline(core_->write_, t); }

SocketAddress FiberConn::LocalAddress() const { return LocalAddressOf(core_->fd_); }
SocketAddress FiberConn::RemoteAddress() const { return PeerAddressOf(core_->fd_); }
int FiberConn::fd() const { return core_->closed_ ? -1 : core_->fd_; }
EventLoop& FiberConn::loop() const { return core_->sched_->loop(); }

FiberConnRef FiberConn::Ref() const {
  FiberConnRef r;
  r.loop_ = &core_->sched_->loop();
  r.core_ = core_;
  return r;
}

void FiberConnRef::Close() const {
  if (loop_ == nullptr) return;
  loop_->RunInLoop([core = core_] {
    if (auto c = core.lock()) c->Close();
  });
}

namespace {

absl::StatusOr<NetAddress> DefaultResolver(const std::string& address) {
  return ParseAddress(address);
}

std::atomic<internal::DialResolver> dial_resolver{nullptr};

// The address to connect to, without blocking the loop thread (see Dial).
absl::StatusOr<NetAddress> ResolveForDial(std::string_view address, absl::Time deadline) {
  // Numeric addresses, "localhost" and unix paths need no lookup.
  absl::StatusOr<NetAddress> parsed = ParseAddressNoLookup(address);
  if (!parsed.ok() || parsed->unresolved_host.empty()) return parsed;
  internal::DialResolver resolve = dial_resolver.load(std::memory_order_acquire);
  if (resolve == nullptr) resolve = &DefaultResolver;
  absl::StatusOr<absl::StatusOr<NetAddress>> resolved = internal::OffloadDetached(
      [resolve, a = std::string(address)] { return resolve(a); }, deadline);
  if (!resolved.ok()) return resolved.status();
  return *std::move(resolved);
}

}  // namespace

void internal::SetDialResolverForTesting(DialResolver resolver) {
  dial_resolver.store(resolver, std::memory_order_release);
}

absl::StatusOr<std::unique_ptr<FiberConn>> Dial(std::string_view address,
                                                absl::Time deadline) {
  if (Scheduler::CurrentTask() == nullptr) {
    return absl::FailedPreconditionError("fiber::Dial outside a fiber");
  }
  // As in Go, an expired deadline fails before trying: a loopback connect
  // can complete at once and would otherwise ignore it.
  if (ToMonotonicNanos(deadline) <= MonotonicNanos()) return DeadlineExceededError();
  absl::StatusOr<NetAddress> parsed = ResolveForDial(address, deadline);
  if (!parsed.ok()) return parsed.status();
  if (IsDatagram(parsed->network)) {
    return absl::UnimplementedError("fiber::Dial: udp:// is not supported");
  }
  bool in_progress = false;
  absl::StatusOr<int> fd = StartConnect(parsed->address, &in_progress);
  if (!fd.ok()) return fd.status();
  if (parsed->address.is_ip()) {
    ApplySocketTuning(*fd, parsed->address.family(), SocketTuning{});
  }
  absl::StatusOr<std::unique_ptr<FiberConn>> conn = FiberConn::Adopt(*fd);
  if (!conn.ok()) return conn.status();
  if (in_progress) {
    FiberConnCore& c = *(*conn)->core_;
    c.write_.deadline_ns = ToMonotonicNanos(deadline);
    for (;;) {
      absl::Status st;
      if (c.backend_ != nullptr) {
        FiberConnCore::PendingOp op;
        op.kind = netloop::internal::Operation::Kind::kWaitWritable;
        st = c.Run(c.write_, op);
        if (st.ok() && op.result < 0) st = c.FailedOp(c.write_, op.result);
      } else {
        st = c.Wait(c.write_);
      }
      if (!st.ok()) return st;
      int err = SocketError(c.fd_);
      if (err == 0) {
        // Writable without an error: connected (or, rarely, a spurious wake).
        SocketAddress peer = PeerAddressOf(c.fd_);
        if (peer.length() > 0) break;
        continue;
      }
      return ConnectFailedError(err);
    }
    c.write_.deadline_ns = kNeverNanos;
    c.CancelTimer(c.write_);
  }
  return conn;
}

absl::StatusOr<std::unique_ptr<FiberConn>> DialTls(std::string_view address,
                                                   std::shared_ptr<const tls::Context> context,
                                                   absl::Time deadline,
                                                   std::string_view server_name) {
  if (context == nullptr || context->is_server()) {
    return absl::InvalidArgumentError("DialTls needs a client tls::Context");
  }
  std::string name(server_name);
  if (name.empty()) {
    absl::StatusOr<NetAddress> parsed = ParseAddressNoLookup(address);
    if (!parsed.ok()) return parsed.status();
    name = !parsed->unresolved_host.empty() ? parsed->unresolved_host
                                            : parsed->address.IpToString();
  }
  absl::StatusOr<std::unique_ptr<FiberConn>> conn = Dial(address, deadline);
  if (!conn.ok()) return conn.status();
  (*conn)->SetDeadline(deadline);
  if (absl::Status st = (*conn)->StartTls(context, name); !st.ok()) return st;
  (*conn)->SetDeadline(absl::InfiniteFuture());
  return conn;
}

}  // namespace netloop::fiber
