// The soak run: a callback echo server and a fiber echo server in this
// process, driven for a fixed time by rounds of checksummed echo clients with
// random sizes, slow readers, RSTs halfway and connect/close churn. It samples
// the process's RSS and open descriptors and the engines' buffered bytes, and
// fails on any wrong byte, hang, or descriptor left behind.
#ifndef NETLOOP_TOOLS_SOAK_SOAK_H_
#define NETLOOP_TOOLS_SOAK_SOAK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace netloop::soak {

struct SoakOptions {
  absl::Duration duration = absl::Minutes(10);
  absl::Duration sample_every = absl::Seconds(30);
  int max_clients = 48;  // per round, drawn from 1..max_clients
  uint64_t seed = 1;
  bool print = true;  // a line per sample on stdout
};

struct SoakSample {
  double seconds = 0;
  int64_t rss_bytes = 0;
  int descriptors = 0;
  uint64_t buffered_bytes = 0;  // both engines' rings
  uint64_t rounds = 0, connections = 0, bytes_verified = 0;
};

struct SoakResult {
  std::vector<SoakSample> samples;  // the first taken after a warm-up round
  std::string failure;              // "" when every check held
  int descriptors_before = 0, descriptors_after = 0;
};

SoakResult RunSoak(const SoakOptions& options);

}  // namespace netloop::soak

#endif  // NETLOOP_TOOLS_SOAK_SOAK_H_
