// Runs one of the example server binaries (from the test's runfiles) as a
// child process with chosen arguments and extra environment, and reads the
// "listening on URI" lines it prints. Used by the tests that drive the
// example servers from outside: faults, hostile clients, HTTP. POSIX:
// server_process.cc (fork, exec); Windows: server_process_win.cc
// (CreateProcess; `binary` gets ".exe").
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
  // The child's resident set size in bytes (from /proc; on Windows its
  // working set), or -1.
  int64_t RssBytes() const;
  // The most it has had resident (VmHWM; the peak working set), or -1.
  int64_t PeakRssBytes() const;
  // Open descriptors of the child (from /proc), or -1.
  int OpenDescriptors() const;
  // Sends `sig` and returns the wait status, or -1 if it did not exit in 10 s.
  // Windows has no signals: any `sig` sends Ctrl-Break to the child (which
  // runs in a process group of its own), and the exit code is returned.
  int Signal(int sig);
  // True while the child has not exited.
  bool Running();

 private:
  pid_t pid_ = -1;
#ifdef _WIN32
  void* process_ = nullptr;  // HANDLE
  void* out_ = nullptr;      // HANDLE: the read end of the child's stdout
#else
  int out_ = -1;
#endif
  bool reaped_ = false;
  std::string uri_;
  std::string text_;
};

}  // namespace netloop::testing

#endif  // NETLOOP_TESTS_SERVER_PROCESS_H_
