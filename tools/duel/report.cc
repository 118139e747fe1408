#include "tools/duel/report.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace netloop::duel {

namespace {

// "1.06 (netloop callback)"; "–" when the counterpart has no figure; "" for
// a row without one.
std::string CounterpartCell(const Row& r) {
  if (r.counterpart.empty()) return "";
  if (r.counterpart_ratio <= 0) return "–";
  return absl::StrFormat("%.2f (%s)", r.counterpart_ratio, r.counterpart);
}

}  // namespace

std::string RenderMarkdown(const std::vector<Row>& rows, const std::string& preamble) {
  std::string out = preamble;
  out +=
      "| workload | server | msgs/s | server CPU µs/msg (min–max) | × floor | × counterpart "
      "| p50 µs | p99 µs | RSS/idle conn |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const Row& r : rows) {
    if (!r.note.empty() && r.repeats == 0) {
      absl::StrAppend(&out, "| ", r.workload, " | ", r.server, " | ", r.note,
                      " | | | | | | |\n");
      continue;
    }
    if (r.idle) {
      absl::StrAppendFormat(&out, "| %s | %s | | | %s | %s | | | %.0f B |\n", r.workload,
                            r.server, r.ratio > 0 ? absl::StrFormat("%.2f", r.ratio) : "",
                            CounterpartCell(r), r.rss_per_conn);
      continue;
    }
    absl::StrAppendFormat(
        &out, "| %s | %s | %.0f | %.3f (%.3f–%.3f) | %s | %s | %.0f | %.0f | |\n", r.workload,
        r.server, r.msgs_per_sec, r.cpu_us, r.cpu_us_min, r.cpu_us_max,
        r.ratio > 0 ? absl::StrFormat("%.2f", r.ratio) : "–", CounterpartCell(r), r.p50_us,
        r.p99_us);
  }
  return out;
}

namespace {

// One color per server: with the peers a run has up to a dozen.
const char* ColorFor(int i) {
  static const char* kColors[] = {"#6b7280", "#2563eb", "#16a34a", "#dc2626",
                                  "#9333ea", "#ea580c", "#0891b2", "#ca8a04",
                                  "#db2777", "#4d7c0f", "#1e3a8a", "#78350f"};
  return kColors[i % 12];
}

// Legend entries per line: six fit the chart's width.
constexpr int kLegendPerLine = 6;

// One panel of grouped bars: groups = workloads, bars = servers.
void Panel(std::string* svg, const std::vector<Row>& rows, double y0, const std::string& title,
           const std::string& unit, double (*value)(const Row&),
           const std::vector<std::string>& servers) {
  std::vector<std::string> workloads;
  for (const Row& r : rows) {
    if (value(r) <= 0) continue;
    if (std::find(workloads.begin(), workloads.end(), r.workload) == workloads.end()) {
      workloads.push_back(r.workload);
    }
  }
  double max_v = 0;
  for (const Row& r : rows) max_v = std::max(max_v, value(r));
  if (max_v <= 0 || workloads.empty()) return;
  const double left = 70, top = y0 + 30, height = 220, width = 860;
  const double group_w = width / workloads.size();
  const double bar_w = std::min(40.0, (group_w - 20) / std::max<size_t>(1, servers.size()));
  absl::StrAppendFormat(svg,
                        "<text x=\"%f\" y=\"%f\" font-size=\"15\" font-weight=\"bold\">%s</text>\n",
                        left, y0 + 18, title);
  absl::StrAppendFormat(svg,
                        "<line x1=\"%f\" y1=\"%f\" x2=\"%f\" y2=\"%f\" stroke=\"#333\"/>\n",
                        left, top + height, left + width, top + height);
  for (int t = 0; t <= 4; ++t) {
    double v = max_v * t / 4;
    double y = top + height - height * t / 4;
    absl::StrAppendFormat(svg,
                          "<text x=\"%f\" y=\"%f\" font-size=\"10\" text-anchor=\"end\">%.3g %s"
                          "</text><line x1=\"%f\" y1=\"%f\" x2=\"%f\" y2=\"%f\" stroke=\"#eee\"/>\n",
                          left - 4, y + 3, v, unit, left, y, left + width, y);
  }
  for (size_t g = 0; g < workloads.size(); ++g) {
    double gx = left + g * group_w + 10;
    for (size_t s = 0; s < servers.size(); ++s) {
      for (const Row& r : rows) {
        if (r.workload != workloads[g] || r.server != servers[s] || value(r) <= 0) continue;
        double h = height * value(r) / max_v;
        double x = gx + s * bar_w;
        absl::StrAppendFormat(svg,
                              "<rect x=\"%f\" y=\"%f\" width=\"%f\" height=\"%f\" fill=\"%s\">"
                              "<title>%s / %s: %.3f %s</title></rect>\n",
                              x, top + height - h, bar_w - 2, h, ColorFor(static_cast<int>(s)),
                              r.workload, r.server, value(r), unit);
      }
    }
    absl::StrAppendFormat(svg,
                          "<text x=\"%f\" y=\"%f\" font-size=\"11\" text-anchor=\"middle\">%s</text>\n",
                          gx + bar_w * servers.size() / 2, top + height + 15, workloads[g]);
  }
}

}  // namespace

std::string RenderSvg(const std::vector<Row>& rows, const std::string& title) {
  std::vector<std::string> servers;
  for (const Row& r : rows) {
    if (std::find(servers.begin(), servers.end(), r.server) == servers.end()) {
      servers.push_back(r.server);
    }
  }
  // Legend lines past the first push the panels down.
  const int legend_lines =
      std::max<int>(1, (static_cast<int>(servers.size()) + kLegendPerLine - 1) / kLegendPerLine);
  const int extra = (legend_lines - 1) * 18;
  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"960\" height=\"%d\" "
      "font-family=\"sans-serif\">\n<rect width=\"960\" height=\"%d\" fill=\"white\"/>\n",
      900 + extra, 900 + extra);
  absl::StrAppendFormat(&svg, "<text x=\"20\" y=\"26\" font-size=\"18\">%s</text>\n", title);
  for (size_t s = 0; s < servers.size(); ++s) {
    const int column = static_cast<int>(s) % kLegendPerLine;
    const int y = 40 + static_cast<int>(s) / kLegendPerLine * 18;
    absl::StrAppendFormat(&svg,
                          "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/>"
                          "<text x=\"%d\" y=\"%d\" font-size=\"12\">%s</text>\n",
                          20 + column * 150, y, ColorFor(static_cast<int>(s)),
                          36 + column * 150, y + 11, servers[s]);
  }
  Panel(&svg, rows, 60 + extra, "Server CPU per message (lower is better)", "µs",
        [](const Row& r) { return r.idle ? 0.0 : r.cpu_us; }, servers);
  Panel(&svg, rows, 340 + extra, "Latency p50 (lower is better)", "µs",
        [](const Row& r) { return r.idle ? 0.0 : r.p50_us; }, servers);
  Panel(&svg, rows, 620 + extra, "Latency p99 (lower is better)", "µs",
        [](const Row& r) { return r.idle ? 0.0 : r.p99_us; }, servers);
  svg += "</svg>\n";
  return svg;
}

}  // namespace netloop::duel
