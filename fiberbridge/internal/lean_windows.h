// <windows.h> as the fiber layer's Windows files want it: lean, without the
// min/max macros, and without winbase.h's Yield() macro, which would break
// fiber::Yield and Scheduler::Yield. Fiberbridge internal; `:fiber` does
// not depend on reactor/, whose socket_types.h does the same with Winsock.
#ifndef NETLOOP_FIBERBRIDGE_INTERNAL_LEAN_WINDOWS_H_
#define NETLOOP_FIBERBRIDGE_INTERNAL_LEAN_WINDOWS_H_

#ifndef NOMINMAX
#define NOMINMAX
#endif
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#undef Yield

#endif  // NETLOOP_FIBERBRIDGE_INTERNAL_LEAN_WINDOWS_H_
