// The load engine behind tools/loadgen and tools/duel, built on netloop's own
// client side (callback model): echo ping-pong or pipelined, HTTP/1.1
// keep-alive GETs, or idle connections; and UDP echo from `connections`
// client sockets on one thread (plain sockets and epoll: netloop has no UDP
// client side yet). Every echoed byte is verified against
// the pattern sent, so a broken server cannot post a good number.
#ifndef NETLOOP_TOOLS_LOADGEN_LOAD_CLIENT_H_
#define NETLOOP_TOOLS_LOADGEN_LOAD_CLIENT_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "reactor/options.h"
#include "tools/loadgen/histogram.h"

namespace netloop::loadgen {

enum class Workload { kEcho, kHttp, kIdle, kUdpEcho };

struct LoadSpec {
  std::string address = "tcp://127.0.0.1:9000";
  Workload workload = Workload::kEcho;
  int connections = 50;
  size_t message_size = 1024;  // echo
  int pipeline = 1;            // messages / requests in flight per connection
  absl::Duration warmup = absl::Seconds(1);
  absl::Duration duration = absl::Seconds(5);
  double rate = 0;  // total messages per second; 0 = closed loop
  int threads = 1;  // client loops
  BackendKind backend = BackendKind::kAuto;  // the client loops' backend
  std::vector<pid_t> server_pids;  // CPU and RSS are read for these
  std::string http_path = "/plaintext";
  // When non-zero, every response must be 200 with exactly this
  // Content-Length (a static file); bodies over 64 KiB are counted as they
  // stream past rather than held.
  uint64_t http_body_size = 0;
  // TLS: non-empty makes every connection TLS, trusting this PEM file (a
  // self-signed certificate can be its own trust anchor) and verifying the
  // server as `tls_server_name`. Connections resume no sessions: each one's
  // handshake is a full one.
  std::string tls_ca_file;
  std::string tls_server_name = "localhost";
  bool progress = false;  // a progress line on stderr each second
};

struct LoadResult {
  uint64_t messages = 0;  // in the measured window
  uint64_t bytes = 0;
  double seconds = 0;
  double messages_per_second = 0;
  double bytes_per_second = 0;
  Histogram latency_ns;
  std::map<std::string, uint64_t> errors;  // by kind
  double server_cpu_seconds = 0;
  double server_cpu_us_per_message = 0;
  int64_t server_rss_bytes = 0;
  // Idle workload.
  int idle_connections = 0;
  double server_rss_per_connection = 0;

  uint64_t error_count() const;
  std::string ToText() const;
  std::string ToJson() const;
};

// Runs one load and returns its figures. Fails if the target cannot be
// reached at all; per-connection failures are counted in `errors`.
absl::StatusOr<LoadResult> RunLoad(const LoadSpec& spec);

}  // namespace netloop::loadgen

#endif  // NETLOOP_TOOLS_LOADGEN_LOAD_CLIENT_H_
