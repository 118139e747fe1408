// The io_uring backend: completion-based.
//
// - Streams receive with one multishot recv each, into a per-loop ring of
//   provided buffers: OnReceived sees the kernel-filled buffer, which goes
//   back to the ring as soon as the sink returns (the sink copies what its
//   handler left unread). An idle stream owns no buffer.
// - Sends are IORING_OP_SEND from the stream's outbound ring, one in flight
//   per stream; the owner keeps those bytes in place until the completion.
//   A handler that writes bytes of the buffer it is being shown (an echo, a
//   proxy's pass-through) sends them from that buffer: it is lent to the
//   stream rather than recycled, and comes back once the send is done
//   (LendDeliveredBuffer), so the common echo copies nothing.
// - Fibers (FiberConn) submit one-shot Operations: a receive straight into
//   the fiber's buffer (or a provided one, for ReadView) and a send of the
//   fiber's bytes, each completing to the parked fiber.
// - UDP sockets receive with one multishot recvmsg each, into a buffer ring
//   (and buffer group) of the socket's own sized for its largest datagram;
//   replies are SENDMSG operations with their own storage, so a round's
//   replies leave in the loop's one submission, as sendmmsg would send them.
// - Listeners use multishot accept. Plain watchers (the wake-up eventfd,
//   fiber pollDescs) use multishot polls.
// - One submit per loop iteration: Poll submits everything queued since the
//   last one and waits in the same io_uring_enter, with the loop's next
//   timer as the wait's timeout (EXT_ARG).
// - The ring is created disabled and enabled by the loop thread on its first
//   Poll, so IORING_SETUP_SINGLE_ISSUER names the loop thread as the one
//   submitter; DEFER_TASKRUN then runs completions only when that thread
//   asks for events, never as interrupts in the middle of a handler.
//
// Every operation in flight holds its stream (Stream::Hold), so a completion
// never finds its owner freed, and the bytes a send points at stay put.
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "reactor/address.h"
#include "reactor/internal/backend.h"
#include "reactor/internal/retained_blocks.h"
#include "reactor/logging.h"
#include "reactor/internal/socket_ops.h"
#include "reactor/internal/sys_io.h"

namespace netloop::internal {
namespace {

// user_data tags (low 3 bits; pointers are 8-aligned).
constexpr uint64_t kOpIgnore = 0;  // cancels, poll removals
constexpr uint64_t kOpRecv = 1;
constexpr uint64_t kOpSend = 2;
constexpr uint64_t kOpConnect = 3;
constexpr uint64_t kOpPoll = 4;  // (slot << 32) | (generation << 3) | tag
constexpr uint64_t kOpSocket = 5;  // a SocketReg: accept, datagram receive or send
constexpr uint64_t kOpCancel = 6;  // (index into cancels_ << 3) | tag
constexpr uint64_t kOpFiber = 7;   // an Operation (FiberConn)
constexpr uint64_t kTagMask = 7;

// Stream::io_flags_ bits.
constexpr uint8_t kRecvArmed = 1;    // a multishot recv is in flight
constexpr uint8_t kRecvWanted = 2;   // the owner wants to receive
constexpr uint8_t kSendBusy = 4;     // a send is in flight
constexpr uint8_t kConnectArmed = 8;
constexpr uint8_t kDead = 16;        // closed or detached: deliver nothing more
constexpr uint8_t kRecvOneShot = 32;  // the armed recv is single-shot
constexpr uint8_t kWantOneShot = 64;  // output is waiting: receive a buffer at a time

// Stream::io_lent_ values.
constexpr uint8_t kLent = 1;               // io_lent_buffer_ is out of the pool for it
constexpr uint8_t kReturnAfterSend = 2;    // ... and goes back when its send completes

constexpr unsigned kSqEntries = 1024;
constexpr unsigned kCqEntries = 8192;
constexpr int kBufferGroup = 0;  // streams' and fibers' receives; UDP sockets get 1, 2, ...
// Datagram sends queued or in flight per loop; beyond this UDP drops.
constexpr size_t kMaxDatagramSends = 4096;

uint64_t Tag(const void* p, uint64_t tag) { return reinterpret_cast<uint64_t>(p) | tag; }

uint32_t ToPollMask(uint32_t interest) {
  uint32_t m = 0;
  if (interest & kIoReadable) m |= POLLIN;
  if (interest & kIoWritable) m |= POLLOUT;
  if (interest & kIoPeerClosed) m |= POLLRDHUP;
  return m;
}

uint32_t FromPollMask(uint32_t m) {
  uint32_t out = 0;
  if (m & (POLLIN | POLLPRI)) out |= kIoReadable;
  if (m & POLLOUT) out |= kIoWritable;
  if (m & POLLRDHUP) out |= kIoPeerClosed;
  if (m & (POLLERR | POLLHUP)) out |= kIoError;
  return out;
}

// Registers `br` (`entries` slots) with `ring` as buffer group `group`;
// 0 or -errno.
int RegisterBufferRing(io_uring* ring, io_uring_buf_ring* br, unsigned entries, int group) {
  io_uring_buf_reg reg;
  memset(&reg, 0, sizeof(reg));
  reg.ring_addr = reinterpret_cast<uint64_t>(br);
  reg.ring_entries = entries;
  reg.bgid = static_cast<uint16_t>(group);
  return io_uring_register_buf_ring(ring, &reg, 0);
}

// A provided-buffer ring and the buffers it hands out: `count` (a power of
// two) buffers of `size` bytes each, all in the ring at first. The buffers'
// address space is reserved up front; pages are touched only as the kernel
// fills them.
class BufferRing {
 public:
  BufferRing() = default;
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;
  ~BufferRing() {
    if (ring_ != nullptr) munmap(ring_, ring_bytes_);
    if (buffers_ != nullptr) munmap(buffers_, static_cast<size_t>(size_) * count_);
  }

  absl::Status Map(unsigned size, unsigned count) {
    size_ = size;
    count_ = count;
    ring_bytes_ = (sizeof(io_uring_buf) * count + 4095) & ~size_t{4095};
    void* mem = mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE,
                     -1, 0);
    if (mem == MAP_FAILED) return absl::ResourceExhaustedError("mmap(buffer ring)");
    ring_ = static_cast<io_uring_buf_ring*>(mem);
    mem = mmap(nullptr, static_cast<size_t>(size) * count, PROT_READ | PROT_WRITE,
               MAP_ANONYMOUS | MAP_PRIVATE | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) return absl::ResourceExhaustedError("mmap(receive buffers)");
    buffers_ = static_cast<char*>(mem);
    io_uring_buf_ring_init(ring_);
    for (unsigned i = 0; i < count; ++i) Add(i, static_cast<int>(i));
    Advance(static_cast<int>(count));
    return absl::OkStatus();
  }

  io_uring_buf_ring* ring() const { return ring_; }
  unsigned size() const { return size_; }
  unsigned count() const { return count_; }
  char* At(unsigned bid) const { return buffers_ + static_cast<size_t>(bid) * size_; }
  // Puts buffer `bid` back at `offset` past the ring's tail; the kernel sees
  // the buffers put back once Advance has counted them.
  void Add(unsigned bid, int offset) {
    io_uring_buf_ring_add(ring_, At(bid), size_, static_cast<uint16_t>(bid),
                          io_uring_buf_ring_mask(count_), offset);
  }
  void Advance(int added) { io_uring_buf_ring_advance(ring_, added); }

