#include "fuzz/check.h"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>

namespace netloop::fuzz {

void CheckFailed(const char* file, int line, const char* expr, const char* format, ...) {
  std::fprintf(stderr, "%s:%d: check failed: %s\n", file, line, expr);
  if (format != nullptr) {
    va_list args;
    va_start(args, format);
    std::vfprintf(stderr, format, args);
    va_end(args);
    std::fputc('\n', stderr);
  }
  std::fflush(stderr);
  std::abort();
}

bool TolerateKnownBug(const char* reproducer) {
  static const bool strict = [] {
    const char* v = std::getenv("NETLOOP_FUZZ_STRICT");
    return v != nullptr && std::string_view(v) == "1";
  }();
  if (strict) std::fprintf(stderr, "known bug, strict mode: fuzz/regressions/%s\n", reproducer);
  return !strict;
}

std::string Escape(std::string_view bytes, size_t max) {
  std::string out;
  for (size_t i = 0; i < bytes.size() && i < max; ++i) {
    const unsigned char c = static_cast<unsigned char>(bytes[i]);
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[5];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (bytes.size() > max) out += "...";
  return out;
}

}  // namespace netloop::fuzz
