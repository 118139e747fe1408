#include "fiberbridge/offload.h"

#include <pthread.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace netloop::fiber {

struct OffloadPool::Impl {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<absl::AnyInvocable<void()>> jobs;
  size_t threads = 0;
};

OffloadPool& OffloadPool::Default() {
  static OffloadPool* pool = new OffloadPool();
  return *pool;
}

OffloadPool::OffloadPool() : impl_(new Impl) {
  const unsigned cpus = std::thread::hardware_concurrency();  // 0: unknown
  impl_->threads = std::max<size_t>(4, cpus);
  for (size_t i = 0; i < impl_->threads; ++i) {
    std::thread([impl = impl_] {
      pthread_setname_np(pthread_self(), "netloop-offload");
      for (;;) {
        absl::AnyInvocable<void()> job;
        {
          std::unique_lock<std::mutex> lock(impl->mu);
          impl->cv.wait(lock, [impl] { return !impl->jobs.empty(); });
          job = std::move(impl->jobs.front());
          impl->jobs.pop_front();
        }
        job();
      }
    }).detach();
  }
}

void OffloadPool::Submit(absl::AnyInvocable<void()> job) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->jobs.push_back(std::move(job));
  }
  impl_->cv.notify_one();
}

size_t OffloadPool::threads() const { return impl_->threads; }

namespace internal {

bool DetachedCall::Claim() {
  std::lock_guard<std::mutex> lock(mu_);
  if (waiter_ == nullptr) return false;
  waiter_ = nullptr;
  return true;
}

void DetachedCall::Finish() {
  std::lock_guard<std::mutex> lock(mu_);
  finished_ = true;
  if (waiter_ == nullptr) return;  // gave up, or not parked yet (Await sees finished_)
  FiberTask* t = waiter_;
  waiter_ = nullptr;
  // Under the lock: a timer or stop that fires now finds the waiter claimed
  // and leaves it to this wake-up, so the fiber cannot return (and its task
  // go away) before the wake-up has been handed over.
  Scheduler::WakeFromAnyThread(t);
}

absl::Status DetachedCall::Await(int64_t deadline_ns) {
  FiberTask* self = Scheduler::CurrentTask();
  Scheduler* s = self->scheduler;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return absl::OkStatus();
    waiter_ = self;
  }
  // Three parties may end the wait; the one that claims the waiter wakes it.
  // The timer and the stop run on this loop's thread; Finish on the pool's.
  struct StopHook final : StopListener {
    StopHook(DetachedCall* c, Scheduler* sc, FiberTask* t) : call(c), sched(sc), task(t) {}
    void OnSchedulerStop() override {
      stopped = true;
      if (call->Claim()) sched->Wake(task);
    }
    DetachedCall* call;
    Scheduler* sched;
    FiberTask* task;
    bool stopped = false;
  } stop(this, s, self);
  s->AddStopListener(&stop);  // not stopping (checked by the caller): links it
  TimerId timer;
  if (deadline_ns != kNeverNanos) {
    timer = s->loop().RunAtNanos(deadline_ns, [this, s, self, &timer] {
      timer = TimerId();
      if (Claim()) s->Wake(self);
    });
  }
  s->Park();
  if (timer.valid()) s->loop().CancelTimer(timer);
  s->RemoveStopListener(&stop);
  std::lock_guard<std::mutex> lock(mu_);
  // A result that made it in time is used, whoever woke us.
  if (finished_) return absl::OkStatus();
  if (stop.stopped) return ClosedError("scheduler stopping");
  return DeadlineExceededError();
}

}  // namespace internal

}  // namespace netloop::fiber
