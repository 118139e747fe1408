#include "reactor/conn.h"

#include <errno.h>
#include <string.h>

#include <algorithm>
#include <utility>

#include "reactor/clock.h"
#include "reactor/engine.h"
#include "reactor/errors.h"
#include "reactor/event_loop.h"
#include "reactor/logging.h"
#include "reactor/internal/socket_ops.h"
#include "reactor/internal/datagram_socket.h"
#include "reactor/internal/outbound_files.h"
#include "reactor/internal/platform.h"
#include "reactor/internal/sys_io.h"
#include "reactor/internal/tls_session.h"
#include "reactor/internal/worker.h"

namespace netloop {
namespace {

// Pieces per sendmsg; the rest waits for the next round (IOV_MAX is 1024).
constexpr size_t kMaxIov = 64;

// TLS, per loop thread: the plaintext that received ciphertext decrypts to
// (OnTraffic reads it in place, as it reads the loop's receive buffer), and
// the ciphertext a write or a handshake step produces. Made on first use,
// so plaintext engines never allocate them.
constexpr size_t kTlsPlainBufferSize = 64 * 1024;

char* TlsPlainBuffer() {
  thread_local std::unique_ptr<char[]> buffer(new char[kTlsPlainBufferSize]);
  return buffer.get();
}

std::string& TlsCipherScratch() {
  thread_local std::string scratch;
  return scratch;
}

// A file's bytes on their way into the outbound ring when they cannot go
// with sendfile(2): per loop thread, made on first use.
constexpr size_t kFileChunk = 64 * 1024;
char* FileChunkBuffer() {
  thread_local std::unique_ptr<char[]> buffer(new char[kFileChunk]);
  return buffer.get();
}
// sendfile(2) per call, so one connection's file does not hold the loop.
constexpr size_t kSendFileChunk = 1024 * 1024;

}  // namespace

Conn::Conn(internal::Worker* worker, SocketHandle fd, uint64_t id, bool is_client,
           const SocketAddress& remote)
    : worker_(worker), id_(id), is_client_(is_client) {
  fd_ = fd;
  if (remote.family() == AF_INET || remote.family() == AF_INET6) {
    remote_len_ = static_cast<uint8_t>(std::min<size_t>(remote.length(), sizeof(remote_)));
    memcpy(&remote_, remote.sockaddr_ptr(), remote_len_);
  }
}

Conn::~Conn() = default;

tls::SessionInfo Conn::TlsInfo() const {
  return tls_ != nullptr ? tls_->Info() : tls::SessionInfo();
}

EventLoop& Conn::loop() const { return worker_->loop(); }
int64_t Conn::loop_now_ns() const { return worker_->loop().NowNanos(); }
internal::Backend& Conn::backend() const { return worker_->loop().backend(); }
int Conn::loop_index() const { return worker_->index(); }
Engine& Conn::engine() const { return worker_->engine(); }
ConnRef Conn::Ref() const { return ConnRef(worker_, id_); }

SocketAddress Conn::RemoteAddress() const {
  if (remote_len_ > 0) {
    return SocketAddress(reinterpret_cast<const sockaddr*>(&remote_), remote_len_);
  }
  return IsValidSocket(fd_) ? PeerAddressOf(fd_) : SocketAddress();
}

SocketAddress Conn::LocalAddress() const {
  return IsValidSocket(fd_) ? LocalAddressOf(fd_) : SocketAddress();
}

// ---------------------------------------------------------------- reading

ByteView Conn::Peek(size_t n) {
  if (!fresh_.empty()) return {fresh_.substr(0, std::min(n, fresh_.size())), {}};
  RingBuffer::Views v = inbound_.Peek(n);
  return {v.first, v.second};
}

ByteView Conn::Next(size_t n) {
  ByteView v = Peek(n);
  Discard(v.size());
  return v;
}

size_t Conn::Discard(size_t n) {
  if (!fresh_.empty()) {
    size_t k = std::min(n, fresh_.size());
    fresh_.remove_prefix(k);
    return k;
  }
  return inbound_.Discard(n);
}

std::string_view Conn::PeekContiguous(size_t n) {
  if (!fresh_.empty()) return fresh_.substr(0, std::min(n, fresh_.size()));
  return inbound_.MakeContiguous(n);
}

void Conn::OnConnected(int err) {
  if (state_ != State::kConnecting) return;
  if (err != 0) {
    CloseNow(ConnectFailedError(err));
    return;
  }
  if (timer_.valid()) {
    loop().CancelTimer(timer_);
    timer_ = TimerId();
  }
  if (tls_ != nullptr) {
    BeginTls(std::move(tls_));
    return;
  }
  HandleConnected();
}

void Conn::OnHangup(int err) {
  if (state_ == State::kHandshaking) {
    FailHandshake(err != 0 ? ResetError(err) : TlsError("the peer left during the handshake"));
    return;
  }
  if (state_ != State::kOpen && state_ != State::kClosing) return;
  CloseNow(err != 0 ? ResetError(err) : PeerClosedError());
}

bool Conn::OnReceived(std::string_view bytes) {
  if (tls_ != nullptr) return OnCipherReceived(bytes);
  // Bytes a completion backend had in flight when Close stopped reading are
  // dropped, as epoll would never have read them.
  if (state_ != State::kOpen) return false;
  DeliverInbound(bytes);
  return state_ == State::kOpen && !read_paused_;
}

void Conn::DeliverInbound(std::string_view bytes) {
  last_active_ns_ = loop().NowNanos();
  if (read_paused_ || held_while_paused_) {
    // A completion backend's receives that were in flight when
    // backpressure set in (or, with TLS, what one receive decrypted to):
    // held for the handler until output drains, so they cannot grow the
    // output further.
    inbound_.Append(bytes);
    held_while_paused_ = true;
    AccountBuffers();
    return;
  }
  if (inbound_.empty()) {
    fresh_ = bytes;  // zero-copy: OnTraffic reads the backend's buffer
  } else {
    inbound_.Append(bytes);
  }
  DispatchTraffic();
}

// ---------------------------------------------------------------- UDP

void Conn::DeliverDatagram(std::string_view bytes, const SocketAddress& from, bool truncated) {
  remote_len_ = static_cast<uint8_t>(std::min<size_t>(from.length(), sizeof(remote_)));
  memcpy(&remote_, from.sockaddr_ptr(), remote_len_);
  datagram_truncated_ = truncated;
  fresh_ = bytes;
  ++in_callback_;
  Action action = worker_->handler().OnTraffic(*this);
  --in_callback_;
  fresh_ = {};  // what was not read goes with the datagram
  if (action == Action::kShutdown) worker_->engine().Stop();
}

absl::Status Conn::SendDatagram(std::span<const std::string_view> pieces) {
  if (state_ != State::kOpen) return absl::FailedPreconditionError("the socket is closed");
  if (remote_len_ == 0) return absl::FailedPreconditionError("no datagram to answer");
  if (datagram_batch_ != nullptr) {
    datagram_batch_->QueueReply(pieces, reinterpret_cast<const sockaddr*>(&remote_), remote_len_);
    return absl::OkStatus();
  }
  iovec iov[kMaxIov];
  int count = 0;
  for (std::string_view p : pieces) {
    if (count == static_cast<int>(kMaxIov)) {
      return absl::InvalidArgumentError("udp: more pieces than one datagram may carry");
    }
    iov[count++] = {const_cast<char*>(p.data()), p.size()};
  }
  const int err = SendDatagramTo(fd_, iov, count,
                                 reinterpret_cast<const sockaddr*>(&remote_),
                                 remote_len_);
  if (err == 0) return absl::OkStatus();
  if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) {
    worker_->CountUdpSendDrop();
    return absl::ResourceExhaustedError("udp: the socket's send buffer is full; datagram dropped");
  }
  return absl::ErrnoToStatus(err, "udp: send");
}

