// loadgen: echo, HTTP or idle load against a server on this machine.
//
//   loadgen --address tcp://127.0.0.1:9000 --connections 50 --size 1024 \
//           --pipeline 16 --duration 5 --server-pid 1234 [--json]
//   loadgen --workload http --address tcp://127.0.0.1:8080 --connections 100
//   loadgen --workload idle --connections 10000 --server-pid 1234
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "reactor/options.h"
#include "tools/loadgen/load_client.h"

int main(int argc, char** argv) {
  CLI::App app{"netloop load generator (echo / http / idle)"};
  netloop::loadgen::LoadSpec spec;
  std::string workload = "echo";
  double warmup = 1, duration = 5;
  std::vector<int> pids;
  bool json = false;
  int cpu = -1;
  app.add_option("-a,--address", spec.address, "target, e.g. tcp://127.0.0.1:9000")
      ->capture_default_str();
  app.add_option("-w,--workload", workload, "echo | http | idle | udp-echo")
      ->capture_default_str();
  app.add_option("-c,--connections", spec.connections)->capture_default_str();
  app.add_option("-s,--size", spec.message_size, "echo message bytes")->capture_default_str();
  app.add_option("-p,--pipeline", spec.pipeline, "messages in flight per connection")
      ->capture_default_str();
  app.add_option("-d,--duration", duration, "measured seconds")->capture_default_str();
  app.add_option("--warmup", warmup, "seconds before measuring")->capture_default_str();
  app.add_option("-r,--rate", spec.rate, "total messages/s (0 = closed loop)")
      ->capture_default_str();
  app.add_option("-t,--threads", spec.threads, "client event loops")->capture_default_str();
  app.add_option("--server-pid", pids, "server process(es) to read CPU and RSS of");
  app.add_option("--path", spec.http_path, "HTTP request path")->capture_default_str();
  app.add_option("--body-size", spec.http_body_size,
                 "HTTP: the Content-Length every response must have (0: any)");
  app.add_option("--tls-ca", spec.tls_ca_file,
                 "TLS: trust this PEM certificate (or chain) and verify the server");
  app.add_option("--tls-server-name", spec.tls_server_name,
                 "TLS: the name the server's certificate must carry")
      ->capture_default_str();
  app.add_option("--cpu", cpu, "pin the load generator to this CPU");
  std::string backend = "auto";
  app.add_option("--backend", backend, "client loops' backend: auto | epoll | io_uring")
      ->capture_default_str();
  app.add_flag("--json", json, "print the result as JSON");
  CLI11_PARSE(app, argc, argv);
  if (absl::StatusOr<netloop::BackendKind> kind = netloop::ParseBackendKind(backend); kind.ok()) {
    spec.backend = *kind;
  } else {
    std::fprintf(stderr, "--%s\n", std::string(kind.status().message()).c_str());
    return 2;
  }
  if (workload == "echo") {
    spec.workload = netloop::loadgen::Workload::kEcho;
  } else if (workload == "http") {
    spec.workload = netloop::loadgen::Workload::kHttp;
  } else if (workload == "udp-echo") {
    spec.workload = netloop::loadgen::Workload::kUdpEcho;
  } else if (workload == "idle") {
    spec.workload = netloop::loadgen::Workload::kIdle;
  } else {
    std::fprintf(stderr, "--workload must be echo, http, idle or udp-echo\n");
    return 2;
  }
  spec.warmup = absl::Seconds(warmup);
  spec.duration = absl::Seconds(duration);
  for (int p : pids) spec.server_pids.push_back(p);
  spec.progress = !json && isatty(STDERR_FILENO);
  if (cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof(set), &set);
  }
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  absl::StatusOr<netloop::loadgen::LoadResult> r = netloop::loadgen::RunLoad(spec);
  if (!r.ok()) {
    std::fprintf(stderr, "loadgen: %s\n", r.status().ToString().c_str());
    return 1;
  }
  std::printf("%s\n", json ? r->ToJson().c_str() : r->ToText().c_str());
  // Verification failures and lost connections are failures, not footnotes.
  return r->error_count() == 0 ? 0 : 3;
}
