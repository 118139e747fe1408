// ServerProcess on Windows: CreateProcess with the child's stdout on a pipe.
#include "tests/server_process.h"

#include "reactor/socket_types.h"  // windows.h, lean, without min/max

#include <windows.h>
#include <psapi.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

namespace netloop::testing {

ServerProcess::ServerProcess(const std::string& binary, std::vector<std::string> args,
                             std::vector<std::string> env) {
  const char* srcdir = getenv("TEST_SRCDIR");
  const std::string path = std::string(srcdir != nullptr ? srcdir : ".") + "/netloop/" + binary +
                           ".exe";
  SECURITY_ATTRIBUTES inherit{sizeof(SECURITY_ATTRIBUTES), nullptr, TRUE};
  HANDLE read_end = nullptr, write_end = nullptr;
  if (!CreatePipe(&read_end, &write_end, &inherit, 0)) return;
  SetHandleInformation(read_end, HANDLE_FLAG_INHERIT, 0);
  std::string command = "\"" + path + "\"";
  for (const std::string& a : args) command += " \"" + a + "\"";
  // The test's environment and `env`, as a block of NUL-ended strings.
  std::vector<char> block;
  if (char* current = GetEnvironmentStringsA(); current != nullptr) {
    for (const char* e = current; *e != '\0'; e += strlen(e) + 1) {
      block.insert(block.end(), e, e + strlen(e) + 1);
    }
    FreeEnvironmentStringsA(current);
  }
  for (const std::string& e : env) block.insert(block.end(), e.c_str(), e.c_str() + e.size() + 1);
  block.push_back('\0');
  STARTUPINFOA si{};
  si.cb = sizeof(si);
  si.dwFlags = STARTF_USESTDHANDLES;
  si.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
  si.hStdOutput = write_end;
  si.hStdError = GetStdHandle(STD_ERROR_HANDLE);
  PROCESS_INFORMATION pi{};
  // A process group of its own, so that Ctrl-Break reaches it alone.
  const BOOL made = CreateProcessA(path.c_str(), command.data(), nullptr, nullptr, TRUE,
                                   CREATE_NEW_PROCESS_GROUP, block.data(), nullptr, &si, &pi);
  CloseHandle(write_end);
  if (!made) {
    CloseHandle(read_end);
    return;
  }
  CloseHandle(pi.hThread);
  process_ = pi.hProcess;
  pid_ = static_cast<pid_t>(pi.dwProcessId);
  out_ = read_end;
}

ServerProcess::~ServerProcess() {
  if (process_ != nullptr) {
    if (!reaped_) {
      TerminateProcess(process_, 1);
      WaitForSingleObject(process_, 10'000);
    }
    CloseHandle(process_);
  }
  if (out_ != nullptr) CloseHandle(out_);
}

const std::string& ServerProcess::uri() {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (uri_.empty() && out_ != nullptr && std::chrono::steady_clock::now() < deadline) {
    DWORD available = 0;
    if (!PeekNamedPipe(out_, nullptr, 0, nullptr, &available, nullptr)) break;  // it exited
    if (available == 0) {
      Sleep(10);
      continue;
    }
    char buf[512];
    DWORD got = 0;
    if (!ReadFile(out_, buf, sizeof(buf), &got, nullptr) || got == 0) break;
    text_.append(buf, got);
    size_t nl;
    while (uri_.empty() && (nl = text_.find('\n')) != std::string::npos) {
      std::string line = text_.substr(0, nl);
      text_.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      const std::string prefix = "listening on ";
      if (line.rfind(prefix, 0) == 0) uri_ = line.substr(prefix.size());
    }
  }
  return uri_;
}

namespace {

// The child's memory counters, or false.
bool CountersOf(void* process, PROCESS_MEMORY_COUNTERS* counters) {
  return process != nullptr &&
         K32GetProcessMemoryInfo(static_cast<HANDLE>(process), counters, sizeof(*counters));
}

}  // namespace

int64_t ServerProcess::RssBytes() const {
  PROCESS_MEMORY_COUNTERS counters;
  return CountersOf(process_, &counters) ? static_cast<int64_t>(counters.WorkingSetSize) : -1;
}

int64_t ServerProcess::PeakRssBytes() const {
  PROCESS_MEMORY_COUNTERS counters;
  return CountersOf(process_, &counters) ? static_cast<int64_t>(counters.PeakWorkingSetSize)
                                         : -1;
}

int ServerProcess::OpenDescriptors() const { return -1; }

int ServerProcess::Signal(int) {
  if (process_ == nullptr || reaped_) return -1;
  GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, static_cast<DWORD>(pid_));
  if (WaitForSingleObject(static_cast<HANDLE>(process_), 10'000) != WAIT_OBJECT_0) return -1;
  reaped_ = true;
  DWORD code = 0;
  GetExitCodeProcess(static_cast<HANDLE>(process_), &code);
  return static_cast<int>(code);
}

bool ServerProcess::Running() {
  if (process_ == nullptr || reaped_) return false;
  if (WaitForSingleObject(static_cast<HANDLE>(process_), 0) == WAIT_OBJECT_0) {
    reaped_ = true;
    return false;
  }
  return true;
}

}  // namespace netloop::testing