 private:
  io_uring_buf_ring* ring_ = nullptr;
  size_t ring_bytes_ = 0;
  char* buffers_ = nullptr;
  unsigned size_ = 0;
  unsigned count_ = 0;
};

}  // namespace

class IoUringBackend final : public Backend {
 public:
  IoUringBackend(const BackendOptions& o)
      : buf_size_(static_cast<unsigned>(std::max<size_t>(o.uring_buffer_size, 1024))),
        buf_count_(static_cast<unsigned>(
            std::bit_ceil(std::clamp<size_t>(o.uring_buffer_count, 8, 32768)))) {}

  ~IoUringBackend() override {
    // Frees the buffer rings' registrations; the rings are unmapped after.
    if (ring_ok_) io_uring_queue_exit(&ring_);
  }

  // Maps the receive buffers. The ring itself is made by the loop thread on
  // its first Poll (CreateRing): the task that creates a ring is tied to it
  // (io_uring signals it with task work, which interrupts its blocking
  // syscalls with EINTR), and that must be the loop thread, not whoever
  // called Engine::Start. Operations queued before then wait in staged_.
  absl::Status Init() { return pool_.Map(buf_size_, buf_count_); }

  // Sets up a ring the way this backend uses one. Any thread.
  static absl::Status SetUpRing(io_uring* ring, io_uring_buf_ring* br, unsigned entries) {
    io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE |
              IORING_SETUP_SUBMIT_ALL;
    p.cq_entries = kCqEntries;
    int rc = io_uring_queue_init_params(kSqEntries, ring, &p);
    if (rc < 0) return absl::UnavailableError(absl::StrCat("io_uring_setup: ", strerror(-rc)));
    absl::Status status;
    if (!(p.features & IORING_FEAT_EXT_ARG)) {
      status = absl::UnavailableError("io_uring: the kernel lacks IORING_FEAT_EXT_ARG");
    } else {
      rc = RegisterBufferRing(ring, br, entries, kBufferGroup);
      if (rc < 0) {
        status = absl::UnavailableError(
            absl::StrCat("io_uring: provided buffer ring: ", strerror(-rc)));
      }
    }
    if (!status.ok()) io_uring_queue_exit(ring);
    return status;
  }

  void StartOnLoopThread() override {
    if (!created_) CreateRing();
  }

  // Loop thread, before its first Poll.
  void CreateRing() {
    created_ = true;
    absl::Status s = SetUpRing(&ring_, pool_.ring(), buf_count_);
    if (!s.ok()) {
      NETLOOP_LOG(kError) << "loop cannot run: " << s.message();
      return;
    }
    ring_ok_ = true;
    // The ring's fd registered with this (the loop) thread: each
    // io_uring_enter then names it by index, skipping the kernel's fd table
    // lookup and the file reference it takes and drops (an atomic pair when
    // the process has several threads). Optional: without it, plain fds.
    (void)io_uring_register_ring_fd(&ring_);
    for (const io_uring_sqe& staged : staged_) *Sqe() = staged;
    staged_.clear();
    staged_.shrink_to_fit();
    for (size_t i = 0; i < datagrams_.size(); ++i) {  // a sink may watch a socket
      DatagramReg* reg = datagrams_[i].get();
      if (reg->dead) continue;
      if (absl::Status st = RegisterDatagramBuffers(reg); !st.ok()) {
        EndDatagramServing(reg, st);
        continue;
      }
      ArmDatagramReceive(reg);
    }
  }

  const char* name() const override { return "io_uring"; }
  BackendKind kind() const override { return BackendKind::kIoUring; }
  bool completion() const override { return true; }
  bool lends_receive_buffers() const override { return true; }
  bool edge_triggered() const override { return false; }

  // ---------------------------------------------------------- watchers

