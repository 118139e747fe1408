// Windows: fiber stack overflows reported by a vectored exception handler
// (see overflow_guard.h).
#include "fiberbridge/overflow_guard.h"

#ifndef NOMINMAX
#define NOMINMAX
#endif
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

#include <mutex>

namespace netloop::fiber {
namespace overflow_internal {

thread_local const Stack* running_stack = nullptr;
thread_local bool thread_ready = false;

}  // namespace overflow_internal

namespace {

// Formats n in decimal into buf without the C library (the handler runs on
// what is left of an exhausted stack); returns the length.
size_t FormatDecimal(size_t n, char* buf) {
  char digits[24];
  size_t len = 0;
  do {
    digits[len++] = static_cast<char>('0' + n % 10);
    n /= 10;
  } while (n != 0);
  for (size_t i = 0; i < len; ++i) buf[i] = digits[len - 1 - i];
  return len;
}

LONG CALLBACK OnException(EXCEPTION_POINTERS* info) {
  if (info->ExceptionRecord->ExceptionCode != EXCEPTION_STACK_OVERFLOW) {
    return EXCEPTION_CONTINUE_SEARCH;
  }
  const Stack* s = overflow_internal::running_stack;
  if (s == nullptr) return EXCEPTION_CONTINUE_SEARCH;  // a thread's own stack: not ours
  char msg[128];
  static constexpr char kPrefix[] = "netloop: fiber stack overflow (fiber stack size ";
  static constexpr char kSuffix[] = " bytes)\n";
  size_t len = 0;
  for (char c : kPrefix) {
    if (c != '\0') msg[len++] = c;
  }
  len += FormatDecimal(s->usable(), msg + len);
  for (char c : kSuffix) {
    if (c != '\0') msg[len++] = c;
  }
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
