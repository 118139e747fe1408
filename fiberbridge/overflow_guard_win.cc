// Windows: fiber stack overflows reported by a vectored exception handler
// (see overflow_guard.h).
#include "fiberbridge/overflow_guard.h"

#include "fiberbridge/internal/lean_windows.h"

#include <mutex>

#include "fiberbridge/internal/overflow_message.h"

namespace netloop::fiber {
namespace overflow_internal {

thread_local const Stack* running_stack = nullptr;
thread_local bool thread_ready = false;

}  // namespace overflow_internal

namespace {

LONG CALLBACK OnException(EXCEPTION_POINTERS* info) {
  if (info->ExceptionRecord->ExceptionCode != EXCEPTION_STACK_OVERFLOW) {
    return EXCEPTION_CONTINUE_SEARCH;
  }
  const Stack* s = overflow_internal::running_stack;
  if (s == nullptr) return EXCEPTION_CONTINUE_SEARCH;  // a thread's own stack: not ours
  char msg[overflow_internal::kOverflowMessageMax];
  const size_t len = overflow_internal::FormatOverflowMessage(s->usable(), msg);
  DWORD written = 0;
  WriteFile(GetStdHandle(STD_ERROR_HANDLE), msg, static_cast<DWORD>(len), &written, nullptr);
  TerminateProcess(GetCurrentProcess(), 3);
  return EXCEPTION_CONTINUE_SEARCH;  // not reached
}

}  // namespace

namespace overflow_internal {

void InstallSlow() {
  thread_ready = true;
  static std::once_flag once;
  std::call_once(once, [] { AddVectoredExceptionHandler(/*first=*/1, OnException); });
}

}  // namespace overflow_internal
}  // namespace netloop::fiber
