// --tls-cert and --tls-key for both HTTP servers: given both, every listener
// serves HTTPS (ALPN offers http/1.1 only, the one protocol they speak).
#ifndef NETLOOP_EXAMPLES_HTTP_TLS_FLAGS_H_
#define NETLOOP_EXAMPLES_HTTP_TLS_FLAGS_H_

#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "reactor/tls.h"

namespace netloop::examples {

struct TlsFlags {
  std::string cert_file;  // PEM chain, leaf first
  std::string key_file;   // PEM private key
};

inline void AddTlsFlags(CLI::App& app, TlsFlags& f) {
  app.add_option("--tls-cert", f.cert_file, "serve HTTPS with this PEM certificate chain");
  app.add_option("--tls-key", f.key_file, "the private key of --tls-cert (PEM)");
}

// The server context the flags ask for; nullptr when TLS is off.
inline absl::StatusOr<std::shared_ptr<const tls::Context>> TlsContextFromFlags(
    const TlsFlags& f) {
  if (f.cert_file.empty() && f.key_file.empty()) return nullptr;
  if (f.cert_file.empty() || f.key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  tls::ServerConfig config;
  config.certificate = {f.cert_file, f.key_file};
  config.alpn = {"http/1.1"};
  return tls::Context::NewServer(config);
}

}  // namespace netloop::examples

#endif  // NETLOOP_EXAMPLES_HTTP_TLS_FLAGS_H_
