// CPU time and resident memory of a process, from /proc. CPU time has the
// kernel's clock-tick granularity (10 ms at USER_HZ 100): over a 5 s window
// that is +-0.2% of one busy core, enough for the ratios the duel reports.
#ifndef NETLOOP_TOOLS_LOADGEN_PROC_STATS_H_
#define NETLOOP_TOOLS_LOADGEN_PROC_STATS_H_

#include <sys/types.h>

#include <cstdint>

#include "absl/status/statusor.h"

namespace netloop::loadgen {

struct ProcSample {
  int64_t cpu_ns = 0;     // user + system, all threads
  int64_t rss_bytes = 0;  // VmRSS
};

// NotFound if the process does not exist.
absl::StatusOr<ProcSample> SampleProcess(pid_t pid);

}  // namespace netloop::loadgen

#endif  // NETLOOP_TOOLS_LOADGEN_PROC_STATS_H_
