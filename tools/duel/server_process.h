// A server under test: started as a child process pinned to one CPU, its
// ephemeral port read from its "listening on ...:PORT" line, stopped with
// SIGTERM. Crashes are noticed, not hidden.
#ifndef NETLOOP_TOOLS_DUEL_SERVER_PROCESS_H_
#define NETLOOP_TOOLS_DUEL_SERVER_PROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace netloop::duel {

class ServerProcess {
 public:
  // Starts argv (argv[0] is a path) pinned to `cpu` (-1: not pinned) and
  // waits up to 10 s for its listening line.
  static absl::StatusOr<ServerProcess> Start(const std::vector<std::string>& argv, int cpu);
  // For servers that print nothing (nginx): waits until 127.0.0.1:port accepts.
  static absl::StatusOr<ServerProcess> StartOnPort(const std::vector<std::string>& argv,
                                                   int cpu, int port);

  ServerProcess(ServerProcess&& other) noexcept;
  ServerProcess& operator=(ServerProcess&&) = delete;
  ~ServerProcess();  // stops it if still running

  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  std::string address() const;
  // False if the process exited on its own (a crash, for a server).
  bool Alive();
  // SIGTERM, then SIGKILL after 3 s. Returns how it ended.
  std::string Stop();

 private:
  ServerProcess() = default;
  static absl::StatusOr<ServerProcess> Launch(const std::vector<std::string>& argv, int cpu);
  pid_t pid_ = -1;
  int port_ = 0;
  int stdout_fd_ = -1;
  int exit_status_ = -1;
};

}  // namespace netloop::duel

#endif  // NETLOOP_TOOLS_DUEL_SERVER_PROCESS_H_
