// The epoll backend: readiness plus the syscall. Streams and listeners are
// registered with epoll like any watcher; when one is ready, the backend
// makes the syscall (read into the loop-shared buffer, accept4, send) and
// hands the outcome to the owner's sink.
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "reactor/address.h"
#include "reactor/internal/backend.h"
#include "reactor/internal/socket_ops.h"
#include "reactor/internal/sys_io.h"

namespace netloop::internal {

namespace {
// Accepts per readiness event before the loop serves others: bounds the time
// one listener can hold the loop during a connection storm.
constexpr int kAcceptBatch = 64;

// epoll_event.data tags (pointers are at least 8-aligned).
constexpr uint64_t kTagWatcher = 0;
constexpr uint64_t kTagStream = 1;
constexpr uint64_t kTagListener = 2;
constexpr uint64_t kTagMask = 3;

// io_interest_ bits of a stream.
constexpr uint8_t kWantRead = 1;
constexpr uint8_t kWantWrite = 2;
constexpr uint8_t kConnecting = 4;
constexpr uint8_t kRegistered = 8;
}  // namespace

class EpollBackend final : public Backend {
 public:
  EpollBackend(int epfd, const BackendOptions& o)
      : epfd_(epfd),
        read_buffer_(o.read_buffer),
        read_buffer_size_(o.read_buffer_size),
        edge_triggered_(o.edge_triggered),
        read_budget_(std::max<size_t>(o.read_budget_per_event, 1)),
        events_(kInitialEvents) {}
  ~EpollBackend() override { close(epfd_); }

  const char* name() const override {
    return edge_triggered_ ? "epoll(edge)" : "epoll(level)";
  }
  BackendKind kind() const override { return BackendKind::kEpoll; }
  bool completion() const override { return false; }
  bool edge_triggered() const override { return edge_triggered_; }

  // ---------------------------------------------------------- watchers

  absl::Status Watch(SocketHandle fd, uint32_t interest, IoWatcher* watcher) override {
    return Control(EPOLL_CTL_ADD, fd, ToEpoll(interest), Tagged(watcher, kTagWatcher));
  }
  absl::Status Modify(SocketHandle fd, uint32_t interest, IoWatcher* watcher) override {
    return Control(EPOLL_CTL_MOD, fd, ToEpoll(interest), Tagged(watcher, kTagWatcher));
  }
  absl::Status Unwatch(SocketHandle fd, IoWatcher* watcher) override {
    return Remove(fd, Tagged(watcher, kTagWatcher));
  }

