// Monotonic time for timers and deadlines. Public APIs take absl::Time (wall
// clock, like Go's time.Time) and absl::Duration; inside the library every
// deadline is converted once to monotonic nanoseconds so that wall-clock steps
// never fire or stall timers.
#ifndef NETLOOP_REACTOR_CLOCK_H_
#define NETLOOP_REACTOR_CLOCK_H_

#include <time.h>

#include <cstdint>
#include <limits>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace netloop {

inline constexpr int64_t kNeverNanos = std::numeric_limits<int64_t>::max();

// CLOCK_MONOTONIC in nanoseconds (vDSO: no syscall).
inline int64_t MonotonicNanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// Converts a wall-clock deadline to the monotonic clock, relative to now.
// absl::InfiniteFuture() maps to kNeverNanos, InfinitePast() to 0.
inline int64_t ToMonotonicNanos(absl::Time deadline) {
  if (deadline == absl::InfiniteFuture()) return kNeverNanos;
  if (deadline == absl::InfinitePast()) return 0;
  absl::Duration left = deadline - absl::Now();
  int64_t now = MonotonicNanos();
  if (left <= absl::ZeroDuration()) return now;
  if (left > absl::Hours(24 * 365 * 100)) return kNeverNanos;
  return now + absl::ToInt64Nanoseconds(left);
}

inline int64_t DurationToNanosSaturated(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return kNeverNanos;
  if (d <= absl::ZeroDuration()) return 0;
  if (d > absl::Hours(24 * 365 * 100)) return kNeverNanos;
  return absl::ToInt64Nanoseconds(d);
}

}  // namespace netloop

#endif  // NETLOOP_REACTOR_CLOCK_H_
