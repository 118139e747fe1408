#include "tools/duel/server_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace netloop::duel {

absl::StatusOr<ServerProcess> ServerProcess::Launch(const std::vector<std::string>& argv,
                                                    int cpu) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return absl::InternalError("pipe");
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork");
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    if (cpu >= 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(cpu, &set);
      sched_setaffinity(0, sizeof(set), &set);
    }
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(out[1]);
  ServerProcess p;
  p.pid_ = pid;
  p.stdout_fd_ = out[0];
  return p;
}

absl::StatusOr<ServerProcess> ServerProcess::StartOnPort(const std::vector<std::string>& argv,
                                                         int cpu, int port) {
  absl::StatusOr<ServerProcess> launched = Launch(argv, cpu);
  if (!launched.ok()) return launched.status();
  ServerProcess p = std::move(*launched);
  p.port_ = port;
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline && p.Alive()) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    close(fd);
    if (ok) return p;
    usleep(20000);
  }
  std::string how = p.Stop();
  return absl::UnavailableError(absl::StrCat(argv[0], " did not start (", how, ")"));
}

absl::StatusOr<ServerProcess> ServerProcess::Start(const std::vector<std::string>& argv,
                                                   int cpu) {
  absl::StatusOr<ServerProcess> launched = Launch(argv, cpu);
  if (!launched.ok()) return launched.status();
  ServerProcess p = std::move(*launched);
  const int fd = p.stdout_fd_;
  std::string text;
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    pollfd pfd{fd, POLLIN, 0};
    if (poll(&pfd, 1, 100) == 1) {
      char buf[512];
      ssize_t n = read(fd, buf, sizeof(buf));
      if (n <= 0) break;
      text.append(buf, static_cast<size_t>(n));
      size_t at = text.find("listening on ");
      size_t eol = at == std::string::npos ? std::string::npos : text.find('\n', at);
      if (eol != std::string::npos) {
        std::string line = text.substr(at, eol - at);
        p.port_ = std::atoi(line.substr(line.rfind(':') + 1).c_str());
        break;
      }
    }
  }
  if (p.port_ <= 0) {
    std::string how = p.Stop();
    return absl::UnavailableError(
        absl::StrCat(argv[0], " did not report a listening port (", how, ")"));
  }
  return p;
}

ServerProcess::ServerProcess(ServerProcess&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)),
      port_(o.port_),
      stdout_fd_(std::exchange(o.stdout_fd_, -1)),
      exit_status_(o.exit_status_) {}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) Stop();
  if (stdout_fd_ >= 0) close(stdout_fd_);
}

std::string ServerProcess::address() const { return absl::StrCat("tcp://127.0.0.1:", port_); }

bool ServerProcess::Alive() {
  if (pid_ <= 0) return false;
  int status;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exit_status_ = status;
    pid_ = -1;
    return false;
  }
  return true;
}

std::string ServerProcess::Stop() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    absl::Time deadline = absl::Now() + absl::Seconds(3);
    int status = 0;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (absl::Now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        break;
      }
      usleep(5000);
    }
    exit_status_ = status;
    pid_ = -1;
  }
  if (WIFEXITED(exit_status_)) return absl::StrCat("exit ", WEXITSTATUS(exit_status_));
  if (WIFSIGNALED(exit_status_)) return absl::StrCat("signal ", WTERMSIG(exit_status_));
  return "unknown";
}

}  // namespace netloop::duel
