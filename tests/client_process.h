// A child process that opens many loopback connections to a server in the
// parent, so the parent's fd table holds only the server's sockets and the
// clients cannot share the server's fd limit. Fork it before any thread
// exists in the test process: the child runs raw syscalls only.
#ifndef NETLOOP_TESTS_CLIENT_PROCESS_H_
#define NETLOOP_TESTS_CLIENT_PROCESS_H_

#include <sys/types.h>

#include <cstdint>

namespace netloop::testing {

class ClientProcess {
 public:
  struct Plan {
    int connections = 1000;
    // Connect all first (each blocking connect returns once the kernel has
    // queued the connection, accepted or not), then ping each and wait for
    // its echo. false: only connect, and hold the connections.
    bool echo_ping = true;
    // Per-read timeout in the child, so a wedged server fails the child.
    int read_timeout_seconds = 20;
  };

  // Forks the child. It waits for Begin(port) before connecting.
  explicit ClientProcess(Plan plan);
  ~ClientProcess();  // kills and reaps the child if still running
  ClientProcess(const ClientProcess&) = delete;
  ClientProcess& operator=(const ClientProcess&) = delete;

  bool forked() const { return pid_ > 0; }
  // Tells the child where to connect.
  void Begin(uint16_t port);
  // Waits (at most timeout_ms) until every connect has returned: each
  // connection is then established in the kernel, accepted or not.
  bool WaitConnected(int timeout_ms);
  // Waits (at most timeout_ms) until every connection is open and, with
  // echo_ping, every ping came back. false on timeout or a failed child.
  bool WaitReady(int timeout_ms);
  // Tells the child to close every connection (with `reset`, by RST through
  // SO_LINGER 0) and exit; returns true if it exited with status 0.
  bool Finish(bool reset = false);

 private:
  bool WaitFor(char event, int timeout_ms);

  Plan plan_;
  bool connected_ = false;
  pid_t pid_ = -1;
  int to_child_[2] = {-1, -1};
  int to_parent_[2] = {-1, -1};
  bool reaped_ = false;
};

}  // namespace netloop::testing

#endif  // NETLOOP_TESTS_CLIENT_PROCESS_H_
