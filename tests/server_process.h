// Runs one of the example server binaries (from the test's runfiles) as a
// child process with chosen arguments and extra environment, and reads the
// "listening on URI" lines it prints. Used by the tests that drive the
// example servers from outside: faults, hostile clients.
#ifndef NETLOOP_TESTS_SERVER_PROCESS_H_
#define NETLOOP_TESTS_SERVER_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace netloop::testing {

class ServerProcess {
 public:
  // `binary` is relative to the workspace root ("examples/echo/echo").
  // `env` entries are "NAME=value", added to the test's environment.
  ServerProcess(const std::string& binary, std::vector<std::string> args,
                std::vector<std::string> env = {});
  ~ServerProcess();  // SIGKILLs and reaps the child if it still runs
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // The first "listening on" URI, waiting up to 10 s; "" if none came.
  const std::string& uri();
  pid_t pid() const { return pid_; }
  // The child's resident set size in bytes (from /proc), or -1.
  int64_t RssBytes() const;
  // Open descriptors of the child (from /proc), or -1.
  int OpenDescriptors() const;
  // Sends `sig` and returns the wait status, or -1 if it did not exit in 10 s.
  int Signal(int sig);
  // True while the child has not exited.
  bool Running();

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  bool reaped_ = false;
  std::string uri_;
  std::string text_;
};

}  // namespace netloop::testing

#endif  // NETLOOP_TESTS_SERVER_PROCESS_H_
