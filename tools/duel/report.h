// The duel's output: one markdown table and a self-contained SVG chart, built
// from the medians of each (workload, server) cell.
#ifndef NETLOOP_TOOLS_DUEL_REPORT_H_
#define NETLOOP_TOOLS_DUEL_REPORT_H_

#include <string>
#include <vector>

namespace netloop::duel {

struct Row {
  std::string workload;
  std::string server;
  bool idle = false;       // an idle-connections row (RSS only)
  std::string note;        // "skipped: ..." etc.
  int repeats = 0;
  double msgs_per_sec = 0;
  double cpu_us = 0;       // server CPU µs per message, median
  double cpu_us_min = 0;
  double cpu_us_max = 0;
  double p50_us = 0;
  double p99_us = 0;
  double rss_per_conn = 0;  // idle rows
  // Server CPU per message over the floor's (none for idle rows), taken in
  // each repeat against the floor's run of that same repeat, then the median:
  // pairing runs that were minutes apart cancels the VM's slow drift. The
  // range is over the repeats. 0 = none.
  double ratio = 0;
  double ratio_min = 0;
  double ratio_max = 0;
  // The other model's server this row is weighed against (fibers against
  // callbacks, ...), and cpu_us (rss, idle rows) over its, paired by repeat
  // like `ratio`; 0 = none.
  std::string counterpart;
  double counterpart_ratio = 0;
  double counterpart_ratio_min = 0;
  double counterpart_ratio_max = 0;
};

std::string RenderMarkdown(const std::vector<Row>& rows, const std::string& preamble);
// Server CPU per message over the floor's, one group of bars per workload
// with the absolute figures beside them, then RSS per idle connection; every
// server keeps its colour across workloads.
std::string RenderSvg(const std::vector<Row>& rows, const std::string& title);

}  // namespace netloop::duel

#endif  // NETLOOP_TOOLS_DUEL_REPORT_H_