  int Poll(int64_t timeout_ns) override {
    RunReinvokes();
    int timeout_ms;
    if (!reinvokes_.empty()) {
      timeout_ms = 0;
    } else if (timeout_ns < 0) {
      timeout_ms = -1;
    } else {
      // Round up: waking early would spin on a timer that is not due yet.
      int64_t ms = (timeout_ns + 999'999) / 1'000'000;
      timeout_ms = ms > 3'600'000 ? 3'600'000 : static_cast<int>(ms);
    }
    int n = epoll_wait(epfd_, events_.data(), static_cast<int>(events_.size()), timeout_ms);
    if (n <= 0) return 0;  // EINTR counts as a spurious wake-up
    ready_ = n;
    int dispatched = 0;
    for (cursor_ = 0; cursor_ < n; ++cursor_) {
      const uint64_t data = events_[cursor_].data.u64;
      if (data == 0) continue;
      const uint32_t ev = events_[cursor_].events;
      void* p = reinterpret_cast<void*>(data & ~kTagMask);
      switch (data & kTagMask) {
        case kTagWatcher:
          static_cast<IoWatcher*>(p)->OnIoReady(Translate(ev));
          break;
        case kTagStream:
          DispatchStream(static_cast<Stream*>(p), ev);
          break;
        case kTagListener:
          DispatchListener(static_cast<ListenReg*>(p));
          break;
      }
      ++dispatched;
    }
    ready_ = 0;
    cursor_ = -1;
    // A full batch suggests more are waiting: grow (this allocation happens a
    // handful of times per loop lifetime, never in steady state).
    if (n == static_cast<int>(events_.size()) && events_.size() < kMaxEvents) {
      events_.resize(events_.size() * 2);
    }
    return dispatched;
  }

  bool HasPendingWork() const override { return !reinvokes_.empty(); }
  size_t OperationsInFlight() const override { return 0; }

  // ---------------------------------------------------------- streams

  absl::Status SetStreamInterest(Stream* s, bool receive, bool want_writable,
                                 bool /*backlogged*/) override {
    const uint8_t want = (receive ? kWantRead : 0) | (want_writable ? kWantWrite : 0);
    const uint8_t registered = s->io_interest_ & kRegistered;
    if (registered && (s->io_interest_ & (kWantRead | kWantWrite | kConnecting)) == want) {
      return absl::OkStatus();
    }
    s->io_interest_ = want | registered;
    return Sync(s);
  }

  long Send(Stream* s, const iovec* iov, int count) override {
    ssize_t n;
    if (count == 1) {
      do {
        // MSG_NOSIGNAL: a peer that reset mid-write is an error to report,
        // never a SIGPIPE that kills the process.
        n = SysSend(s->fd_, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
      } while (n < 0 && errno == EINTR);
    } else {
      msghdr msg;
      memset(&msg, 0, sizeof(msg));
      msg.msg_iov = const_cast<iovec*>(iov);
      msg.msg_iovlen = static_cast<size_t>(count);
      do {
        n = SysSendMsg(s->fd_, &msg, MSG_NOSIGNAL);
      } while (n < 0 && errno == EINTR);
    }
    if (n >= 0) return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return kSendAgain;
    return -errno;
  }

  long SendFile(Stream* s, int file_fd, uint64_t* offset, size_t count) override {
    const long n = SendFileOnce(s->fd_, file_fd, offset, count);
    return n == -EAGAIN ? kSendAgain : n;
  }

  bool SendInFlight(const Stream*) const override { return false; }
  void RetainUntilSent(Stream*, void* block) override { ::operator delete(block); }

  void ShutdownWrite(Stream* s) override { ::shutdown(s->fd_, SHUT_WR); }

  absl::Status AwaitConnect(Stream* s, const SocketAddress&) override {
    s->io_interest_ = kConnecting | (s->io_interest_ & kRegistered);
    return Sync(s);
  }

  void CloseStream(Stream* s) override {
    Forget(s);
    if (IsValidSocket(s->fd_)) ::close(s->fd_);
    s->fd_ = kInvalidSocket;
  }

  absl::Status DetachStream(Stream* s, std::string*, size_t* sent) override {
    *sent = 0;
    Forget(s);
    return absl::OkStatus();
  }

  // ---------------------------------------------------------- listeners

  absl::Status StartAccepting(SocketHandle fd, AcceptSink* sink) override {
    auto reg = std::make_unique<ListenReg>(ListenReg{fd, sink});
    absl::Status s = Control(EPOLL_CTL_ADD, fd, EPOLLIN | (edge_triggered_ ? EPOLLET : 0),
                             Tagged(reg.get(), kTagListener));
    if (s.ok()) listeners_.push_back(std::move(reg));
    return s;
  }

  void StopAccepting(SocketHandle fd, AcceptSink* sink) override {
    for (size_t i = 0; i < listeners_.size(); ++i) {
      if (listeners_[i]->fd != fd || listeners_[i]->sink != sink) continue;
      (void)Remove(fd, Tagged(listeners_[i].get(), kTagListener));
      listeners_.erase(listeners_.begin() + static_cast<long>(i));
      return;
    }
  }

  // A readiness backend has no one-shot operations: FiberConn makes the
  // syscalls itself and parks on readiness (see Watch).
  void Submit(Operation* op) override { op->OnComplete(-EOPNOTSUPP); }
  void CancelOperation(Operation*, bool) override {}
  void ReleaseBuffer(uint32_t) override {}

 private:
  static constexpr size_t kInitialEvents = 256;
  static constexpr size_t kMaxEvents = 4096;

  struct ListenReg {
    int fd;
    AcceptSink* sink;
  };

  static uint64_t Tagged(const void* p, uint64_t tag) {
    return reinterpret_cast<uint64_t>(p) | tag;
  }

  static uint32_t Translate(uint32_t e) {
    uint32_t out = 0;
    if (e & (EPOLLIN | EPOLLPRI)) out |= kIoReadable;
    if (e & EPOLLOUT) out |= kIoWritable;
    if (e & EPOLLRDHUP) out |= kIoPeerClosed;
    if (e & (EPOLLERR | EPOLLHUP)) out |= kIoError;
    return out;
  }

  uint32_t ToEpoll(uint32_t interest) const {
    uint32_t ev = 0;
    if (interest & kIoPeerClosed) ev |= EPOLLRDHUP;
    if (interest & kIoReadable) ev |= EPOLLIN;
    if (interest & kIoWritable) ev |= EPOLLOUT;
    if (edge_triggered_ || (interest & kIoEdgeTriggered)) ev |= EPOLLET;
    return ev;
  }

  absl::Status Control(int op, SocketHandle fd, uint32_t events, uint64_t data) {
    epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = events;
    ev.data.u64 = data;
    if (epoll_ctl(epfd_, op, fd, &ev) != 0) {
      return absl::Status(absl::ErrnoToStatusCode(errno),
                          absl::StrCat(op == EPOLL_CTL_ADD ? "epoll_ctl(ADD)"
                                                           : "epoll_ctl(MOD)",
                                       " fd ", fd, ": ", strerror(errno)));
    }
    return absl::OkStatus();
  }

  absl::Status Remove(SocketHandle fd, uint64_t data) {
    // Drop events this Poll already collected, so that a handler may close
    // and free another connection mid-dispatch.
    for (int i = cursor_ + 1; i < ready_; ++i) {
      if (events_[i].data.u64 == data) events_[i].data.u64 = 0;
    }
    for (auto& r : reinvokes_) {
      if (r == data) r = 0;
    }
    for (auto& r : reinvoking_) {
      if (r == data) r = 0;
    }
    if (epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr) != 0 && errno != EBADF &&
        errno != ENOENT) {
      return absl::InternalError(absl::StrCat("epoll_ctl(DEL): ", strerror(errno)));
    }
    return absl::OkStatus();
  }

  // Brings epoll's registration of `s` in line with its io_interest_.
  absl::Status Sync(Stream* s) {
    uint32_t ev = 0;
    if (s->io_interest_ & kConnecting) {
      ev = EPOLLOUT;
    } else {
      if (s->io_interest_ & kWantRead) ev |= EPOLLIN | EPOLLRDHUP;
      if (s->io_interest_ & kWantWrite) ev |= EPOLLOUT;
    }
    if (edge_triggered_) ev |= EPOLLET;
    const bool registered = s->io_interest_ & kRegistered;
    absl::Status st = Control(registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s->fd_, ev,
                              Tagged(s, kTagStream));
    if (st.ok()) s->io_interest_ |= kRegistered;
    return st;
  }

  void Forget(Stream* s) {
    if (s->io_interest_ & kRegistered) (void)Remove(s->fd_, Tagged(s, kTagStream));
    s->io_interest_ = 0;
  }

  void DispatchStream(Stream* s, uint32_t ev) {
    s->Hold();  // a sink callback may close and release the stream
    if (s->io_interest_ & kConnecting) {
      if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
        s->io_interest_ &= ~kConnecting;
        s->OnConnected(SocketError(s->fd_));
      }
      s->Unhold();
      return;
    }
    if ((ev & (EPOLLIN | EPOLLPRI | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) &&
        (s->io_interest_ & kWantRead)) {
      // EPOLLHUP alone (we shut our side, then the peer's FIN came) says
      // nothing about the bytes still queued before that FIN: read them all
      // now, to the EOF, since the hang-up below ends the stream. One read
      // per event would drop all but the first read buffer's worth.
      Receive(s, /*to_eof=*/(ev & EPOLLHUP) && !(ev & EPOLLERR));
    }
    if ((ev & EPOLLOUT) && (s->io_interest_ & kWantWrite) && !s->released()) {
      s->OnSendReady(0);
    }
    if ((ev & (EPOLLERR | EPOLLHUP)) && (s->io_interest_ & kRegistered) && !s->released()) {
      s->OnHangup(SocketError(s->fd_));
    }
    s->Unhold();
  }

  void Receive(Stream* s, bool to_eof = false) {
    char* buf = read_buffer_;
    const size_t cap = read_buffer_size_;
    size_t budget = read_budget_;
    for (;;) {
      ssize_t n = SysRead(s->fd_, buf, cap);
      if (n > 0) {
        if (!s->OnReceived(std::string_view(buf, static_cast<size_t>(n)))) return;
        if (s->released() || !(s->io_interest_ & kWantRead)) return;
        if (to_eof) continue;
        // Level-triggered: one read per event keeps loops fair and epoll
        // reports the rest. Edge-triggered: drain to EAGAIN, within a budget.
        if (!edge_triggered_) return;
        if (static_cast<size_t>(n) >= budget) {
          reinvokes_.push_back(Tagged(s, kTagStream));
          return;
        }
        budget -= static_cast<size_t>(n);
        continue;
      }
      if (n == 0) {
        s->OnReceiveEnded(0);
        return;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      s->OnReceiveEnded(errno);
      return;
    }
  }

  void DispatchListener(ListenReg* reg) {
    const int fd = reg->fd;
    AcceptSink* sink = reg->sink;
    for (int i = 0;; ++i) {
      if (i == kAcceptBatch) {
        // The batch is spent with connections possibly still queued. Level-
        // triggered, epoll reports the socket again. Edge-triggered it would
        // not: no new edge comes until another client connects, and after a
        // burst none may, so the rest of the backlog would wait forever.
        if (edge_triggered_) reinvokes_.push_back(Tagged(reg, kTagListener));
        return;
      }
      SocketAddress peer;
      socklen_t len = sizeof(sockaddr_un);
      int cfd = SysAccept4(fd, peer.mutable_sockaddr_ptr(), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (cfd >= 0) {
        peer.set_length(len);
        if (!sink->OnAccepted(cfd, peer)) return;  // it stopped accepting
        continue;
      }
      switch (errno) {
        case EAGAIN:
          return;
        case EINTR:
        case ECONNABORTED:  // the client gave up while queued: its problem only
        case EPROTO:
        case EPERM:  // firewall rules
          continue;
        default: {
          int err = errno;
          StopAccepting(fd, sink);
          sink->OnAcceptFailed(err);
          return;
        }
      }
    }
  }

  void RunReinvokes() {
    if (reinvokes_.empty()) return;
    reinvoking_.swap(reinvokes_);
    for (size_t i = 0; i < reinvoking_.size(); ++i) {
      uint64_t data = reinvoking_[i];
      if (data == 0) continue;
      void* p = reinterpret_cast<void*>(data & ~kTagMask);
      if ((data & kTagMask) == kTagStream) {
        DispatchStream(static_cast<Stream*>(p), EPOLLIN);
      } else {
        DispatchListener(static_cast<ListenReg*>(p));
      }
    }
    reinvoking_.clear();
  }

  const int epfd_;
  char* const read_buffer_;
  const size_t read_buffer_size_;
  const bool edge_triggered_;
  const size_t read_budget_;
  std::vector<epoll_event> events_;
  int ready_ = 0;
  int cursor_ = -1;
  std::vector<uint64_t> reinvokes_;
  std::vector<uint64_t> reinvoking_;
  std::vector<std::unique_ptr<ListenReg>> listeners_;
};

absl::StatusOr<std::unique_ptr<Backend>> NewEpollBackend(const BackendOptions& options) {
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) {
    return absl::InternalError(absl::StrCat("epoll_create1: ", strerror(errno)));
  }
  return std::unique_ptr<Backend>(new EpollBackend(epfd, options));
}

}  // namespace netloop::internal
