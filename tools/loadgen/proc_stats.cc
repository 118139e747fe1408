#include "tools/loadgen/proc_stats.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"

namespace netloop::loadgen {

absl::StatusOr<ProcSample> SampleProcess(pid_t pid) {
  ProcSample s;
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!stat || !std::getline(stat, line)) {
    return absl::NotFoundError(absl::StrCat("no process ", pid));
  }
  // The command name may contain spaces: fields start after the last ')'.
  size_t close = line.rfind(')');
  if (close == std::string::npos) return absl::InternalError("unparsable /proc stat");
  std::istringstream fields(line.substr(close + 2));
  std::string field;
  long long utime = 0, stime = 0;
  for (int i = 3; fields >> field; ++i) {  // field 3 is the state
    if (i == 14) utime = std::stoll(field);
    if (i == 15) {
      stime = std::stoll(field);
      break;
    }
  }
  long hz = sysconf(_SC_CLK_TCK);
  s.cpu_ns = (utime + stime) * (1'000'000'000LL / hz);
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      s.rss_bytes = std::stoll(line.substr(6)) * 1024;
      break;
    }
  }
  return s;
}

}  // namespace netloop::loadgen
