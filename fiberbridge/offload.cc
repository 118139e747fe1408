#include "fiberbridge/offload.h"

#include <pthread.h>
#include <unistd.h>

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
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  impl_->threads = static_cast<size_t>(std::max(4L, cpus));
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

}  // namespace netloop::fiber
