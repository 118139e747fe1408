// Command-line flags shared by the callback and fiber echo servers, so the
// two models are started the same way in a head-to-head run.
#ifndef NETLOOP_EXAMPLES_ECHO_ECHO_FLAGS_H_
#define NETLOOP_EXAMPLES_ECHO_ECHO_FLAGS_H_

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "reactor/options.h"

namespace netloop::examples {

struct EchoFlags {
  std::vector<std::string> addresses{"tcp://127.0.0.1:9000"};
  int loops = 0;
#ifdef _WIN32
  std::string mode = "acceptor";  // Windows has no SO_REUSEPORT
#else
  std::string mode = "reuseport";  // reuseport | acceptor
#endif
  std::string policy = "round-robin";  // round-robin | least-connections | source-hash
  bool edge_triggered = false;
  int idle_timeout_seconds = 0;
  std::string backend = "auto";  // auto | epoll | io_uring
  size_t uring_buffer_size = Options{}.uring_buffer_size;
  size_t uring_buffers = Options{}.uring_buffer_count;
};

inline void AddEchoFlags(CLI::App& app, EchoFlags& f) {
  app.add_option("-a,--address", f.addresses,
                 "listen address(es): tcp://host:port, tcp6://[::1]:port, unix:///path")
      ->capture_default_str();
  app.add_option("-l,--loops", f.loops, "event loops (0 = one per CPU)")
      ->capture_default_str();
  app.add_option("-m,--mode", f.mode, "accept mode: reuseport | acceptor")
      ->capture_default_str();
  app.add_option("-p,--policy", f.policy,
                 "acceptor policy: round-robin | least-connections | source-hash")
      ->capture_default_str();
  app.add_flag("--et,--edge-triggered", f.edge_triggered, "edge-triggered epoll");
  app.add_option("--backend", f.backend,
                 "kernel interface: auto | epoll | io_uring (auto obeys NETLOOP_BACKEND)")
      ->capture_default_str();
  app.add_option("--uring-buffer-size", f.uring_buffer_size,
                 "io_uring: bytes per provided receive buffer")
      ->capture_default_str();
  app.add_option("--uring-buffers", f.uring_buffers,
                 "io_uring: provided receive buffers per loop")
      ->capture_default_str();
  app.add_option("--idle-timeout", f.idle_timeout_seconds,
                 "close connections idle this many seconds (0 = never)");
}

inline absl::StatusOr<Options> ToOptions(const EchoFlags& f) {
  Options o;
  o.loops = f.loops;
  o.edge_triggered = f.edge_triggered;
  absl::StatusOr<BackendKind> backend = ParseBackendKind(f.backend);
  if (!backend.ok()) return backend.status();
  o.backend = *backend;
  o.uring_buffer_size = f.uring_buffer_size;
  o.uring_buffer_count = f.uring_buffers;
  o.idle_timeout = absl::Seconds(f.idle_timeout_seconds);
  if (f.mode == "reuseport") {
    o.accept_mode = AcceptMode::kReusePort;
  } else if (f.mode == "acceptor") {
    o.accept_mode = AcceptMode::kAcceptor;
  } else {
    return absl::InvalidArgumentError("--mode must be reuseport or acceptor");
  }
  if (f.policy == "round-robin") {
    o.load_balancing = LoadBalancing::kRoundRobin;
  } else if (f.policy == "least-connections") {
    o.load_balancing = LoadBalancing::kLeastConnections;
  } else if (f.policy == "source-hash") {
    o.load_balancing = LoadBalancing::kSourceAddrHash;
  } else {
    return absl::InvalidArgumentError(
        "--policy must be round-robin, least-connections or source-hash");
  }
  return o;
}

// ToOptions, printing the error for `program` on failure.
inline std::optional<Options> OptionsOrReport(const EchoFlags& f, const char* program) {
  absl::StatusOr<Options> o = ToOptions(f);
  if (!o.ok()) {
    std::fprintf(stderr, "%s: %s\n", program, std::string(o.status().message()).c_str());
    return std::nullopt;
  }
  return *o;
}

// The line tools/duel and the tests wait for, one per bound address.
inline void PrintListening(const std::vector<std::string>& uris) {
  for (const std::string& uri : uris) std::printf("listening on %s\n", uri.c_str());
  std::fflush(stdout);
}

}  // namespace netloop::examples

#endif  // NETLOOP_EXAMPLES_ECHO_ECHO_FLAGS_H_
