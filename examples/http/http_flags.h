// The flags both HTTP servers share beyond the echo ones: --tls-cert and
// --tls-key (given both, every listener serves HTTPS; ALPN offers http/1.1
// only, the one protocol they speak) and --root (regular files under a
// directory, sent with SendFile).
#ifndef NETLOOP_EXAMPLES_HTTP_HTTP_FLAGS_H_
#define NETLOOP_EXAMPLES_HTTP_HTTP_FLAGS_H_

#include <cstdio>
#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "examples/http/static_files.h"
#include "reactor/options.h"
#include "reactor/tls.h"

namespace netloop::examples {

struct HttpServerFlags {
  std::string cert_file;  // PEM chain, leaf first
  std::string key_file;   // PEM private key
  std::string root;       // directory of files to serve; empty: none
};

inline void AddHttpServerFlags(CLI::App& app, HttpServerFlags& f) {
  app.add_option("--tls-cert", f.cert_file, "serve HTTPS with this PEM certificate chain");
  app.add_option("--tls-key", f.key_file, "the private key of --tls-cert (PEM)");
  app.add_option("--root", f.root,
                 "serve the regular files under this directory at their paths (GET, HEAD)");
}

// The --root directory; nullptr when none was asked for or it cannot be
// opened (*error then says why).
inline std::unique_ptr<http::StaticRoot> RootFromFlags(const HttpServerFlags& f,
                                                       std::string* error) {
  if (f.root.empty()) return nullptr;
  return http::StaticRoot::Open(f.root, error);
}

// The server context the flags ask for; nullptr when TLS is off.
inline absl::StatusOr<std::shared_ptr<const tls::Context>> TlsContextFromFlags(
    const HttpServerFlags& f) {
  if (f.cert_file.empty() && f.key_file.empty()) return nullptr;
  if (f.cert_file.empty() || f.key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  tls::ServerConfig config;
  config.certificate = {f.cert_file, f.key_file};
  config.alpn = {"http/1.1"};
  return tls::Context::NewServer(config);
}

// Applies the flags: Options::tls, and the --root directory into *root.
// False (after printing why, prefixed by `who`) when they cannot be honoured.
inline bool ApplyHttpServerFlags(const HttpServerFlags& f, const char* who, Options* options,
                                 std::unique_ptr<http::StaticRoot>* root) {
  absl::StatusOr<std::shared_ptr<const tls::Context>> tls = TlsContextFromFlags(f);
  if (!tls.ok()) {
    std::fprintf(stderr, "%s: %s\n", who, tls.status().ToString().c_str());
    return false;
  }
  options->tls = *std::move(tls);
  std::string error;
  *root = RootFromFlags(f, &error);
  if (!f.root.empty() && *root == nullptr) {
    std::fprintf(stderr, "%s: --root %s\n", who, error.c_str());
    return false;
  }
  return true;
}

}  // namespace netloop::examples

#endif  // NETLOOP_EXAMPLES_HTTP_HTTP_FLAGS_H_
