// Fixtures shared by the fiber bridge tests: loops to host fibers, and a
// socketpair with one end for a fiber and one for the test thread.
#ifndef NETLOOP_TESTS_FIBER_TEST_UTIL_H_
#define NETLOOP_TESTS_FIBER_TEST_UTIL_H_

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <memory>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "fiberbridge/scheduler.h"
#include "reactor/netloop.h"

namespace netloop::fiber::testing {

// A client-only engine whose loops host the fibers of a test.
class Loops {
 public:
  explicit Loops(int n = 1) {
    Options o;
    o.loops = n;
    status_ = engine_.Start(handler_, {}, o);
  }
  ~Loops() {
    engine_.Stop(absl::Now() + absl::Seconds(2));
    (void)engine_.Wait();
  }
  const absl::Status& status() const { return status_; }
  EventLoop& loop(int i = 0) { return engine_.loop(i); }
  // Runs fn in a fiber on loop i and waits (bounded) for it to return; false
  // if it did not return in time.
  bool Run(absl::AnyInvocable<void()> fn, int i = 0, int timeout_ms = 20000) {
    auto done = std::make_shared<std::promise<void>>();
    std::future<void> f = done->get_future();
    Spawn(loop(i), [fn = std::move(fn), done]() mutable {
      fn();
      done->set_value();
    });
    return f.wait_for(std::chrono::milliseconds(timeout_ms)) == std::future_status::ready;
  }

 private:
  EventHandler handler_;
  Engine engine_;
  absl::Status status_;
};

// A connected pair: one end non-blocking for a fiber (which owns it once
// adopted), one blocking end with a 10 s receive timeout for the test thread.
struct Pair {
  Pair() {
    int sv[2] = {-1, -1};
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return;
    fiber_end = sv[0];
    test_end = sv[1];
    fcntl(fiber_end, F_SETFL, fcntl(fiber_end, F_GETFL) | O_NONBLOCK);
    timeval tv{10, 0};
    setsockopt(test_end, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(test_end, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  }
  ~Pair() {
    if (test_end >= 0) close(test_end);
  }
  Pair(const Pair&) = delete;
  Pair& operator=(const Pair&) = delete;
  int fiber_end = -1;
  int test_end = -1;
};

}  // namespace netloop::fiber::testing

#endif  // NETLOOP_TESTS_FIBER_TEST_UTIL_H_
