#include "fiberbridge/scheduler.h"

#include <cassert>
#include <utility>

#include "reactor/clock.h"
#include "reactor/errors.h"
#include "reactor/logging.h"

namespace netloop::fiber {
namespace {

// The key under which each loop stores its scheduler (EventLoop::GetLocal).
const char kSchedulerKey = 0;

thread_local Scheduler* current_scheduler = nullptr;
thread_local FiberTask* current_task = nullptr;

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
      stack_pool_(StackPoolOptions{.stack_size = options.stack_size,
                                   .max_cached = options.max_cached_stacks}) {
  loop_->AddIterationHook(this);
}

Scheduler::~Scheduler() {
  loop_->RemoveIterationHook(this);
  if (live_ > 0) {
    NETLOOP_LOG(kWarning) << live_ << " fiber(s) still parked when their loop was "
                          << "destroyed: abandoned (stacks leaked, not unwound)";
  }
  // Fibers that never finished cannot be destroyed safely: their tasks are
  // leaked on purpose (never deleted, so never unwound).
}

void Scheduler::Spawn(absl::AnyInvocable<void()> fn) {
  auto* task = new FiberTask(this, stack_pool_, std::move(fn));
  ++live_;
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
      delete task;  // the stack goes back to the pool
    }
  }
  current_scheduler = saved_scheduler;
}

void Scheduler::Park() {
  FiberTask* task = current_task;
  assert(task != nullptr && task->scheduler == this && "Park outside a fiber");
  task->parked = true;
  Fiber::Suspend();
}

void Scheduler::Wake(FiberTask* task) {
  if (!task->parked) return;
  task->parked = false;
  Enqueue(task);
}

void Scheduler::WakeFromAnyThread(FiberTask* task) {
  Scheduler* s = task->scheduler;
  if (s->loop_->InLoopThread()) {
    s->Wake(task);
  } else {
    s->loop_->QueueInLoop([s, task] { s->Wake(task); });
  }
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
  stopping_ = true;
  stop_deadline_ns_ = deadline_ns;
  // Listeners unlink themselves when notified.
  while (listeners_ != nullptr) {
    StopListener* l = listeners_;
    RemoveStopListener(l);
    l->OnSchedulerStop();
  }
}

bool Scheduler::Quiescent() const {
  return live_ == 0 || (stopping_ && MonotonicNanos() >= stop_deadline_ns_);
}

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
    if (s_->stopping()) return ClosedError("scheduler stopping");
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
