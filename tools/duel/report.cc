#include "tools/duel/report.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace netloop::duel {

namespace {

// "0.97 (0.91–1.02)": a paired ratio with its range over the repeats, which
// a single repeat does not have.
std::string RatioWithRange(double ratio, double lo, double hi) {
  if (lo == hi) return absl::StrFormat("%.2f", ratio);
  return absl::StrFormat("%.2f (%.2f–%.2f)", ratio, lo, hi);
}

// "1.06 (0.98–1.10) against netloop callback"; "–" when the counterpart has
// no figure; "" for a row without one.
std::string CounterpartCell(const Row& r) {
  if (r.counterpart.empty()) return "";
  if (r.counterpart_ratio <= 0) return "–";
  return absl::StrCat(
      RatioWithRange(r.counterpart_ratio, r.counterpart_ratio_min, r.counterpart_ratio_max),
      " against ", r.counterpart);
}

std::string FloorCell(const Row& r, const char* none) {
  if (r.ratio <= 0) return none;
  return RatioWithRange(r.ratio, r.ratio_min, r.ratio_max);
}

}  // namespace

std::string RenderMarkdown(const std::vector<Row>& rows, const std::string& preamble) {
  std::string out = preamble;
  out +=
      "| workload | server | msgs/s | server CPU µs/msg (min–max) | × floor, paired (min–max) "
      "| × counterpart, paired (min–max) "
      "| p50 µs | p99 µs | RSS/idle conn |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const Row& r : rows) {
    if (!r.note.empty() && r.repeats == 0) {
      absl::StrAppend(&out, "| ", r.workload, " | ", r.server, " | ", r.note,
                      " | | | | | | |\n");
      continue;
    }
    if (r.idle) {
      absl::StrAppendFormat(&out, "| %s | %s | | | %s | %s | | | %.0f B |\n", r.workload,
                            r.server, FloorCell(r, ""), CounterpartCell(r), r.rss_per_conn);
      continue;
    }
    absl::StrAppendFormat(
        &out, "| %s | %s | %.0f | %.3f (%.3f–%.3f) | %s | %s | %.0f | %.0f | |\n", r.workload,
        r.server, r.msgs_per_sec, r.cpu_us, r.cpu_us_min, r.cpu_us_max,
        FloorCell(r, "–"), CounterpartCell(r), r.p50_us,
        r.p99_us);
  }
  return out;
}

namespace {

// Colours keyed by server name, so a server keeps its colour in every
// workload and from one run to the next, listed in the order the duel runs
// them. A family shares a hue (netloop blue, its io_uring rows teal, Go
// green, Asio orange): the darker shade is the callback model, the lighter
// one its other model.
struct ServerColor {
  const char* server;
  const char* color;
};
constexpr ServerColor kServerColors[] = {
    {"raw epoll (floor)", "#6b7280"},
    {"netloop callback", "#1d4ed8"},
    {"netloop fiber", "#60a5fa"},
    {"netloop callback io_uring", "#0f766e"},
    {"netloop fiber io_uring", "#2dd4bf"},
    {"nginx 1 worker", "#b91c1c"},
    {"Go net (goroutines)", "#15803d"},
    {"Go net/http", "#4ade80"},
    {"Asio callbacks", "#c2410c"},
    {"Asio coroutines", "#fb923c"},
    {"libuv", "#7e22ce"},
};
// For a server the table does not name yet (a new peer), in first-seen order.
constexpr const char* kSpareColors[] = {"#ca8a04", "#db2777", "#4d7c0f",
                                        "#1e3a8a", "#78350f", "#0891b2"};

// The servers of one run in a stable order, each with its colour.
class Palette {
 public:
  explicit Palette(const std::vector<Row>& rows) {
    for (const ServerColor& s : kServerColors) {
      for (const Row& r : rows) {
        if (r.server == s.server) {
          Add(s.server, s.color);
          break;
        }
      }
    }
    int spare = 0;
    for (const Row& r : rows) {
      if (by_name_.count(r.server)) continue;
      Add(r.server, kSpareColors[spare++ % std::size(kSpareColors)]);
    }
  }

  const std::vector<std::string>& servers() const { return servers_; }
  int Rank(const std::string& server) const { return by_name_.at(server).first; }
  const std::string& Color(const std::string& server) const { return by_name_.at(server).second; }

 private:
  void Add(const std::string& server, const std::string& color) {
    by_name_[server] = {static_cast<int>(servers_.size()), color};
    servers_.push_back(server);
  }

