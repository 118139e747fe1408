// The Date header value (IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT"),
// formatted at most once per second. One instance per loop thread, refreshed
// from a one-second loop timer: responses then copy 29 bytes, never format.
#ifndef NETLOOP_EXAMPLES_HTTP_HTTP_DATE_H_
#define NETLOOP_EXAMPLES_HTTP_HTTP_DATE_H_

#include <cstdint>
#include <string_view>

namespace netloop::http {

class HttpDate {
 public:
  HttpDate() { Refresh(0); }
  // Re-formats only when the second changed.
  void Refresh(int64_t unix_seconds);
  // 29 bytes; valid until the next Refresh.
  std::string_view Value() const { return std::string_view(buf_, 29); }

 private:
  int64_t seconds_ = -1;
  char buf_[32];
};

}  // namespace netloop::http

#endif  // NETLOOP_EXAMPLES_HTTP_HTTP_DATE_H_
