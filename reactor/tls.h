// TLS settings shared by connections: certificates, what a client trusts,
// ALPN, session resumption. OpenSSL 3 does the work underneath; none of its
// types appear here, so a kernel (kTLS) or another library's implementation
// can take its place without changing this interface.
//
// A Context is immutable once made and is shared by every loop: use it from
// any thread. Connections made with it keep it alive (std::shared_ptr).
//
// What is fixed, not configurable: TLS 1.2 is the lowest version accepted;
// renegotiation is refused (it only exists up to TLS 1.2, and it has been a
// source of denial-of-service and injection bugs); compression is off.
#ifndef NETLOOP_REACTOR_TLS_H_
#define NETLOOP_REACTOR_TLS_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace netloop::tls {
class Context;
}  // namespace netloop::tls

namespace netloop::internal {
class TlsSession;
absl::StatusOr<std::unique_ptr<TlsSession>> NewTlsSession(const tls::Context& context,
                                                         std::string_view server_name);
}  // namespace netloop::internal

namespace netloop::tls {

// A certificate chain (leaf first) and its private key, both PEM files.
struct CertificateFiles {
  std::string chain_file;
  std::string key_file;
};

struct ServerConfig {
  // Served when the client names no host (no SNI), or a host none of
  // `sni_certificates` covers.
  CertificateFiles certificate;
  // Chosen by the host the client names (SNI), matched against each
  // certificate's subject alternative names (wildcards as browsers allow).
  std::vector<CertificateFiles> sni_certificates;
  // ALPN protocol ids in the server's order of preference ("h2",
  // "http/1.1"). Empty: ALPN is not offered. A client whose list shares
  // none of them gets no protocol selected (not a failure).
  std::vector<std::string> alpn;
  // TLS 1.3 session tickets (and TLS 1.2 ones) let clients resume.
  bool session_tickets = true;
};

struct ClientConfig {
  // PEM file of the certificate authorities to trust. Empty: the system's
  // store (/etc/ssl/certs on Debian).
  std::string ca_file;
  // Verify the server's chain and that it was issued for the host dialled
  // (the name given to the session, or the IP address). On by default;
  // turning it off accepts any server, which only a test should do.
  bool verify_peer = true;
  // ALPN protocol ids to offer, in the client's order of preference.
  std::vector<std::string> alpn;
  // Keep the last session ticket per server name and offer it on the next
  // connection to that name (an abbreviated handshake).
  bool resume_sessions = true;
};

// What a finished handshake agreed on.
struct SessionInfo {
  std::string version;      // "TLSv1.3"
  std::string cipher;       // "TLS_AES_256_GCM_SHA384"
  std::string alpn;         // empty when none was selected
  std::string server_name;  // SNI: what the client asked for
  bool resumed = false;     // an abbreviated handshake from a ticket
};

// Shared by every connection made with it (Options::tls on a server,
// DialOptions::tls on a client). Immutable; any thread.
class Context : public std::enable_shared_from_this<Context> {
 public:
  // Loads the certificates and keys (and checks each key matches its
  // certificate). Errors name the file and what is wrong with it. Defined in
  // //reactor:tls (the only target that links OpenSSL): depend on it to make
  // a Context.
  static absl::StatusOr<std::shared_ptr<const Context>> NewServer(const ServerConfig& config);
  static absl::StatusOr<std::shared_ptr<const Context>> NewClient(const ClientConfig& config);

  virtual ~Context() = default;
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  bool is_server() const { return server_; }

 protected:
  explicit Context(bool server) : server_(server) {}

 private:
  friend absl::StatusOr<std::unique_ptr<internal::TlsSession>> internal::NewTlsSession(
      const Context& context, std::string_view server_name);
  // One connection's session. `server_name`: a client's host dialled.
  virtual absl::StatusOr<std::unique_ptr<internal::TlsSession>> NewSession(
      std::string_view server_name) const = 0;

  const bool server_;
};

}  // namespace netloop::tls

#endif  // NETLOOP_REACTOR_TLS_H_
