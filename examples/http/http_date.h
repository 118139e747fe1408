// The Date header value in IMF-fixdate form ("Sun, 06 Nov 1994 08:49:37 GMT",
// RFC 9110 5.6.7), formatted at most once per second. Keep one instance per
// loop thread and refresh it from a one-second loop timer: responses then copy
// 29 bytes instead of formatting a time each.
#ifndef NETLOOP_EXAMPLES_HTTP_HTTP_DATE_H_
#define NETLOOP_EXAMPLES_HTTP_HTTP_DATE_H_

#include <cstdint>
#include <string_view>

namespace netloop::http {

class HttpDate {
 public:
  static constexpr size_t kSize = 29;  // every IMF-fixdate is this long

  // Formats the current wall-clock second.
  HttpDate();

  // Re-formats the value if `unix_seconds` (seconds since 1970-01-01 UTC)
  // differs from the second last formatted; otherwise does nothing. Times
  // outside years 1970..9999 are clamped to those bounds. Not thread-safe:
  // call from the thread that owns this instance.
  void Refresh(int64_t unix_seconds);

  // Refresh() with the current wall-clock second.
  void RefreshNow();

  // The formatted date, kSize bytes, no CRLF. The view stays valid for the
  // life of this object but its contents change on the next Refresh that
  // changes the second: read it on the owning thread.
  std::string_view Value() const { return std::string_view(buf_, kSize); }

 private:
  int64_t seconds_ = -1;
  char buf_[kSize];
};

}  // namespace netloop::http

#endif  // NETLOOP_EXAMPLES_HTTP_HTTP_DATE_H_
