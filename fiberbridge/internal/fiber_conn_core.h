// A connection's pollDesc for fibers (fiberbridge internal): the fd, a
// waiter slot per direction with its Go-style deadline, and the stop hook.
// FiberConn and PacketConn are built on it. Not part of the public API.
#ifndef NETLOOP_FIBERBRIDGE_INTERNAL_FIBER_CONN_CORE_H_
#define NETLOOP_FIBERBRIDGE_INTERNAL_FIBER_CONN_CORE_H_

#include <errno.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "fiberbridge/scheduler.h"
#include "reactor/clock.h"
#include "reactor/errors.h"
#include "reactor/internal/backend.h"
#include "reactor/internal/platform.h"
#include "reactor/internal/sys_io.h"
#include "reactor/internal/tls_session.h"
#include "reactor/io_watcher.h"
#include "reactor/socket_handle.h"

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
  // Close never ran (Register failed). `readiness_only`: wait through
  // readiness on every backend (a UDP socket, whose datagrams have no
  // completion path yet), never through completion operations.
  FiberConnCore(Scheduler* s, SocketHandle fd, std::string unread, bool readiness_only = false)
      : sched_(s),
        backend_(!readiness_only && s->loop().backend().completion() ? &s->loop().backend()
                                                                     : nullptr),
        fd_(fd) {
    if (!unread.empty()) unread_ = std::make_unique<std::string>(std::move(unread));
  }
  ~FiberConnCore() {
    if (!closed_) netloop::internal::CloseSocket(fd_);
  }
  FiberConnCore(const FiberConnCore&) = delete;
  FiberConnCore& operator=(const FiberConnCore&) = delete;

  absl::Status Register() {
    if (backend_ != nullptr) {
      // Nothing to register, but what a watch would refuse is refused here
      // too: operations on something that is not a socket fail at random.
      if (!netloop::internal::IsSocket(fd_)) {
        return absl::PermissionDeniedError(absl::StrCat("fd ", fd_, " is not a socket"));
      }
      if (absl::Status st = backend_->PrepareSocket(fd_); !st.ok()) return st;
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
      netloop::internal::CloseSocket(fd_);
      return;
    }
    (void)sched_->loop().Unwatch(fd_, this);
    netloop::internal::CloseSocket(fd_);
    WakeSlot(read_);
    WakeSlot(write_);
  }

  Scheduler* const sched_;
  netloop::internal::Backend* const backend_;  // completion backends only
  SocketHandle fd_;
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
  // Completion backends: the last receive came back short, so the socket's
  // queue was empty after it and the next receive waits for data first
  // (Operation::expect_empty): in a request/response exchange the reply's
  // bytes are not there yet when the fiber reads again.
  bool recv_drained_ = false;
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

}  // namespace netloop::fiber

#endif  // NETLOOP_FIBERBRIDGE_INTERNAL_FIBER_CONN_CORE_H_
