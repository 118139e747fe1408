// The text of an errno value, the socket ones included on Windows, whose C
// runtime does not know them (the engine maps Winsock errors to them, see
// platform.h). Engine internal. Any thread.
#ifndef NETLOOP_REACTOR_INTERNAL_ERRNO_TEXT_H_
#define NETLOOP_REACTOR_INTERNAL_ERRNO_TEXT_H_

#include <string>

namespace netloop::internal {

// "Connection reset by peer (errno 104)".
std::string ErrnoText(int err);

}  // namespace netloop::internal

#endif  // NETLOOP_REACTOR_INTERNAL_ERRNO_TEXT_H_
