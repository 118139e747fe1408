#include "reactor/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "reactor/internal/openssl_context.h"
#include "reactor/internal/openssl_session.h"

namespace netloop::tls {
namespace {

// The newest error on this thread's OpenSSL queue, as text (and the queue
// emptied, so it cannot be misread by the next call).
std::string LastOpenSslError() {
  unsigned long e = ERR_peek_last_error();
  std::string text = "unknown error";
  if (e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    text = buf;
  }
  ERR_clear_error();
  return text;
}

absl::StatusOr<std::string> AlpnWire(const std::vector<std::string>& ids) {
  std::string wire;
  for (const std::string& id : ids) {
    if (id.empty() || id.size() > 255) {
      return absl::InvalidArgumentError(absl::StrCat("ALPN id \"", id, "\": 1 to 255 bytes"));
    }
    wire.push_back(static_cast<char>(id.size()));
    wire += id;
  }
  return wire;
}

// ALPN on the server: the first of the server's ids that the client offers.
int SelectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void* arg) {
  const auto* impl = static_cast<const OpenSslContext*>(arg);
  const auto* wire = reinterpret_cast<const unsigned char*>(impl->alpn_wire.data());
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, wire,
                            static_cast<unsigned int>(impl->alpn_wire.size()), in,
                            inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;  // no overlap: no protocol, not a failure
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

// SNI on the server: switches to the certificate issued for the name asked.
int SelectCertificate(SSL* ssl, int*, void* arg) {
  const auto* impl = static_cast<const OpenSslContext*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr) return SSL_TLSEXT_ERR_OK;
  for (const OpenSslContext::SniEntry& entry : impl->sni) {
    if (X509_check_host(entry.leaf, name, 0, 0, nullptr) == 1) {
      SSL_set_SSL_CTX(ssl, entry.ctx);
      break;
    }
  }
  return SSL_TLSEXT_ERR_OK;  // the default certificate otherwise
}

// Settings every context shares.
SSL_CTX* NewBaseContext(bool server) {
  SSL_CTX* ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (ctx == nullptr) return nullptr;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  // Idle connections keep no record buffers (about 34 KiB each otherwise).
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  return ctx;
}

absl::StatusOr<SSL_CTX*> NewServerContext(const CertificateFiles& files, const ServerConfig& config,
                                          OpenSslContext* impl) {
  SSL_CTX* ctx = NewBaseContext(/*server=*/true);
  if (ctx == nullptr) return absl::InternalError("tls: " + LastOpenSslError());
  absl::Status status;
  if (SSL_CTX_use_certificate_chain_file(ctx, files.chain_file.c_str()) != 1) {
    status = absl::InvalidArgumentError(
        absl::StrCat("tls: certificate chain ", files.chain_file, ": ", LastOpenSslError()));
  } else if (SSL_CTX_use_PrivateKey_file(ctx, files.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    const bool mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
    status = absl::InvalidArgumentError(absl::StrCat(
        "tls: private key ", files.key_file, mismatch ? " does not match " : ": ",
        mismatch ? files.chain_file : "", mismatch ? ": " : "", LastOpenSslError()));
  } else if (SSL_CTX_check_private_key(ctx) != 1) {
    status = absl::InvalidArgumentError(absl::StrCat(
        "tls: ", files.key_file, " does not match ", files.chain_file, ": ", LastOpenSslError()));
  }
  if (!status.ok()) {
    SSL_CTX_free(ctx);
    return status;
  }
  SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (!config.session_tickets) {
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
  }
  // Every context gets the callbacks: after an SNI switch the handshake
  // goes on with the new context's.
  if (!impl->alpn_wire.empty()) SSL_CTX_set_alpn_select_cb(ctx, SelectAlpn, impl);
  SSL_CTX_set_tlsext_servername_callback(ctx, SelectCertificate);
  SSL_CTX_set_tlsext_servername_arg(ctx, impl);
  return ctx;
}

// Client: keeps each new session for the name it was dialled by.
int KeepSession(SSL* ssl, SSL_SESSION* session) {
  auto* impl = static_cast<OpenSslContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  const char* name = static_cast<const char*>(SSL_get_ex_data(ssl, DialledNameIndex()));
  if (impl == nullptr || name == nullptr) return 0;
  // A copy: OpenSSL marks the connection's own session not resumable when
  // the connection ends without close_notify (an error, a peer that just
  // closed), but a TLS 1.3 ticket stays good after that.
  SSL_SESSION* copy = SSL_SESSION_dup(session);
  if (copy == nullptr) return 0;
  std::lock_guard<std::mutex> lock(impl->sessions_mu);
  SSL_SESSION*& slot = impl->sessions[name];
  if (slot != nullptr) SSL_SESSION_free(slot);
  slot = copy;
  return 0;  // OpenSSL keeps its reference to `session`
}

}  // namespace

int DialledNameIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

OpenSslContext::~OpenSslContext() {
  for (auto& [name, session] : sessions) SSL_SESSION_free(session);
  for (SniEntry& entry : sni) SSL_CTX_free(entry.ctx);
  if (ctx != nullptr) SSL_CTX_free(ctx);
}

absl::StatusOr<std::unique_ptr<internal::TlsSession>> OpenSslContext::NewSession(
    std::string_view server_name) const {
  auto self = std::static_pointer_cast<const OpenSslContext>(shared_from_this());
  if (is_server()) return internal::OpenSslSession::NewServer(std::move(self));
  return internal::OpenSslSession::NewClient(std::move(self), server_name);
}

absl::StatusOr<std::shared_ptr<const Context>> Context::NewServer(const ServerConfig& config) {
  auto impl = std::make_shared<OpenSslContext>(/*server=*/true);
  absl::StatusOr<std::string> alpn = AlpnWire(config.alpn);
  if (!alpn.ok()) return alpn.status();
  impl->alpn_wire = *std::move(alpn);
  absl::StatusOr<SSL_CTX*> ctx = NewServerContext(config.certificate, config, impl.get());
  if (!ctx.ok()) return ctx.status();
  impl->ctx = *ctx;
  for (const CertificateFiles& files : config.sni_certificates) {
    absl::StatusOr<SSL_CTX*> sni = NewServerContext(files, config, impl.get());
    if (!sni.ok()) return sni.status();
    impl->sni.push_back({*sni, SSL_CTX_get0_certificate(*sni)});
  }
  return std::shared_ptr<const Context>(std::move(impl));
}

absl::StatusOr<std::shared_ptr<const Context>> Context::NewClient(const ClientConfig& config) {
  auto impl = std::make_shared<OpenSslContext>(/*server=*/false);
  impl->verify_peer = config.verify_peer;
  impl->resume_sessions = config.resume_sessions;
  absl::StatusOr<std::string> alpn = AlpnWire(config.alpn);
  if (!alpn.ok()) return alpn.status();
  impl->alpn_wire = *std::move(alpn);
  impl->ctx = NewBaseContext(/*server=*/false);
  if (impl->ctx == nullptr) return absl::InternalError("tls: " + LastOpenSslError());
  SSL_CTX* ctx = impl->ctx;
  SSL_CTX_set_verify(ctx, config.verify_peer ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  const int loaded = config.ca_file.empty()
                         ? SSL_CTX_set_default_verify_paths(ctx)
                         : SSL_CTX_load_verify_locations(ctx, config.ca_file.c_str(), nullptr);
  if (loaded != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tls: trusted certificates ", config.ca_file.empty() ? "(system store)" : config.ca_file,
        ": ", LastOpenSslError()));
  }
  if (!impl->alpn_wire.empty() &&
      SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>(impl->alpn_wire.data()),
                              static_cast<unsigned int>(impl->alpn_wire.size())) != 0) {
    return absl::InternalError("tls: ALPN: " + LastOpenSslError());
  }
  if (config.resume_sessions) {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, KeepSession);
  }
  SSL_CTX_set_app_data(ctx, impl.get());
  return std::shared_ptr<const Context>(std::move(impl));
}

}  // namespace netloop::tls
