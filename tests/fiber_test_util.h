// Fixtures shared by the fiber bridge tests: loops to host fibers, and a
// connected pair of sockets with one end for a fiber and one for the test
// thread (a socketpair; on Windows, a loopback TCP connection).
#ifndef NETLOOP_TESTS_FIBER_TEST_UTIL_H_
#define NETLOOP_TESTS_FIBER_TEST_UTIL_H_

#if !defined(_WIN32)
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#endif

#include <chrono>
#include <future>
#include <memory>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "fiberbridge/scheduler.h"
#include "reactor/internal/platform.h"
#include "reactor/netloop.h"
#include "reactor/socket_types.h"

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
#if defined(_WIN32)
  Pair() {
    netloop::internal::EnsureWinsock();
    const SOCKET listener = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int len = sizeof(addr);
    if (listener == INVALID_SOCKET) return;
    if (bind(listener, reinterpret_cast<sockaddr*>(&addr), len) != 0 || listen(listener, 1) != 0 ||
        getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      closesocket(listener);
      return;
    }
    const SOCKET client = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (client != INVALID_SOCKET &&
        connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      const SOCKET accepted = accept(listener, nullptr, nullptr);
      if (accepted != INVALID_SOCKET) {
        u_long on = 1;
        ioctlsocket(accepted, FIONBIO, &on);
        const DWORD ms = 10'000;
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, reinterpret_cast<const char*>(&ms),
                   sizeof(ms));
        setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, reinterpret_cast<const char*>(&ms),
                   sizeof(ms));
        fiber_end = accepted;
        test_end = client;
      }
    }
    if (test_end == kInvalidSocket && client != INVALID_SOCKET) closesocket(client);
    closesocket(listener);
  }
  ~Pair() {
    if (test_end != kInvalidSocket) closesocket(test_end);
  }
#else
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
#endif
  Pair(const Pair&) = delete;
  Pair& operator=(const Pair&) = delete;
  SocketHandle fiber_end = kInvalidSocket;
  SocketHandle test_end = kInvalidSocket;
};

// A listening TCP socket on 127.0.0.1 (an ephemeral port, in *port), or
// kInvalidSocket. Close it with netloop::testing::CloseClient.
inline SocketHandle ListenOnLoopback(int backlog, int* port) {
#if defined(_WIN32)
  netloop::internal::EnsureWinsock();
  const SOCKET fd = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
  if (fd == INVALID_SOCKET) return kInvalidSocket;
  int len = sizeof(sockaddr_in);
#else
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return kInvalidSocket;
  socklen_t len = sizeof(sockaddr_in);
#endif
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(fd, backlog) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    netloop::internal::CloseSocket(fd);
    return kInvalidSocket;
  }
  *port = ntohs(a.sin_port);
  return fd;
}

}  // namespace netloop::fiber::testing

#endif  // NETLOOP_TESTS_FIBER_TEST_UTIL_H_
