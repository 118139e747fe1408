#include "examples/http/http_date.h"

#include <time.h>

#include <cstdio>

namespace netloop::http {

void HttpDate::Refresh(int64_t unix_seconds) {
  if (unix_seconds == seconds_) return;
  seconds_ = unix_seconds;
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  time_t t = static_cast<time_t>(unix_seconds);
  struct tm tm;
  gmtime_r(&t, &tm);
  std::snprintf(buf_, sizeof(buf_), "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday],
                tm.tm_mday, kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
}

}  // namespace netloop::http
