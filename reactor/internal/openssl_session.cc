#include "reactor/internal/openssl_session.h"

#include <arpa/inet.h>
#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "reactor/errors.h"

namespace netloop::internal {
namespace {

bool IsIpAddress(const std::string& name) {
  unsigned char addr[sizeof(in6_addr)];
  return inet_pton(AF_INET, name.c_str(), addr) == 1 ||
         inet_pton(AF_INET6, name.c_str(), addr) == 1;
}

// A memory BIO that reads as "try again" (not EOF) when empty: more
// ciphertext may come.
BIO* NewMemoryBio() {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio != nullptr) BIO_set_mem_eof_return(bio, -1);
  return bio;
}

absl::Status NewSsl(SSL_CTX* ctx, SSL** ssl, BIO** in, BIO** out) {
  *ssl = SSL_new(ctx);
  *in = NewMemoryBio();
  *out = NewMemoryBio();
  if (*ssl == nullptr || *in == nullptr || *out == nullptr) {
    if (*ssl != nullptr) SSL_free(*ssl);
    if (*in != nullptr) BIO_free(*in);
    if (*out != nullptr) BIO_free(*out);
    ERR_clear_error();
    return absl::ResourceExhaustedError("tls: out of memory for a session");
  }
  SSL_set_bio(*ssl, *in, *out);  // the SSL owns both from here on
  return absl::OkStatus();
}

}  // namespace

OpenSslSession::OpenSslSession(std::shared_ptr<const tls::OpenSslContext> context, ssl_st* ssl,
                               bio_st* in, bio_st* out)
    : context_(std::move(context)), ssl_(ssl), in_(in), out_(out) {}

OpenSslSession::~OpenSslSession() { SSL_free(ssl_); }

absl::StatusOr<std::unique_ptr<TlsSession>> OpenSslSession::NewServer(
    std::shared_ptr<const tls::OpenSslContext> context) {
  if (context == nullptr || !context->is_server()) {
    return absl::InvalidArgumentError("tls: a server session needs a server context");
  }
  SSL* ssl;
  BIO* in;
  BIO* out;
  if (absl::Status s = NewSsl(context->ctx, &ssl, &in, &out); !s.ok()) return s;
  SSL_set_accept_state(ssl);
  return std::unique_ptr<TlsSession>(new OpenSslSession(std::move(context), ssl, in, out));
}

absl::StatusOr<std::unique_ptr<TlsSession>> OpenSslSession::NewClient(
    std::shared_ptr<const tls::OpenSslContext> context, std::string_view server_name) {
  if (context == nullptr || context->is_server()) {
    return absl::InvalidArgumentError("tls: a client session needs a client context");
  }
  const tls::OpenSslContext& impl = *context;
  SSL* ssl;
  BIO* in;
  BIO* out;
  if (absl::Status s = NewSsl(impl.ctx, &ssl, &in, &out); !s.ok()) return s;
  std::unique_ptr<OpenSslSession> session(new OpenSslSession(std::move(context), ssl, in, out));
  session->server_name_ = std::string(server_name);
  const std::string& name = session->server_name_;
  SSL_set_connect_state(ssl);
  if (!name.empty()) {
    const bool ip = IsIpAddress(name);
    // SNI carries host names only (RFC 6066); an address is checked
    // against the certificate's IP entries instead.
    if (!ip) SSL_set_tlsext_host_name(ssl, name.c_str());
    if (impl.verify_peer) {
      const int set = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str())
                         : SSL_set1_host(ssl, name.c_str());
      if (set != 1) {
        ERR_clear_error();
        return absl::InvalidArgumentError(absl::StrCat("tls: bad server name \"", name, "\""));
      }
    }
  } else if (impl.verify_peer) {
    // A chain that verifies proves nothing without the name it is for.
    return absl::InvalidArgumentError("tls: verifying the server needs the name dialled");
  }
  if (impl.resume_sessions && !name.empty()) {
    SSL_set_ex_data(ssl, tls::DialledNameIndex(), const_cast<char*>(name.c_str()));
    std::lock_guard<std::mutex> lock(impl.sessions_mu);
    auto it = impl.sessions.find(name);
    if (it != impl.sessions.end()) SSL_set_session(ssl, it->second);
  }
  return session;
}

void OpenSslSession::Feed(std::string_view cipher) {
  last_fed_ = cipher.size();
  while (!cipher.empty()) {
    const int n = BIO_write(in_, cipher.data(), static_cast<int>(std::min<size_t>(
                                                     cipher.size(), 1 << 30)));
    if (n <= 0) break;  // a memory BIO only fails when out of memory
    cipher.remove_prefix(static_cast<size_t>(n));
  }
}

