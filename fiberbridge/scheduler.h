// The per-loop fiber scheduler: fibers run on the reactor's own EventLoop
// threads, between poller iterations (an IterationHook), parked on fd
// readiness, timers or sync primitives and made ready again by whatever they
// wait for. There is no second event loop and no extra thread.
//
// Thread rules: a Scheduler belongs to one loop; everything here runs on that
// loop's thread except WakeFromAnyThread, which any thread may call for as
// long as the FiberTask it names exists, even after the scheduler is gone.
#ifndef NETLOOP_FIBERBRIDGE_SCHEDULER_H_
#define NETLOOP_FIBERBRIDGE_SCHEDULER_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "fiberbridge/fiber.h"
#include "fiberbridge/stack_pool.h"
#include "reactor/engine.h"
#include "reactor/event_loop.h"

namespace netloop::fiber {

class Scheduler;

namespace internal {

// The part of a scheduler that outlives it, for threads that wake its fibers
// (offload pool threads, other loops): they find out here, under `mu`, whether
// the scheduler still exists instead of following a pointer that may dangle.
// Reference-counted: the scheduler and each of its tasks hold one, and so does
// each wake-up in flight to its loop. Any thread.
class SchedulerLink {
 public:
  explicit SchedulerLink(Scheduler* s) : scheduler_(s) {}
  void Ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

 private:
  friend class fiber::Scheduler;
  std::mutex mu_;
  Scheduler* scheduler_;  // guarded by mu_; nullptr once the scheduler is destroyed
  std::atomic<int> refs_{1};
};

}  // namespace internal

// A fiber under a scheduler, in one heap block with its bookkeeping. Freed
// when the fiber's function returns. A task whose fiber never finishes (its
// scheduler was destroyed while it was suspended) is never freed: it is kept,
// reachable, for the rest of the process, so a late WakeFromAnyThread on it
// (an Offload returning after the stop deadline) stays safe.
struct FiberTask {
  FiberTask(Scheduler* s, internal::SchedulerLink* l, StackPool& pool,
            absl::AnyInvocable<void()> fn)
      : scheduler(s), link(l), fiber(pool, std::move(fn)) {
    link->Ref();
  }
  ~FiberTask() { link->Unref(); }
  FiberTask(const FiberTask&) = delete;
  FiberTask& operator=(const FiberTask&) = delete;

  Scheduler* scheduler;  // valid while the scheduler exists; loop thread
  internal::SchedulerLink* const link;  // valid as long as the task; any thread
  Fiber fiber;
  FiberTask* next_ready = nullptr;
  // Every unfinished task of the scheduler, so a destroyed scheduler can find
  // the ones it must destroy (never started) or keep (suspended).
  FiberTask* prev_live = nullptr;
  FiberTask* next_live = nullptr;
  bool parked = false;  // suspended and waiting for Wake
  bool queued = false;  // in the ready queue
};

// Something a stopping scheduler must interrupt: FiberConns close themselves,
// sleepers wake early. Intrusive, so registering never allocates.
class StopListener {
 public:
  virtual void OnSchedulerStop() = 0;

 protected:
  ~StopListener() = default;

 private:
  friend class Scheduler;
  StopListener* prev_ = nullptr;
  StopListener* next_ = nullptr;
  bool linked_ = false;
};

struct SchedulerOptions {
  // Usable stack per fiber. Resident memory is what a fiber touches (one or
  // two pages for a typical connection handler), not this reservation.
  size_t stack_size = 64 * 1024;
  // Stacks kept for reuse after their fibers finish.
  size_t max_cached_stacks = 4096;
};

class Scheduler final : public LoopLocal, public IterationHook, public LoopService {
 public:
  // The scheduler of `loop`, created on first use with `options` (ignored
  // afterwards). Loop thread of `loop`, or before the loop runs.
  static Scheduler& For(EventLoop& loop, const SchedulerOptions& options = {});
  // The scheduler whose loop runs on this thread, or nullptr.
  static Scheduler* Current();
  // The fiber running now, or nullptr on a plain thread / the loop itself.
  static FiberTask* CurrentTask();

  ~Scheduler() override;

  // Starts a fiber running `fn`; it first runs in this iteration's (or the
  // next) fiber phase, after I/O dispatch. Loop thread.
  void Spawn(absl::AnyInvocable<void()> fn);

  // Inside a fiber of this scheduler: suspends it until Wake(task). Every
  // park has exactly one party responsible for waking it.
  void Park();
  // Makes a parked fiber ready; a no-op for one that is not parked. Loop
  // thread.
  void Wake(FiberTask* task);
  // Any thread: Wake on the task's own loop (through its task queue when
  // called from elsewhere). `task` must not have finished; its scheduler may
  // be gone (a wake-up for a destroyed scheduler is dropped: nothing can
  // resume that fiber any more).
  static void WakeFromAnyThread(FiberTask* task);
  // Inside a fiber: lets every other ready fiber and the loop's I/O run first.
  void Yield();

  // On a stopping scheduler, calls l->OnSchedulerStop() at once instead.
  void AddStopListener(StopListener* l);
  void RemoveStopListener(StopListener* l);
  bool stopping() const { return stopping_; }

  EventLoop& loop() { return *loop_; }
  size_t live_fibers() const { return live_; }
  size_t context_switches() const { return switches_; }
  StackPool& stack_pool() { return stack_pool_; }

  // IterationHook.
  bool HasReadyWork() const override { return ready_head_ != nullptr; }
  void RunReadyWork() override;
  // LoopService: wakes every registered listener; quiescent once all fibers
  // returned, or at the deadline (fibers still running then are abandoned:
  // their stacks are leaked, never unwound).
  void BeginStop(int64_t deadline_ns) override;
  bool Quiescent() const override;

 private:
  Scheduler(EventLoop* loop, const SchedulerOptions& options);
  void Enqueue(FiberTask* task);
  void LinkLive(FiberTask* task);
  void UnlinkLive(FiberTask* task);

  EventLoop* const loop_;
  internal::SchedulerLink* const link_;
  StackPool stack_pool_;
  FiberTask* live_head_ = nullptr;
  FiberTask* ready_head_ = nullptr;
  FiberTask* ready_tail_ = nullptr;
  StopListener* listeners_ = nullptr;
  size_t live_ = 0;
  size_t switches_ = 0;
  bool stopping_ = false;
  int64_t stop_deadline_ns_ = 0;
};

// ---- Free functions for code running inside a fiber (Go's runtime calls).

// Starts a fiber on the current loop (loop thread), or on `loop` from any
// thread.
void Spawn(absl::AnyInvocable<void()> fn);
void Spawn(EventLoop& loop, absl::AnyInvocable<void()> fn);
// Inside a fiber.
void Yield();
// Inside a fiber: parks until the time passes. Returns Cancelled early if the
// scheduler is stopping (so loops of sleeps end with the server).
absl::Status SleepFor(absl::Duration d);
absl::Status SleepUntil(absl::Time t);

}  // namespace netloop::fiber

#endif  // NETLOOP_FIBERBRIDGE_SCHEDULER_H_
