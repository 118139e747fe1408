// One TLS connection's state machine, with no I/O of its own (engine
// internal). The owner moves bytes: ciphertext from the socket goes in with
// Feed, ciphertext for the socket comes out with TakeCipher; plaintext goes
// in with Write and comes out with Read. Both models use it the same way (a
// callback Conn from OnReceived, a FiberConn from its Read), and so does any
// backend, since it never touches a descriptor.
//
// After every call that can produce output (Handshake, Read, Write,
// Shutdown, and a failed one too: it may hold an alert), send what
// TakeCipher gives.
//
// Threading: one thread at a time (the connection's loop).
#ifndef NETLOOP_REACTOR_INTERNAL_TLS_SESSION_H_
#define NETLOOP_REACTOR_INTERNAL_TLS_SESSION_H_

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "reactor/tls.h"

struct ssl_st;
struct bio_st;

namespace netloop::internal {

class TlsSession {
 public:
  static absl::StatusOr<std::unique_ptr<TlsSession>> NewServer(
      std::shared_ptr<const tls::Context> context);
  // `server_name` is the host dialled: sent as SNI when it is a name (not an
  // IP address), and what the server's certificate must be issued for.
  static absl::StatusOr<std::unique_ptr<TlsSession>> NewClient(
      std::shared_ptr<const tls::Context> context, std::string_view server_name);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Ciphertext from the peer, in the order it arrived.
  void Feed(std::string_view cipher);

  // Advances the handshake with what has been fed. True once it is
  // complete; false while it waits for the peer; TlsError when it failed
  // (the peer's certificate did not verify, garbage instead of a
  // handshake, no shared version or cipher).
  absl::StatusOr<bool> Handshake();
  bool handshake_complete() const { return handshake_complete_; }

  // Decrypts into `buf`: the byte count, 0 when more ciphertext is needed,
  // PeerClosedError once the peer's close_notify arrived, TlsError for a
  // bad record or a refused renegotiation.
  absl::StatusOr<size_t> Read(std::span<char> buf);
  // Encrypts all of `plain` (the handshake must be complete).
  absl::Status Write(std::string_view plain);
  // Queues close_notify (once; nothing can be written after it).
  void Shutdown();

  // Appends the ciphertext waiting to be sent to `*out`; returns its size.
  size_t TakeCipher(std::string* out);
  bool has_cipher() const;

  // What the handshake agreed on (loop thread, after it completed).
  tls::SessionInfo Info() const;

 private:
  TlsSession(std::shared_ptr<const tls::Context> context, ssl_st* ssl, bio_st* in, bio_st* out);
  // The failure of the last SSL call, as a TlsError naming the cause.
  absl::Status Failure(int result);

  std::shared_ptr<const tls::Context> context_;
  ssl_st* ssl_;
  bio_st* in_;   // ciphertext fed, owned by ssl_
  bio_st* out_;  // ciphertext to send, owned by ssl_
  std::string server_name_;  // client: what was dialled (the session cache's key)
  bool handshake_complete_ = false;
  bool shut_down_ = false;
};

}  // namespace netloop::internal

#endif  // NETLOOP_REACTOR_INTERNAL_TLS_SESSION_H_
