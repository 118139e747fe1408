#include "examples/http/http_date.h"

#include <time.h>

#include <algorithm>

namespace netloop::http {
namespace {

void Put2(char* p, int v) {
  p[0] = static_cast<char>('0' + v / 10);
  p[1] = static_cast<char>('0' + v % 10);
}

}  // namespace

HttpDate::HttpDate() { RefreshNow(); }

void HttpDate::RefreshNow() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  Refresh(ts.tv_sec);
}

void HttpDate::Refresh(int64_t unix_seconds) {
  // 9999-12-31T23:59:59Z: the last second a four-digit year can show.
  constexpr int64_t kLast = 253402300799;
  unix_seconds = std::clamp<int64_t>(unix_seconds, 0, kLast);
  if (unix_seconds == seconds_) return;
  seconds_ = unix_seconds;

  const int64_t days = unix_seconds / 86400;
  const int secs = static_cast<int>(unix_seconds % 86400);
  const int weekday = static_cast<int>((days + 4) % 7);  // 1970-01-01 was a Thursday
  // Civil date from a day count, counting years from March so the leap day
  // falls at the end of the (shifted) year; eras are 400-year cycles.
  const int64_t z = days + 719468;  // days since 0000-03-01
  const int64_t era = z / 146097;
  const int64_t doe = z - era * 146097;                                  // [0, 146096]
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;  // [0, 399]
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);           // [0, 365]
  const int64_t mp = (5 * doy + 2) / 153;                                // [0, 11], 0 = March
  const int day = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  const int month = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);  // 1..12
  const int year = static_cast<int>(yoe + era * 400 + (month <= 2 ? 1 : 0));

  static constexpr char kDays[] = "SunMonTueWedThuFriSat";
  static constexpr char kMonths[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  char* p = buf_;
  std::copy_n(kDays + 3 * weekday, 3, p);
  p[3] = ',';
  p[4] = ' ';
  Put2(p + 5, day);
  p[7] = ' ';
  std::copy_n(kMonths + 3 * (month - 1), 3, p + 8);
  p[11] = ' ';
  Put2(p + 12, year / 100);
  Put2(p + 14, year % 100);
  p[16] = ' ';
  Put2(p + 17, secs / 3600);
  p[19] = ':';
  Put2(p + 20, secs / 60 % 60);
  p[22] = ':';
  Put2(p + 23, secs % 60);
  std::copy_n(" GMT", 4, p + 25);
}

}  // namespace netloop::http