// ---------------------------------------------------------------- TLS

void Conn::BeginTls(std::unique_ptr<internal::TlsSession> session) {
  tls_ = std::move(session);
  state_ = State::kHandshaking;
  last_active_ns_ = loop().NowNanos();
  const int64_t timeout = DurationToNanosSaturated(worker_->options().tls_handshake_timeout);
  if (timeout > 0 && timeout < kNeverNanos) {
    timer_ = loop().RunAtNanos(last_active_ns_ + timeout, [this] {
      Guard g(this);
      timer_ = TimerId();
      if (state_ == State::kHandshaking) {
        FailHandshake(DeadlineExceededError("tls: the handshake did not finish in time"));
      }
    });
  }
  UpdateInterest();  // receive the peer's flights
  if (state_ == State::kHandshaking && is_client_) AdvanceHandshake();  // the ClientHello
}

bool Conn::OnCipherReceived(std::string_view cipher) {
  if (state_ != State::kOpen && state_ != State::kHandshaking) return false;
  last_active_ns_ = loop().NowNanos();  // a record arriving slowly is activity too
  tls_->Feed(cipher);
  if (state_ == State::kHandshaking) AdvanceHandshake();
  // Records that came with the handshake's last flight (a client's first
  // request often does) are delivered right after OnOpen.
  if (state_ == State::kOpen) DecryptAndDeliver();
  return state_ == State::kHandshaking || (state_ == State::kOpen && !read_paused_);
}

void Conn::AdvanceHandshake() {
  absl::StatusOr<bool> done = tls_->Handshake();
  // The next flight, or the alert that explains a failure to the peer.
  absl::Status sent = SendCipher();
  if (state_ != State::kHandshaking) return;  // the send failed and closed it
  if (!done.ok()) {
    FailHandshake(done.status());
    return;
  }
  if (!sent.ok()) {
    FailHandshake(sent);
    return;
  }
  if (!*done) return;
  if (timer_.valid()) {
    loop().CancelTimer(timer_);
    timer_ = TimerId();
  }
  HandleConnected();
}

void Conn::DecryptAndDeliver() {
  char* const plain = TlsPlainBuffer();
  for (;;) {
    size_t len = 0;
    absl::Status end;
    while (len < kTlsPlainBufferSize) {
      absl::StatusOr<size_t> n = tls_->Read(std::span<char>(plain + len, kTlsPlainBufferSize - len));
      if (!n.ok()) {
        end = n.status();
        break;
      }
      if (*n == 0) break;
      len += *n;
    }
    // What reading made the session answer: a key update, an alert.
    if (absl::Status s = SendCipher(); !s.ok() || state_ != State::kOpen) return;
    if (len > 0) {
      DeliverInbound(std::string_view(plain, len));
      if (state_ != State::kOpen) return;
    }
    if (!end.ok()) {
      if (IsPeerClosed(end)) {
        // close_notify: the orderly end (ours answers it in HandlePeerEof,
        // after what the handler still writes).
        peer_close_notify_ = true;
        if (held_while_paused_) {
          eof_after_held_ = true;  // after the bytes the handler has not seen
          return;
        }
        HandlePeerEof();
      } else {
        CloseWithError(std::move(end));
      }
      return;
    }
    if (len < kTlsPlainBufferSize) return;  // the session has no more
  }
}

absl::Status Conn::QueueCloseNotify() {
  if (files_ != nullptr) {
    tls_close_after_files_ = true;  // sealed after the last file (PumpFiles)
    return absl::OkStatus();
  }
  tls_->Shutdown();
  return SendCipher();
}

