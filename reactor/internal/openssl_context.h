// The OpenSSL tls::Context (engine internal): the SSL_CTXs, made once by
// tls.cc and read by every OpenSslSession.
#ifndef NETLOOP_REACTOR_INTERNAL_OPENSSL_CONTEXT_H_
#define NETLOOP_REACTOR_INTERNAL_OPENSSL_CONTEXT_H_

#include <openssl/ssl.h>

#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "reactor/internal/tls_session.h"
#include "reactor/tls.h"

namespace netloop::tls {

class OpenSslContext final : public Context {
 public:
  explicit OpenSslContext(bool server) : Context(server) {}
  ~OpenSslContext() override;

  // Server: the default certificate's; client: the only one.
  SSL_CTX* ctx = nullptr;
  // Server: one per SNI certificate, with the leaf to match names against.
  struct SniEntry {
    SSL_CTX* ctx = nullptr;
    X509* leaf = nullptr;  // owned by ctx
  };
  std::vector<SniEntry> sni;
  std::string alpn_wire;  // ALPN ids, each prefixed by its length
  bool verify_peer = true;
  bool resume_sessions = true;

  // Client: the last session per server name, offered on the next
  // connection to it. Sessions are made on any loop, so a mutex guards it
  // (taken once per handshake, never per record).
  mutable std::mutex sessions_mu;
  mutable std::unordered_map<std::string, SSL_SESSION*> sessions;

 private:
  absl::StatusOr<std::unique_ptr<internal::TlsSession>> NewSession(
      std::string_view server_name) const override;
};

// The SSL ex_data slot where a client session keeps the name it dialled (a
// NUL-terminated string owned by the TlsSession), for the session cache.
int DialledNameIndex();

}  // namespace netloop::tls

#endif  // NETLOOP_REACTOR_INTERNAL_OPENSSL_CONTEXT_H_
