// The per-loop fiber scheduler: fibers run on the reactor's own EventLoop
// threads, between poller iterations (an IterationHook), parked on fd
// readiness, timers or sync primitives and made ready again by whatever they
// wait for. There is no second event loop and no extra thread.
//
// Stopping (BeginStop, the LoopService an Engine drives) happens in two steps
// so that fibers unwind normally, destructors and all, and give their stacks
// back:
//  1. At BeginStop, FiberConns close (parked I/O returns Closed) and sleepers
//     wake (Cancelled). Channels, CondVars and WaitGroups keep working, so
//     fibers can still hand each other results while they wind down.
//  2. At the deadline, every fiber still parked in a Channel, CondVar or
//     WaitGroup resumes with StopDeadlineError() (Cancelled), and from then
//     on every call that would park fails at once. Blocking calls that fail
//     because of the stop yield first, so a fiber that ignores the errors and
//     retries in a loop cannot monopolise its loop thread.
// Fibers that still have not returned a little after the deadline (see
// kRoundsAfterDeadline) are given up on: the scheduler reports how many, and
// why, in one warning through reactor/logging.h, and becomes quiescent. Those
// are fibers blocked in Offload (an OS thread is running code on their
// stack), parked where no deadline reaches (Mutex::Lock behind a fiber that
// does not finish, a bare Park), or retrying while ignoring the errors they
// get. Their stacks stay mapped and are never unwound: a suspended stack
// cannot be freed from outside (see ~Fiber).
//
// A fiber that never parks or yields (a busy loop) keeps its loop thread to
// itself; nothing here can stop it.
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
#include "absl/status/status.h"
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
  bool parked = false;      // suspended and waiting for Wake
  bool queued = false;      // in the ready queue
  bool in_offload = false;  // parked in Offload (for the stop report)
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

// A wait that the stop deadline can take back (Channel, CondVar, WaitGroup):
// linked into its scheduler while a fiber is parked in it. Lives on the
// parked fiber's stack, so parking never allocates.
class AbortableWait {
 public:
  // On the parked fiber's loop thread, at the stop deadline: takes the fiber
  // out of what it waits in and returns true, or returns false if a waker got
  // there first (its wake-up is then on the way, and the wait completes
  // normally).
  virtual bool Abort() = 0;

 protected:
  ~AbortableWait() = default;

 private:
  friend class Scheduler;
  AbortableWait* prev_ = nullptr;
  AbortableWait* next_ = nullptr;
  FiberTask* task_ = nullptr;
  bool linked_ = false;
  bool aborted_ = false;
};

// What a wait cut short by the stop deadline returns: Cancelled, with
// CloseReason::kClosed.
absl::Status StopDeadlineError();

struct SchedulerOptions {
  // Usable stack per fiber. Resident memory is what a fiber touches (one or
  // two pages for a typical connection handler), not this reservation.
  size_t stack_size = 64 * 1024;
  // Stacks kept for reuse after their fibers finish, per loop; stacks
  // released beyond this give their pages back at once and their address
  // space once their whole slab is free (see StackPoolOptions::max_cached).
  size_t max_cached_stacks = 1024;
  // Of those, how many keep their pages (the most recently used); the others
  // keep address space only (see StackPoolOptions::max_warm). This bounds
  // the RSS a loop keeps after a burst of fibers to about this many stacks'
  // worth of touched pages (a few KiB each for a typical handler).
  size_t max_warm_stacks = 64;
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
  // park has exactly one party responsible for waking it. The stop deadline
  // does not end such a park (see ParkAbortable).
  void Park();
  // Park, for a fiber the caller has made findable through `wait` (pushed on
  // a primitive's waiter list). Returns true when woken normally, false when
  // the stop deadline aborted the wait (at once, after a yield, if it had
  // already passed). Inside a fiber of this scheduler.
  bool ParkAbortable(AbortableWait* wait);
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
  // Whether the stop deadline has passed (waits then fail at once).
  bool past_stop_deadline() const { return past_deadline_; }
  // For a blocking call that fails at once because the scheduler is
  // stopping: yields first when called from one of its fibers (so that a
  // fiber retrying in a loop lets the loop run), then returns `status`.
  absl::Status FailStopping(absl::Status status);

  EventLoop& loop() { return *loop_; }
  size_t live_fibers() const { return live_; }
  size_t context_switches() const { return switches_; }
  StackPool& stack_pool() { return stack_pool_; }

  // IterationHook.
  bool HasReadyWork() const override { return ready_head_ != nullptr; }
  void RunReadyWork() override;
  // LoopService: see "Stopping" above. Quiescent once every fiber returned,
  // or once the scheduler gave up on the rest after the deadline. A second
  // call can only bring the deadline forward.
  void BeginStop(int64_t deadline_ns) override;
  bool Quiescent() const override;

  // Scheduler rounds (each resumes every ready fiber once) granted after the
  // deadline to fibers that are still running: well-behaved ones get an
  // error from every blocking call by then and return within a few rounds.
  static constexpr size_t kRoundsAfterDeadline = 100;

 private:
  Scheduler(EventLoop* loop, const SchedulerOptions& options);
  void Enqueue(FiberTask* task);
  void LinkLive(FiberTask* task);
  void UnlinkLive(FiberTask* task);
  void OnStopDeadline();
  void MaybeGiveUp();

  EventLoop* const loop_;
  internal::SchedulerLink* const link_;
  StackPool stack_pool_;
  FiberTask* live_head_ = nullptr;
  FiberTask* ready_head_ = nullptr;
  FiberTask* ready_tail_ = nullptr;
  StopListener* listeners_ = nullptr;
  AbortableWait* abortables_ = nullptr;
  size_t live_ = 0;
  size_t switches_ = 0;
  bool stopping_ = false;
  bool past_deadline_ = false;
  bool gave_up_ = false;
  size_t rounds_after_deadline_ = 0;
  int64_t stop_deadline_ns_ = 0;
  TimerId deadline_timer_;
};

// ---- Free functions for code running inside a fiber (Go's runtime calls).

// Starts a fiber on the current loop (loop thread), or on `loop` from any
// thread.
void Spawn(absl::AnyInvocable<void()> fn);
void Spawn(EventLoop& loop, absl::AnyInvocable<void()> fn);
// Inside a fiber.
void Yield();
// Inside a fiber: parks until the time passes. Returns Cancelled (reason
// kClosed) early, or at once after a yield, once the scheduler is stopping
// (so loops of sleeps end with the server).
absl::Status SleepFor(absl::Duration d);
absl::Status SleepUntil(absl::Time t);

}  // namespace netloop::fiber

#endif  // NETLOOP_FIBERBRIDGE_SCHEDULER_H_
