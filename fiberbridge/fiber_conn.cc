#include "fiberbridge/fiber_conn.h"

#include <errno.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "fiberbridge/internal/fiber_conn_core.h"
#include "fiberbridge/offload.h"
#include "fiberbridge/scheduler.h"
#include "reactor/clock.h"
#include "reactor/errors.h"
#include "reactor/internal/platform.h"
#include "reactor/internal/socket_ops.h"
#include "reactor/internal/sys_io.h"
#include "reactor/internal/tls_session.h"

namespace netloop::fiber {

// ---------------------------------------------------------------- FiberConn

namespace {

// The one way a socket becomes a FiberConn (Adopt, Serve, and through them
// Dial, FiberServer and HandOff), so that there is one ownership rule: `fd`
// is owned from the call on. Before a FiberConnCore exists it is closed here;
// after, the core closes it, on failure (its destructor) and on success
// (Close).
absl::StatusOr<std::shared_ptr<FiberConnCore>> AdoptSocket(SocketHandle fd, std::string unread,
                                                           const char* who,
                                                           bool fiber_required) {
  Scheduler* s = Scheduler::Current();
  if (s == nullptr) {
    netloop::internal::CloseSocket(fd);
    return absl::FailedPreconditionError(std::string(who) + " off a loop thread");
  }
  if (fiber_required && Scheduler::CurrentTask() == nullptr) {
    netloop::internal::CloseSocket(fd);
    return absl::FailedPreconditionError(std::string(who) + " outside a fiber");
  }
  auto core = std::make_shared<FiberConnCore>(s, fd, std::move(unread));
  if (absl::Status st = core->Register(); !st.ok()) return st;  // ~FiberConnCore closes
  return core;
}

}  // namespace

absl::StatusOr<std::unique_ptr<FiberConn>> FiberConn::Adopt(SocketHandle fd, std::string unread) {
  absl::StatusOr<std::shared_ptr<FiberConnCore>> core =
      AdoptSocket(fd, std::move(unread), "FiberConn::Adopt", /*fiber_required=*/false);
  if (!core.ok()) return core.status();
  return std::unique_ptr<FiberConn>(new FiberConn(std::move(*core)));
}

absl::Status FiberConn::Serve(SocketHandle fd, std::string unread,
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
    if (absl::Status st = SendSealed(); !st.ok()) return st;
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
      uint64_t off = offset + sent;
      const size_t want = static_cast<size_t>(std::min<uint64_t>(length - sent, kChunk));
      const long n = netloop::internal::SendFileOnce(c.fd_, file_fd, &off, want);
      if (n > 0) {
        sent += static_cast<uint64_t>(n);
        if (static_cast<size_t>(n) == want && sent < length) Yield();
        continue;
      }
      if (n == 0) return ended_early();
      if (n == -EINVAL || n == -ENOSYS || n == -EOPNOTSUPP) break;  // copy below
      if (n != -EAGAIN) return ResetError(static_cast<int>(-n));
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
    const long n = netloop::internal::FilePread(file_fd, chunk.data(), want, offset + sent);
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

absl::Status FiberConn::SendSealed() {
  FiberConnCore::TlsState& t = *core_->tls_;
  t.cipher.clear();
  if (t.session->TakeCipher(&t.cipher) == 0) return absl::OkStatus();
  t.writing = true;
  absl::StatusOr<size_t> sent = WriteSocket(t.cipher);
  t.writing = false;
  if (!sent.ok()) t.write_error = sent.status();  // a record may be cut: sticky
  return sent.status();
}

void FiberConn::SendCloseNotify() {
  FiberConnCore& c = *core_;
  // Not after a failed handshake either: its last flight (the session
  // tickets that follow a server's handshake) may be what failed to leave.
  if (c.tls_ == nullptr || c.closed_ || c.tls_->writing || !c.tls_->write_error.ok() ||
      !c.tls_->handshake_error.ok() || !c.tls_->session->handshake_complete()) {
    return;
  }
  c.tls_->session->Shutdown();
  std::string alert;
  if (c.tls_->session->TakeCipher(&alert) == 0) return;
  (void)netloop::internal::SysSend(c.fd_, alert.data(), alert.size(),
                                   netloop::internal::kSendNoSignal | netloop::internal::kSendDontWait);
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
      op.expect_empty = c.recv_drained_;
      if (absl::Status st = c.Run(c.read_, op); !st.ok()) return st;
      c.recv_drained_ = op.result > 0 && static_cast<size_t>(op.result) < op.size;
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
  if (c.backend_ != nullptr && c.backend_->lends_receive_buffers()) {
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
  // epoll, and IOCP (which has no buffers to lend): read into the loop's
  // shared buffer once the socket is readable. IOCP learns that from a
  // zero-byte receive, which pins no buffer while it waits.
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
    if (c.backend_ == nullptr) {
      if (absl::Status st = c.Wait(c.read_); !st.ok()) return st;
      continue;
    }
    FiberConnCore::PendingOp op;
    op.kind = netloop::internal::Operation::Kind::kWaitReadable;
    if (absl::Status st = c.Run(c.read_, op); !st.ok()) return st;
    if (op.result >= 0) {
      c.read_ready_ = true;
    } else if (absl::Status st = c.FailedOp(c.read_, op.result); !st.ok()) {
      return st;
    }
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
    // A plain non-blocking send first, as Go's Write makes: when the socket
    // takes it all (a reply, nearly always), the fiber goes on at once
    // instead of parking until a submitted send's completion comes back
    // (a park, a loop round and a resume per message saved). What the
    // socket does not take is submitted; bytes in the loop's shared read
    // buffer (a ReadView) are copied first, since other fibers' reads
    // overwrite that buffer while the send is in flight.
    if (absl::Status st = c.Check(c.write_); !st.ok()) return st;
    ssize_t n;
    do {
      n = netloop::internal::SysSend(
          c.fd_, data.data(), data.size(),
          netloop::internal::kSendNoSignal | netloop::internal::kSendDontWait);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return ResetError(errno);
    if (n > 0) data.remove_prefix(static_cast<size_t>(n));
    if (data.empty()) return total;
    if (data.data() >= shared_begin && data.data() < shared_end) {
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
    ssize_t n = netloop::internal::SysSend(c.fd_, data.data(), data.size(), netloop::internal::kSendNoSignal);
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
    if (absl::Status st = SendSealed(); !st.ok()) return st;
    // Closed while the fiber was parked in that send: the fd may be
    // someone else's by now.
    if (core_->closed_) return ClosedError("use of closed connection");
  }
  if (netloop::internal::ShutdownSocketWrite(core_->fd_) != 0) return ResetError(errno);
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
SocketHandle FiberConn::fd() const { return core_->closed_ ? kInvalidSocket : core_->fd_; }
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
  absl::StatusOr<SocketHandle> fd = StartConnect(parsed->address, &in_progress);
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
#if defined(_WIN32)
        // StartConnect only bound the socket: the backend connects it.
        op.kind = netloop::internal::Operation::Kind::kConnect;
        op.peer = &parsed->address;
#else
        op.kind = netloop::internal::Operation::Kind::kWaitWritable;
#endif
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
