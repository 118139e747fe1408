// duel: the head-to-head runner. Starts each server itself (pinned to CPU 1,
// load on CPU 0), runs the same workloads against each, alternating servers
// within every repeat, and prints one markdown table; writes it and an SVG
// chart next to the workspace. Besides netloop's servers, the floor and
// nginx, it runs the peers in peers/ (Go, Asio, libuv) where they are there:
// see peers/README.md.
//
//   bazel run -c opt //tools:duel -- --quick
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "reactor/internal/backend.h"
#include "tools/duel/paired_ratio.h"
#include "tools/duel/report.h"
#include "tools/duel/server_process.h"
#include "tools/loadgen/load_client.h"

namespace netloop::duel {
namespace {

struct ServerSpec {
  std::string name;
  std::vector<std::string> argv;  // argv[0] relative to the runfiles root
  bool floor = false;
  bool nginx = false;
  // The server of the other model this one is weighed against ("×
  // counterpart"); empty for none.
  std::string counterpart;
  bool tls = false;  // nginx: listen with ssl (netloop servers take flags)
  bool files = false;  // nginx: serve <tmp>/www with sendfile on
};

struct WorkloadSpec {
  std::string name;
  loadgen::Workload kind;
  int connections;
  int pipeline;
  bool http;
  bool tls = false;  // HTTPS: the servers of https_servers, the load verifying them
  bool file = false;  // GET /1MiB.bin from file_servers, the length verified
  bool udp = false;   // datagrams to udp_servers
};

std::string FindBinary(const std::string& rel, const char* argv0) {
  std::vector<std::string> roots;
  if (const char* r = std::getenv("RUNFILES_DIR")) roots.push_back(absl::StrCat(r, "/netloop/"));
  roots.push_back(absl::StrCat(argv0, ".runfiles/netloop/"));
  roots.push_back("");
  roots.push_back("bazel-bin/");
  for (const std::string& root : roots) {
    std::string p = root + rel;
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

std::string Which(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string all = path ? path : "/usr/bin:/usr/sbin";
  all += ":/usr/sbin:/sbin";
  size_t start = 0;
  while (start <= all.size()) {
    size_t end = all.find(':', start);
    if (end == std::string::npos) end = all.size();
    std::string p = all.substr(start, end - start) + "/" + name;
    if (access(p.c_str(), X_OK) == 0) return p;
    start = end + 1;
  }
  return "";
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

absl::StatusOr<ServerProcess> StartServer(const ServerSpec& s, int cpu, const std::string& tmp) {
  if (!s.nginx) return ServerProcess::Start(s.argv, cpu);
  int port = FreePort();
  std::string conf = tmp + "/nginx.conf";
  // As root, nginx hands its temp directories to its worker user
  // ("nobody"), which a user namespace (a test sandbox) may not map: keep
  // them root's.
  std::ofstream(conf) << (geteuid() == 0 ? "user root;\n" : "")
                      << "worker_processes 1;\ndaemon off;\nmaster_process off;\n"
                      << "error_log " << tmp << "/error.log;\npid " << tmp << "/nginx.pid;\n"
                      << "events { worker_connections 20000; }\n"
                      << "http {\n  access_log off;\n  keepalive_requests 1000000000;\n"
                      << "  keepalive_timeout 300s;\n  client_body_temp_path " << tmp
                      << ";\n  proxy_temp_path " << tmp << ";\n  fastcgi_temp_path " << tmp
                      << ";\n  uwsgi_temp_path " << tmp << ";\n  scgi_temp_path " << tmp
                      << ";\n  server {\n    listen 127.0.0.1:" << port
                      << (s.tls ? " ssl;\n    ssl_certificate " + tmp + "/tls.crt;\n    "
                                  "ssl_certificate_key " + tmp + "/tls.key;\n    "
                                  "ssl_session_tickets on"
                                : std::string())
                      << (s.files ? ";\n    sendfile on;\n    location / { root " + tmp + "/www; }"
                                  "\n  }\n}\n"
                                : std::string(";\n    location / { default_type text/plain; "
                                              "return 200 \"Hello, World!\"; }\n  }\n}\n"));
  return ServerProcess::StartOnPort({s.argv[0], "-p", tmp, "-c", conf}, cpu, port);
}

// Builds peers that are no Bazel targets (Go: Bazel 4 has no Go rules
// offline; libuv: an optional package) into `dir` with their build.sh.
// Returns why there are no such rows, or "" once built.
std::string BuildPeers(const std::string& what, const std::string& script,
                       const std::string& dir) {
  if (script.empty()) return absl::StrCat("peers/", what, "/build.sh is not in the runfiles");
  std::fprintf(stderr, "duel: building the %s peers ...\n", what.c_str());
  // Its output goes to stderr: stdout carries the table.
  const std::string cmd = absl::StrCat("bash '", script, "' '", dir, "' 1>&2");
  if (std::system(cmd.c_str()) != 0) {
    return absl::StrCat("peers/", what, "/build.sh failed (tools/setup installs ",
                        what == "go" ? "golang-go" : "libuv1-dev", ")");
  }
  return "";
}

// A self-signed certificate for localhost and 127.0.0.1 (its own trust
// anchor for the load's verification), shared by every HTTPS server so they
// all do the same handshake and cipher work. False when openssl failed.
bool MakeCertificate(const std::string& tmp) {
  const std::string cmd = absl::StrCat(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
      "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout '",
      tmp, "/tls.key' -out '", tmp, "/tls.crt' 1>&2 2>/dev/null");
  return std::system(cmd.c_str()) == 0;
}

// <tmp>/www/1MiB.bin, the file of the static-file cells.
bool MakeStaticFile(const std::string& tmp) {
  const std::string dir = tmp + "/www";
  mkdir(dir.c_str(), 0755);
  std::ofstream f(dir + "/1MiB.bin", std::ios::binary);
  std::string block(4096, '\0');
  uint32_t x = 0x2545f491u;
  for (int i = 0; i < 256; ++i) {
    for (char& c : block) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      c = static_cast<char>(x);
    }
    f.write(block.data(), static_cast<std::streamsize>(block.size()));
  }
  return static_cast<bool>(f);
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// Each repeat's server CPU per message (rss: RSS per idle connection).
std::map<int, double> ByRepeat(const std::map<int, loadgen::LoadResult>& runs, bool rss) {
  std::map<int, double> out;
  for (const auto& [rep, r] : runs) {
    out[rep] = rss ? r.server_rss_per_connection : r.server_cpu_us_per_message;
  }
  return out;
}

}  // namespace
}  // namespace netloop::duel

int main(int argc, char** argv) {
  using namespace netloop::duel;
  using netloop::loadgen::LoadResult;
  using netloop::loadgen::LoadSpec;
  using netloop::loadgen::Workload;
  CLI::App app{"netloop head-to-head: callback vs fiber vs the raw epoll floor"};
  bool quick = false;
  int repeats = 0;
  double cell_seconds = 0, warmup_seconds = -1;
  int idle_conns = 0;
  std::string out_md, out_svg, only;
  bool no_pin = false;
  app.add_flag("--quick", quick, "about a minute: 1 repeat, 2 s cells, 2000 idle connections");
  app.add_option("--repeats", repeats, "repeats per cell (default 3, quick 1)");
  app.add_option("--cell-seconds", cell_seconds, "measured seconds per cell (default 5, quick 2)");
  app.add_option("--warmup-seconds", warmup_seconds, "warm-up per cell (default 1, quick 0.5)");
  app.add_option("--idle-conns", idle_conns, "idle connections (default 10000, quick 2000)");
  app.add_option("--out", out_md, "markdown output (default: <workspace>/duel.md)");
  app.add_option("--svg", out_svg, "SVG chart output (default: <workspace>/duel.svg)");
  app.add_option("--only", only, "run only workloads whose name contains this");
  std::vector<std::string> only_servers;
  app.add_option("--servers", only_servers,
                 "run only servers whose name contains one of these (comma-separated); each "
                 "workload's reference (the raw floor, or nginx for https and static files), "
                 "which the ratios are taken over, always runs")
      ->delimiter(',');
  app.add_flag("--no-pin", no_pin, "do not pin server and load to CPUs");
  CLI11_PARSE(app, argc, argv);
  if (repeats <= 0) repeats = quick ? 1 : 3;
  if (cell_seconds <= 0) cell_seconds = quick ? 2 : 5;
  if (warmup_seconds < 0) warmup_seconds = quick ? 0.5 : 1;
  rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  // Each side of a connection holds a descriptor here; leave headroom.
  long fd_cap = static_cast<long>(rl.rlim_cur) - 500;
  if (idle_conns <= 0) idle_conns = quick ? 2000 : 10000;
  std::string idle_note;
  if (idle_conns > fd_cap) {
    idle_note = absl::StrCat(" (", idle_conns, " asked, ulimit -n allows ", fd_cap, ")");
    idle_conns = static_cast<int>(fd_cap);
  }
  const char* ws = std::getenv("BUILD_WORKSPACE_DIRECTORY");
  std::string base = ws ? std::string(ws) + "/" : "";
  if (out_md.empty()) out_md = base + "duel.md";
  if (out_svg.empty()) out_svg = base + "duel.svg";

  char tmpl[] = "/tmp/netloop-duel-XXXXXX";
  std::string tmp = mkdtemp(tmpl) ? tmpl : "/tmp";
  auto bin = [&](const std::string& rel) { return FindBinary(rel, argv[0]); };
  // Before pinning, so the Go compiler has every CPU.
  const std::string go_dir = tmp + "/go";
  // A server runs when --servers names it (or is not given); the floor and
  // nginx run anyway, being what the ratios are taken over.
  std::erase(only_servers, "");  // "a," would otherwise name every server
  auto asked = [&](const std::string& name) {
    return only_servers.empty() ||
           std::any_of(only_servers.begin(), only_servers.end(),
                       [&](const std::string& o) { return name.find(o) != std::string::npos; });
  };
  const std::string no_go = asked("Go net (goroutines)") || asked("Go net/http")
                                ? BuildPeers("go", bin("peers/go/build.sh"), go_dir)
                                : "not asked for";
  const std::string uv_dir = tmp + "/libuv";
  const std::string no_uv =
      asked("libuv") ? BuildPeers("libuv", bin("peers/libuv/build.sh"), uv_dir) : "not asked for";

  const long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  const bool pin = !no_pin && ncpu >= 2;
  const int server_cpu = pin ? 1 : -1;
  if (pin) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    sched_setaffinity(0, sizeof(set), &set);
  }

  const std::vector<std::string> net_args = {"--address", "tcp://127.0.0.1:0", "--loops", "1"};
  auto with = [](std::string b, std::vector<std::string> a) {
    a.insert(a.begin(), std::move(b));
    return a;
  };
  std::vector<ServerSpec> echo_servers = {
      {"raw epoll (floor)", with(bin("bench/raw_epoll_server"), {"--mode=echo", "--port=0"}),
       true},
      {"netloop callback", with(bin("examples/echo/echo"), net_args)},
      {"netloop fiber", with(bin("examples/echo_fiber/echo_fiber"), net_args), false, false,
       "netloop callback"},
  };
  std::vector<ServerSpec> http_servers = {
      {"raw epoll (floor)", with(bin("bench/raw_epoll_server"), {"--mode=http", "--port=0"}),
       true},
      {"netloop callback", with(bin("examples/http/http_server"), net_args)},
      {"netloop fiber", with(bin("examples/http/http_fiber_server"), net_args), false, false,
       "netloop callback"},
  };
  // io_uring rows where this machine has it (a container's seccomp filter,
  // kernel.io_uring_disabled or an old kernel blocks it): the run says so.
  if (absl::Status s = netloop::internal::IoUringAvailable(); s.ok()) {
    std::vector<std::string> uring_args = net_args;
    uring_args.insert(uring_args.end(), {"--backend", "io_uring"});
    echo_servers.push_back(
        {"netloop callback io_uring", with(bin("examples/echo/echo"), uring_args)});
    echo_servers.push_back({"netloop fiber io_uring",
                            with(bin("examples/echo_fiber/echo_fiber"), uring_args), false,
                            false, "netloop callback io_uring"});
    http_servers.push_back(
        {"netloop callback io_uring", with(bin("examples/http/http_server"), uring_args)});
    http_servers.push_back({"netloop fiber io_uring",
                            with(bin("examples/http/http_fiber_server"), uring_args), false,
                            false, "netloop callback io_uring"});
  } else {
    std::fprintf(stderr, "duel: no io_uring rows: %s\n", std::string(s.message()).c_str());
  }
  std::string nginx = Which("nginx");
  if (!nginx.empty()) http_servers.push_back({"nginx 1 worker", {nginx}, false, true});
  // HTTPS: netloop's HTTP servers with the same certificate as nginx, which
  // is the reference here (there is no raw floor for TLS): "× floor" in
  // these rows is over nginx's.
  const bool have_tls = MakeCertificate(tmp);
  std::vector<ServerSpec> https_servers;
  if (have_tls) {
    auto tls_args = [&](std::vector<std::string> a) {
      a.insert(a.end(), {"--tls-cert", tmp + "/tls.crt", "--tls-key", tmp + "/tls.key"});
      return a;
    };
    for (const ServerSpec& h : http_servers) {
      if (h.floor || h.nginx || h.argv[0].find("examples/http/") == std::string::npos) continue;
      ServerSpec t = h;
      t.argv = tls_args(h.argv);
      https_servers.push_back(std::move(t));
    }
    if (!nginx.empty()) {
      https_servers.insert(https_servers.begin(),
                           {"nginx 1 worker", {nginx}, /*floor=*/true, true, "", /*tls=*/true});
    }
  } else {
    std::fprintf(stderr, "duel: no https rows: openssl could not make a certificate\n");
  }
  // UDP echo: netloop's UDP example in both models beside a raw floor
  // (recvmmsg/sendmmsg on one socket).
  const std::vector<std::string> udp_args = {"--address", "udp://127.0.0.1:0", "--loops", "1"};
  std::vector<ServerSpec> udp_servers = {
      {"raw epoll (floor)", with(bin("bench/raw_epoll_server"), {"--mode=udp-echo", "--port=0"}),
       true},
      {"netloop callback", with(bin("examples/udp_echo/udp_echo"), udp_args)},
  };
  {
    std::vector<std::string> fiber_args = udp_args;
    fiber_args.push_back("--fiber");
    udp_servers.push_back({"netloop fiber", with(bin("examples/udp_echo/udp_echo"), fiber_args),
                           false, false, "netloop callback"});
    if (netloop::internal::IoUringAvailable().ok()) {
      std::vector<std::string> u = udp_args;
      u.insert(u.end(), {"--backend", "io_uring"});
      udp_servers.push_back(
          {"netloop callback io_uring", with(bin("examples/udp_echo/udp_echo"), u)});
      u.push_back("--fiber");
      udp_servers.push_back({"netloop fiber io_uring", with(bin("examples/udp_echo/udp_echo"), u),
                             false, false, "netloop callback io_uring"});
    }
  }
  // Static files: netloop's HTTP servers with --root beside nginx with
  // sendfile on, which is the reference here too.
  std::vector<ServerSpec> file_servers;
  if (MakeStaticFile(tmp)) {
    for (const ServerSpec& h : http_servers) {
      if (h.floor || h.nginx || h.argv[0].find("examples/http/") == std::string::npos) continue;
      ServerSpec f = h;
      f.argv.insert(f.argv.end(), {"--root", tmp + "/www"});
      file_servers.push_back(std::move(f));
    }
    if (!nginx.empty()) {
      ServerSpec n{"nginx 1 worker", {nginx}, /*floor=*/true, true};
      n.files = true;
      file_servers.insert(file_servers.begin(), n);
    }
  }
  // The peers, each on one thread and started like netloop's servers. One
  // that is not there is left out, and the run says why; whatever runs is
  // verified like every other server. Goroutines are weighed against
  // netloop's callbacks (the model Go's netpoller hides), Asio's coroutines
  // against its callbacks.
  const std::vector<std::string> peer_args = {"--address", "tcp://127.0.0.1:0"};
  auto add_peer = [](std::vector<ServerSpec>& to, ServerSpec s, const std::string& missing) {
    if (s.argv[0].empty()) {
      std::fprintf(stderr, "duel: no \"%s\" rows: %s\n", s.name.c_str(), missing.c_str());
      return;
    }
    to.push_back(std::move(s));
  };
  auto go_bin = [&](const std::string& name) {
    std::string p = absl::StrCat(go_dir, "/", name);
    return no_go.empty() && access(p.c_str(), X_OK) == 0 ? p : "";
  };
  const std::string why_no_go = no_go.empty() ? "peers/go/build.sh left no binary" : no_go;
  add_peer(echo_servers,
           {"Go net (goroutines)", with(go_bin("echo"), peer_args), false, false,
            "netloop callback"},
           why_no_go);
  add_peer(http_servers,
           {"Go net/http", with(go_bin("http"), peer_args), false, false, "netloop callback"},
           why_no_go);
  add_peer(echo_servers, {"Asio callbacks", with(bin("peers/asio/echo_callbacks"), peer_args)},
           "binary not built (//peers/asio:echo_callbacks)");
  add_peer(echo_servers,
           {"Asio coroutines", with(bin("peers/asio/echo_coroutines"), peer_args), false, false,
            "Asio callbacks"},
           "binary not built (//peers/asio:echo_coroutines)");
  const std::string uv_bin = uv_dir + "/echo";
  add_peer(echo_servers,
           {"libuv", with(no_uv.empty() && access(uv_bin.c_str(), X_OK) == 0 ? uv_bin : "",
                          peer_args)},
           no_uv.empty() ? "peers/libuv/build.sh left no binary" : no_uv);

  std::vector<WorkloadSpec> workloads = {
      {"echo 1KiB ×50 conns", Workload::kEcho, 50, 1, false},
      {"echo 1KiB ×1000 conns", Workload::kEcho, 1000, 1, false},
      {"echo 1KiB ×50 pipelined 16", Workload::kEcho, 50, 16, false},
      {"http plaintext ×50", Workload::kHttp, 50, 1, true},
      {"http plaintext ×50 pipelined 16", Workload::kHttp, 50, 16, true},
      {"https keep-alive ×50", Workload::kHttp, 50, 1, true, /*tls=*/true},
      {"static 1MiB file ×50", Workload::kHttp, 50, 1, true, false, /*file=*/true},
      {"udp echo 1KiB ×50 peers", Workload::kUdpEcho, 50, 1, false, false, false, /*udp=*/true},
      {absl::StrCat("idle ", idle_conns, " conns"), Workload::kIdle, idle_conns, 1, false},
  };

  std::vector<Row> rows;
  bool failed = false;
  for (const WorkloadSpec& w : workloads) {
    if (!only.empty() && w.name.find(only) == std::string::npos) continue;
    if ((w.tls && https_servers.empty()) || (w.file && file_servers.empty())) continue;
    const std::vector<ServerSpec>& servers = w.tls    ? https_servers
                                             : w.file ? file_servers
                                             : w.udp  ? udp_servers
                                             : w.http ? http_servers
                                                      : echo_servers;
    // Per server, each repeat's result by repeat number, for paired ratios.
    std::map<std::string, std::map<int, LoadResult>> results;
    std::map<std::string, std::string> notes;
    for (int rep = 0; rep < repeats; ++rep) {
      for (size_t k = 0; k < servers.size(); ++k) {
        // Rotate the order each repeat so no server always runs first.
        const ServerSpec& s = servers[(k + rep) % servers.size()];
        if (!s.floor && !asked(s.name)) continue;  // and no row
        if (s.argv[0].empty()) {
          notes[s.name] = "skipped: binary not built";
          continue;
        }
        if (w.kind == Workload::kIdle && s.nginx) continue;
        std::fprintf(stderr, "[%s] %s, repeat %d/%d ...\n", w.name.c_str(), s.name.c_str(),
                     rep + 1, repeats);
        absl::StatusOr<ServerProcess> server = StartServer(s, server_cpu, tmp);
        if (!server.ok()) {
          std::fprintf(stderr, "!!! %s failed to start: %s\n", s.name.c_str(),
                       server.status().ToString().c_str());
          failed = true;
          notes[s.name] = "FAILED to start";
          continue;
        }
        LoadSpec spec;
        spec.address = server->address();
        if (w.udp) spec.address.replace(0, 3, "udp");  // tcp://127.0.0.1:PORT → udp://
        spec.workload = w.kind;
        spec.connections = w.connections;
        spec.pipeline = w.pipeline;
        spec.message_size = 1024;
        spec.warmup = absl::Seconds(warmup_seconds);
        spec.duration = absl::Seconds(cell_seconds);
        spec.server_pids = {server->pid()};
        if (w.tls) spec.tls_ca_file = tmp + "/tls.crt";
        if (w.file) {
          spec.http_path = "/1MiB.bin";
          spec.http_body_size = 1 << 20;
        }
        absl::StatusOr<LoadResult> r = netloop::loadgen::RunLoad(spec);
        bool alive = server->Alive();
        std::string how = server->Stop();
        if (!alive) {
          std::fprintf(stderr, "!!! %s CRASHED during %s (%s)\n", s.name.c_str(),
                       w.name.c_str(), how.c_str());
          failed = true;
          notes[s.name] = "CRASHED";
          continue;
        }
        if (!r.ok()) {
          std::fprintf(stderr, "!!! %s: load failed: %s\n", s.name.c_str(),
                       r.status().ToString().c_str());
          failed = true;
          notes[s.name] = "load FAILED";
          continue;
        }
        if (r->error_count() > 0) {
          std::fprintf(stderr, "!!! %s: %llu errors (wrong bytes or lost connections):\n%s",
                       s.name.c_str(), static_cast<unsigned long long>(r->error_count()),
                       r->ToText().c_str());
          failed = true;
          notes[s.name] = "ERRORS";
          continue;
        }
        results[s.name].emplace(rep, *r);
      }
    }
    const ServerSpec* floor = nullptr;
    for (const ServerSpec& s : servers) {
      if (s.floor) floor = &s;
    }
    const size_t first_row = rows.size();
    for (const ServerSpec& s : servers) {
      const auto& runs = results[s.name];
      Row row;
      row.workload = w.name;
      row.server = s.name;
      row.idle = w.kind == Workload::kIdle;
      row.note = notes[s.name];
      row.counterpart = s.counterpart;
      row.repeats = static_cast<int>(runs.size());
      if (row.idle && s.nginx) continue;
      if (!s.floor && !asked(s.name)) continue;
      if (runs.empty()) {
        if (row.note.empty()) row.note = "no result";
        rows.push_back(row);
        continue;
      }
      std::vector<double> mps, cpu, p50, p99, rss;
      for (const auto& [rep, r] : runs) {
        mps.push_back(r.messages_per_second);
        cpu.push_back(r.server_cpu_us_per_message);
        p50.push_back(r.latency_ns.Percentile(50) / 1e3);
        p99.push_back(r.latency_ns.Percentile(99) / 1e3);
        rss.push_back(r.server_rss_per_connection);
      }
      row.msgs_per_sec = Median(mps);
      row.cpu_us = Median(cpu);
      row.cpu_us_min = *std::min_element(cpu.begin(), cpu.end());
      row.cpu_us_max = *std::max_element(cpu.begin(), cpu.end());
      row.p50_us = Median(p50);
      row.p99_us = Median(p99);
      row.rss_per_conn = Median(rss);
      if (!row.idle && floor != nullptr) {
        const PairedRatio q =
            Paired(ByRepeat(runs, /*rss=*/false), ByRepeat(results[floor->name], false));
        row.ratio = q.median;
        row.ratio_min = q.min;
        row.ratio_max = q.max;
      }
      if (!s.counterpart.empty()) {
        const PairedRatio q =
            Paired(ByRepeat(runs, row.idle), ByRepeat(results[s.counterpart], row.idle));
        row.counterpart_ratio = q.median;
        row.counterpart_ratio_min = q.min;
        row.counterpart_ratio_max = q.max;
      }
      rows.push_back(row);
    }
  }

  std::string preamble = absl::StrFormat(
      "netloop duel: %d repeat(s), %.1f s cells after %.1f s warm-up; %s; loads verify every "
      "byte; idle workload%s. × floor = server CPU µs/msg over the raw epoll floor's in the "
      "same repeat, median over the repeats with their range (https and static-file rows: over "
      "nginx's, with the same certificate and cipher suite, or sendfile on); × counterpart = "
      "the same, over the named server's, the same library's (or, for Go, netloop's) other "
      "model (RSS for idle rows). Servers rotate their order every repeat.\n\n",
      repeats, cell_seconds, warmup_seconds,
      pin ? "servers pinned to CPU 1, load on CPU 0" : "not pinned", idle_note);
  std::string md = RenderMarkdown(rows, preamble);
  std::printf("%s", md.c_str());
  std::ofstream(out_md) << md;
  std::ofstream(out_svg) << RenderSvg(rows, "netloop duel: callback vs fiber vs raw epoll");
  std::fprintf(stderr, "wrote %s and %s\n", out_md.c_str(), out_svg.c_str());
  if (failed) {
    std::fprintf(stderr, "!!! DUEL FAILED: a server crashed, failed to start or sent wrong bytes\n");
    return 1;
  }
  return 0;
}
