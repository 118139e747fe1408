// One TLS connection's state machine, with no I/O of its own (engine
// internal). The owner moves bytes: ciphertext from the socket goes in with
// Feed, ciphertext for the socket comes out with TakeCipher; plaintext goes
// in with Write and comes out with Read. Both models drive it the same way
// (a callback Conn from OnReceived, a FiberConn from its Read), and so does
// any backend, since it never touches a descriptor.
//
// After every call that can produce output (Handshake, Read, Write,
// Shutdown, and a failed one too: it may hold an alert), send what
// TakeCipher gives.
//
// This is the seam: the reactor knows only this interface, and
// //reactor:tls implements it with OpenSSL (internal/openssl_session.h), so
// only programs that make a tls::Context link OpenSSL. A kernel offload
// (kTLS) would be another implementation that hands the socket the keys.
//
// Threading: one thread at a time (the connection's loop).
#ifndef NETLOOP_REACTOR_INTERNAL_TLS_SESSION_H_
#define NETLOOP_REACTOR_INTERNAL_TLS_SESSION_H_

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "reactor/tls.h"

namespace netloop::internal {

class TlsSession {
 public:
  virtual ~TlsSession() = default;

  // Ciphertext from the peer, in the order it arrived.
  virtual void Feed(std::string_view cipher) = 0;

  // Advances the handshake with what has been fed. True once it is
  // complete; false while it waits for the peer; TlsError when it failed
  // (the peer's certificate did not verify, garbage instead of a
  // handshake, no shared version or cipher).
  virtual absl::StatusOr<bool> Handshake() = 0;
  virtual bool handshake_complete() const = 0;

  // Decrypts into `buf`: the byte count, 0 when more ciphertext is needed,
  // PeerClosedError once the peer's close_notify arrived, TlsError for a
  // bad record or a refused renegotiation.
  virtual absl::StatusOr<size_t> Read(std::span<char> buf) = 0;
  // Encrypts all of `plain` (the handshake must be complete).
  virtual absl::Status Write(std::string_view plain) = 0;
  // Queues close_notify (once; nothing can be written after it). Nothing
  // is queued when the handshake never completed.
  virtual void Shutdown() = 0;

  // Appends the ciphertext waiting to be sent to `*out`; returns its size.
  virtual size_t TakeCipher(std::string* out) = 0;

  // What the handshake agreed on (after it completed).
  virtual tls::SessionInfo Info() const = 0;
};

// A session for one connection made with `context`: a server session when
// it is a server context, else a client one for `server_name` (the host
// dialled: sent as SNI when it is a name, and what the server's certificate
// must be issued for).
inline absl::StatusOr<std::unique_ptr<TlsSession>> NewTlsSession(const tls::Context& context,
                                                                std::string_view server_name) {
  return context.NewSession(server_name);
}

}  // namespace netloop::internal

#endif  // NETLOOP_REACTOR_INTERNAL_TLS_SESSION_H_