  std::vector<std::string> servers_;
  std::map<std::string, std::pair<int, std::string>> by_name_;
};

std::string Xml(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// About the width of `s` in a sans-serif font of `size` px. SVG has no way
// to measure text before it is drawn; this is enough to wrap the legend.
double TextWidth(const std::string& s, double size) {
  int chars = 0;
  for (unsigned char c : s) chars += (c & 0xc0) != 0x80;  // UTF-8 code points
  return chars * size * 0.62;
}

// Three significant figures without %g's exponents (6.9e+03).
std::string Sig3(double v) {
  if (v < 0.9995) return absl::StrFormat("%.3f", v);
  if (v < 9.995) return absl::StrFormat("%.2f", v);
  if (v < 99.95) return absl::StrFormat("%.1f", v);
  return absl::StrFormat("%.0f", v);
}

std::string Micros(double us) {
  if (us >= 999.5e3) return Sig3(us / 1e6) + " s";
  if (us >= 999.5) return Sig3(us / 1e3) + " ms";
  return Sig3(us) + " µs";
}

std::string Bytes(double b) {
  if (b >= 1024 * 1024) return Sig3(b / (1024 * 1024)) + " MiB";
  if (b >= 1024) return Sig3(b / 1024) + " KiB";
  return absl::StrFormat("%.0f B", b);
}

std::string Count(double v) {
  if (v >= 999.5e3) return Sig3(v / 1e6) + "M";
  if (v >= 999.5) return Sig3(v / 1e3) + "k";
  return absl::StrFormat("%.0f", v);
}

std::string Times(double ratio) {
  if (ratio < 9.995) return absl::StrFormat("%.2f×", ratio);
  return absl::StrFormat("%.1f×", ratio);
}

// 1, 2 or 5 times a power of ten, at least `raw`.
double NiceStep(double raw) {
  const double p = std::pow(10, std::floor(std::log10(raw)));
  const double f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

// The panels draw one horizontal bar per (workload, server): a bar per line
// keeps every value and server name legible at a dozen servers, where
// upright bars would be slivers.
constexpr double kWidth = 1000;
constexpr double kNameRight = 200;  // server names end here
constexpr double kPlotLeft = 208;
constexpr double kPlotWidth = 470;  // from 0 to the axis's top
constexpr double kOverflow = 14;    // how far a cut bar runs past the top
constexpr double kLine = 16;        // one bar's line
constexpr double kBar = 12;
constexpr double kHeading = 24;  // a workload's name above its bars

// Past this the ratio axis stops: one slow peer (Go 4.4× pipelined, nginx
// 11×) would otherwise squash netloop's 0.9–1.3× into a few pixels.
constexpr double kRatioCap = 3;

// The idle rows or the others, grouped by workload (in the run's order),
// each group in the palette's order.
std::vector<std::vector<const Row*>> Groups(const std::vector<Row>& rows, bool idle,
                                            const Palette& palette) {
  std::vector<std::vector<const Row*>> groups;
  for (const Row& r : rows) {
    if (r.idle != idle) continue;
    auto g = std::find_if(groups.begin(), groups.end(), [&](const std::vector<const Row*>& g) {
      return g.front()->workload == r.workload;
    });
    if (g == groups.end()) {
      groups.push_back({&r});
    } else {
      g->push_back(&r);
    }
  }
  for (auto& g : groups) {
    std::stable_sort(g.begin(), g.end(), [&](const Row* a, const Row* b) {
      return palette.Rank(a->server) < palette.Rank(b->server);
    });
  }
  return groups;
}

double BodyHeight(const std::vector<std::vector<const Row*>>& groups) {
  double h = 0;
  for (const auto& g : groups) h += kHeading + g.size() * kLine;
  return h;
}

void PanelTitle(std::string* svg, double y, const std::string& title, const std::string& sub) {
  absl::StrAppendFormat(
      svg, "<text x=\"20\" y=\"%.1f\" font-size=\"15\" font-weight=\"bold\">%s</text>\n", y + 16,
      Xml(title));
  absl::StrAppendFormat(svg, "<text x=\"20\" y=\"%.1f\" font-size=\"11\" fill=\"#555\">%s</text>\n",
                        y + 32, Xml(sub));
}

// A vertical grid line from `top` down `height` with its label above.
void Tick(std::string* svg, double x, double top, double height, const std::string& label) {
  absl::StrAppendFormat(svg,
                        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e7eb\"/>"
                        "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"#555\" "
                        "text-anchor=\"middle\">%s</text>\n",
                        x, top, x, top + height, x, top - 4, Xml(label));
}

// A workload's name; the server's name at the start of its bar's line
// (greyed when it has no figure); `why` in place of a missing bar.
void Heading(std::string* svg, double y, const std::string& workload) {
  absl::StrAppendFormat(
      svg, "<text x=\"20\" y=\"%.1f\" font-size=\"12\" font-weight=\"bold\">%s</text>\n",
      y + kHeading - 7, Xml(workload));
}
void ServerName(std::string* svg, double y, const std::string& server, bool ran) {
  absl::StrAppendFormat(svg,
                        "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\"%s>%s"
                        "</text>\n",
                        kNameRight, y + kBar - 2, ran ? "" : " fill=\"#999\"", Xml(server));
}
void Missing(std::string* svg, double y, const std::string& why, bool failure) {
  absl::StrAppendFormat(svg,
                        "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" font-style=\"italic\" "
                        "fill=\"%s\">%s</text>\n",
                        kPlotLeft + 4, y + kBar - 2, failure ? "#b91c1c" : "#777", Xml(why));
}

// A bar of `length` px from the axis; `cut` when its value is past the axis's
// top, drawn with a break near its end. `label` follows it.
void BarLine(std::string* svg, double y, const std::string& color, double length, bool cut,
             const std::string& label, const std::string& tooltip) {
  absl::StrAppendFormat(svg,
                        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\">"
                        "<title>%s</title></rect>\n",
                        kPlotLeft, y, length, kBar, color, Xml(tooltip));
  if (cut) {
    // Two white slashes: the bar is longer than drawn.
    for (double dx : {0.0, 4.0}) {
      const double x = kPlotLeft + kPlotWidth + 2 + dx;
      absl::StrAppendFormat(
          svg,
          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"white\" "
          "stroke-width=\"1.5\"/>\n",
          x - 2, y + kBar + 1, x + 2, y - 1);
    }
  }
  // A white halo: the floor's line runs under labels of bars that end near it.
  absl::StrAppendFormat(svg,
                        "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" stroke=\"white\" "
                        "stroke-width=\"3\" paint-order=\"stroke\"%s>%s</text>\n",
                        kPlotLeft + length + 4, y + kBar - 2, cut ? " font-weight=\"bold\"" : "",
                        Xml(label));
}

// Columns of absolute figures right of the ratio bars: right edges and titles.
struct Column {
  double right;
  const char* title;
};
constexpr Column kColumns[] = {{810, "msgs/s"}, {895, "CPU/msg"}, {980, "p99 latency"}};

// Server CPU per message over the floor's, one group per workload. Ratios,
// not µs: ping-pong costs ~7 µs a message and pipelined ~0.5, so absolute
// bars would hide the pipelined ones; the µs are printed alongside instead.
// Returns where the next panel starts.
double RatioPanel(std::string* svg, const std::vector<Row>& rows, const Palette& palette,
                  double y) {
  const auto groups = Groups(rows, /*idle=*/false, palette);
  if (groups.empty()) return y;
  double max_ratio = 0;
  for (const auto& g : groups) {
    for (const Row* r : g) max_ratio = std::max(max_ratio, r->ratio);
  }
  const double top =
      max_ratio > kRatioCap ? kRatioCap : std::max(1.5, std::ceil(max_ratio * 2) / 2);
  PanelTitle(svg, y, "Server CPU per message ÷ the raw epoll floor's (lower is better)",
             max_ratio > kRatioCap
                 ? absl::StrFormat("1× = the floor, in the same run; bars past %.0f× are cut "
                                   "short, their value in bold",
                                   kRatioCap)
                 : std::string("1× = the floor, in the same run"));
  const double body = y + 62;
  const double height = BodyHeight(groups);
  auto px = [&](double ratio) { return kPlotWidth * std::min(ratio, top) / top; };
  for (double t = 0; t <= top + 1e-9; t += 0.5) {
    Tick(svg, kPlotLeft + px(t), body, height, absl::StrFormat("%g×", t));
  }
  for (const Column& c : kColumns) {
    absl::StrAppendFormat(svg,
                          "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"#555\" "
                          "text-anchor=\"end\">%s</text>\n",
                          c.right, body - 4, c.title);
  }
  // The floor's line, under the bars: a bar ending near it still shows
  // which side it ends on.
  absl::StrAppendFormat(svg,
                        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#111\" "
                        "stroke-dasharray=\"4 3\"/>\n",
                        kPlotLeft + px(1), body - 2, kPlotLeft + px(1), body + height);
  double line = body;
  for (const auto& g : groups) {
    Heading(svg, line, g.front()->workload);
    line += kHeading;
    for (const Row* r : g) {
      const bool ran = r->repeats > 0;
      ServerName(svg, line, r->server, ran);
      if (!ran) {
        Missing(svg, line, r->note.empty() ? "no result" : r->note,
                r->note.rfind("skipped", 0) != 0);
      } else if (r->ratio <= 0) {
        Missing(svg, line, "no floor figure in this run", false);
      } else {
        const bool cut = r->ratio > top;
        BarLine(svg, line, palette.Color(r->server), px(r->ratio) + (cut ? kOverflow : 0), cut,
                Times(r->ratio),
                absl::StrCat(r->workload, " / ", r->server, ": ", Times(r->ratio), " the floor, ",
                             Micros(r->cpu_us), " CPU per message (", Micros(r->cpu_us_min), "–",
                             Micros(r->cpu_us_max), ")"));
      }
      if (ran) {
        const std::string cells[] = {Count(r->msgs_per_sec), Micros(r->cpu_us), Micros(r->p99_us)};
        for (size_t i = 0; i < std::size(kColumns); ++i) {
          absl::StrAppendFormat(svg,
                                "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#444\" "
                                "text-anchor=\"end\">%s</text>\n",
                                kColumns[i].right, line + kBar - 2, cells[i]);
        }
      }
      line += kLine;
    }
  }
  return body + height + 16;
}

// Server RSS per idle connection; these rows have no CPU figure.
double IdlePanel(std::string* svg, const std::vector<Row>& rows, const Palette& palette, double y) {
  const auto groups = Groups(rows, /*idle=*/true, palette);
  if (groups.empty()) return y;
  double max_rss = 0;
  for (const auto& g : groups) {
    for (const Row* r : g) max_rss = std::max(max_rss, r->rss_per_conn);
  }
  // Ticks at round KiB once the figures are that large, not at 1.95 KiB.
  const double unit = max_rss >= 1024 ? 1024 : 1;
  const double step = unit * NiceStep(std::max(max_rss, 5.0) / unit / 5);
  const double top = step * std::max(1.0, std::ceil(max_rss / step));
  PanelTitle(svg, y, "Server memory per idle connection (lower is better)",
             "Server RSS growth with the idle connections open, over their number");
  const double body = y + 62;
  const double height = BodyHeight(groups);
  for (double t = 0; t <= top + step / 2; t += step) {
    Tick(svg, kPlotLeft + kPlotWidth * t / top, body, height,
         unit > 1 ? absl::StrFormat("%g KiB", t / unit) : absl::StrFormat("%g B", t));
  }
  double line = body;
  for (const auto& g : groups) {
    Heading(svg, line, g.front()->workload);
    line += kHeading;
    for (const Row* r : g) {
      const bool ran = r->repeats > 0;
      ServerName(svg, line, r->server, ran);
      if (!ran) {
        Missing(svg, line, r->note.empty() ? "no result" : r->note,
                r->note.rfind("skipped", 0) != 0);
      } else {
        BarLine(svg, line, palette.Color(r->server),
                kPlotWidth * std::max(0.0, r->rss_per_conn) / top, false, Bytes(r->rss_per_conn),
                absl::StrCat(r->workload, " / ", r->server, ": ", Bytes(r->rss_per_conn),
                             " per idle connection"));
      }
      line += kLine;
    }
  }
  return body + height + 16;
}

}  // namespace

std::string RenderSvg(const std::vector<Row>& rows, const std::string& title) {
  const Palette palette(rows);
  std::string body;
  absl::StrAppendFormat(&body, "<text x=\"20\" y=\"28\" font-size=\"18\">%s</text>\n", Xml(title));
  // The legend names every server that ran, wrapping at the chart's width.
  double x = 20, y = 44;
  for (const std::string& server : palette.servers()) {
    const bool ran = std::any_of(rows.begin(), rows.end(),
                                 [&](const Row& r) { return r.server == server && r.repeats > 0; });
    if (!ran) continue;
    const double w = 16 + TextWidth(server, 12) + 18;
    if (x > 20 && x + w > kWidth - 20) {
      x = 20;
      y += 18;
    }
    absl::StrAppendFormat(&body,
                          "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"12\" fill=\"%s\"/>"
                          "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">%s</text>\n",
                          x, y, palette.Color(server), x + 16, y + 11, Xml(server));
    x += w;
  }
  y = RatioPanel(&body, rows, palette, y + 28);
  y = IdlePanel(&body, rows, palette, y);
  const int height = static_cast<int>(std::ceil(y + 4));
  return absl::StrCat(
      absl::StrFormat("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%d\" "
                      "font-family=\"sans-serif\">\n<rect width=\"%.0f\" height=\"%d\" "
                      "fill=\"white\"/>\n",
                      kWidth, height, kWidth, height),
      body, "</svg>\n");
}

}  // namespace netloop::duel