absl::StatusOr<bool> OpenSslSession::Handshake() {
  if (handshake_complete_) return true;
  ERR_clear_error();
  const int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    handshake_complete_ = true;
    // The handshake's flights are done with: an idle connection keeps no
    // buffer for them (the write side goes once its last flight is taken).
    TrimBio(in_, /*write_side=*/false, 0, /*force=*/true);
    return true;
  }
  const int err = SSL_get_error(ssl_, r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return false;
  return Failure(r);
}

absl::StatusOr<size_t> OpenSslSession::Read(std::span<char> buf) {
  if (buf.empty()) return 0;
  ERR_clear_error();
  const int n = SSL_read(ssl_, buf.data(), static_cast<int>(std::min<size_t>(buf.size(), 1 << 30)));
  if (n > 0) return static_cast<size_t>(n);
  const int err = SSL_get_error(ssl_, n);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
    TrimBio(in_, /*write_side=*/false, last_fed_);  // all fed ciphertext is consumed
    return 0;
  }
  if (err == SSL_ERROR_ZERO_RETURN) return PeerClosedError();
  return Failure(n);
}

absl::Status OpenSslSession::Write(std::string_view plain) {
  if (shut_down_) return ClosedError("tls: write after close_notify");
  if (!handshake_complete_) return absl::FailedPreconditionError("tls: write before the handshake");
  while (!plain.empty()) {
    ERR_clear_error();
    const int n = SSL_write(ssl_, plain.data(), static_cast<int>(std::min<size_t>(
                                                   plain.size(), 1 << 30)));
    if (n <= 0) return Failure(n);  // memory BIOs never ask to wait
    plain.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

void OpenSslSession::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  ERR_clear_error();
  // Unidirectional: close_notify is queued and the connection may close
  // without waiting for the peer's (RFC 8446 6.1 allows it). Never after a
  // fatal error, when OpenSSL refuses anyway.
  if (SSL_in_init(ssl_) == 0) (void)SSL_shutdown(ssl_);
  ERR_clear_error();
}

size_t OpenSslSession::TakeCipher(std::string* out) {
  const size_t n = BIO_ctrl_pending(out_);
  if (n == 0) return 0;
  // BIO_read, not BIO_reset: a reset zeroes the BIO's whole capacity.
  const size_t old = out->size();
  out->resize(old + n);
  const int got = BIO_read(out_, out->data() + old, static_cast<int>(n));
  out->resize(old + static_cast<size_t>(std::max(got, 0)));
  TrimBio(out_, /*write_side=*/true, n, /*force=*/handshake_complete_ && !trimmed_flights_);
  if (handshake_complete_) trimmed_flights_ = true;
  return out->size() - old;
}

void OpenSslSession::TrimBio(bio_st* bio, bool write_side, size_t last_bytes, bool force) {
  // A memory BIO keeps the capacity of the most it ever held: one large
  // write or read would stay with the connection for its life.
  if (BIO_ctrl_pending(bio) != 0) return;
  if (!force && last_bytes > kKeepBioBytes / 4) return;
  BUF_MEM* mem = nullptr;
  BIO_get_mem_ptr(bio, &mem);
  if (mem == nullptr || mem->max == 0 || (!force && mem->max <= kKeepBioBytes)) return;
  BIO* fresh = NewMemoryBio();
  if (fresh == nullptr) return;
  if (write_side) {
    SSL_set0_wbio(ssl_, fresh);  // frees the old one
    out_ = fresh;
  } else {
    SSL_set0_rbio(ssl_, fresh);
    in_ = fresh;
  }
}

tls::SessionInfo OpenSslSession::Info() const {
  tls::SessionInfo info;
  info.version = SSL_get_version(ssl_);
  if (const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl_); cipher != nullptr) {
    info.cipher = SSL_CIPHER_get_name(cipher);
  }
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl_, &alpn, &alpn_len);
  if (alpn != nullptr) info.alpn.assign(reinterpret_cast<const char*>(alpn), alpn_len);
  if (const char* name = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name); name != nullptr) {
    info.server_name = name;
  }
  info.resumed = SSL_session_reused(ssl_) == 1;
  return info;
}

absl::Status OpenSslSession::Failure(int result) {
  const int err = SSL_get_error(ssl_, result);
  std::string why;
  // Only a verifying session's result means anything (it is filled in
  // under SSL_VERIFY_NONE too).
  const long verify = SSL_get_verify_mode(ssl_) != SSL_VERIFY_NONE ? SSL_get_verify_result(ssl_)
                                                                  : X509_V_OK;
  if (verify != X509_V_OK) {
    why = absl::StrCat("certificate verify failed: ", X509_verify_cert_error_string(verify));
  } else if (unsigned long e = ERR_peek_last_error(); e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    why = buf;
  } else if (err == SSL_ERROR_SYSCALL) {
    why = "the transport ended mid-record";
  } else {
    why = absl::StrCat("error ", err);
  }
  ERR_clear_error();
  return TlsError(why);
}

}  // namespace netloop::internal
