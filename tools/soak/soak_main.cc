// Soak: both echo models under churn, resets, slow readers and random sizes
// for a fixed time, every byte checksummed; prints RSS and descriptor counts
// as it goes and a summary line last.
//
//   bazel run -c opt //tools:soak -- --minutes=10
#include <cstdio>

#include "CLI/CLI.hpp"
#include "absl/time/time.h"
#include "tools/soak/soak.h"

int main(int argc, char** argv) {
  CLI::App app{"netloop soak: flat RSS and descriptors under churn"};
  double minutes = 10;
  double sample_seconds = 30;
  uint64_t seed = 1;
  app.add_option("--minutes", minutes, "how long to run")->capture_default_str();
  app.add_option("--sample-seconds", sample_seconds, "seconds between samples")
      ->capture_default_str();
  app.add_option("--seed", seed, "seed for sizes, chunks and resets")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  netloop::soak::SoakOptions o;
  o.duration = absl::Seconds(minutes * 60);
  o.sample_every = absl::Seconds(sample_seconds);
  o.seed = seed;
  netloop::soak::SoakResult r = netloop::soak::RunSoak(o);
  if (r.samples.empty()) {
    std::printf("soak: FAILED before the first sample: %s\n", r.failure.c_str());
    return 1;
  }
  const auto& first = r.samples.front();
  const auto& last = r.samples.back();
  std::printf("soak: %s rounds=%llu conns=%llu verified_mib=%.0f rss_kib first=%lld last=%lld "
              "fds first=%d last=%d; process fds before=%d after=%d%s%s\n",
              r.failure.empty() ? "ok" : "FAILED",
              static_cast<unsigned long long>(last.rounds),
              static_cast<unsigned long long>(last.connections),
              static_cast<double>(last.bytes_verified) / (1 << 20),
              static_cast<long long>(first.rss_bytes / 1024),
              static_cast<long long>(last.rss_bytes / 1024), first.descriptors,
              last.descriptors, r.descriptors_before, r.descriptors_after,
              r.failure.empty() ? "" : ": ", r.failure.c_str());
  return r.failure.empty() ? 0 : 1;
}
