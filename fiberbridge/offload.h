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
// The wait is not cut short by a scheduler's stop. If fn has not returned
// soon after the stop deadline, the scheduler gives up on this fiber and
// reports it (scheduler.h); the scheduler may then be destroyed while the
// fiber still waits here. fn still runs to the end on the pool thread, and its
// wake-up, finding the scheduler gone, touches nothing of it. That fiber can
// never resume; its stack stays mapped, so fn's writes to it remain harmless.
//
// Thread rules: any thread; fn runs on a pool thread.
template <typename F>
auto Offload(F&& fn) -> std::invoke_result_t<F&> {
  using R = std::invoke_result_t<F&>;
  FiberTask* self = Scheduler::CurrentTask();
  if (self == nullptr) return fn();
  // Marked so that a stopping scheduler can say why it gives up on us.
  self->in_offload = true;
  if constexpr (std::is_void_v<R>) {
    OffloadPool::Default().Submit([&fn, self] {
      fn();
      Scheduler::WakeFromAnyThread(self);
    });
    self->scheduler->Park();
    self->in_offload = false;
  } else {
    std::optional<R> result;
    OffloadPool::Default().Submit([&fn, &result, self] {
      result.emplace(fn());
      Scheduler::WakeFromAnyThread(self);
    });
    self->scheduler->Park();
    self->in_offload = false;
    return std::move(*result);
  }
}

}  // namespace netloop::fiber

#endif  // NETLOOP_FIBERBRIDGE_OFFLOAD_H_
