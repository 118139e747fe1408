// Offload: run a blocking call (a legacy client library, disk I/O, a CPU-heavy
// step) on a worker thread while the calling fiber parks, so the loop keeps
// serving every other connection. The answer to "one blocking call stalls the
// whole loop".
#ifndef NETLOOP_FIBERBRIDGE_OFFLOAD_H_
#define NETLOOP_FIBERBRIDGE_OFFLOAD_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "fiberbridge/scheduler.h"
#include "reactor/clock.h"
#include "reactor/errors.h"

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

namespace internal {

// What a fiber that may stop waiting shares with the pool job it waits for.
// Whoever lets go of it last frees it (a std::shared_ptr).
class DetachedCall {
 public:
  // Pool thread, once the job has stored its result: wakes the fiber if it
  // still waits.
  void Finish();
  // In a fiber of a scheduler that is not stopping: parks until Finish (OK),
  // `deadline_ns` (DeadlineExceeded) or the scheduler's BeginStop (Closed).
  absl::Status Await(int64_t deadline_ns);

 private:
  // Takes the right to wake the waiter; false if someone else has it.
  bool Claim();

  std::mutex mu_;
  bool finished_ = false;  // guarded by mu_
  FiberTask* waiter_ = nullptr;  // guarded by mu_; cleared by whoever wakes it
};

// Offload for a job that may outlive the call: `fn` owns everything it uses
// (captures by value; it runs on a pool thread even after the caller gave up
// waiting, and its result is then dropped). In a fiber only. Returns fn's
// result; DeadlineExceeded once `deadline` passes; Closed when the scheduler
// stops (BeginStop) or is stopping already. Unlike Offload, such a wait never
// holds up a stop.
template <typename F>
auto OffloadDetached(F fn, absl::Time deadline) -> absl::StatusOr<std::invoke_result_t<F&>> {
  using R = std::invoke_result_t<F&>;
  FiberTask* self = Scheduler::CurrentTask();
  if (self == nullptr) return absl::FailedPreconditionError("OffloadDetached outside a fiber");
  Scheduler* s = self->scheduler;
  if (s->stopping()) return s->FailStopping(ClosedError("scheduler stopping"));
  const int64_t deadline_ns = ToMonotonicNanos(deadline);
  if (deadline_ns <= MonotonicNanos()) return DeadlineExceededError();
  struct Call final : DetachedCall {
    explicit Call(F f) : fn(std::move(f)) {}
    F fn;
    std::optional<R> result;  // written before Finish, read after Await's OK
  };
  auto call = std::make_shared<Call>(std::move(fn));
  OffloadPool::Default().Submit([call] {
    call->result.emplace(call->fn());
    call->Finish();
  });
  if (absl::Status st = call->Await(deadline_ns); !st.ok()) return st;
  return std::move(*call->result);
}

}  // namespace internal

}  // namespace netloop::fiber

#endif  // NETLOOP_FIBERBRIDGE_OFFLOAD_H_
