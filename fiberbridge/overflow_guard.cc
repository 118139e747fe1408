#include "fiberbridge/overflow_guard.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <mutex>

namespace netloop::fiber {
namespace {

struct GuardInfo {
  const char* begin = nullptr;
  size_t size = 0;
  size_t stack_size = 0;
};

thread_local GuardInfo current_guard;
thread_local bool thread_ready = false;
struct sigaction previous_action;

// Formats n into buf (async-signal-safe); returns the length.
size_t FormatSize(size_t n, char* buf) {
  char tmp[24];
  size_t len = 0;
  do {
    tmp[len++] = static_cast<char>('0' + n % 10);
    n /= 10;
  } while (n != 0);
  for (size_t i = 0; i < len; ++i) buf[i] = tmp[len - 1 - i];
  return len;
}

void OnSegv(int sig, siginfo_t* info, void* context) {
  const char* addr = static_cast<const char*>(info->si_addr);
  const GuardInfo g = current_guard;
  // A large frame may jump past the guard page: count a little below it too.
  if (g.begin != nullptr && addr >= g.begin - 64 * 1024 && addr < g.begin + g.size) {
    char msg[160];
    const char prefix[] = "netloop: fiber stack overflow (fiber stack size ";
    size_t len = sizeof(prefix) - 1;
    memcpy(msg, prefix, len);
    len += FormatSize(g.stack_size, msg + len);
    const char suffix[] = " bytes); raise SchedulerOptions::stack_size\n";
    memcpy(msg + len, suffix, sizeof(suffix) - 1);
    len += sizeof(suffix) - 1;
    ssize_t ignored = write(STDERR_FILENO, msg, len);
    (void)ignored;
    abort();
  }
  // Not ours: hand it on.
  if (previous_action.sa_flags & SA_SIGINFO) {
    if (previous_action.sa_sigaction != nullptr) {
      previous_action.sa_sigaction(sig, info, context);
      return;
    }
  } else if (previous_action.sa_handler != SIG_DFL && previous_action.sa_handler != SIG_IGN) {
    previous_action.sa_handler(sig);
    return;
  }
  // Default action: restore it and return, so the fault repeats and kills.
  signal(SIGSEGV, SIG_DFL);
}

}  // namespace

void InstallOverflowGuardForThisThread() {
  if (thread_ready) return;
  thread_ready = true;
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = OnSegv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous_action);
  });
  stack_t current;
  if (sigaltstack(nullptr, &current) == 0 && !(current.ss_flags & SS_DISABLE) &&
      current.ss_sp != nullptr) {
    return;  // the thread already has one (a sanitizer's, say)
  }
  // Leaked deliberately: it must outlive every signal on this thread.
  size_t size = 64 * 1024;
  stack_t ss;
  ss.ss_sp = malloc(size);
  ss.ss_size = size;
  ss.ss_flags = 0;
  if (ss.ss_sp != nullptr) sigaltstack(&ss, nullptr);
}

void SetCurrentGuard(const char* guard_begin, size_t guard_size, size_t stack_size) {
  current_guard.begin = guard_begin;
  current_guard.size = guard_size;
  current_guard.stack_size = stack_size;
}

}  // namespace netloop::fiber
