// The line both overflow handlers write (overflow_guard.cc on Linux,
// overflow_guard_win.cc on Windows), fiberbridge internal:
//   netloop: fiber stack overflow (fiber stack size N bytes)
// Formatted without the C library: the handlers run on an alternate signal
// stack, or on what is left of an exhausted one.
#ifndef NETLOOP_FIBERBRIDGE_INTERNAL_OVERFLOW_MESSAGE_H_
#define NETLOOP_FIBERBRIDGE_INTERNAL_OVERFLOW_MESSAGE_H_

#include <cstddef>

namespace netloop::fiber::overflow_internal {

inline constexpr size_t kOverflowMessageMax = 128;

// Writes the line (newline included) into `out`; returns its length.
inline size_t FormatOverflowMessage(size_t stack_size, char (&out)[kOverflowMessageMax]) {
  static constexpr char kPrefix[] = "netloop: fiber stack overflow (fiber stack size ";
  static constexpr char kSuffix[] = " bytes)\n";
  size_t len = 0;
  for (const char* p = kPrefix; *p != '\0'; ++p) out[len++] = *p;
  char digits[24];
  size_t count = 0;
  do {
    digits[count++] = static_cast<char>('0' + stack_size % 10);
    stack_size /= 10;
  } while (stack_size != 0);
  while (count > 0) out[len++] = digits[--count];
  for (const char* p = kSuffix; *p != '\0'; ++p) out[len++] = *p;
  return len;
}

}  // namespace netloop::fiber::overflow_internal

#endif  // NETLOOP_FIBERBRIDGE_INTERNAL_OVERFLOW_MESSAGE_H_
