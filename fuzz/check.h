// Failure reporting shared by the fuzz targets. A failed invariant must stop
// the process loudly: libFuzzer saves the input that raised SIGABRT, and the
// Bazel replay test fails on a non-zero exit, so every check ends in abort().
#ifndef NETLOOP_FUZZ_CHECK_H_
#define NETLOOP_FUZZ_CHECK_H_

#include <string>
#include <string_view>

namespace netloop::fuzz {

// Prints "file:line: check failed: expr" plus the printf-style detail, then
// aborts. Never returns.
[[noreturn]] void CheckFailed(const char* file, int line, const char* expr,
                              const char* format = nullptr, ...)
    __attribute__((format(printf, 4, 5)));

// Known library bugs: found by these fuzzers, reported, not fixed yet. A
// check that fails only because of one is skipped by default, so the
// fuzzers keep finding new bugs and the replay tests stay green; with
// NETLOOP_FUZZ_STRICT=1 in the environment (replay_main's --strict sets it,
// as the <target>_regressions tests do) this returns false and the check
// fails as it should. Each call site names its reproducer under
// fuzz/regressions/; delete the call once the bug is fixed.
bool TolerateKnownBug(const char* reproducer);

// `bytes` with non-printable characters as \r, \n, \xNN, and cut to `max`
// bytes, so a failure message shows exactly what was parsed.
std::string Escape(std::string_view bytes, size_t max = 200);

}  // namespace netloop::fuzz

// FUZZ_CHECK(cond) or FUZZ_CHECK(cond, "format", args...). A macro so the
// message names the failing expression and line.
#define FUZZ_CHECK(cond, ...)                                                 \
  do {                                                                        \
    if (!(cond)) {                                                            \
      ::netloop::fuzz::CheckFailed(__FILE__, __LINE__, #cond __VA_OPT__(, ) \
                                       __VA_ARGS__);                          \
    }                                                                         \
  } while (0)

#endif  // NETLOOP_FUZZ_CHECK_H_
