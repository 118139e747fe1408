// Offload: run a blocking call (a legacy client library, disk I/O, a CPU-heavy
// step) on a worker thread while the calling fiber parks, so the loop keeps
// serving every other connection. The answer to "one blocking call stalls the
// whole loop".
#ifndef NETLOOP_FIBERBRIDGE_OFFLOAD_H_
#define NETLOOP_FIBERBRIDGE_OFFLOAD_H_

#include <cstddef>
#include <optional>
#include <type_traits>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "fiberbridge/scheduler.h"

namespace netloop::fiber {

// The process-wide pool behind Offload: started on first use with
// max(4, CPUs) threads. Thread-safe.
class OffloadPool {
 public:
  static OffloadPool& Default();
  // Runs `job` on a pool thread. Any thread.
  void Submit(absl::AnyInvocable<void()> job);
  size_t threads() const;

 private:
  OffloadPool();
  struct Impl;
  Impl* impl_;  // never destroyed: pool threads may outlive static teardown
};

// Runs fn() on the offload pool and returns its result. In a fiber, the fiber
// parks meanwhile (it cannot be interrupted: fn works on its stack). Outside
// a fiber it simply calls fn. fn must not throw.
//
// A scheduler may be destroyed while one of its fibers waits here (the stop
// deadline passed first): fn still runs to the end on the pool thread, and
// its wake-up, finding the scheduler gone, touches nothing of it. That fiber
// can never resume; it is reported, and its stack stays mapped, so fn's
// writes to it remain harmless.
template <typename F>
auto Offload(F&& fn) -> std::invoke_result_t<F&> {
  using R = std::invoke_result_t<F&>;
  FiberTask* self = Scheduler::CurrentTask();
  if (self == nullptr) return fn();
  if constexpr (std::is_void_v<R>) {
    OffloadPool::Default().Submit([&fn, self] {
      fn();
      Scheduler::WakeFromAnyThread(self);
    });
    self->scheduler->Park();
  } else {
    std::optional<R> result;
    OffloadPool::Default().Submit([&fn, &result, self] {
      result.emplace(fn());
      Scheduler::WakeFromAnyThread(self);
    });
    self->scheduler->Park();
    return std::move(*result);
  }
}

}  // namespace netloop::fiber

#endif  // NETLOOP_FIBERBRIDGE_OFFLOAD_H_
