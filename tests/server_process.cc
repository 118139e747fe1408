#include "tests/server_process.h"

#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include "tests/test_util.h"

extern char** environ;

namespace netloop::testing {

ServerProcess::ServerProcess(const std::string& binary, std::vector<std::string> args,
                             std::vector<std::string> env) {
  const char* srcdir = getenv("TEST_SRCDIR");
  std::string path = std::string(srcdir != nullptr ? srcdir : ".") + "/netloop/" + binary;
  int out[2];
  if (pipe(out) != 0) return;
  std::vector<std::string> envs;
  for (char** e = environ; *e != nullptr; ++e) envs.emplace_back(*e);
  for (std::string& e : env) envs.push_back(std::move(e));
  pid_ = fork();
  if (pid_ == 0) {
    dup2(out[1], 1);
    close(out[0]);
    close(out[1]);
    std::vector<char*> argv{path.data()};
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (std::string& e : envs) envp.push_back(e.data());
    envp.push_back(nullptr);
    execve(path.c_str(), argv.data(), envp.data());
    _exit(127);
  }
  close(out[1]);
  out_ = out[0];
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0 && !reaped_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (out_ >= 0) close(out_);
}

const std::string& ServerProcess::uri() {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (uri_.empty() && out_ >= 0 && std::chrono::steady_clock::now() < deadline) {
    pollfd p{out_, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char buf[512];
    ssize_t r = read(out_, buf, sizeof(buf));
    if (r <= 0) break;
    text_.append(buf, static_cast<size_t>(r));
    size_t nl;
    while (uri_.empty() && (nl = text_.find('\n')) != std::string::npos) {
      std::string line = text_.substr(0, nl);
      text_.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();  // a Windows child
      const std::string prefix = "listening on ";
      if (line.rfind(prefix, 0) == 0) uri_ = line.substr(prefix.size());
    }
  }
  return uri_;
}

int64_t ServerProcess::RssBytes() const {
  std::ifstream statm("/proc/" + std::to_string(pid_) + "/statm");
  int64_t size = 0, resident = 0;
  if (!(statm >> size >> resident)) return -1;
  return resident * sysconf(_SC_PAGESIZE);
}

int64_t ServerProcess::PeakRssBytes() const {
  std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;  // kB
  }
  return -1;
}

int ServerProcess::OpenDescriptors() const { return OpenDescriptorsOf(pid_); }

int ServerProcess::Signal(int sig) {
  if (pid_ <= 0 || reaped_) return -1;
  kill(pid_, sig);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      reaped_ = true;
      return status;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return -1;
}

bool ServerProcess::Running() {
  if (pid_ <= 0 || reaped_) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    reaped_ = true;
    return false;
  }
  return true;
}

}  // namespace netloop::testing
