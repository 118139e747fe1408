// Loopback echo, callback engine vs fiber server, side by side in one run:
// server CPU µs per message (the server loop thread's own CPU clock) and heap
// allocations per message (expected 0 in steady state). The server's loop
// runs pinned to CPU 1, the client (raw syscalls, no allocation) on CPU 0;
// each iteration sends one 1 KiB message (or 16, pipelined) on each of 50
// connections and reads every echo back.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <future>
#include <memory>
#include <string>
#include <vector>

#include "bench/alloc_counter.h"
#include "benchmark/benchmark.h"
#include "fiberbridge/server.h"
#include "reactor/netloop.h"

namespace netloop {
namespace {

constexpr int kConns = 50;
constexpr size_t kMsg = 1024;

class EchoHandler : public EventHandler {
 public:
  Action OnTraffic(Conn& conn) override {
    ByteView b = conn.Next();
    std::string_view pieces[] = {b.first, b.second};
    (void)conn.Writev(pieces);
    return Action::kNone;
  }
};

void FiberEcho(fiber::FiberConn& conn) {
  for (;;) {
    auto bytes = conn.ReadView();
    if (!bytes.ok() || !conn.WriteAll(*bytes).ok()) return;
  }
}

void PinThisThread(int cpu) {
  if (sysconf(_SC_NPROCESSORS_ONLN) < 2) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

// The CPU clock of `loop`'s thread, read by a task on that thread.
clockid_t LoopThreadClock(EventLoop& loop) {
  std::promise<clockid_t> clock;
  loop.RunInLoop([&clock] {
    clockid_t id;
    if (pthread_getcpuclockid(pthread_self(), &id) != 0) id = CLOCK_PROCESS_CPUTIME_ID;
    clock.set_value(id);
  });
  return clock.get_future().get();
}

int64_t CpuNs(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

std::vector<int> ConnectAll(uint16_t port) {
  std::vector<int> fds;
  for (int i = 0; i < kConns; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) return {};
    fds.push_back(fd);
  }
  return fds;
}

// One round: `depth` messages out on every connection, all echoes back.
bool Round(const std::vector<int>& fds, const std::string& out, std::string& in) {
  for (int fd : fds) {
    if (send(fd, out.data(), out.size(), 0) != static_cast<ssize_t>(out.size())) return false;
  }
  for (int fd : fds) {
    size_t got = 0;
    while (got < out.size()) {
      ssize_t n = recv(fd, in.data() + got, out.size() - got, 0);
      if (n <= 0) return false;
      got += static_cast<size_t>(n);
    }
  }
  return true;
}

template <bool kFiber>
void BM_Echo(benchmark::State& state) {
  const int depth = static_cast<int>(state.range(0));
  Options o;
  o.loops = 1;
  // Loop threads inherit the affinity of the thread that starts them.
  PinThisThread(1);
  EchoHandler handler;
  Engine engine;
  fiber::FiberServer server;
  absl::Status s = kFiber ? server.Start({"tcp://127.0.0.1:0"}, o, FiberEcho)
                          : engine.Start(handler, {"tcp://127.0.0.1:0"}, o);
  PinThisThread(0);
  if (!s.ok()) {
    state.SkipWithError("start failed");
    return;
  }
  std::string uri = kFiber ? server.ListenAddresses()[0] : engine.ListenAddresses()[0];
  // The server's whole cost is on its one loop thread: measure that thread.
  const clockid_t server_clock = LoopThreadClock(kFiber ? server.engine().loop(0) : engine.loop(0));
  std::vector<int> fds = ConnectAll(static_cast<uint16_t>(std::stoi(uri.substr(uri.rfind(':') + 1))));
  std::string out(kMsg * depth, 'e');
  std::string in(out.size(), '\0');
  for (int i = 0; i < 200; ++i) Round(fds, out, in);  // warm: buffers, caches
  const int64_t server0 = CpuNs(server_clock);
  const uint64_t allocs0 = bench::Allocations();
  for (auto _ : state) {
    if (!Round(fds, out, in)) {
      state.SkipWithError("echo failed");
      break;
    }
  }
  const double messages = static_cast<double>(state.iterations()) * kConns * depth;
  const int64_t server_ns = CpuNs(server_clock) - server0;
  state.counters["server_cpu_us/msg"] = server_ns / 1e3 / messages;
  state.counters["allocs/msg"] = (bench::Allocations() - allocs0) / messages;
  state.counters["msgs/s"] = benchmark::Counter(messages, benchmark::Counter::kIsRate);
  for (int fd : fds) close(fd);
  if (kFiber) {
    server.Stop(absl::Now() + absl::Seconds(2));
    (void)server.Wait();
  } else {
    engine.Stop(absl::Now() + absl::Seconds(2));
    (void)engine.Wait();
  }
}

BENCHMARK_TEMPLATE(BM_Echo, false)->Name("BM_EchoCallback")->Arg(1)->Arg(16)->UseRealTime();
BENCHMARK_TEMPLATE(BM_Echo, true)->Name("BM_EchoFiber")->Arg(1)->Arg(16)->UseRealTime();

}  // namespace
}  // namespace netloop

BENCHMARK_MAIN();
