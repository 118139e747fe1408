#include "fiberbridge/overflow_guard.h"

#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <mutex>

#include "fiberbridge/internal/overflow_message.h"

namespace netloop::fiber {
namespace overflow_internal {
thread_local const Stack* running_stack NETLOOP_TLS_INITIAL_EXEC = nullptr;
thread_local bool thread_ready NETLOOP_TLS_INITIAL_EXEC = false;
}  // namespace overflow_internal

namespace {

// A frame that skips the guard lands at most this far below it and still
// counts as an overflow when the stack pointer is down there too.
constexpr uintptr_t kBelowGuardSlack = 1 << 20;
constexpr size_t kAltStackSize = 64 * 1024;

struct sigaction previous_action;

// The thread's alternate signal stack, released when the thread exits.
struct AltStack {
  void* memory = nullptr;
  ~AltStack() {
    if (memory == nullptr) return;
    stack_t off;
    memset(&off, 0, sizeof(off));
    off.ss_flags = SS_DISABLE;
    sigaltstack(&off, nullptr);
    munmap(memory, kAltStackSize);
  }
};
thread_local AltStack alt_stack;

uintptr_t InterruptedStackPointer(void* context) {
  const auto* uc = static_cast<const ucontext_t*>(context);
#if defined(__x86_64__)
  return static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RSP]);
#elif defined(__aarch64__)
  return static_cast<uintptr_t>(uc->uc_mcontext.sp);
#else
  (void)uc;
  return 0;  // unknown: only faults inside the guard are recognised
#endif
}

bool IsOverflow(const Stack& s, uintptr_t addr, uintptr_t sp) {
  const uintptr_t guard_begin = reinterpret_cast<uintptr_t>(s.base);
  const uintptr_t bottom = guard_begin + s.guard;
  if (addr >= guard_begin && addr < bottom) return true;
  const uintptr_t low = guard_begin > kBelowGuardSlack ? guard_begin - kBelowGuardSlack : 0;
  return sp >= low && sp < bottom && addr >= low && addr < guard_begin;
}

[[noreturn]] void ReportOverflow(size_t stack_size) {
  char msg[overflow_internal::kOverflowMessageMax];
  const size_t len = overflow_internal::FormatOverflowMessage(stack_size, msg);
  ssize_t ignored = write(STDERR_FILENO, msg, len);
  (void)ignored;
  abort();
}

void OnSegv(int sig, siginfo_t* info, void* context) {
  const Stack* s = overflow_internal::running_stack;
  if (s != nullptr &&
      IsOverflow(*s, reinterpret_cast<uintptr_t>(info->si_addr), InterruptedStackPointer(context))) {
    ReportOverflow(s->usable());
  }
  // Not ours.
  if (previous_action.sa_flags & SA_SIGINFO) {
    if (previous_action.sa_sigaction != nullptr) {
      previous_action.sa_sigaction(sig, info, context);
      return;
    }
  } else if (previous_action.sa_handler != SIG_DFL && previous_action.sa_handler != SIG_IGN) {
    previous_action.sa_handler(sig);
    return;
  }
  // Default action (an ignored SIGSEGV from a fault is fatal anyway). A fault
  // repeats on return and now kills; a SIGSEGV sent by kill() is re-raised,
  // pending until this handler returns.
  signal(SIGSEGV, SIG_DFL);
  if (info->si_code <= 0) raise(SIGSEGV);
}

void InstallProcessHandler() {
  // Read the previous action before ours can run, so it is never seen half
  // written.
  sigaction(SIGSEGV, nullptr, &previous_action);
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = OnSegv;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, nullptr);
}

void InstallAltStack() {
  stack_t current;
  if (sigaltstack(nullptr, &current) == 0 && !(current.ss_flags & SS_DISABLE) &&
      current.ss_size >= MINSIGSTKSZ) {
    return;
  }
  void* p = mmap(nullptr, kAltStackSize, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    static constexpr char kMsg[] = "netloop: no alternate signal stack; overflows will not be reported\n";
    ssize_t ignored = write(STDERR_FILENO, kMsg, sizeof(kMsg) - 1);
    (void)ignored;
    return;
  }
  stack_t ss;
  memset(&ss, 0, sizeof(ss));
  ss.ss_sp = p;
  ss.ss_size = kAltStackSize;
  if (sigaltstack(&ss, nullptr) != 0) {
    munmap(p, kAltStackSize);
    return;
  }
  alt_stack.memory = p;
}

}  // namespace

namespace overflow_internal {

void InstallSlow() {
  thread_ready = true;
  static std::once_flag once;
  std::call_once(once, InstallProcessHandler);
  InstallAltStack();
}

}  // namespace overflow_internal
}  // namespace netloop::fiber
