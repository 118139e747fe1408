#include "fiberbridge/scheduler.h"

#include <cassert>
#include <mutex>
#include <utility>
#include <vector>

#include "reactor/clock.h"
#include "reactor/errors.h"
#include "reactor/logging.h"

#if NETLOOP_FIBER_ASAN
#include <sanitizer/lsan_interface.h>
#endif

namespace netloop::fiber {
namespace {

// The key under which each loop stores its scheduler (EventLoop::GetLocal).
const char kSchedulerKey = 0;

thread_local Scheduler* current_scheduler = nullptr;
thread_local FiberTask* current_task = nullptr;

// Suspended fibers of destroyed schedulers. They can never run again and
// their stacks are never unwound (see ~Fiber), but other threads may still
// hold their task (an Offload finishing late calls WakeFromAnyThread on it),
// so the tasks are kept, reachable (a leak checker then reports only real
// leaks; ~Scheduler logs these), for the life of the process.
void KeepForever(FiberTask* task) {
  static std::mutex* mu = new std::mutex;
  static std::vector<FiberTask*>* kept = new std::vector<FiberTask*>;
  std::lock_guard<std::mutex> lock(*mu);
  kept->push_back(task);
#if NETLOOP_FIBER_ASAN
  // What the suspended frames point to is kept as well: a leak checker does
  // not look into mmap'ed stacks unless told to.
  const Stack& stack = task->fiber.stack();
  __lsan_register_root_region(stack.usable_bottom(), stack.usable());
#endif
}

// Keeps one reference to a link for as long as it lives (a wake-up in flight
// in a loop's task queue, which may be destroyed without running).
class LinkRef {
 public:
  explicit LinkRef(internal::SchedulerLink* link) : link_(link) { link_->Ref(); }
  LinkRef(LinkRef&& other) noexcept : link_(other.link_) { other.link_ = nullptr; }
  LinkRef& operator=(LinkRef&&) = delete;
  ~LinkRef() {
    if (link_ != nullptr) link_->Unref();
  }
  internal::SchedulerLink* get() const { return link_; }

