// Fibers at scale: N fibers parked at once on one loop, half in Channel::Recv
// and half in a sleep, at the default vm.max_map_count and open-file limit;
// then all woken, all finished. Reports what a parked fiber costs, how fast
// they start, how long waking them all takes, and that the stack pool gives
// the memory back afterwards.
//
//   bazel run -c opt //bench:fiber_scale -- --fibers=1000000 [--stack-kib=64]
//
// The last line is exactly
//   fibers=N rss_per_fiber_bytes=X spawn_per_s=Y wake_all_ms=Z
// where X is the RSS growth from baseline to peak over N (stack pages, heap
// bookkeeping and timers; page tables are not in RSS and are printed apart),
// Y is N over the time from the first spawn until all N are parked, and Z the
// time from the wake-up instant (the sleepers' deadline, when the receivers
// are sent their values) until the last fiber returned.
//
// Memory: a parked fiber here touches one 4 KiB stack page, so 1M fibers need
// about 4.4 GB with their page tables (measured 4,353 bytes of RSS each; on
// the 24 GiB machine about 4M fit; the bench refuses an N that MemAvailable
// says will not, and --stack-kib=16 cuts the page tables to a third). Address space: N x (stack +
// guard), reserved with MAP_NORESERVE (68 GiB for 1M default stacks). Map regions: stacks are
// carved from slabs that merge into a handful of regions (fiberbridge/stack_pool.h); no file
// descriptors beyond the loop's own.
#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <future>
#include <string>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/time/time.h"
#include "fiberbridge/channel.h"
#include "fiberbridge/scheduler.h"
#include "fiberbridge/stack_pool.h"
#include "fiberbridge/sync.h"
#include "reactor/clock.h"
#include "reactor/event_loop.h"

