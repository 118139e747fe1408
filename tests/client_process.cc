#include "tests/client_process.h"

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

namespace netloop::testing {
namespace {

// Exit codes say where the child failed.
// `fds` has room for every connection, reserved before the fork: the child
// must not allocate (another thread of the parent may have held malloc's lock
// when it forked).
[[noreturn]] void RunChild(const ClientProcess::Plan& plan, int in, int out,
                           std::vector<int>& fds) {
  uint16_t port = 0;
  if (read(in, &port, sizeof(port)) != sizeof(port)) _exit(2);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  timeval tv{plan.read_timeout_seconds, 0};
  for (int i = 0; i < plan.connections; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) _exit(3);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) _exit(4);
    fds.push_back(fd);
  }
  char c = 'c';
  if (write(out, &c, 1) != 1) _exit(8);
  if (plan.echo_ping) {
    for (int fd : fds) {
      if (write(fd, "ping", 4) != 4) _exit(5);
    }
    for (int fd : fds) {
      char buf[4];
      size_t got = 0;
      while (got < 4) {
        ssize_t n = read(fd, buf + got, 4 - got);
        if (n <= 0) _exit(6);
        got += static_cast<size_t>(n);
      }
      if (memcmp(buf, "ping", 4) != 0) _exit(7);
    }
  }
  c = 'r';
  if (write(out, &c, 1) != 1) _exit(8);
  if (read(in, &c, 1) != 1) _exit(9);
  if (c == 'R') {
    linger l{1, 0};
    for (int fd : fds) setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  }
  for (int fd : fds) close(fd);
  _exit(0);
}

}  // namespace

ClientProcess::ClientProcess(Plan plan) : plan_(plan) {
  if (pipe(to_child_) != 0 || pipe(to_parent_) != 0) return;
  std::vector<int> fds;
  fds.reserve(static_cast<size_t>(plan_.connections));
  pid_ = fork();
  if (pid_ == 0) {
    close(to_child_[1]);
    close(to_parent_[0]);
    RunChild(plan_, to_child_[0], to_parent_[1], fds);
  }
  close(to_child_[0]);
  close(to_parent_[1]);
  to_child_[0] = to_parent_[1] = -1;
}

ClientProcess::~ClientProcess() {
  if (pid_ > 0 && !reaped_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  for (int fd : {to_child_[1], to_parent_[0]}) {
    if (fd >= 0) close(fd);
  }
}

void ClientProcess::Begin(uint16_t port) {
  (void)!write(to_child_[1], &port, sizeof(port));
}

bool ClientProcess::WaitFor(char event, int timeout_ms) {
  pollfd pfd{to_parent_[0], POLLIN, 0};
  if (poll(&pfd, 1, timeout_ms) != 1) return false;
  char c;
  return read(to_parent_[0], &c, 1) == 1 && c == event;
}

bool ClientProcess::WaitConnected(int timeout_ms) {
  if (connected_) return true;
  connected_ = WaitFor('c', timeout_ms);
  return connected_;
}

bool ClientProcess::WaitReady(int timeout_ms) {
  return WaitConnected(timeout_ms) && WaitFor('r', timeout_ms);
}

bool ClientProcess::Finish(bool reset) {
  if (pid_ <= 0 || reaped_) return false;
  char c = reset ? 'R' : 'g';
  (void)!write(to_child_[1], &c, 1);
  int status = 0;
  waitpid(pid_, &status, 0);
  reaped_ = true;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace netloop::testing