absl::Status Conn::SendCipher() {
  if (io_failed_) return BrokenStreamError();  // no record after a lost one
  // While files wait, what the session has to send stays in it: the next
  // file chunk's records follow it out, in the order they were sealed.
  if (files_ != nullptr) return absl::OkStatus();
  // Moved out of the thread's scratch while in use: a handler that writes
  // to another TLS connection from a callback this write runs (OnClose,
  // OnBackpressure) gets a scratch of its own.
  std::string cipher = std::move(TlsCipherScratch());
  cipher.clear();
  absl::Status s;
  if (tls_->TakeCipher(&cipher) > 0) s = WriteBytes(cipher);
  cipher.clear();
  TlsCipherScratch() = std::move(cipher);
  return s;
}

void Conn::FailHandshake(absl::Status reason) {
  if (!is_client_) worker_->CountTlsHandshakeFailure();
  if (in_callback_ > 0) {
    CloseWithError(std::move(reason));
  } else {
    CloseNow(std::move(reason));
  }
}

void Conn::OnReceiveEnded(int err) {
  if (state_ == State::kHandshaking) {
    FailHandshake(err != 0 ? ResetError(err) : TlsError("the peer left during the handshake"));
    return;
  }
  if (err != 0) {
    if (state_ == State::kOpen || state_ == State::kClosing) FailIo(err);
    return;
  }
  if (state_ != State::kOpen) {
    peer_eof_ = true;  // closing already: keep draining until done
    return;
  }
  if (held_while_paused_) {
    // The FIN comes after bytes the handler has not seen yet: it waits for
    // them, as it would wait in the socket on epoll.
    eof_after_held_ = true;
    return;
  }
  HandlePeerEof();
}

void Conn::OnSendReady(int result) {
  if (state_ != State::kOpen && state_ != State::kClosing && state_ != State::kHandshaking) return;
  if (backend().completion()) {
    OnSendCompleted(result);
  } else {
    SendBuffered();
  }
}

void Conn::HandleConnected() {
  state_ = State::kOpen;
  opened_ = true;
  last_active_ns_ = loop().NowNanos();
  const bool completion = backend().completion();
  if (!completion) {
    UpdateInterest();
    if (state_ != State::kOpen) return;
  }
  ArmIdleTimer();
  ++in_callback_;
  Action action = worker_->handler().OnOpen(*this);
  --in_callback_;
  ApplyAction(static_cast<int>(action));
  AfterCallback();
  // A completion backend starts receiving only now, so a handler that
  // detaches in OnOpen (FiberServer does) takes a socket with nothing in
  // flight.
  if (completion && state_ == State::kOpen) UpdateInterest();
}

void Conn::DispatchTraffic() {
  ++in_callback_;
  Action action = worker_->handler().OnTraffic(*this);
  --in_callback_;
  if (!fresh_.empty()) {
    // The one copy: bytes the handler left for later move out of the shared
    // buffer, which the next read on this loop overwrites.
    if (state_ == State::kOpen || state_ == State::kClosing) inbound_.Append(fresh_);
    fresh_ = {};
  }
  if (inbound_.empty()) inbound_.ReleaseIfEmpty();
  const size_t max_inbound = worker_->options().max_inbound_bytes;
  if (max_inbound > 0 && inbound_.size() > max_inbound && state_ == State::kOpen &&
      !close_requested_) {
    close_requested_ = true;
    pending_reason_ = LimitExceededError(
        "inbound bytes left unconsumed exceed Options::max_inbound_bytes");
  }
  AccountBuffers();
  ApplyAction(static_cast<int>(action));
  AfterCallback();
  // Whether input is left unread changes how a completion backend receives.
  if (registered_ && state_ == State::kOpen) UpdateInterest();
}

void Conn::AccountBuffers() {
  const uint32_t now = static_cast<uint32_t>((inbound_.capacity() + outbound_.capacity()) >> 10);
  if (now == accounted_kib_) return;
  const bool grew = now > accounted_kib_;
  worker_->AddBufferedKib(static_cast<int64_t>(now) - static_cast<int64_t>(accounted_kib_));
  accounted_kib_ = now;
  if (grew) worker_->EnforceBufferBudget();
}

void Conn::HandlePeerEof() {
  peer_eof_ = true;
  // TLS: a FIN with no close_notify before it may be a truncation (RFC 8446
  // 6.1); the handler can tell from the reason's text.
  absl::Status reason = tls_ != nullptr && !peer_close_notify_
                            ? PeerClosedError("without close_notify")
                            : PeerClosedError();
  if (tls_ != nullptr && peer_close_notify_ && state_ == State::kOpen) {
    // Answered with ours (RFC 8446 6.1), after everything written so far.
    if (absl::Status s = QueueCloseNotify(); !s.ok() || state_ != State::kOpen) return;
  }
  if (OutboundEmpty() || state_ != State::kOpen) {
    CloseNow(std::move(reason));
    return;
  }
  // Half-close from the peer: it may still read. Finish sending, then close.
  state_ = State::kClosing;
  pending_reason_ = std::move(reason);
  UpdateInterest();
  // A peer that half-closed and never reads must not hold the connection
  // forever: the same bound as a local Close.
  if (state_ == State::kClosing) ArmDrainTimer();
}

void Conn::AfterCallback() {
  if (in_callback_ > 0) return;
  if (close_requested_) {
    close_requested_ = false;
    if (tls_ != nullptr && pending_reason_.ok() && state_ == State::kOpen) {
      Close();  // an orderly TLS close: close_notify first
      return;
    }
    absl::Status reason = std::move(pending_reason_);
    pending_reason_ = absl::OkStatus();
    CloseNow(std::move(reason));
  }
}

void Conn::ApplyAction(int action) {
  switch (static_cast<Action>(action)) {
    case Action::kNone:
      return;
    case Action::kClose:
      Close();
      return;
    case Action::kShutdown:
      worker_->engine().Stop();
      return;
  }
}

// ---------------------------------------------------------------- writing