namespace netloop::fiber {
namespace {

// ---- What the process holds, from /proc.

long ResidentKib() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  long size = 0, resident = -1;
  if (f != nullptr) {
    if (std::fscanf(f, "%ld %ld", &size, &resident) != 2) resident = -1;
    std::fclose(f);
  }
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

int MapCount() {
  FILE* f = std::fopen("/proc/self/maps", "r");
  if (f == nullptr) return -1;
  int lines = 0;
  for (int c; (c = std::fgetc(f)) != EOF;) lines += c == '\n';
  std::fclose(f);
  return lines;
}

// A "Name:   123 kB" field of a /proc file, in KiB; -1 if absent.
long ProcFieldKib(const char* path, const char* name) {
  FILE* f = std::fopen(path, "r");
  if (f == nullptr) return -1;
  char line[256];
  long value = -1;
  const size_t len = std::strlen(name);
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    if (std::strncmp(line, name, len) == 0 && line[len] == ':') {
      value = std::strtol(line + len + 1, nullptr, 10);
      break;
    }
  }
  std::fclose(f);
  return value;
}

long SysctlValue(const char* path) {
  FILE* f = std::fopen(path, "r");
  long v = -1;
  if (f != nullptr) {
    if (std::fscanf(f, "%ld", &v) != 1) v = -1;
    std::fclose(f);
  }
  return v;
}

struct Snapshot {
  long rss_kib = 0;
  int maps = 0;
  long page_tables_kib = 0;
};

Snapshot Take() { return {ResidentKib(), MapCount(), ProcFieldKib("/proc/self/status", "VmPTE")}; }

// ---- The run, on the loop thread inside one controlling fiber.

struct Result {
  bool ok = true;
  Snapshot baseline, peak, after, trimmed;
  size_t pool_live_peak = 0, pool_mapped_peak = 0;
  size_t pool_cached = 0, pool_warm = 0, pool_retired = 0, pool_mapped_after = 0;
  double spawn_s = 0;
  double wake_all_ms = 0;
  long early_wakes = 0;
  int64_t deadline_moves = 0;
};

// Yields (one loop iteration each) until done() holds; false if it did not
// within a bound far above what the loop needs.
template <typename Pred>
bool YieldUntil(Pred done) {
  for (int i = 0; i < 1'000'000; ++i) {
    if (done()) return true;
    Yield();
  }
  return done();
}

// Spawns `count` fibers made by make(i), kChunk at a time, letting each chunk
// run to its parks before the next (so the ready queue stays short); after
// each chunk calls after_chunk(spawned so far). Each fiber calls
// all_done.Done() as it returns. False if some never parked.
template <typename Make, typename AfterChunk>
bool SpawnParked(int64_t count, int64_t& parked, WaitGroup& all_done, Make make,
                 AfterChunk after_chunk) {
  constexpr int64_t kChunk = 16384;
  const int64_t parked_before = parked;
  for (int64_t spawned = 0; spawned < count;) {
    const int64_t end = std::min(count, spawned + kChunk);
    for (int64_t i = spawned; i < end; ++i) {
      all_done.Add(1);
      Spawn(make(i));
    }
    spawned = end;
    if (!YieldUntil([&] { return parked - parked_before == spawned; })) {
      std::fprintf(stderr, "fiber_scale: only %lld of %lld fibers parked\n",
                   static_cast<long long>(parked - parked_before), static_cast<long long>(spawned));
      return false;
    }
    after_chunk(spawned);
  }
  return true;
}

void Run(int64_t fibers, Result& r) {
  Scheduler& scheduler = *Scheduler::Current();
  StackPool& pool = scheduler.stack_pool();
  const int64_t receivers = fibers / 2;
  const int64_t sleepers = fibers - receivers;
  // Receivers alternate between two channels, and all of `channels[0]` get
  // their value first: every other receiver's stack is released first, the
  // order that fragments a pool unmapping stacks one by one.
  Channel<int64_t> channels[2] = {Channel<int64_t>(0), Channel<int64_t>(0)};
  WaitGroup all_done;
  // Every fiber runs on this thread: plain variables suffice.
  int64_t parked = 0, received = 0, received_sum = 0;
  int64_t last_exit_ns = 0;
  bool released = false;
  // The sleepers' wake-up instant, set before they are spawned (see below).
  int64_t wake_at_ns = 0;
  auto finish = [&] {
    last_exit_ns = MonotonicNanos();  // vDSO: cheap enough for every fiber
    all_done.Done();
  };

  // This fiber's own stack made the pool probe the kernel.
  const long max_maps = SysctlValue("/proc/sys/vm/max_map_count");
  if (!pool.guard_markers() && max_maps > 0 && 2 * fibers > max_maps - 1000) {
    std::fprintf(stderr,
                 "fiber_scale: mprotect guards (kernel before 6.13) cost 2 map regions per "
                 "stack: at most about %ld fibers here\n",
                 (max_maps - 1000) / 2);
    r.ok = false;
    return;
  }
  r.baseline = Take();
  const int64_t t0 = MonotonicNanos();
  r.ok = SpawnParked(
      receivers, parked, all_done,
      [&](int64_t i) {
        return [&, i] {
          ++parked;
          absl::StatusOr<int64_t> v = channels[i % 2].Recv();
          if (v.ok()) {
            ++received;
            received_sum += *v;
          }
          finish();
        };
      },
      [](int64_t) {});
  // The sleepers must all be parked before their deadline, and that depends
  // on how fast they spawn: twice as long as the receivers took plus half a
  // second, and pushed back if the spawning falls behind even that. A move
  // wakes the sleepers parked so far once each: they re-park until the
  // current deadline (counted as early wakes).
  const int64_t t1 = MonotonicNanos();
  wake_at_ns = t1 + 2 * (t1 - t0) + 500'000'000;
  r.ok = r.ok && SpawnParked(
                     sleepers, parked, all_done,
                     [&](int64_t) {
                       return [&] {
                         ++parked;
                         for (;;) {
                           const int64_t left = wake_at_ns - MonotonicNanos();
                           if (released && left <= 0) break;
                           const absl::Duration nap =
                               absl::Nanoseconds(std::max<int64_t>(left, 1'000'000));
                           if (!fiber::SleepFor(nap).ok()) break;  // the loop is stopping
                           if (!released || MonotonicNanos() < wake_at_ns) ++r.early_wakes;
                         }
                         finish();
                       };
                     },
                     [&](int64_t spawned) {
                       const int64_t now = MonotonicNanos();
                       const int64_t left = (now - t1) / spawned * (sleepers - spawned);
                       if (now + left + 250'000'000 > wake_at_ns) {
                         wake_at_ns = now + 2 * left + 500'000'000;
                         ++r.deadline_moves;
                       }
                     });
  r.spawn_s = static_cast<double>(MonotonicNanos() - t0) / 1e9;
  r.peak = Take();
  r.pool_live_peak = pool.live();
  r.pool_mapped_peak = pool.mapped_bytes();

  // Wake them all at wake_at_ns: the sleepers' timers fire, and this fiber
  // (sleeping to the same instant) hands each receiver its value.
  released = true;
  while (r.ok && MonotonicNanos() < wake_at_ns) {
    (void)fiber::SleepFor(absl::Nanoseconds(wake_at_ns - MonotonicNanos()));
  }
  const int64_t wake_ns = wake_at_ns;
  for (int64_t i = 0; i < receivers && r.ok; ++i) {
    // Values 1..receivers; channel 0's receivers (even i) first.
    const int64_t k = i < (receivers + 1) / 2 ? 2 * i : 2 * (i - (receivers + 1) / 2) + 1;
    if (!channels[k % 2].Send(k + 1).ok()) r.ok = false;
  }
  // A failed run still ends: receivers left waiting get Closed.
  for (Channel<int64_t>& c : channels) c.Close();
  (void)all_done.Wait();
  r.wake_all_ms = static_cast<double>(last_exit_ns - wake_ns) / 1e6;
  // Done() comes just before each entry returns: let the last ones return and
  // give their stacks back. Only this fiber is left then.
  if (!YieldUntil([&] { return scheduler.live_fibers() == 1; })) r.ok = false;
  if (received != receivers || received_sum != receivers * (receivers + 1) / 2) {
    std::fprintf(stderr, "fiber_scale: receivers got %lld values\n",
                 static_cast<long long>(received));
    r.ok = false;
  }
  r.after = Take();
  r.pool_cached = pool.cached();
  r.pool_warm = pool.cached_warm();
  r.pool_retired = pool.retired();
  r.pool_mapped_after = pool.mapped_bytes();
  // What stays after the stacks went back is mostly heap the allocator keeps
  // for reuse (FiberTasks, the timer queue's grown slots); trimming shows it.
  malloc_trim(0);
  r.trimmed = Take();
}

int Main(int argc, char** argv) {
  CLI::App app{"netloop: N parked fibers on one loop, woken all at once"};
  int64_t fibers = 1'000'000;
  int stack_kib = static_cast<int>(SchedulerOptions{}.stack_size / 1024);
  app.add_option("--fibers", fibers, "fibers parked at once (half on channels, half on sleeps)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 31));
  app.add_option("--stack-kib", stack_kib, "usable stack per fiber in KiB (16 to 8192)")
      ->capture_default_str()
      ->check(CLI::Range(16, 8192));
  CLI11_PARSE(app, argc, argv);

  rlimit nofile{};
  getrlimit(RLIMIT_NOFILE, &nofile);
  const long available_kib = ProcFieldKib("/proc/meminfo", "MemAvailable");
  std::printf(
      "limits: vm.max_map_count=%ld open_files=%llu overcommit_memory=%ld "
      "mem_available_mib=%ld\n",
      SysctlValue("/proc/sys/vm/max_map_count"), static_cast<unsigned long long>(nofile.rlim_cur),
      SysctlValue("/proc/sys/vm/overcommit_memory"), available_kib / 1024);
  // About 4.3 KiB resident per parked fiber (measured), page tables, margin.
  const long need_kib = static_cast<long>(fibers) * 5 + static_cast<long>(fibers) * stack_kib / 512;
  if (available_kib > 0 && need_kib > available_kib * 9 / 10) {
    std::fprintf(stderr,
                 "fiber_scale: %lld fibers need about %ld MiB, %ld MiB available; about %ld "
                 "fit: lower --fibers\n",
                 static_cast<long long>(fibers), need_kib / 1024, available_kib / 1024,
                 available_kib * 9 / 10 / (5 + stack_kib / 512));
    return 2;
  }

  auto loop = EventLoop::Create();
  if (!loop.ok()) {
    std::fprintf(stderr, "fiber_scale: %s\n", loop.status().ToString().c_str());
    return 1;
  }
  SchedulerOptions options;
  options.stack_size = static_cast<size_t>(stack_kib) * 1024;
  Scheduler& scheduler = Scheduler::For(**loop, options);  // before the loop runs
  std::thread thread([&] { (*loop)->Run(); });
  Result r;
  std::promise<void> done;
  Spawn(**loop, [&] {
    Run(fibers, r);
    done.set_value();
  });
  done.get_future().wait();
  StackPool& pool = scheduler.stack_pool();
  std::printf(
      "fiber_scale: %lld fibers (half in Channel::Recv, half sleeping), stack %zu KiB + "
      "%zu KiB guard, guard markers: %s\n",
      static_cast<long long>(fibers), pool.stack_size() / 1024, pool.guard_size() / 1024,
      pool.guard_markers() ? "yes" : "no (mprotect)");
  auto print = [](const char* what, const Snapshot& s) {
    std::printf("%s: rss_kib=%ld maps=%d page_tables_kib=%ld\n", what, s.rss_kib, s.maps,
                s.page_tables_kib);
  };
  print("baseline", r.baseline);
  print("peak (all parked)", r.peak);
  std::printf("peak pool: live_stacks=%zu mapped_mib=%zu\n", r.pool_live_peak,
              r.pool_mapped_peak >> 20);
  print("after all exited", r.after);
  std::printf("after pool: cached=%zu warm=%zu retired=%zu mapped_mib=%zu\n", r.pool_cached,
              r.pool_warm, r.pool_retired, r.pool_mapped_after >> 20);
  print("after malloc_trim", r.trimmed);
  std::printf("spawn_s=%.3f sleeper_early_wakes=%ld wake_deadline_moves=%lld\n", r.spawn_s,
              r.early_wakes, static_cast<long long>(r.deadline_moves));
  (*loop)->Quit();
  thread.join();
  if (!r.ok) {
    std::fflush(stdout);  // keeps the result line last when both go to one place
    std::fprintf(stderr, "fiber_scale: the run did not complete as intended\n");
  }
  const long per_fiber = (r.peak.rss_kib - r.baseline.rss_kib) * 1024 / fibers;
  const double spawn_per_s = r.spawn_s > 0 ? static_cast<double>(fibers) / r.spawn_s : 0;
  std::printf("fibers=%lld rss_per_fiber_bytes=%ld spawn_per_s=%.0f wake_all_ms=%.0f\n",
              static_cast<long long>(fibers), per_fiber, spawn_per_s, r.wake_all_ms);
  return r.ok ? 0 : 1;
}

}  // namespace
}  // namespace netloop::fiber

int main(int argc, char** argv) { return netloop::fiber::Main(argc, argv); }