  absl::Status Watch(SocketHandle fd, uint32_t interest, IoWatcher* watcher) override {
    // A poll on a regular file or directory "succeeds" and reports ready
    // forever; epoll refuses them, and so does this backend.
    struct stat st;
    if (fstat(fd, &st) != 0) {
      return absl::Status(absl::ErrnoToStatusCode(errno),
                          absl::StrCat("watch fd ", fd, ": ", strerror(errno)));
    }
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode)) {
      return absl::PermissionDeniedError(
          absl::StrCat("watch fd ", fd, ": not pollable (a file or a directory)"));
    }
    if (S_ISCHR(st.st_mode) && !CharDeviceIsPollable(fd)) {
      return absl::PermissionDeniedError(
          absl::StrCat("watch fd ", fd, ": the device does not support polling"));
    }
    uint32_t slot;
    if (!free_slots_.empty()) {
      slot = free_slots_.back();
      free_slots_.pop_back();
    } else {
      slot = static_cast<uint32_t>(slots_.size());
      slots_.emplace_back();
    }
    PollSlot& ps = slots_[slot];
    ps.watcher = watcher;
    ps.fd = fd;
    ps.mask = ToPollMask(interest);
    ps.generation = (ps.generation + 1) & 0x1FFFFFFF;
    ps.in_flight = true;
    by_watcher_[watcher] = slot;
    ArmPoll(slot);
    return absl::OkStatus();
  }

  absl::Status Modify(SocketHandle fd, uint32_t interest, IoWatcher* watcher) override {
    (void)Unwatch(fd, watcher);
    return Watch(fd, interest, watcher);
  }

  absl::Status Unwatch(int, IoWatcher* watcher) override {
    auto it = by_watcher_.find(watcher);
    if (it == by_watcher_.end()) return absl::OkStatus();
    const uint32_t slot = it->second;
    by_watcher_.erase(it);
    PollSlot& ps = slots_[slot];
    ps.watcher = nullptr;  // completions already posted are dropped
    Cancel(PollTag(slot, ps.generation), /*poll=*/true);
    // The caller closes the fd next: a poll still waiting to be submitted
    // would then find the number closed, or reused by another socket.
    SubmitNow();
    return absl::OkStatus();
  }

  // ---------------------------------------------------------- the loop

  int Poll(int64_t timeout_ns) override {
    if (!created_) CreateRing();
    if (!ring_ok_) {
      // Logged once by CreateRing; nothing can be served.
      usleep(static_cast<useconds_t>(std::clamp<int64_t>(timeout_ns / 1000, 0, 100'000)));
      return 0;
    }
    FlushSends();
    // Receives that found the buffer ring empty go again once a buffer has
    // come back (before that they would only fail again, at once, and spin
    // the loop). Kept out of the queue until then, so that CancelOperation
    // finds them.
    if (!out_of_buffers_.empty() && buffers_returned_ != returned_at_failure_) {
      for (Operation* op : out_of_buffers_) Prepare(op);
      out_of_buffers_.clear();
    }
    // Cancellations waiting for a retry must not wait on an idle loop.
    if (!retry_now_.empty() || !cancel_retries_.empty()) {
      if (timeout_ns < 0 || timeout_ns > 1'000'000) timeout_ns = 1'000'000;
    }
    if (!injected_.empty()) timeout_ns = 0;
    if (timeout_ns == 0) {
      io_uring_submit_and_get_events(&ring_);
    } else if (timeout_ns < 0) {
      io_uring_cqe* cqe;
      io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, nullptr, nullptr);
    } else {
      __kernel_timespec ts;
      ts.tv_sec = timeout_ns / 1'000'000'000;
      ts.tv_nsec = timeout_ns % 1'000'000'000;
      io_uring_cqe* cqe;
      io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
    }
    int dispatched = 0;
    if (!injected_.empty()) {
      std::vector<std::pair<Operation*, int>> injected;
      injected.swap(injected_);
      for (auto [op, result] : injected) {
        --one_shot_in_flight_;
        op->OnComplete(result);
        ++dispatched;
      }
    }
    for (;;) {
      unsigned head = *ring_.cq.khead;
      unsigned tail = io_uring_smp_load_acquire(ring_.cq.ktail);
      if (head == tail) break;
      // Copy, then consume, then dispatch: a sink may detach a stream, which
      // scans (and neutralises) the completions still unconsumed.
      io_uring_cqe cqe = ring_.cq.cqes[head & ring_.cq.ring_mask];
      io_uring_smp_store_release(ring_.cq.khead, head + 1);
      Dispatch(cqe);
      ++dispatched;
      if (dispatched >= static_cast<int>(kCqEntries)) break;  // the rest next round
    }
    FlushRecycled();
    ReapAccepts();
    if (!datagrams_.empty()) ReapDatagramSockets();
    RetryCancels();
    return dispatched;
  }

  bool HasPendingWork() const override { return false; }
  size_t OperationsInFlight() const override { return in_flight_; }
  size_t OneShotOperationsInFlight() const override { return one_shot_in_flight_; }

  // ---------------------------------------------------------- streams

  absl::Status SetStreamInterest(Stream* s, bool receive, bool, bool backlogged) override {
    if (s->io_flags_ & kDead) return absl::OkStatus();
    // A multishot recv goes on filling buffers (dozens per round) until a
    // cancellation reaches it. An owner that is behind would hold them all:
    // it receives one buffer per submission until it has caught up.
    if (backlogged) {
      s->io_flags_ |= kWantOneShot;
      if ((s->io_flags_ & kRecvArmed) && !(s->io_flags_ & kRecvOneShot)) {
        Cancel(Tag(s, kOpRecv));  // its final completion re-arms it single-shot
      }
    } else {
      s->io_flags_ &= ~kWantOneShot;
    }
    if (receive) {
      s->io_flags_ |= kRecvWanted;
      if (!(s->io_flags_ & kRecvArmed)) ArmRecv(s);
    } else if (s->io_flags_ & kRecvWanted) {
      s->io_flags_ &= ~kRecvWanted;
      if (s->io_flags_ & kRecvArmed) Cancel(Tag(s, kOpRecv));
    }
    return absl::OkStatus();
  }

  long Send(Stream* s, const iovec*, int) override {
    if (s->io_flags_ & (kSendBusy | kDead)) return kSendPending;
    // Prepared when the round's output is complete (FlushSends).
    s->io_flags_ |= kSendBusy;
    HoldOp(s);
    pending_sends_.push_back(s);
    return kSendPending;
  }

  // Right before a submission: one send per stream with output this round.
  // The msghdrs live in send_headers_ until the submission has copied them.
  void FlushSends() {
    if (pending_sends_.empty()) return;
    // Taken out of pending_sends_ first: an injected failure below runs
    // OnClose, whose handler may write to another stream and so queue a
    // send (prepared in the next round) while this loop runs.
    flushing_.swap(pending_sends_);
    send_headers_.resize(flushing_.size());
    constexpr int kPieces = Stream::kMaxPendingPieces;
    send_iovs_.resize(flushing_.size() * kPieces);
    size_t used = 0;
    for (Stream* s : flushing_) {
      if (s->io_flags_ & kDead) {
        s->io_flags_ &= ~kSendBusy;
        ReleaseAfterSend(s);
        UnholdOp(s);
        continue;
      }
      iovec* iov = &send_iovs_[used * kPieces];
      int count = s->PendingOutput(iov);
      size_t total = 0;
      for (int i = 0; i < count; ++i) total += iov[i].iov_len;
      const ssize_t allowed = FaultSubmittedSend(total);
      if (total == 0 || allowed < 0) {
        // Nothing to send after all, or an injected failure: complete it
        // now, through the same path as a kernel completion.
        s->io_flags_ &= ~kSendBusy;
        ReleaseAfterSend(s);
        if (allowed < 0) s->OnSendReady(static_cast<int>(allowed));
        UnholdOp(s);
        continue;
      }
      if (static_cast<size_t>(allowed) < total) {  // injected short send
        size_t left = static_cast<size_t>(allowed);
        for (int i = 0; i < count; ++i) {
          iov[i].iov_len = std::min(iov[i].iov_len, left);
          left -= iov[i].iov_len;
        }
        total = static_cast<size_t>(allowed);
      }
      s->io_send_size_ = static_cast<uint32_t>(std::min<size_t>(total, UINT32_MAX));
      io_uring_sqe* sqe = Sqe();
      if (count == 1) {
        io_uring_prep_send(sqe, s->fd_, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
      } else {
        msghdr& msg = send_headers_[used];
        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = iov;
        msg.msg_iovlen = static_cast<size_t>(count);
        io_uring_prep_sendmsg(sqe, s->fd_, &msg, MSG_NOSIGNAL);
      }
      io_uring_sqe_set_data64(sqe, Tag(s, kOpSend));
      ++used;
    }
    flushing_.clear();
  }

  long SendFile(Stream* s, int file_fd, uint64_t* offset, size_t count) override {
    // io_uring has no sendfile operation (and splice needs a pipe per
    // connection): the syscall itself on the non-blocking socket, only while
    // none of the stream's sends is queued or in flight, which it would
    // otherwise overtake.
    if (s->io_flags_ & (kSendBusy | kDead)) return kSendPending;
    const long n = SendFileOnce(s->fd_, file_fd, offset, count);
    return n == -EAGAIN ? kSendAgain : n;
  }

  bool SendInFlight(const Stream* s) const override { return s->io_flags_ & kSendBusy; }
  void RetainUntilSent(Stream* s, void* block) override {
    if (!(s->io_flags_ & kSendBusy)) {
      ::operator delete(block);
      return;
    }
    retained_.Keep(s, block);
  }

  bool LendDeliveredBuffer(Stream* s, std::string_view bytes) override {
    if (s != delivering_ || bytes.empty()) return false;
    const char* begin = BufferAt(delivering_buffer_);
    if (bytes.data() < begin || bytes.data() + bytes.size() > begin + delivering_size_) {
      return false;
    }
    if (s->io_lent_ & kLent) {
      // Already lent (a second write from the same delivery), or still lent
      // from an earlier one: only the former may share it.
      return !(s->io_lent_ & kReturnAfterSend) && s->io_lent_buffer_ == delivering_buffer_;
    }
    // A peer that stops reading must not keep a pool buffer: a short send
    // gives the lent buffer back (the owner copies the rest), a stream that
    // is behind copies from the start, and no more than a quarter of the
    // pool is ever lent, so a send that waits for room from a lent buffer
    // (a socket that filled up exactly) cannot starve this loop's receives.
    if ((s->io_flags_ & (kWantOneShot | kDead)) || lent_count_ >= buf_count_ / 4) return false;
    s->io_lent_ = kLent;
    s->io_lent_buffer_ = static_cast<uint16_t>(delivering_buffer_);
    delivering_lent_ = true;
    ++lent_count_;
    return true;
  }

  void ReturnLentBuffer(Stream* s) override {
    if (!(s->io_lent_ & kLent)) return;
    if (s == delivering_ && delivering_lent_) {
      // Given back within its own delivery: recycled with it as usual.
      delivering_lent_ = false;
      s->io_lent_ = 0;
      --lent_count_;
      return;
    }
    if (s->io_flags_ & kSendBusy) {
      s->io_lent_ |= kReturnAfterSend;
      return;
    }
    RecycleLent(s);
  }

  void ShutdownWrite(Stream* s) override { ::shutdown(s->fd_, SHUT_WR); }

  absl::Status AwaitConnect(Stream* s, const SocketAddress&) override {
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_poll_add(sqe, s->fd_, POLLOUT);
    io_uring_sqe_set_data64(sqe, Tag(s, kOpConnect));
    s->io_flags_ |= kConnectArmed;
    HoldOp(s);
    return absl::OkStatus();
  }

  void CloseStream(Stream* s) override {
    s->io_flags_ |= kDead;
    s->io_flags_ &= ~kRecvWanted;
    const bool armed = s->io_flags_ & (kRecvArmed | kSendBusy | kConnectArmed);
    // A shutdown ends the receive (it completes with 0) and a send that
    // waits for room (EPIPE) at once, where a cancellation can be refused
    // while the operation is mid-completion (EALREADY) and would have to be
    // retried. The close that follows keeps its usual meaning (RST when
    // input was left unread).
    if (s->io_flags_ & (kRecvArmed | kSendBusy)) {
      ::shutdown(s->fd_, (s->io_flags_ & kSendBusy) ? SHUT_RDWR : SHUT_RD);
    }
    if (s->io_flags_ & kConnectArmed) Cancel(Tag(s, kOpConnect));
    // An operation prepared in this round but not yet submitted would find
    // the fd closed, or worse reused by the next accept: submit first.
    // Requests in flight hold the file, so the fd number may go then: the
    // socket itself closes once the cancellations complete.
    if (armed) SubmitNow();
    if (IsValidSocket(s->fd_)) ::close(s->fd_);
    s->fd_ = kInvalidSocket;
  }

  absl::Status DetachStream(Stream* s, std::string* unread, size_t* sent) override {
    *sent = 0;
    if (s->io_flags_ & kConnectArmed) {
      return absl::FailedPreconditionError("detach: connect in flight");
    }
    s->io_flags_ &= ~kRecvWanted;
    // A send not prepared yet has sent nothing.
    for (size_t i = 0; i < pending_sends_.size(); ++i) {
      if (pending_sends_[i] != s) continue;
      pending_sends_.erase(pending_sends_.begin() + static_cast<long>(i));
      s->io_flags_ &= ~kSendBusy;
      ReleaseAfterSend(s);
      UnholdOp(s);  // the caller holds the stream too
      break;
    }
    if (!ring_ok_) {
      // Nothing was submitted yet: drop the staged operations.
      std::vector<io_uring_sqe> kept;
      for (const io_uring_sqe& sqe : staged_) {
        if (sqe.user_data == Tag(s, kOpRecv) || sqe.user_data == Tag(s, kOpSend)) {
          UnholdOp(s);
        } else {
          kept.push_back(sqe);
        }
      }
      staged_.swap(kept);
      s->io_flags_ &= ~(kRecvArmed | kSendBusy);
    }
    if (s->io_flags_ & (kRecvArmed | kSendBusy)) {
      // The operations must be gone before the fd changes hands, and what
      // they did belongs to the new owner: cancel synchronously, let the
      // kernel post the final completions, then take this stream's
      // completions out of the queue (received bytes go to *unread; a
      // send's count to *sent).
      io_uring_submit(&ring_);
      for (uint64_t op : {kOpRecv, kOpSend}) {
        if (!(s->io_flags_ & (op == kOpRecv ? kRecvArmed : kSendBusy))) continue;
        io_uring_sync_cancel_reg reg;
        memset(&reg, 0, sizeof(reg));
        reg.addr = Tag(s, op);
        reg.fd = -1;
        reg.flags = IORING_ASYNC_CANCEL_ALL;
        reg.timeout.tv_sec = -1;
        reg.timeout.tv_nsec = -1;
        int rc = io_uring_register_sync_cancel(&ring_, &reg);
        if (rc < 0 && rc != -ENOENT && rc != -EALREADY) {
          return absl::InternalError(absl::StrCat("detach: sync cancel: ", strerror(-rc)));
        }
      }
      io_uring_get_events(&ring_);
      unsigned head = *ring_.cq.khead;
      unsigned tail = io_uring_smp_load_acquire(ring_.cq.ktail);
      for (; head != tail; ++head) {
        io_uring_cqe& cqe = ring_.cq.cqes[head & ring_.cq.ring_mask];
        if (cqe.user_data == Tag(s, kOpSend)) {
          cqe.user_data = kOpIgnore;
          if (cqe.res > 0) *sent += static_cast<size_t>(cqe.res);
          s->io_flags_ &= ~kSendBusy;
          ReleaseAfterSend(s);
          UnholdOp(s);  // the caller holds the stream too
          continue;
        }
        if (cqe.user_data != Tag(s, kOpRecv)) continue;
        cqe.user_data = kOpIgnore;
        if (cqe.flags & IORING_CQE_F_BUFFER) {
          const unsigned bid = cqe.flags >> IORING_CQE_BUFFER_SHIFT;
          if (cqe.res > 0) unread->append(BufferAt(bid), static_cast<size_t>(cqe.res));
          Recycle(bid);
        }
        if (!(cqe.flags & IORING_CQE_F_MORE)) {
          s->io_flags_ &= ~kRecvArmed;
          UnholdOp(s);
        }
      }
      FlushRecycled();
      if (s->io_flags_ & (kRecvArmed | kSendBusy)) {
        // Not seen (a kernel that posts late): the stream stays held until
        // the completion comes, and drops whatever it carries.
        NETLOOP_LOG(kWarning) << "detach: an operation is still in flight after cancel";
      }
    }
    s->io_flags_ |= kDead;
    return absl::OkStatus();
  }

  // ---------------------------------------------------------- operations

  void Submit(Operation* op) override {
    ++one_shot_in_flight_;
    if (op->kind == Operation::Kind::kReceiveFrom || op->kind == Operation::Kind::kSendTo) {
      // UDP fibers wait through readiness here (serves_datagram_operations).
      injected_.emplace_back(op, -EOPNOTSUPP);
      return;
    }
    if (op->kind == Operation::Kind::kSend) {
      const ssize_t allowed = FaultSubmittedSend(op->size);
      if (allowed < 0) {
        // An injected failure completes in the next Poll, as the kernel's
        // would: never inside Submit, before the fiber has parked.
        injected_.emplace_back(op, static_cast<int>(allowed));
        return;
      }
      op->size = std::min(op->size, static_cast<size_t>(allowed));
    }
    Prepare(op);
  }

  void CancelOperation(Operation* op, bool closing_fd) override {
    for (size_t i = 0; i < out_of_buffers_.size(); ++i) {
      if (out_of_buffers_[i] != op) continue;
      // Not in the kernel: it completes as cancelled in the next Poll.
      out_of_buffers_.erase(out_of_buffers_.begin() + static_cast<long>(i));
      injected_.emplace_back(op, -ECANCELED);
      return;
    }
    for (const auto& [queued, result] : injected_) {
      if (queued == op) return;  // completes in the next Poll anyway
    }
    Cancel(Tag(op, kOpFiber));
    if (closing_fd) SubmitNow();
  }

  void ReleaseBuffer(uint32_t buffer_id) override {
    Recycle(buffer_id);
    FlushRecycled();
  }

  // ---------------------------------------------------------- listeners

  absl::Status StartAccepting(SocketHandle fd, AcceptSink* sink) override {
    auto reg = std::make_unique<AcceptReg>();
    reg->fd = fd;
    reg->sink = sink;
    ArmAccept(reg.get());
    accepts_.push_back(std::move(reg));
    return absl::OkStatus();
  }

  void StopAccepting(SocketHandle fd, AcceptSink* sink) override {
    // The accept in flight holds the socket open after the caller closes
    // its fd; shutting it down stops the listening now, so new clients are
    // refused at once rather than queued on a socket nobody accepts from.
    ::shutdown(fd, SHUT_RDWR);
    for (auto& reg : accepts_) {
      if (reg->fd == fd && reg->sink == sink && !reg->dead) {
        reg->dead = true;
        reg->sink = nullptr;
        if (reg->armed) Cancel(Tag(reg.get(), kOpSocket));
      }
    }
    SubmitNow();  // before the caller closes the fd
    // Freed by Poll once the final completion came (the sink may be calling
    // from inside a completion of this very registration).
  }

  // ---------------------------------------------------------- datagrams

  absl::Status StartReceivingDatagrams(SocketHandle fd, DatagramSink* sink, size_t max_datagram,
                                       size_t batch) override {
    auto reg = std::make_unique<DatagramReg>();
    reg->fd = fd;
    reg->sink = sink;
    // recvmsg writes a header, the sender's name, then the payload, all in
    // the one buffer.
    reg->max_payload = std::max<size_t>(max_datagram, 1);
    const size_t size =
        sizeof(io_uring_recvmsg_out) + sizeof(sockaddr_storage) + reg->max_payload;
    // Rounded up so every buffer's header is aligned; the slack is not
    // shown (max_payload).
    const unsigned count = static_cast<unsigned>(std::bit_ceil(std::clamp<size_t>(batch, 8, 4096)));
    if (absl::Status s = reg->buffers.Map(static_cast<unsigned>((size + 63) & ~size_t{63}), count);
        !s.ok()) {
      return s;
    }
    if (!free_groups_.empty()) {
      reg->group = free_groups_.back();
      free_groups_.pop_back();
    } else {
      reg->group = next_group_++;
    }
    reg->header.msg_namelen = sizeof(sockaddr_storage);
    DatagramReg* r = reg.get();
    datagrams_.push_back(std::move(reg));
    // Before the loop's first Poll the ring does not exist yet: CreateRing
    // registers the buffers and arms the receive.
    if (ring_ok_) {
      if (absl::Status s = RegisterDatagramBuffers(r); !s.ok()) {
        r->dead = true;
        r->sink = nullptr;
        return s;
      }
      ArmDatagramReceive(r);
    }
    return absl::OkStatus();
  }

  void StopReceivingDatagrams(SocketHandle fd, DatagramSink* sink) override {
    for (auto& reg : datagrams_) {
      if (reg->fd != fd || reg->sink != sink || reg->dead) continue;
      reg->dead = true;
      reg->sink = nullptr;
      if (reg->armed) Cancel(Tag(reg.get(), kOpSocket));
    }
    SubmitNow();  // the queued sends and the cancel reach the kernel before the close
  }

  bool SendDatagram(DatagramSink* sink, std::span<const std::string_view> pieces,
                    const sockaddr* to, socklen_t to_len) override {
    DatagramReg* reg = nullptr;
    for (auto& r : datagrams_) {
      if (r->sink == sink && !r->dead) reg = r.get();
    }
    if (reg == nullptr || to_len > sizeof(sockaddr_storage)) return false;
    DatagramSend* send;
    if (!free_datagram_sends_.empty()) {
      send = free_datagram_sends_.back();
      free_datagram_sends_.pop_back();
    } else if (datagram_sends_.size() < kMaxDatagramSends) {
      datagram_sends_.push_back(std::make_unique<DatagramSend>());
      send = datagram_sends_.back().get();
    } else {
      return false;
    }
    send->socket = reg;
    ++reg->sends;
    send->bytes.clear();
    for (std::string_view p : pieces) send->bytes.append(p.data(), p.size());
    memcpy(&send->to, to, to_len);
    send->iov = {send->bytes.data(), send->bytes.size()};
    send->header = {};
    send->header.msg_name = &send->to;
    send->header.msg_namelen = to_len;
    send->header.msg_iov = &send->iov;
    send->header.msg_iovlen = 1;
    io_uring_sqe* sqe = Sqe();
    // MSG_DONTWAIT: a full send buffer fails the datagram now (dropped and
    // counted, as sendmmsg's caller does) instead of parking it in the ring.
    io_uring_prep_sendmsg(sqe, reg->fd, &send->header, MSG_DONTWAIT | MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, Tag(send, kOpSocket));
    return true;
  }

 private:
  struct PollSlot {
    IoWatcher* watcher = nullptr;
    int fd = -1;
    uint32_t mask = 0;
    uint32_t generation = 0;
    bool in_flight = false;
  };
  // What a kOpSocket completion points at.
  struct SocketReg {
    enum class Kind : uint8_t { kAccept, kDatagramReceive, kDatagramSend };
    explicit SocketReg(Kind k) : kind(k) {}
    const Kind kind;
  };
  struct AcceptReg : SocketReg {
    AcceptReg() : SocketReg(Kind::kAccept) {}
    int fd = -1;
    AcceptSink* sink = nullptr;
    bool armed = false;
    bool dead = false;
  };
  // A UDP socket served by StartReceivingDatagrams: its buffer ring (group
  // `group`) and the multishot recvmsg on it.
  struct DatagramReg : SocketReg {
    DatagramReg() : SocketReg(Kind::kDatagramReceive) {}
    int fd = -1;
    DatagramSink* sink = nullptr;
    uint16_t group = 0;
    size_t max_payload = 0;  // Options::udp_max_datagram
    BufferRing buffers;
    msghdr header{};  // what recvmsg keeps per datagram: the sender's name
    bool registered = false;  // the buffer ring is registered with the io_uring
    bool armed = false;
    bool dead = false;
    size_t sends = 0;  // DatagramSends queued or in flight
  };
  // One queued datagram: its header, address and bytes live here until the
  // completion (the kernel reads them when it runs the operation).
  struct DatagramSend : SocketReg {
    DatagramSend() : SocketReg(Kind::kDatagramSend) {}
    DatagramReg* socket = nullptr;
    msghdr header{};
    iovec iov{};
    sockaddr_storage to{};
    std::string bytes;  // capacity kept when the slot is reused
  };

  // Whether the driver implements poll (/dev/null does not): epoll knows.
  static bool CharDeviceIsPollable(int fd) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) return true;
    epoll_event ev{};
    ev.events = EPOLLIN;
    bool ok = epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0;
    ::close(ep);
    return ok;
  }

  static uint64_t PollTag(uint32_t slot, uint32_t generation) {
    return (static_cast<uint64_t>(slot) << 32) | (static_cast<uint64_t>(generation) << 3) |
           kOpPoll;
  }

  // Every operation that points at a stream holds it until its final
  // completion.
  void HoldOp(Stream* s) {
    s->Hold();
    ++in_flight_;
  }
  void UnholdOp(Stream* s) {
    --in_flight_;
    s->Unhold();
  }

  char* BufferAt(unsigned bid) { return pool_.At(bid); }

  io_uring_sqe* Sqe() {
    if (!ring_ok_) {
      // Before the loop's first Poll: staged, copied in by CreateRing. The
      // pointer is used at once, before the next Sqe().
      staged_.emplace_back();
      memset(&staged_.back(), 0, sizeof(io_uring_sqe));
      return &staged_.back();
    }
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    while (sqe == nullptr) {
      // The queue is full: submit what is there (the loop thread only, once
      // the ring is enabled; before that, nothing fills 1024 entries).
      io_uring_submit(&ring_);
      sqe = io_uring_get_sqe(&ring_);
    }
    return sqe;
  }

  // Cancels the operation whose user_data is `target`. The kernel answers
  // EALREADY while the operation is mid-completion (a multishot one then
  // goes on), so the cancellation is kept until it is answered otherwise.
  void Cancel(uint64_t target, bool poll = false) {
    uint32_t index;
    if (!free_cancels_.empty()) {
      index = free_cancels_.back();
      free_cancels_.pop_back();
      cancels_[index] = {target, poll};
    } else {
      index = static_cast<uint32_t>(cancels_.size());
      cancels_.push_back({target, poll});
    }
    PrepCancel(index);
  }
  void PrepCancel(uint32_t index) {
    io_uring_sqe* sqe = Sqe();
    if (cancels_[index].poll) {
      io_uring_prep_poll_remove(sqe, cancels_[index].target);
    } else {
      io_uring_prep_cancel64(sqe, cancels_[index].target, 0);
    }
    io_uring_sqe_set_data64(sqe, (static_cast<uint64_t>(index) << 3) | kOpCancel);
  }
  void OnCancelDone(uint32_t index, int res) {
    if (res == -EALREADY) {
      // The operation is mid-completion: its task work runs in the next
      // wait for events, after that round's submissions, so a retry sent
      // with them would be refused again (thousands of them, after a mass
      // reset, kept the loop busy refusing). Retry a round later.
      cancel_retries_.push_back(index);
      return;
    }
    free_cancels_.push_back(index);
  }
  // At the end of each Poll: the retries the previous Poll collected.
  void RetryCancels() {
    for (uint32_t index : retry_now_) PrepCancel(index);
    retry_now_.clear();
    retry_now_.swap(cancel_retries_);
  }

  void SubmitNow() {
    if (ring_ok_) io_uring_submit(&ring_);
  }

  void ArmPoll(uint32_t slot) {
    PollSlot& ps = slots_[slot];
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_poll_multishot(sqe, ps.fd, ps.mask);
    io_uring_sqe_set_data64(sqe, PollTag(slot, ps.generation));
  }

  void ArmRecv(Stream* s) {
    io_uring_sqe* sqe = Sqe();
    if (s->io_flags_ & kWantOneShot) {
      io_uring_prep_recv(sqe, s->fd_, nullptr, buf_size_, 0);
      s->io_flags_ |= kRecvOneShot;
    } else {
      io_uring_prep_recv_multishot(sqe, s->fd_, nullptr, 0, 0);
      s->io_flags_ &= ~kRecvOneShot;
    }
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = kBufferGroup;
    io_uring_sqe_set_data64(sqe, Tag(s, kOpRecv));
    s->io_flags_ |= kRecvArmed;
    HoldOp(s);
  }

  void Prepare(Operation* op) {
    io_uring_sqe* sqe = Sqe();
    switch (op->kind) {
      case Operation::Kind::kReceive:
        io_uring_prep_recv(sqe, op->fd, op->data, op->size, 0);
        if (op->expect_empty) sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
        break;
      case Operation::Kind::kReceiveBuffer:
        io_uring_prep_recv(sqe, op->fd, nullptr,
                           static_cast<unsigned>(std::min<size_t>(buf_size_, op->size)), 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = kBufferGroup;
        break;
      case Operation::Kind::kSend:
        io_uring_prep_send(sqe, op->fd, op->data, op->size, MSG_NOSIGNAL);
        break;
      case Operation::Kind::kWaitWritable:
        io_uring_prep_poll_add(sqe, op->fd, POLLOUT);
        break;
      case Operation::Kind::kWaitReadable:
        io_uring_prep_poll_add(sqe, op->fd, POLLIN);
        break;
      case Operation::Kind::kConnect:
        io_uring_prep_connect(sqe, op->fd, op->peer->sockaddr_ptr(), op->peer->length());
        break;
      case Operation::Kind::kReceiveFrom:
      case Operation::Kind::kSendTo:
        break;  // never prepared: Submit completes them with -EOPNOTSUPP
    }
    io_uring_sqe_set_data64(sqe, Tag(op, kOpFiber));
  }

  void OnOperation(Operation* op, const io_uring_cqe& cqe) {
    int result = cqe.res;
    const bool receive = op->kind == Operation::Kind::kReceive ||
                         op->kind == Operation::Kind::kReceiveBuffer;
    if (cqe.flags & IORING_CQE_F_BUFFER) {
      const unsigned bid = cqe.flags >> IORING_CQE_BUFFER_SHIFT;
      if (result > 0) {
        op->buffer = BufferAt(bid);
        op->buffer_id = bid;
      } else {
        Recycle(bid);
      }
    }
    if (result == -ENOBUFS && op->kind == Operation::Kind::kReceiveBuffer) {
      out_of_buffers_.push_back(op);  // still in flight: see Poll
      returned_at_failure_ = buffers_returned_;
      return;
    }
    --one_shot_in_flight_;
    if (receive && result > 0) {
      // Only failures are injected here: the kernel has already consumed
      // the bytes, so a "short read" cannot be put back.
      const ssize_t fault = FaultCompletedReceive(static_cast<size_t>(result));
      if (fault < 0) {
        if (op->buffer != nullptr) {
          Recycle(op->buffer_id);
          op->buffer = nullptr;
        }
        result = static_cast<int>(fault);
      }
    }
    op->OnComplete(result);
  }

  void ArmAccept(AcceptReg* reg) {
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_multishot_accept(sqe, reg->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, Tag(reg, kOpSocket));
    reg->armed = true;
  }

  void Recycle(unsigned bid) {
    ++buffers_returned_;
    pool_.Add(bid, recycled_);
    ++recycled_;
  }
  void FlushRecycled() {
    if (recycled_ == 0) return;
    pool_.Advance(recycled_);
    recycled_ = 0;
  }

  // What waited for the stream's send to end: outbound storage that moved
  // while the send pointed into it, and a lent buffer already given back.
  void ReleaseAfterSend(Stream* s) {
    retained_.FreeFor(s);
    if (s->io_lent_ & kReturnAfterSend) RecycleLent(s);
  }
  void RecycleLent(Stream* s) {
    s->io_lent_ = 0;
    --lent_count_;
    Recycle(s->io_lent_buffer_);
    FlushRecycled();
  }

  void Dispatch(const io_uring_cqe& cqe) {
    const uint64_t data = cqe.user_data;
    const uint64_t tag = data & kTagMask;
    const bool more = cqe.flags & IORING_CQE_F_MORE;
    switch (tag) {
      case kOpCancel:
        OnCancelDone(static_cast<uint32_t>(data >> 3), cqe.res);
        return;
      case kOpIgnore:
        if (cqe.flags & IORING_CQE_F_BUFFER) Recycle(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
        return;
      case kOpRecv: {
        // Held across the sink's calls: a handler may detach or close the
        // stream, which can release this very operation's hold.
        auto* s = reinterpret_cast<Stream*>(data & ~kTagMask);
        s->Hold();
        OnRecv(s, cqe, more);
        s->Unhold();
        return;
      }
      case kOpSend: {
        auto* s = reinterpret_cast<Stream*>(data & ~kTagMask);
        s->Hold();  // as for receives
        s->io_flags_ &= ~kSendBusy;
        ReleaseAfterSend(s);
        if ((cqe.res >= 0 && static_cast<uint32_t>(cqe.res) < s->io_send_size_) ||
            cqe.res == -EAGAIN) {
          // A short send: the socket is full, the peer reads slower than
          // we write. A multishot recv would go on filling buffers, dozens
          // per round, until a cancellation reached it, and each may turn
          // into more output; from here on the stream receives one buffer
          // per submission until it has caught up, so that backpressure
          // stops it within a buffer.
          s->io_flags_ |= kWantOneShot;
          if ((s->io_flags_ & kRecvArmed) && !(s->io_flags_ & kRecvOneShot)) {
            Cancel(Tag(s, kOpRecv));  // its final completion re-arms it single-shot
          }
        }
        if (!(s->io_flags_ & kDead)) s->OnSendReady(cqe.res == -EAGAIN ? 0 : cqe.res);
        UnholdOp(s);
        s->Unhold();
        return;
      }
      case kOpConnect: {
        auto* s = reinterpret_cast<Stream*>(data & ~kTagMask);
        s->Hold();  // as for receives
        s->io_flags_ &= ~kConnectArmed;
        if (!(s->io_flags_ & kDead)) {
          s->OnConnected(cqe.res < 0 ? -cqe.res : SocketError(s->fd_));
        }
        UnholdOp(s);
        s->Unhold();
        return;
      }
      case kOpPoll: {
        const uint32_t slot = static_cast<uint32_t>(data >> 32);
        const uint32_t gen = static_cast<uint32_t>(data >> 3) & 0x1FFFFFFF;
        if (slot >= slots_.size() || slots_[slot].generation != gen) return;
        PollSlot& ps = slots_[slot];
        if (ps.watcher != nullptr && cqe.res >= 0) {
          ps.watcher->OnIoReady(FromPollMask(static_cast<uint32_t>(cqe.res)));
        } else if (ps.watcher != nullptr && cqe.res != -ECANCELED) {
          ps.watcher->OnIoReady(kIoError);
        }
        if (!more && slot < slots_.size()) {
          PollSlot& again = slots_[slot];
          if (again.generation != gen) return;  // re-watched from the callback
          if (again.watcher != nullptr) {
            ArmPoll(slot);  // the kernel ended the multishot poll: re-arm
          } else {
            again.in_flight = false;
            free_slots_.push_back(slot);
          }
        }
        return;
      }
      case kOpSocket: {
        auto* reg = reinterpret_cast<SocketReg*>(data & ~kTagMask);
        switch (reg->kind) {
          case SocketReg::Kind::kAccept:
            OnAccept(static_cast<AcceptReg*>(reg), cqe, more);
            return;
          case SocketReg::Kind::kDatagramReceive:
            OnDatagramReceived(static_cast<DatagramReg*>(reg), cqe, more);
            return;
          case SocketReg::Kind::kDatagramSend:
            OnDatagramSent(static_cast<DatagramSend*>(reg), cqe.res);
            return;
        }
        return;
      }
      case kOpFiber:
        OnOperation(reinterpret_cast<Operation*>(data & ~kTagMask), cqe);
        return;
    }
  }

  void OnRecv(Stream* s, const io_uring_cqe& cqe, bool more) {
    const bool has_buffer = cqe.flags & IORING_CQE_F_BUFFER;
    const unsigned bid = cqe.flags >> IORING_CQE_BUFFER_SHIFT;
    if (cqe.res > 0) {
      const ssize_t fault = FaultCompletedReceive(static_cast<size_t>(cqe.res));
      if (fault < 0 && !(s->io_flags_ & kDead)) {
        Recycle(bid);
        s->io_flags_ &= ~kRecvWanted;
        s->OnReceiveEnded(static_cast<int>(-fault));
        if (!more) {
          s->io_flags_ &= ~kRecvArmed;
          UnholdOp(s);
        }
        return;
      }
      bool lent = false;
      if (!(s->io_flags_ & kDead)) {
        // A short "read" from the injector: the same bytes in two pieces.
        const size_t first = static_cast<size_t>(fault);
        const std::string_view all(BufferAt(bid), static_cast<size_t>(cqe.res));
        delivering_ = s;
        delivering_buffer_ = bid;
        delivering_size_ = all.size();
        delivering_lent_ = false;
        s->OnReceived(all.substr(0, first));
        if (first < all.size() && !(s->io_flags_ & kDead)) s->OnReceived(all.substr(first));
        delivering_ = nullptr;
        lent = delivering_lent_;
      } else if (!s->released()) {
        NETLOOP_LOG(kWarning) << "io_uring: bytes for a detached stream dropped";
      }
      if (has_buffer && !lent) Recycle(bid);
    } else {
      if (has_buffer) Recycle(bid);
      if (cqe.res == 0) {
        s->io_flags_ &= ~kRecvWanted;
        if (!(s->io_flags_ & kDead)) s->OnReceiveEnded(0);
      } else if (cqe.res != -ENOBUFS && cqe.res != -ECANCELED && cqe.res != -EINTR &&
                 cqe.res != -EAGAIN) {
        s->io_flags_ &= ~kRecvWanted;
        if (!(s->io_flags_ & kDead)) s->OnReceiveEnded(-cqe.res);
      }
    }
    if (!more) {
      s->io_flags_ &= ~kRecvArmed;
      // Single-shot, ended by the kernel (buffer ring empty, or it chose
      // to), or cancelled to change mode while the owner wants more: arm
      // again. It is submitted by the next Poll, after the buffers this
      // round consumed are back in the ring.
      if ((s->io_flags_ & kRecvWanted) && !(s->io_flags_ & kDead)) ArmRecv(s);
      UnholdOp(s);
    }
  }

  void OnAccept(AcceptReg* reg, const io_uring_cqe& cqe, bool more) {
    if (!more) reg->armed = false;
    if (cqe.res >= 0) {
      if (reg->sink == nullptr) {
        ::close(cqe.res);  // the listener is closing
      } else {
        reg->sink->OnAccepted(cqe.res, PeerAddressOf(cqe.res));
      }
    } else if (reg->sink != nullptr) {
      const int err = -cqe.res;
      switch (err) {
        case ECANCELED:
        case EINTR:
        case EAGAIN:
        case ECONNABORTED:
        case EPROTO:
        case EPERM:
          break;
        default: {
          // Descriptor exhaustion and such: stop, and let the sink decide
          // when to try again (it calls StartAccepting).
          AcceptSink* sink = reg->sink;
          reg->dead = true;
          reg->sink = nullptr;
          if (reg->armed) Cancel(Tag(reg, kOpSocket));
          sink->OnAcceptFailed(err);
          break;
        }
      }
    }
    if (!reg->armed && !reg->dead && reg->sink != nullptr) ArmAccept(reg);
  }

  void ReapAccepts() {
    accepts_.erase(std::remove_if(accepts_.begin(), accepts_.end(),
                                  [](const std::unique_ptr<AcceptReg>& r) {
                                    return r->dead && !r->armed;
                                  }),
                   accepts_.end());
  }

  absl::Status RegisterDatagramBuffers(DatagramReg* reg) {
    const int rc =
        RegisterBufferRing(&ring_, reg->buffers.ring(), reg->buffers.count(), reg->group);
    if (rc < 0) {
      return absl::UnavailableError(
          absl::StrCat("io_uring: datagram buffer ring: ", strerror(-rc)));
    }
    reg->registered = true;
    return absl::OkStatus();
  }

  void ArmDatagramReceive(DatagramReg* reg) {
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_recvmsg_multishot(sqe, reg->fd, &reg->header, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = reg->group;
    io_uring_sqe_set_data64(sqe, Tag(reg, kOpSocket));
    reg->armed = true;
  }

  void OnDatagramReceived(DatagramReg* reg, const io_uring_cqe& cqe, bool more) {
    if (!more) reg->armed = false;
    if (cqe.flags & IORING_CQE_F_BUFFER) {
      const unsigned bid = cqe.flags >> IORING_CQE_BUFFER_SHIFT;
      char* buffer = reg->buffers.At(bid);
      if (cqe.res > 0 && reg->sink != nullptr) {
        io_uring_recvmsg_out* out = io_uring_recvmsg_validate(buffer, cqe.res, &reg->header);
        if (out != nullptr) {
          const socklen_t name_len = std::min<socklen_t>(out->namelen, reg->header.msg_namelen);
          const size_t length = io_uring_recvmsg_payload_length(out, cqe.res, &reg->header);
          const std::string_view payload(
              static_cast<const char*>(io_uring_recvmsg_payload(out, &reg->header)),
              std::min(length, reg->max_payload));
          reg->sink->OnDatagram(payload,
                                static_cast<const sockaddr*>(io_uring_recvmsg_name(out)),
                                name_len,
                                (out->flags & MSG_TRUNC) != 0 || length > reg->max_payload);
        }
      }
      // Back in the socket's ring at once: the sink has copied what it keeps.
      reg->buffers.Add(bid, 0);
      reg->buffers.Advance(1);
    } else if (cqe.res < 0 && cqe.res != -ENOBUFS && cqe.res != -ECANCELED &&
               cqe.res != -EINTR && cqe.res != -EAGAIN && !reg->dead) {
      // Not a pause but a refusal (EINVAL from a kernel without multishot
      // recvmsg, say): arming again would fail again at once, every round.
      if (!more) {
        EndDatagramServing(reg, absl::InternalError(
                                    absl::StrCat("io_uring recvmsg: ", strerror(-cqe.res))));
      }
      return;
    }
    // Ended by the kernel (its buffers all taken, ENOBUFS, or by choice):
    // the datagrams wait in the socket's queue until the next submission
    // re-arms it, by which time this round's buffers are back.
    if (!reg->armed && !reg->dead) ArmDatagramReceive(reg);
  }

  // Gives the socket back to its sink, which watches it from here on.
  void EndDatagramServing(DatagramReg* reg, const absl::Status& why) {
    DatagramSink* sink = reg->sink;
    reg->dead = true;
    reg->sink = nullptr;
    if (reg->armed) Cancel(Tag(reg, kOpSocket));
    if (sink != nullptr) sink->OnDatagramServingEnded(why);
  }

  void OnDatagramSent(DatagramSend* send, int result) {
    DatagramReg* reg = send->socket;
    --reg->sends;
    send->socket = nullptr;
    free_datagram_sends_.push_back(send);
    if (result < 0 && reg->sink != nullptr) reg->sink->OnDatagramSendFailed(-result);
  }

  void ReapDatagramSockets() {
    for (size_t i = 0; i < datagrams_.size();) {
      DatagramReg* reg = datagrams_[i].get();
      if (!reg->dead || reg->armed || reg->sends > 0) {
        ++i;
        continue;
      }
      if (reg->registered) io_uring_unregister_buf_ring(&ring_, reg->group);
      free_groups_.push_back(reg->group);
      datagrams_.erase(datagrams_.begin() + static_cast<long>(i));
    }
  }

  io_uring ring_;
  bool created_ = false;
  bool ring_ok_ = false;
  std::vector<io_uring_sqe> staged_;
  const unsigned buf_size_;
  const unsigned buf_count_;
  BufferRing pool_;  // streams' and fibers' receive buffers (kBufferGroup)
  int recycled_ = 0;
  size_t in_flight_ = 0;
  std::vector<Stream*> pending_sends_;  // sends to prepare before the next submission
  std::vector<Stream*> flushing_;       // FlushSends' batch (kept for its capacity)
  std::vector<msghdr> send_headers_;
  std::vector<iovec> send_iovs_;
  std::vector<PollSlot> slots_;
  std::vector<uint32_t> free_slots_;
  absl::flat_hash_map<IoWatcher*, uint32_t> by_watcher_;
  std::vector<std::unique_ptr<AcceptReg>> accepts_;
  std::vector<std::unique_ptr<DatagramReg>> datagrams_;
  uint16_t next_group_ = kBufferGroup + 1;
  std::vector<uint16_t> free_groups_;
  std::vector<std::unique_ptr<DatagramSend>> datagram_sends_;  // every slot made
  std::vector<DatagramSend*> free_datagram_sends_;
  RetainedBlocks retained_;
  // The receive being delivered (OnRecv), for LendDeliveredBuffer.
  Stream* delivering_ = nullptr;
  unsigned delivering_buffer_ = 0;
  size_t delivering_size_ = 0;
  bool delivering_lent_ = false;  // lent during this delivery: not recycled after it
  unsigned lent_count_ = 0;       // buffers lent to streams now
  struct PendingCancel {
    uint64_t target;
    bool poll;
  };
  std::vector<PendingCancel> cancels_;
  std::vector<uint32_t> free_cancels_;
  std::vector<uint32_t> cancel_retries_;  // refused this round
  std::vector<uint32_t> retry_now_;       // refused last round: sent at this Poll's end
  std::vector<Operation*> out_of_buffers_;  // receives that found no buffer
  uint64_t buffers_returned_ = 0;           // Recycle calls, ever
  uint64_t returned_at_failure_ = 0;        // buffers_returned_ at the last ENOBUFS
  size_t one_shot_in_flight_ = 0;           // Operations submitted, not completed
  std::vector<std::pair<Operation*, int>> injected_;  // fault-injected completions
};

absl::Status ProbeIoUring() {
  // On a thread of its own: the probing thread is tied to the ring it made
  // (see Init), and this one ends right after.
  absl::Status status;
  std::thread([&status] {
    const unsigned entries = 8;
    void* mem = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED) {
      status = absl::ResourceExhaustedError("mmap");
      return;
    }
    auto* br = static_cast<io_uring_buf_ring*>(mem);
    io_uring_buf_ring_init(br);
    io_uring ring;
    status = IoUringBackend::SetUpRing(&ring, br, entries);
    if (status.ok()) io_uring_queue_exit(&ring);
    munmap(mem, 4096);
  }).join();
  return status;
}

absl::StatusOr<std::unique_ptr<Backend>> NewIoUringBackend(const BackendOptions& options) {
  auto backend = std::make_unique<IoUringBackend>(options);
  if (absl::Status s = backend->Init(); !s.ok()) return s;
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace netloop::internal