absl::Status Conn::Write(std::string_view data) {
  if (datagram_) return SendDatagram(std::span<const std::string_view>(&data, 1));
  Guard guard(this);  // called from a loop timer or task, this may free the Conn
  if (state_ != State::kOpen) {
    return absl::FailedPreconditionError("write on a connection that is not open");
  }
  if (io_failed_) return BrokenStreamError();
  if (data.empty()) return absl::OkStatus();
  if (tls_ != nullptr) {
    if (files_ != nullptr) {
      // Encrypted in its turn, after the file's records (see PumpFiles):
      // records must leave in the order they were sealed.
      files_->queue.back().after.append(data);
      files_->bytes += data.size();
      AfterOutboundGrew();
      return absl::OkStatus();
    }
    if (absl::Status s = tls_->Write(data); !s.ok()) {
      CloseWithError(s);
      return s;
    }
    return SendCipher();
  }
  return WriteBytes(data);
}

absl::Status Conn::WriteBytes(std::string_view data) {
  if (files_ != nullptr) {
    // Behind a file: waits for it in the queue.
    files_->queue.back().after.append(data);
    files_->bytes += data.size();
    AfterOutboundGrew();
    return absl::OkStatus();
  }
  internal::Backend& b = backend();
  if (b.completion()) {
    QueueOutbound(data);
    if (!SendBuffered()) return pending_reason_.ok() ? ClosedError() : pending_reason_;
    AfterOutboundGrew();
    return absl::OkStatus();
  }
  if (outbound_.empty()) {
    iovec iov{const_cast<char*>(data.data()), data.size()};
    long n = b.Send(this, &iov, 1);
    if (n == static_cast<long>(data.size())) return absl::OkStatus();
    if (n < 0) {
      if (n != internal::kSendAgain) {
        FailIo(static_cast<int>(-n));
        return ResetError(static_cast<int>(-n));
      }
      n = 0;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  outbound_.Append(data);
  AfterOutboundGrew();
  return absl::OkStatus();
}

absl::Status Conn::Writev(std::span<const std::string_view> pieces) {
  if (datagram_) return SendDatagram(pieces);
  Guard guard(this);  // called from a loop timer or task, this may free the Conn
  if (state_ != State::kOpen) {
    return absl::FailedPreconditionError("write on a connection that is not open");
  }
  if (io_failed_) return BrokenStreamError();
  if (tls_ != nullptr) {
    if (files_ != nullptr) return WritevBytes(pieces);  // plaintext, sealed in its turn
    for (std::string_view p : pieces) {
      if (p.empty()) continue;
      if (absl::Status s = tls_->Write(p); !s.ok()) {
        CloseWithError(s);
        return s;
      }
    }
    return SendCipher();  // the records of every piece in one write
  }
  return WritevBytes(pieces);
}

absl::Status Conn::WritevBytes(std::span<const std::string_view> pieces) {
  if (files_ != nullptr) {
    for (std::string_view p : pieces) {
      files_->queue.back().after.append(p);
      files_->bytes += p.size();
    }
    AfterOutboundGrew();
    return absl::OkStatus();
  }
  size_t first_unsent = 0;
  size_t offset_in_piece = 0;
  if (backend().completion()) {
    // The bytes must outlive the call: they go to the outbound ring, and
    // one send takes them from there.
    bool any = false;
    for (std::string_view p : pieces) {
      if (p.empty()) continue;
      QueueOutbound(p);
      any = true;
    }
    if (!any) return absl::OkStatus();
    if (!SendBuffered()) return pending_reason_.ok() ? ClosedError() : pending_reason_;
    AfterOutboundGrew();
    return absl::OkStatus();
  }
  if (outbound_.empty()) {
    while (first_unsent < pieces.size()) {
      iovec iov[kMaxIov];
      size_t count = 0;
      size_t total = 0;
      for (size_t i = first_unsent; i < pieces.size() && count < kMaxIov; ++i) {
        std::string_view p = pieces[i];
        if (i == first_unsent) p.remove_prefix(offset_in_piece);
        if (p.empty()) continue;
        iov[count].iov_base = const_cast<char*>(p.data());
        iov[count].iov_len = p.size();
        total += p.size();
        ++count;
      }
      if (count == 0) return absl::OkStatus();
      long n = backend().Send(this, iov, static_cast<int>(count));
      if (n < 0) {
        if (n != internal::kSendAgain) {
          FailIo(static_cast<int>(-n));
          return ResetError(static_cast<int>(-n));
        }
        break;
      }
      // Advance (first_unsent, offset_in_piece) by n bytes.
      size_t left = static_cast<size_t>(n);
      while (left > 0 && first_unsent < pieces.size()) {
        size_t avail = pieces[first_unsent].size() - offset_in_piece;
        if (left < avail) {
          offset_in_piece += left;
          left = 0;
        } else {
          left -= avail;
          ++first_unsent;
          offset_in_piece = 0;
        }
      }
      if (static_cast<size_t>(n) < total) break;  // socket full
    }
  }
  if (first_unsent >= pieces.size()) return absl::OkStatus();
  for (size_t i = first_unsent; i < pieces.size(); ++i) {
    std::string_view p = pieces[i];
    if (i == first_unsent) p.remove_prefix(offset_in_piece);
    outbound_.Append(p);
  }
  AfterOutboundGrew();
  return absl::OkStatus();
}

absl::Status Conn::Flush() {
  Guard guard(this);  // called from a loop timer or task, this may free the Conn
  if (state_ != State::kOpen && state_ != State::kClosing) {
    return absl::FailedPreconditionError("flush on a closed connection");
  }
  if (!SendBuffered()) return pending_reason_.ok() ? ClosedError() : pending_reason_;
  return absl::OkStatus();
}

// Sends what the outbound ring holds, as far as the socket takes it. Returns
// false if the connection failed.
bool Conn::SendBuffered() {
  if (io_failed_) return false;
  internal::Backend& b = backend();
  if (b.completion()) {
    // One send in flight at a time; its completion sends the rest.
    if (OutboundEmpty() || b.SendInFlight(this)) return true;
    if (outbound_.empty() && lent_.empty()) {
      // Only files wait: sendfile(2) straight away, or a chunk into the
      // ring. A few sendfile chunks per turn; then the rest continues from
      // a task, so one connection's file does not hold the loop.
      for (int i = 0; i < 4 && files_ != nullptr && outbound_.empty(); ++i) {
        if (!PumpFiles()) break;
      }
      if (state_ != State::kOpen && state_ != State::kClosing) return false;
      if (outbound_.empty()) {
        if (files_ != nullptr) {
          Ref().Run([](Conn* c) {
            if (c != nullptr) (void)c->Flush();
          });
          return true;
        }
        AfterOutboundShrank();  // the last file is done
        return true;
      }
    }
    long n = b.Send(this, nullptr, 0);  // the bytes are taken by PendingOutput
    if (n < 0 && n != internal::kSendPending) {
      FailIo(static_cast<int>(-n));
      return false;
    }
    return true;
  }
  const bool edge = b.edge_triggered();
  for (;;) {
    bool socket_full = false;
    while (!outbound_.empty()) {
      iovec iov[2];
      int count = outbound_.ReadableIovecs(iov);
      long n = b.Send(this, iov, count);
      if (n < 0) {
        if (n == internal::kSendAgain) {
          socket_full = true;
          break;
        }
        FailIo(static_cast<int>(-n));
        return false;
      }
      outbound_.Discard(static_cast<size_t>(n));
      NoteSent();
      // Level-triggered: one send per writable event, epoll says when more
      // room opens. Edge-triggered must go on until EAGAIN.
      if (!edge) break;
    }
    // The ring is out: the files' turn. Level-triggered: one sendfile
    // chunk (or one copied chunk, sent at the next event) per writable
    // event. Edge-triggered: on until the socket is full, copied chunks
    // included, since no new edge comes for room that is already there.
    if (socket_full || !outbound_.empty() || files_ == nullptr) break;
    const bool moved = PumpFiles();
    if (state_ != State::kOpen && state_ != State::kClosing) return false;
    if (!moved || !edge) break;
  }
  AfterOutboundShrank();
  return true;
}

size_t Conn::FileBytes() const { return static_cast<size_t>(files_->bytes); }

absl::Status Conn::SendFile(int file_fd, uint64_t offset, uint64_t length) {
  Guard guard(this);  // called from a loop timer or task, this may free the Conn
  if (state_ != State::kOpen || datagram_) {
    return absl::FailedPreconditionError(datagram_ ? "SendFile on a datagram socket"
                                                   : "send on a connection that is not open");
  }
  if (io_failed_) return BrokenStreamError();
  if (length == 0) return absl::OkStatus();
  const int fd = internal::FileDup(file_fd);
  if (fd < 0) return absl::ErrnoToStatus(errno, "SendFile: dup");
  if (files_ == nullptr) files_ = std::make_unique<internal::OutboundFiles>();
  files_->queue.push_back({fd, offset, length, {}});
  files_->bytes += length;
  if (files_->queue.size() == 1 && outbound_.empty() && lent_.empty()) {
    if (!SendBuffered()) return pending_reason_.ok() ? ClosedError() : pending_reason_;
  }
  if (state_ == State::kOpen) AfterOutboundGrew();
  return absl::OkStatus();
}

bool Conn::PumpFiles() {
  while (files_ != nullptr && outbound_.empty() && lent_.empty()) {
    internal::OutboundFile& f = files_->queue.front();
    if (f.remaining == 0) {
      // Done: what was written after it joins the ring (sealed now, with
      // TLS), the next file waits behind that.
      files_->bytes -= f.after.size();
      std::string after = std::move(f.after);
      ::close(f.fd);
      files_->queue.pop_front();
      const bool last = files_->queue.empty();
      if (last) files_.reset();
      if (tls_ != nullptr) {
        if (!after.empty() && !SealIntoRing(after)) return false;
        if (last) {
          // Records the session made on its own while files waited (a key
          // update's answer), then the close_notify if one was asked for.
          if (tls_close_after_files_) {
            tls_close_after_files_ = false;
            tls_->Shutdown();
          }
          if (!SealIntoRing({})) return false;
        }
      } else if (!after.empty()) {
        AppendOutbound(after);
      }
      AccountBuffers();
      continue;
    }
    internal::Backend& b = backend();
    if (tls_ == nullptr && !files_->copy) {
      uint64_t offset = f.offset;
      long n = b.SendFile(this, f.fd, &offset, std::min<uint64_t>(f.remaining, kSendFileChunk));
      if (n > 0) {
        f.offset = offset;
        f.remaining -= static_cast<uint64_t>(n);
        files_->bytes -= static_cast<uint64_t>(n);
        NoteSent();
        return true;
      }
      if (n == internal::kSendPending) return false;  // that send's completion comes back
      // Full. Readiness: wait for writability. Completion: no such signal;
      // the chunk copied below is sent, and its completion is one.
      if (n == internal::kSendAgain && !b.completion()) return false;
      if (n == 0) {
        CloseWithError(absl::DataLossError("SendFile: the file ended before its length"));
        return false;
      }
      if (n != internal::kSendAgain) {
        if (n != -EINVAL && n != -ENOSYS && n != -EOPNOTSUPP) {
          FailIo(static_cast<int>(-n));
          return false;
        }
        files_->copy = true;  // and copy, below
      }
    }
    // Copied: one chunk into the ring, only once the ring is empty, so a
    // slow peer holds at most a chunk of the file in memory.
    char* buf = FileChunkBuffer();
    const size_t want = static_cast<size_t>(std::min<uint64_t>(f.remaining, kFileChunk));
    ssize_t n;
    do {
      n = internal::FilePread(f.fd, buf, want, f.offset);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
      CloseWithError(n == 0 ? absl::DataLossError("SendFile: the file ended before its length")
                            : absl::ErrnoToStatus(errno, "SendFile: reading the file"));
      return false;
    }
    f.offset += static_cast<uint64_t>(n);
    f.remaining -= static_cast<uint64_t>(n);
    files_->bytes -= static_cast<uint64_t>(n);
    const std::string_view chunk(buf, static_cast<size_t>(n));
    if (tls_ != nullptr) {
      if (!SealIntoRing(chunk)) return false;
    } else {
      AppendOutbound(chunk);
    }
    AccountBuffers();
    return true;
  }
  return files_ != nullptr || !outbound_.empty();
}

bool Conn::SealIntoRing(std::string_view plain) {
  if (!plain.empty()) {
    if (absl::Status st = tls_->Write(plain); !st.ok()) {
      CloseWithError(st);
      return false;
    }
  }
  // With whatever the session had waiting ahead of it (see SendCipher).
  std::string cipher = std::move(TlsCipherScratch());
  cipher.clear();
  tls_->TakeCipher(&cipher);
  AppendOutbound(cipher);
  cipher.clear();
  TlsCipherScratch() = std::move(cipher);
  return true;
}

void Conn::OnSendCompleted(int result) {
  if (result < 0) {
    FailIo(-result);
    return;
  }
  DiscardSent(static_cast<size_t>(result));
  if (result > 0) NoteSent();
  if (!lent_.empty()) UnlendRest();  // a short send: the buffer goes back now
  if (!SendBuffered()) return;
  AfterOutboundShrank();
}

int Conn::PendingOutput(struct iovec iov[kMaxPendingPieces]) {
  int count = 0;
  if (!lent_.empty()) {
    iov[0].iov_base = const_cast<char*>(lent_.data());
    iov[0].iov_len = lent_.size();
    count = 1;
  }
  return count + outbound_.ReadableIovecs(iov + count);
}

void Conn::QueueOutbound(std::string_view data) {
  // Only ahead of the ring, and only contiguous with what is lent already:
  // lent_ is one piece that goes first.
  if (outbound_.empty() && (lent_.empty() || lent_.data() + lent_.size() == data.data()) &&
      backend().LendDeliveredBuffer(this, data)) {
    lent_ = std::string_view(lent_.empty() ? data.data() : lent_.data(),
                             lent_.size() + data.size());
    return;
  }
  AppendOutbound(data);
}

void Conn::DiscardSent(size_t n) {
  if (!lent_.empty()) {
    const size_t k = std::min(n, lent_.size());
    lent_.remove_prefix(k);
    n -= k;
    if (lent_.empty()) backend().ReturnLentBuffer(this);
  }
  outbound_.Discard(n);
}

void Conn::UnlendRest() {
  // The slow path (a peer that reads slower than we write): a pool buffer
  // must not wait on such a peer, so the rest is copied once.
  if (outbound_.empty()) {
    outbound_.Append(lent_);
  } else {
    RingBuffer after(std::move(outbound_));
    outbound_.Append(lent_);
    RingBuffer::Views v = after.Peek(after.size());
    outbound_.Append(v.first);
    outbound_.Append(v.second);
  }
  lent_ = {};
  backend().ReturnLentBuffer(this);
  AccountBuffers();
}

void Conn::AppendOutbound(std::string_view data) {
  if (!backend().SendInFlight(this)) {
    outbound_.Append(data);
    return;
  }
  // A send points into the ring: if it has to grow, the old storage lives
  // on until that send completes.
  if (void* old = outbound_.AppendKeepingOldStorage(data); old != nullptr) {
    backend().RetainUntilSent(this, old);
  }
}

void Conn::AfterOutboundGrew() {
  AccountBuffers();  // never closes here: budget victims close from a task
  const Options& o = worker_->options();
  if (o.write_high_water > 0 && !read_paused_ && OutboundSize() > o.write_high_water) {
    read_paused_ = true;
    UpdateInterest();
    if (!opened_) return;  // a TLS handshake's flight: the handler has no Conn yet
    ++in_callback_;
    worker_->handler().OnBackpressure(*this, true);
    --in_callback_;
    AfterCallback();
    return;
  }
  UpdateInterest();
}

void Conn::AfterOutboundShrank() {
  if (state_ == State::kClosed || state_ == State::kDetached) return;
  if (OutboundEmpty()) {
    outbound_.ReleaseIfEmpty();
    AccountBuffers();
    if (state_ == State::kClosing) {
      absl::Status reason = std::move(pending_reason_);
      pending_reason_ = absl::OkStatus();
      CloseNow(std::move(reason));
      return;
    }
    if (shutdown_write_pending_) {
      shutdown_write_pending_ = false;
      backend().ShutdownWrite(this);
    }
  }
  const Options& o = worker_->options();
  if (read_paused_) {
    size_t low = o.write_low_water > 0 ? o.write_low_water : o.write_high_water / 2;
    if (OutboundSize() <= low) {
      read_paused_ = false;
      UpdateInterest();
      if (!opened_) return;
      ++in_callback_;
      worker_->handler().OnBackpressure(*this, false);
      --in_callback_;
      AfterCallback();
      if (held_while_paused_ && state_ == State::kOpen) {
        held_while_paused_ = false;
        DispatchTraffic();  // the bytes that arrived while paused
      }
      if (eof_after_held_ && state_ == State::kOpen && !read_paused_ && !held_while_paused_) {
        eof_after_held_ = false;
        HandlePeerEof();
      }
      return;
    }
  }
  UpdateInterest();
}

void Conn::UpdateInterest() {
  if (state_ == State::kClosed || state_ == State::kDetached ||
      state_ == State::kConnecting) {
    return;
  }
  constexpr uint8_t kBacklogged = 1u << 5;
  uint8_t want = 0;
  if ((state_ == State::kOpen && !read_paused_ && !peer_eof_) || state_ == State::kHandshaking) {
    want |= kIoReadable;
  }
  if (!OutboundEmpty()) want |= kIoWritable;
  // Behind: input left unread, or output well past what one send carries.
  if (!inbound_.empty() || OutboundSize() > worker_->options().write_high_water / 4) {
    want |= kBacklogged;
  }
  if (want == interest_ && registered_) return;
  interest_ = want;
  registered_ = true;
  absl::Status s = backend().SetStreamInterest(this, want & kIoReadable, want & kIoWritable,
                                               want & kBacklogged);
  if (!s.ok()) {
    NETLOOP_LOG(kError) << "watch fd " << fd_ << ": " << s.message();
    if (in_callback_ > 0) {
      close_requested_ = true;
      pending_reason_ = s;
    } else {
      CloseNow(s);
    }
  }
}

// ---------------------------------------------------------------- closing

void Conn::Close() {
  if (datagram_) return;  // the socket is the engine's
  Guard guard(this);  // called from a loop timer or task, this may free the Conn
  if (state_ != State::kOpen) {
    if (state_ == State::kConnecting || state_ == State::kHandshaking) {
      CloseWithError(ClosedError());
    }
    return;
  }
  if (io_failed_) {
    // A send failed in this callback: nothing more can leave, so there is
    // nothing to drain and no close_notify to send.
    CloseWithError(BrokenStreamError());
    return;
  }
  if (tls_ != nullptr) {
    if (in_callback_ > 0 && OutboundEmpty()) {
      // Deferred like a plaintext close: the handler may still Write in
      // this callback, and those bytes go before close_notify.
      // AfterCallback comes back here.
      close_requested_ = true;
      return;
    }
    // close_notify goes out after what was written (and drains with it);
    // the peer's is not waited for (RFC 8446 6.1 allows closing at once).
    (void)QueueCloseNotify();
    if (state_ != State::kOpen) return;
  }
  if (OutboundEmpty()) {
    absl::Status reason = std::move(pending_reason_);
    pending_reason_ = absl::OkStatus();
    if (in_callback_ > 0) {
      close_requested_ = true;
      pending_reason_ = std::move(reason);
      return;
    }
    CloseNow(std::move(reason));
    return;
  }
  state_ = State::kClosing;
  UpdateInterest();
  ArmDrainTimer();
}

void Conn::ArmDrainTimer() {
  // Replaces the idle timer, which ignores connections that are not open.
  if (timer_.valid()) loop().CancelTimer(timer_);
  timer_ = TimerId();
  int64_t drain = DurationToNanosSaturated(worker_->options().close_drain_timeout);
  if (drain < kNeverNanos) {
    last_active_ns_ = loop().NowNanos();
    timer_ = loop().RunAtNanos(last_active_ns_ + drain, [this] { OnDrainTimer(); });
  }
}

void Conn::OnDrainTimer() {
  Guard g(this);
  timer_ = TimerId();
  // The bound is on a peer that takes nothing, not on a long file it is
  // still taking: bytes sent since move the deadline (lazily, as the idle
  // timer does).
  const int64_t drain = DurationToNanosSaturated(worker_->options().close_drain_timeout);
  if (loop().NowNanos() - last_active_ns_ < drain) {
    timer_ = loop().RunAtNanos(last_active_ns_ + drain, [this] { OnDrainTimer(); });
    return;
  }
  CloseNow(DeadlineExceededError("close: unsent bytes made no progress in time"));
}

void Conn::CloseWithError(absl::Status reason) {
  if (datagram_) return;
  Guard guard(this);  // called from a loop timer or task, this may free the Conn
  if (state_ == State::kClosed || state_ == State::kDetached) return;
  if (in_callback_ > 0) {
    close_requested_ = true;
    pending_reason_ = std::move(reason);
    return;
  }
  CloseNow(std::move(reason));
}

void Conn::ShutdownWrite() {
  if (datagram_) return;
  Guard guard(this);  // called from a loop timer or task, this may free the Conn
  if (state_ != State::kOpen) return;
  if (tls_ != nullptr) {
    (void)QueueCloseNotify();  // close_notify, then the FIN
    if (state_ != State::kOpen) return;
  }
  if (OutboundEmpty()) {
    backend().ShutdownWrite(this);
  } else {
    shutdown_write_pending_ = true;
  }
}

absl::Status Conn::BrokenStreamError() const {
  return pending_reason_.ok() ? ClosedError() : pending_reason_;
}

void Conn::FailIo(int err) {
  io_failed_ = true;
  absl::Status reason = ResetError(err);
  if (in_callback_ > 0) {
    // Closing under a running callback would free what it is using; stop
    // touching the socket now and close once the callback returns. A Close
    // the handler asked for earlier in this callback (an OK reason) gives
    // way to the failure: OnClose must see the reset, and no orderly TLS
    // close can follow a lost record.
    if (!close_requested_ || pending_reason_.ok()) pending_reason_ = std::move(reason);
    close_requested_ = true;
    read_paused_ = true;
    return;
  }
  CloseNow(std::move(reason));
}

void Conn::CloseNow(absl::Status reason) {
  if (state_ == State::kClosed || state_ == State::kDetached) return;
  state_ = State::kClosed;
  if (timer_.valid()) {
    loop().CancelTimer(timer_);
    timer_ = TimerId();
  }
  fresh_ = {};
  inbound_.Release();
  files_.reset();  // closes the files' descriptors
  if (!lent_.empty()) {
    lent_ = {};
    backend().ReturnLentBuffer(this);  // when a send in flight is done with it
  }
  if (backend().SendInFlight(this)) {
    // The kernel may still read these bytes: they go when the send ends.
    backend().RetainUntilSent(this, outbound_.TakeStorage());
  } else {
    outbound_.Release();
  }
  AccountBuffers();
  worker_->Forget(this);
  MarkReleased();
  // OnClose still sees a working fd (LocalAddress, SO_ options); the socket
  // closes right after it. An accepted connection that never opened (its
  // TLS handshake failed) is owed none; a Dial always is.
  if (opened_ || is_client_) {
    ++in_callback_;
    worker_->handler().OnClose(*this, reason);
    --in_callback_;
  }
  tls_.reset();
  // Stops what is in flight and closes the fd (a Dial that failed before
  // its socket has none).
  if (registered_ || IsValidSocket(fd_)) backend().CloseStream(this);
  registered_ = false;
  interest_ = 0;
  fd_ = kInvalidSocket;
  // The last hold (a Guard, an operation in flight) frees the Conn.
}

absl::StatusOr<DetachedConn> Conn::Detach() {
  Guard guard(this);  // called from a loop timer or task, this may free the Conn
  if (state_ != State::kOpen) {
    return absl::FailedPreconditionError("detach: connection is not open");
  }
  if (io_failed_) return BrokenStreamError();  // closing with the failure's reason
  if (tls_ != nullptr) {
    return absl::FailedPreconditionError("detach: a TLS session cannot be handed over");
  }
  if (files_ != nullptr) {
    return absl::FailedPreconditionError("detach: a file is still being sent");
  }
  if (datagram_) return absl::FailedPreconditionError("detach: a datagram socket");
  DetachedConn out;
  out.fd = fd_;
  out.remote = RemoteAddress();
  Peek().AppendTo(&out.unread);
  fresh_ = {};
  inbound_.Release();
  if (registered_) {
    // Bytes a completion backend received but has not delivered are the new
    // owner's too.
    size_t sent = 0;
    if (absl::Status s = backend().DetachStream(this, &out.unread, &sent); !s.ok()) {
      // Still ours: the send the backend dropped from its queue goes again.
      (void)SendBuffered();
      return s;
    }
    DiscardSent(sent);
  }
  out.unsent.append(lent_);
  if (!lent_.empty()) {
    lent_ = {};
    backend().ReturnLentBuffer(this);
  }
  {
    RingBuffer::Views v = outbound_.Peek(outbound_.size());
    out.unsent.append(v.first);
    out.unsent.append(v.second);
  }
  outbound_.Release();
  shutdown_write_pending_ = false;
  AccountBuffers();
  if (timer_.valid()) {
    loop().CancelTimer(timer_);
    timer_ = TimerId();
  }
  registered_ = false;
  interest_ = 0;
  state_ = State::kDetached;
  MarkReleased();
  worker_->Forget(this);
  fd_ = kInvalidSocket;
  // A Guard on the stack (callbacks always run under one) frees the Conn.
  return out;
}

void Conn::ArmIdleTimer() {
  int64_t idle = DurationToNanosSaturated(worker_->options().idle_timeout);
  if (idle <= 0 || idle == kNeverNanos) return;
  timer_ = loop().RunAtNanos(last_active_ns_ + idle, [this] { OnIdleTimer(); });
}

void Conn::OnIdleTimer() {
  Guard g(this);
  timer_ = TimerId();
  if (state_ != State::kOpen) return;
  int64_t idle = DurationToNanosSaturated(worker_->options().idle_timeout);
  int64_t now = MonotonicNanos();
  // Traffic only stamps last_active_ns_; the timer is moved lazily here, so a
  // busy connection costs no timer work per message.
  if (now - last_active_ns_ >= idle) {
    CloseNow(DeadlineExceededError("idle timeout"));
    return;
  }
  timer_ = loop().RunAtNanos(last_active_ns_ + idle, [this] { OnIdleTimer(); });
}

// ---------------------------------------------------------------- ConnRef

void ConnRef::AsyncWrite(std::string data, WriteCallback done) const {
  if (worker_ == nullptr) return;
  internal::Worker* w = worker_;
  uint64_t id = id_;
  w->loop().QueueInLoop([w, id, data = std::move(data), done = std::move(done)]() mutable {
    Conn* c = w->Find(id);
    if (c == nullptr || !c->is_open()) {
      if (done) done(nullptr, ClosedError());
      return;
    }
    Conn::Guard g(c);
    absl::Status s = c->Write(data);
    if (done) done(c->is_open() ? c : nullptr, std::move(s));
  });
}

void ConnRef::AsyncWritev(std::vector<std::string> parts, WriteCallback done) const {
  if (worker_ == nullptr) return;
  internal::Worker* w = worker_;
  uint64_t id = id_;
  w->loop().QueueInLoop([w, id, parts = std::move(parts), done = std::move(done)]() mutable {
    Conn* c = w->Find(id);
    if (c == nullptr || !c->is_open()) {
      if (done) done(nullptr, ClosedError());
      return;
    }
    Conn::Guard g(c);
    std::vector<std::string_view> views(parts.begin(), parts.end());
    absl::Status s = c->Writev(views);
    if (done) done(c->is_open() ? c : nullptr, std::move(s));
  });
}

void ConnRef::Wake() const {
  Run([](Conn* c) {
    if (c != nullptr && c->is_open()) c->DispatchTraffic();
  });
}

void ConnRef::Close() const {
  Run([](Conn* c) {
    if (c != nullptr) c->Close();
  });
}

void ConnRef::CloseWithError(absl::Status reason) const {
  Run([reason = std::move(reason)](Conn* c) mutable {
    if (c != nullptr) c->CloseWithError(std::move(reason));
  });
}

void ConnRef::Run(absl::AnyInvocable<void(Conn*)> fn) const {
  if (worker_ == nullptr) return;
  internal::Worker* w = worker_;
  uint64_t id = id_;
  w->loop().QueueInLoop([w, id, fn = std::move(fn)]() mutable {
    Conn* c = w->Find(id);
    if (c == nullptr) {
      fn(nullptr);
      return;
    }
    Conn::Guard g(c);
    fn(c);
  });
}

}  // namespace netloop