 private:
  internal::SchedulerLink* link_;
};

}  // namespace

Scheduler& Scheduler::For(EventLoop& loop, const SchedulerOptions& options) {
  if (LoopLocal* local = loop.GetLocal(&kSchedulerKey)) {
    return *static_cast<Scheduler*>(local);
  }
  auto* s = new Scheduler(&loop, options);
  loop.SetLocal(&kSchedulerKey, std::unique_ptr<LoopLocal>(s));
  return *s;
}

Scheduler* Scheduler::Current() {
  if (current_scheduler != nullptr) return current_scheduler;
  EventLoop* loop = EventLoop::Current();
  if (loop == nullptr) return nullptr;
  return &For(*loop);
}

FiberTask* Scheduler::CurrentTask() { return current_task; }

Scheduler::Scheduler(EventLoop* loop, const SchedulerOptions& options)
    : loop_(loop),
      link_(new internal::SchedulerLink(this)),
      stack_pool_(StackPoolOptions{.stack_size = options.stack_size,
                                   .max_cached = options.max_cached_stacks,
                                   .max_warm = options.max_warm_stacks}) {
  loop_->AddIterationHook(this);
}

Scheduler::~Scheduler() {
  {
    // From here on wake-ups from other threads are dropped. Taking the lock
    // also waits out one that is queueing itself on this loop right now.
    std::lock_guard<std::mutex> lock(link_->mu_);
    link_->scheduler_ = nullptr;
  }
  loop_->RemoveIterationHook(this);
  if (deadline_timer_.valid()) loop_->CancelTimer(deadline_timer_);
  // A fiber that never ran has nothing on its stack: destroying it runs its
  // captures' destructors and gives the stack back. A suspended one cannot be
  // destroyed safely (its frames would never unwind, and other threads may
  // still name its task): it is kept.
  size_t destroyed = 0, kept = 0;
  while (live_head_ != nullptr) {
    FiberTask* task = live_head_;
    UnlinkLive(task);
    --live_;
    if (!task->fiber.started()) {
      ++destroyed;
      delete task;
    } else {
      ++kept;
      KeepForever(task);
    }
  }
  if (destroyed > 0) {
    NETLOOP_LOG(kWarning) << destroyed << " fiber(s) never ran before their loop was "
                          << "destroyed: destroyed without running";
  }
  // Fibers the stop already reported are not reported twice.
  if (kept > 0 && !gave_up_) {
    NETLOOP_LOG(kWarning) << kept << " fiber(s) still suspended when their loop was "
                          << "destroyed: abandoned (stacks kept mapped, never unwound)";
  }
  link_->Unref();
}

void Scheduler::LinkLive(FiberTask* task) {
  task->prev_live = nullptr;
  task->next_live = live_head_;
  if (live_head_ != nullptr) live_head_->prev_live = task;
  live_head_ = task;
}

void Scheduler::UnlinkLive(FiberTask* task) {
  if (task->prev_live != nullptr) {
    task->prev_live->next_live = task->next_live;
  } else {
    live_head_ = task->next_live;
  }
  if (task->next_live != nullptr) task->next_live->prev_live = task->prev_live;
  task->prev_live = task->next_live = nullptr;
}

void Scheduler::Spawn(absl::AnyInvocable<void()> fn) {
  auto* task = new FiberTask(this, link_, stack_pool_, std::move(fn));
  ++live_;
  LinkLive(task);
  Enqueue(task);
}

void Scheduler::Enqueue(FiberTask* task) {
  task->queued = true;
  task->next_ready = nullptr;
  if (ready_tail_ == nullptr) {
    ready_head_ = ready_tail_ = task;
  } else {
    ready_tail_->next_ready = task;
    ready_tail_ = task;
  }
}

void Scheduler::RunReadyWork() {
  // Only the fibers ready now: fibers they wake run after the next poll, so
  // a ping-ponging pair cannot starve the loop's I/O.
  FiberTask* head = ready_head_;
  ready_head_ = ready_tail_ = nullptr;
  Scheduler* saved_scheduler = current_scheduler;
  current_scheduler = this;
  while (head != nullptr) {
    FiberTask* task = head;
    head = head->next_ready;
    task->next_ready = nullptr;
    task->queued = false;
    current_task = task;
    ++switches_;
    task->fiber.Resume();
    current_task = nullptr;
    if (task->fiber.finished()) {
      --live_;
      UnlinkLive(task);
      delete task;  // the stack went back to the pool when the entry returned
    }
  }
  current_scheduler = saved_scheduler;
  if (past_deadline_) {
    ++rounds_after_deadline_;
    MaybeGiveUp();
  }
}

void Scheduler::Park() {
  FiberTask* task = current_task;
  assert(task != nullptr && task->scheduler == this && "Park outside a fiber");
  task->parked = true;
  Fiber::Suspend();
}

bool Scheduler::ParkAbortable(AbortableWait* wait) {
  FiberTask* task = current_task;
  assert(task != nullptr && task->scheduler == this && "Park outside a fiber");
  if (past_deadline_) {
    // Too late to wait. Yielding keeps a fiber that retries from holding the
    // loop.
    if (wait->Abort()) {
      Yield();
      return false;
    }
    Park();  // a waker took it between its push and here: the wake-up is coming
    return true;
  }
  wait->task_ = task;
  wait->aborted_ = false;
  wait->linked_ = true;
  wait->prev_ = nullptr;
  wait->next_ = abortables_;
  if (abortables_ != nullptr) abortables_->prev_ = wait;
  abortables_ = wait;
  Park();
  if (wait->linked_) {
    // Woken by its primitive: no longer the deadline's business.
    if (wait->prev_ != nullptr) {
      wait->prev_->next_ = wait->next_;
    } else {
      abortables_ = wait->next_;
    }
    if (wait->next_ != nullptr) wait->next_->prev_ = wait->prev_;
    wait->linked_ = false;
  }
  return !wait->aborted_;
}

absl::Status Scheduler::FailStopping(absl::Status status) {
  if (current_task != nullptr && current_task->scheduler == this) Yield();
  return status;
}

void Scheduler::Wake(FiberTask* task) {
  if (!task->parked) return;
  task->parked = false;
  Enqueue(task);
}

void Scheduler::WakeFromAnyThread(FiberTask* task) {
  internal::SchedulerLink* link = task->link;
  // A fiber waking a fiber of its own scheduler: no lock, no queue.
  if (current_scheduler != nullptr && current_scheduler->link_ == link) {
    current_scheduler->Wake(task);
    return;
  }
  std::unique_lock<std::mutex> lock(link->mu_);
  Scheduler* s = link->scheduler_;
  if (s == nullptr) return;  // destroyed: nothing can resume this fiber any more
  if (s->loop_->InLoopThread()) {
    // Its loop is running on this thread, so it cannot be destroyed meanwhile.
    lock.unlock();
    s->Wake(task);
    return;
  }
  // Queued while holding the lock: ~Scheduler (which comes before the loop's
  // task queue is destroyed) cannot finish in between. The queued wake-up
  // checks again, since it may run after the scheduler is gone, or never.
  s->loop_->QueueInLoop([ref = LinkRef(link), task] {
    Scheduler* target;
    {
      std::lock_guard<std::mutex> l(ref.get()->mu_);
      target = ref.get()->scheduler_;
    }
    if (target != nullptr) target->Wake(task);
  });
}

void Scheduler::Yield() {
  FiberTask* task = current_task;
  assert(task != nullptr && task->scheduler == this && "Yield outside a fiber");
  Enqueue(task);
  Fiber::Suspend();
}

void Scheduler::AddStopListener(StopListener* l) {
  if (l->linked_) return;
  if (stopping_) {
    // Registered after BeginStop (a fiber spawned before the stop that only
    // now runs): it is told at once, or it would park past the stop forever.
    l->OnSchedulerStop();
    return;
  }
  l->linked_ = true;
  l->prev_ = nullptr;
  l->next_ = listeners_;
  if (listeners_ != nullptr) listeners_->prev_ = l;
  listeners_ = l;
}

void Scheduler::RemoveStopListener(StopListener* l) {
  if (!l->linked_) return;
  if (l->prev_ != nullptr) {
    l->prev_->next_ = l->next_;
  } else {
    listeners_ = l->next_;
  }
  if (l->next_ != nullptr) l->next_->prev_ = l->prev_;
  l->prev_ = l->next_ = nullptr;
  l->linked_ = false;
}

void Scheduler::BeginStop(int64_t deadline_ns) {
  if (stopping_) {
    if (!past_deadline_ && deadline_ns < stop_deadline_ns_) {
      stop_deadline_ns_ = deadline_ns;
      if (!loop_->RescheduleTimer(deadline_timer_, deadline_ns)) {
        deadline_timer_ = loop_->RunAtNanos(deadline_ns, [this] {
          deadline_timer_ = TimerId();
          OnStopDeadline();
        });
      }
    }
    return;
  }
  stopping_ = true;
  stop_deadline_ns_ = deadline_ns;
  // Listeners unlink themselves when notified.
  while (listeners_ != nullptr) {
    StopListener* l = listeners_;
    RemoveStopListener(l);
    l->OnSchedulerStop();
  }
  if (deadline_ns != kNeverNanos) {
    deadline_timer_ = loop_->RunAtNanos(deadline_ns, [this] {
      deadline_timer_ = TimerId();
      OnStopDeadline();
    });
  }
}

void Scheduler::OnStopDeadline() {
  past_deadline_ = true;
  // Each wait is unlinked before it is aborted: Wake may let nothing run yet
  // (the fiber runs in the fiber phase), but the node lives on its stack.
  while (abortables_ != nullptr) {
    AbortableWait* w = abortables_;
    abortables_ = w->next_;
    if (abortables_ != nullptr) abortables_->prev_ = nullptr;
    w->prev_ = w->next_ = nullptr;
    w->linked_ = false;
    if (w->Abort()) {
      w->aborted_ = true;
      Wake(w->task_);
    }
  }
  MaybeGiveUp();
}

void Scheduler::MaybeGiveUp() {
  if (gave_up_ || live_ == 0) return;
  // Fibers still ready get more rounds; once none is ready, the others wait
  // for something the deadline cannot end.
  if (ready_head_ != nullptr && rounds_after_deadline_ < kRoundsAfterDeadline) return;
  gave_up_ = true;
  size_t running = 0, in_offload = 0;
  for (FiberTask* t = live_head_; t != nullptr; t = t->next_live) {
    if (t->queued) {
      ++running;
    } else if (t->in_offload) {
      ++in_offload;
    }
  }
  NETLOOP_LOG(kWarning) << live_ << " fiber(s) did not finish by the stop deadline on loop "
                        << loop_->name() << ": " << in_offload << " blocked in Offload, "
                        << running << " still running (ignoring the errors they get), "
                        << live_ - running - in_offload
                        << " parked where the deadline cannot reach (Mutex::Lock, Park); "
                        << "abandoned: their stacks stay mapped and are never unwound";
}

bool Scheduler::Quiescent() const { return live_ == 0 || gave_up_; }

absl::Status StopDeadlineError() { return ClosedError("scheduler stop deadline passed"); }

// ---------------------------------------------------------------- free functions

void Spawn(absl::AnyInvocable<void()> fn) {
  Scheduler* s = Scheduler::Current();
  assert(s != nullptr && "Spawn(fn) off a loop thread: use Spawn(loop, fn)");
  s->Spawn(std::move(fn));
}

void Spawn(EventLoop& loop, absl::AnyInvocable<void()> fn) {
  loop.RunInLoop([&loop, fn = std::move(fn)]() mutable {
    Scheduler::For(loop).Spawn(std::move(fn));
  });
}

void Yield() { Scheduler::Current()->Yield(); }

namespace {

// A sleeping fiber: woken by its timer, or early by a stopping scheduler.
class Sleeper final : public StopListener {
 public:
  explicit Sleeper(Scheduler* s) : s_(s), task_(Scheduler::CurrentTask()) {}
  absl::Status SleepUntilNanos(int64_t when_ns) {
    if (s_->stopping()) return s_->FailStopping(ClosedError("scheduler stopping"));
    s_->AddStopListener(this);
    timer_ = s_->loop().RunAtNanos(when_ns, [this] {
      timer_ = TimerId();
      s_->RemoveStopListener(this);
      s_->Wake(task_);
    });
    s_->Park();
    if (interrupted_) return ClosedError("scheduler stopping");
    return absl::OkStatus();
  }
  void OnSchedulerStop() override {
    interrupted_ = true;
    if (timer_.valid()) s_->loop().CancelTimer(timer_);
    timer_ = TimerId();
    s_->Wake(task_);
  }

 private:
  Scheduler* s_;
  FiberTask* task_;
  TimerId timer_;
  bool interrupted_ = false;
};

}  // namespace

absl::Status SleepFor(absl::Duration d) {
  int64_t ns = DurationToNanosSaturated(d);
  int64_t now = MonotonicNanos();
  return Sleeper(Scheduler::Current())
      .SleepUntilNanos(ns >= kNeverNanos - now ? kNeverNanos : now + ns);
}

absl::Status SleepUntil(absl::Time t) {
  return Sleeper(Scheduler::Current()).SleepUntilNanos(ToMonotonicNanos(t));
}

}  // namespace netloop::fiber
