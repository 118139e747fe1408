// The OpenSSL TlsSession (engine internal): an SSL object over two memory
// BIOs, so it never touches a socket (see internal/tls_session.h).
#ifndef NETLOOP_REACTOR_INTERNAL_OPENSSL_SESSION_H_
#define NETLOOP_REACTOR_INTERNAL_OPENSSL_SESSION_H_

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "reactor/internal/openssl_context.h"
#include "reactor/internal/tls_session.h"


namespace netloop::internal {

class OpenSslSession final : public TlsSession {
 public:
  static absl::StatusOr<std::unique_ptr<TlsSession>> NewServer(
      std::shared_ptr<const tls::OpenSslContext> context);
  static absl::StatusOr<std::unique_ptr<TlsSession>> NewClient(
      std::shared_ptr<const tls::OpenSslContext> context, std::string_view server_name);
  ~OpenSslSession() override;
  OpenSslSession(const OpenSslSession&) = delete;
  OpenSslSession& operator=(const OpenSslSession&) = delete;

  void Feed(std::string_view cipher) override;
  absl::StatusOr<bool> Handshake() override;
  bool handshake_complete() const override { return handshake_complete_; }
  absl::StatusOr<size_t> Read(std::span<char> buf) override;
  absl::Status Write(std::string_view plain) override;
  void Shutdown() override;
  size_t TakeCipher(std::string* out) override;
  tls::SessionInfo Info() const override;

 private:
  OpenSslSession(std::shared_ptr<const tls::OpenSslContext> context, ssl_st* ssl, bio_st* in,
                 bio_st* out);
  // The failure of the last SSL call, as a TlsError naming the cause.
  absl::Status Failure(int result);
  // Replaces an empty memory BIO that grew past kKeepBioBytes once the
  // traffic through it is small again (the last transfer, `last_bytes`,
  // under a quarter of that): a connection back to small messages, or idle
  // after them, does not keep its largest read or write, and bulk traffic
  // does not pay for a new BIO per transfer. After a bulk transfer an idle
  // connection keeps at most that transfer's size (about 85 KiB for a 64 KiB
  // read).
  static constexpr size_t kKeepBioBytes = 16 * 1024;
  // `force`: whatever its size (once, after the handshake's flights).
  void TrimBio(bio_st* bio, bool write_side, size_t last_bytes, bool force = false);
  size_t last_fed_ = 0;  // bytes of the latest Feed
  bool trimmed_flights_ = false;

  std::shared_ptr<const tls::OpenSslContext> context_;
  ssl_st* ssl_;
  bio_st* in_;   // ciphertext fed, owned by ssl_
  bio_st* out_;  // ciphertext to send, owned by ssl_
  std::string server_name_;  // client: what was dialled (the session cache's key)
  bool handshake_complete_ = false;
  bool shut_down_ = false;
};

}  // namespace netloop::internal

#endif  // NETLOOP_REACTOR_INTERNAL_OPENSSL_SESSION_H_
