// tls::Context's factories where this build has no OpenSSL (the Windows
// build: Debian ships no mingw-w64 OpenSSL). Making a Context fails with a
// clear error, so a server asked for TLS refuses to start rather than serve
// plaintext.
#include "absl/status/status.h"
#include "reactor/tls.h"

namespace netloop::tls {

absl::StatusOr<std::shared_ptr<const Context>> Context::NewServer(const ServerConfig&) {
  return absl::UnimplementedError("TLS is not available in this build (no OpenSSL for Windows)");
}

absl::StatusOr<std::shared_ptr<const Context>> Context::NewClient(const ClientConfig&) {
  return absl::UnimplementedError("TLS is not available in this build (no OpenSSL for Windows)");
}

}  // namespace netloop::tls
