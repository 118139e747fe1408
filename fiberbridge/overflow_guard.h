// Reports fiber stack overflows. A fiber that runs past its stack touches the
// PROT_NONE guard page below it; the SIGSEGV handler (on an alternate signal
// stack, since the faulting stack is exhausted) recognises the address as the
// running fiber's guard, says so on stderr and aborts. Any other SIGSEGV is
// passed on to the previous handler or the default action.
#ifndef NETLOOP_FIBERBRIDGE_OVERFLOW_GUARD_H_
#define NETLOOP_FIBERBRIDGE_OVERFLOW_GUARD_H_

#include <cstddef>

namespace netloop::fiber {

// Installs the process-wide handler (once) and this thread's alternate signal
// stack (once per thread). Fiber::Resume calls it; calling it again is cheap.
void InstallOverflowGuardForThisThread();

// Tells the handler which guard belongs to the fiber now running on this
// thread (nullptr, 0 when none). Async-signal-safe to read.
void SetCurrentGuard(const char* guard_begin, size_t guard_size, size_t stack_size);

}  // namespace netloop::fiber

#endif  // NETLOOP_FIBERBRIDGE_OVERFLOW_GUARD_H_
