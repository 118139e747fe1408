#include "reactor/internal/dial_resolver.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>

namespace netloop::internal {

struct DialResolver::State {
  struct Job {
    uint64_t id;
    NetAddress addr;
    Done done;
  };
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Job> queue;     // guarded by mu
  Done* in_flight = nullptr;  // the job being looked up, guarded by mu
  uint64_t in_flight_id = 0;  // guarded by mu
  uint64_t next_id = 1;       // guarded by mu
  bool cancelled = false;    // guarded by mu
  bool thread_started = false;  // guarded by mu
};

namespace {

// The lookup thread. It holds only the shared state, never the engine, so it
// may outlive both.
void Serve(std::shared_ptr<DialResolver::State> s) {
  std::unique_lock<std::mutex> lock(s->mu);
  for (;;) {
    s->cv.wait(lock, [&] { return s->cancelled || !s->queue.empty(); });
    if (s->cancelled) return;
    auto job = std::move(s->queue.front());
    s->queue.pop_front();
    s->in_flight = &job.done;
    s->in_flight_id = job.id;
    lock.unlock();
    absl::Status status = ResolveAddress(&job.addr);
    lock.lock();
    if (s->in_flight == nullptr) continue;  // cancelled or abandoned meanwhile
    s->in_flight = nullptr;
    s->in_flight_id = 0;
    // Delivered under the lock: Cancel cannot run (and the engine cannot
    // stop its loops) between the check above and the hand-off.
    if (status.ok()) {
      job.done(std::move(job.addr));
    } else {
      job.done(std::move(status));
    }
  }
}

}  // namespace

DialResolver::DialResolver() : state_(std::make_shared<State>()) {}

DialResolver::~DialResolver() { Cancel(); }

uint64_t DialResolver::Resolve(NetAddress addr, Done done) {
  std::unique_lock<std::mutex> lock(state_->mu);
  const uint64_t id = state_->next_id++;
  if (state_->cancelled) {
    lock.unlock();
    done(absl::CancelledError("dial: the engine is stopping"));
    return id;
  }
  state_->queue.push_back({id, std::move(addr), std::move(done)});
  if (!state_->thread_started) {
    state_->thread_started = true;
    std::thread(Serve, state_).detach();
  }
  state_->cv.notify_one();
  return id;
}

bool DialResolver::Abandon(uint64_t id) {
  Done dropped;  // destroyed outside the lock
  std::lock_guard<std::mutex> lock(state_->mu);
  if (state_->in_flight != nullptr && state_->in_flight_id == id) {
    dropped = std::move(*state_->in_flight);
    state_->in_flight = nullptr;
    state_->in_flight_id = 0;
    return true;
  }
  for (auto it = state_->queue.begin(); it != state_->queue.end(); ++it) {
    if (it->id == id) {
      dropped = std::move(it->done);
      state_->queue.erase(it);
      return true;
    }
  }
  return false;
}

void DialResolver::Cancel() {
  std::deque<State::Job> pending;
  Done in_flight;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->cancelled) return;
    state_->cancelled = true;
    pending.swap(state_->queue);
    if (state_->in_flight != nullptr) {
      in_flight = std::move(*state_->in_flight);
      state_->in_flight = nullptr;
      state_->in_flight_id = 0;
    }
    state_->cv.notify_all();
  }
  const absl::Status cancelled = absl::CancelledError("dial: the engine is stopping");
  if (in_flight) in_flight(cancelled);
  for (auto& job : pending) job.done(cancelled);
}

}  // namespace netloop::internal
