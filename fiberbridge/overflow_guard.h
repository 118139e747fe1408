// Reports fiber stack overflows instead of letting them corrupt memory.
//
// A fiber that runs past its stack faults on the guard below it (see
// stack_pool.h). The SIGSEGV handler installed here runs on an alternate
// signal stack, since the faulting stack is exhausted, and looks up the stack
// of the fiber running on this thread. If the fault is in that stack's guard,
// or the interrupted stack pointer is already below the stack (a frame that
// jumped the guard into unmapped memory), it writes
//   netloop: fiber stack overflow (fiber stack size N bytes)
// to stderr with write(2) and aborts. Any other SIGSEGV goes to the handler
// that was installed before, or gets the default action (the process dies of
// SIGSEGV as it would have without us).
//
// Windows (overflow_guard_win.cc): the OS fiber's guard page raises
// EXCEPTION_STACK_OVERFLOW; a vectored exception handler writes the same
// line and ends the process (exit code 3, as abort() does there). Any other
// exception, and an overflow of a thread's own stack, continue their search.
#ifndef NETLOOP_FIBERBRIDGE_OVERFLOW_GUARD_H_
#define NETLOOP_FIBERBRIDGE_OVERFLOW_GUARD_H_

#include "fiberbridge/stack_pool.h"

namespace netloop::fiber {

// initial-exec: a plain %fs-relative access on every fiber switch, instead of
// a __tls_get_addr call when this library is a shared object loaded at start-up
// (it must not be dlopen'ed). mingw has no such model.
#if defined(_WIN32)
#define NETLOOP_TLS_INITIAL_EXEC
#else
#define NETLOOP_TLS_INITIAL_EXEC __attribute__((tls_model("initial-exec")))
#endif

namespace overflow_internal {
extern thread_local const Stack* running_stack NETLOOP_TLS_INITIAL_EXEC;
extern thread_local bool thread_ready NETLOOP_TLS_INITIAL_EXEC;
void InstallSlow();
}  // namespace overflow_internal

// Installs the process-wide SIGSEGV handler (once per process) and an
// alternate signal stack for the calling thread (once per thread; a thread that
// already has one, such as a sanitizer's, keeps it). Call it on every thread
// that runs fibers before the first one runs; Fiber::Resume does so itself.
// Cheap after the first call on a thread. Any thread.
//
// Another SIGSEGV handler installed later replaces this one; it is then up to
// that handler to chain to us.
inline void InstallOverflowHandlerForThisThread() {
  if (!overflow_internal::thread_ready) overflow_internal::InstallSlow();
}

// Tells the handler which stack the code now running on this thread uses
// (nullptr: the thread's own stack). Fiber calls this on every switch; the
// pointee must stay valid while it is registered. Calling thread only.
inline void SetRunningStack(const Stack* stack) { overflow_internal::running_stack = stack; }

}  // namespace netloop::fiber

#endif  // NETLOOP_FIBERBRIDGE_OVERFLOW_GUARD_H_
