// The load engine must count real work and catch a lying server; the duel must
// run end to end and write its table and chart.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "reactor/internal/backend.h"
#include "reactor/netloop.h"
#include "tools/loadgen/histogram.h"
#include "tools/loadgen/load_client.h"

namespace netloop::loadgen {
namespace {

class Echo : public EventHandler {
 public:
  explicit Echo(bool corrupt) : corrupt_(corrupt) {}
  Action OnTraffic(Conn& conn) override {
    std::string bytes;
    conn.Next().AppendTo(&bytes);
    if (corrupt_ && bytes.size() > 10) bytes[bytes.size() / 2] ^= 0x5a;
    (void)conn.Write(bytes);
    return Action::kNone;
  }

 private:
  bool corrupt_;
};

LoadResult RunAgainst(bool corrupt, Workload w = Workload::kEcho, int pipeline = 1) {
  Echo h(corrupt);
  Engine engine;
  EXPECT_TRUE(engine.Start(h, {"tcp://127.0.0.1:0"}, Options{.loops = 1}).ok());
  LoadSpec spec;
  spec.address = engine.ListenAddresses()[0];
  spec.workload = w;
  spec.connections = 8;
  spec.pipeline = pipeline;
  spec.warmup = absl::Milliseconds(100);
  spec.duration = absl::Milliseconds(400);
  spec.server_pids = {getpid()};
  auto r = RunLoad(spec);
  engine.Stop(absl::Now() + absl::Seconds(2));
  (void)engine.Wait();
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : LoadResult{};
}

TEST(LoadClientTest, CountsVerifiedEchoes) {
  LoadResult r = RunAgainst(false, Workload::kEcho, 4);
  EXPECT_GT(r.messages, 100u);
  EXPECT_EQ(r.error_count(), 0u) << r.ToText();
  // Every counted message has its latency recorded (give or take a
  // completion in flight when the window closed).
  EXPECT_NEAR(static_cast<double>(r.latency_ns.count()), static_cast<double>(r.messages),
              r.messages * 0.001 + 2);
  EXPECT_GT(r.latency_ns.Percentile(50), 0);
  EXPECT_GT(r.server_cpu_seconds, 0.0);
  EXPECT_NE(r.ToJson().find("\"messages_per_second\""), std::string::npos);
}

TEST(LoadClientTest, CatchesACorruptingServer) {
  LoadResult r = RunAgainst(true);
  EXPECT_GT(r.errors["verify_mismatch"], 0u) << r.ToText();
}

TEST(LoadClientTest, IdleConnectionsAreCounted) {
  LoadResult r = RunAgainst(false, Workload::kIdle);
  EXPECT_EQ(r.idle_connections, 8);
}

TEST(HistogramTest, PercentilesWithinTheErrorBound) {
  Histogram h;
  for (int64_t v = 1; v <= 1'000'000; ++v) h.Record(v);
  for (double p : {50.0, 90.0, 99.0, 99.9}) {
    double exact = p / 100 * 1'000'000;
    EXPECT_NEAR(h.Percentile(p), exact, exact * Histogram::kRelativeError + 1) << p;
  }
  EXPECT_EQ(h.Percentile(100), 1'000'000);
  Histogram big;
  big.Record(int64_t{1} << 62);  // no clipping at a fixed maximum
  EXPECT_EQ(big.max(), int64_t{1} << 62);
  EXPECT_NEAR(static_cast<double>(big.Percentile(50)), static_cast<double>(int64_t{1} << 62),
              static_cast<double>(int64_t{1} << 62) * Histogram::kRelativeError);
  h.Merge(big);
  EXPECT_EQ(h.count(), 1'000'001u);
}

TEST(DuelTest, RunsEndToEndAndWritesTableAndChart) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the duel's servers are benchmarks: run in the default build only";
#endif
  std::string dir = std::string(getenv("TEST_TMPDIR"));
  std::string duel = std::string(getenv("TEST_SRCDIR")) + "/netloop/tools/duel/duel";
  std::string cmd = duel + " --quick --cell-seconds 0.3 --warmup-seconds 0.1 --idle-conns 50 " +
                    "--only echo --no-pin --out " + dir + "/t.md --svg " + dir + "/t.svg";
  int status = system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  std::stringstream md, svg;
  md << std::ifstream(dir + "/t.md").rdbuf();
  svg << std::ifstream(dir + "/t.svg").rdbuf();
  EXPECT_NE(md.str().find("| echo 1KiB ×50 conns | netloop fiber |"), std::string::npos)
      << md.str();
  EXPECT_NE(md.str().find("raw epoll (floor)"), std::string::npos);
  // The peers: Asio always (its headers are a required package), Go and
  // libuv where tools/setup could install them. Each that ran was verified
  // byte for byte like netloop's servers, or the run would have failed.
  EXPECT_NE(md.str().find("| Asio callbacks |"), std::string::npos) << md.str();
  EXPECT_NE(md.str().find("| Asio coroutines |"), std::string::npos) << md.str();
  if (access("/usr/bin/go", X_OK) == 0) {
    EXPECT_NE(md.str().find("| Go net (goroutines) |"), std::string::npos) << md.str();
  }
  if (access("/usr/include/uv.h", R_OK) == 0) {
    EXPECT_NE(md.str().find("| libuv |"), std::string::npos) << md.str();
  }
  EXPECT_EQ(svg.str().rfind("<svg", 0), 0u);
  EXPECT_NE(svg.str().find("<rect"), std::string::npos);
}

TEST(DuelTest, ServersNarrowsTheRunButKeepsTheFloorAndPairsRatiosByRepeat) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the duel's servers are benchmarks: run in the default build only";
#endif
  std::string dir = std::string(getenv("TEST_TMPDIR"));
  std::string duel = std::string(getenv("TEST_SRCDIR")) + "/netloop/tools/duel/duel";
  std::string cmd = duel + " --quick --repeats 2 --cell-seconds 0.3 --warmup-seconds 0.1 " +
                    "--only \"echo 1KiB ×50 conns\" --servers \"netloop fiber\" --no-pin " +
                    "--out " + dir + "/s.md --svg " + dir + "/s.svg";
  int status = system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  std::stringstream md;
  md << std::ifstream(dir + "/s.md").rdbuf();
  const std::string t = md.str();
  EXPECT_NE(t.find("| echo 1KiB ×50 conns | raw epoll (floor) |"), std::string::npos) << t;
  // The fiber rows ran; their callback counterparts were not asked for, so
  // there is no row for them and no counterpart figure ("–").
  auto row = [&t](const std::string& server) {
    const std::string head = "| echo 1KiB ×50 conns | " + server + " |";
    const size_t at = t.find(head);
    return at == std::string::npos ? std::string() : t.substr(at, t.find('\n', at) - at);
  };
  const std::string fiber = row("netloop fiber");
  ASSERT_FALSE(fiber.empty()) << t;
  if (netloop::internal::IoUringAvailable().ok()) {
    EXPECT_FALSE(row("netloop fiber io_uring").empty()) << t;
  }
  EXPECT_TRUE(row("netloop callback").empty()) << t;
  EXPECT_TRUE(row("netloop callback io_uring").empty()) << t;
  EXPECT_EQ(t.find("Asio"), std::string::npos) << t;
  EXPECT_NE(fiber.find("| – |"), std::string::npos) << fiber;
  // Two repeats: the ratio over the floor shows its range, "1.07 (0.98–1.16)"
  // (or one figure, if both repeats gave the same ratio to two places).
  const size_t cells = fiber.find(") | ");  // the end of the CPU min–max cell
  ASSERT_NE(cells, std::string::npos) << fiber;
  const std::string floor_cell = fiber.substr(cells + 4, fiber.find(" |", cells + 4) - cells - 4);
  EXPECT_TRUE(floor_cell.size() == 4 || floor_cell.find("–") != std::string::npos) << fiber;
}

TEST(DuelTest, HttpsCellsVerifyTheServersAndTheirResponses) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the duel's servers are benchmarks: run in the default build only";
#endif
  std::string dir = std::string(getenv("TEST_TMPDIR"));
  std::string duel = std::string(getenv("TEST_SRCDIR")) + "/netloop/tools/duel/duel";
  std::string cmd = duel + " --quick --cell-seconds 0.3 --warmup-seconds 0.1 --only https " +
                    "--no-pin --out " + dir + "/https.md --svg " + dir + "/https.svg";
  int status = system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  std::stringstream md;
  md << std::ifstream(dir + "/https.md").rdbuf();
  // Each row ran over TLS that the load verified (a certificate for
  // localhost that the duel made), every response checked.
  EXPECT_NE(md.str().find("| https keep-alive ×50 | netloop callback |"), std::string::npos)
      << md.str();
  EXPECT_NE(md.str().find("| https keep-alive ×50 | netloop fiber |"), std::string::npos)
      << md.str();
  if (access("/usr/sbin/nginx", X_OK) == 0) {
    EXPECT_NE(md.str().find("| https keep-alive ×50 | nginx 1 worker |"), std::string::npos)
        << md.str();
  }
}

TEST(DuelTest, StaticFileCellsVerifyEveryLength) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the duel's servers are benchmarks: run in the default build only";
#endif
  std::string dir = std::string(getenv("TEST_TMPDIR"));
  std::string duel = std::string(getenv("TEST_SRCDIR")) + "/netloop/tools/duel/duel";
  std::string cmd = duel + " --quick --cell-seconds 0.3 --warmup-seconds 0.1 --only static " +
                    "--no-pin --out " + dir + "/static.md --svg " + dir + "/static.svg";
  int status = system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  std::stringstream md;
  md << std::ifstream(dir + "/static.md").rdbuf();
  EXPECT_NE(md.str().find("| static 1MiB file ×50 | netloop callback |"), std::string::npos)
      << md.str();
  EXPECT_NE(md.str().find("| static 1MiB file ×50 | netloop fiber |"), std::string::npos)
      << md.str();
  if (access("/usr/sbin/nginx", X_OK) == 0) {
    EXPECT_NE(md.str().find("| static 1MiB file ×50 | nginx 1 worker |"), std::string::npos)
        << md.str();
  }
}

TEST(DuelTest, UdpCellsVerifyEveryDatagram) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the duel's servers are benchmarks: run in the default build only";
#endif
  std::string dir = std::string(getenv("TEST_TMPDIR"));
  std::string duel = std::string(getenv("TEST_SRCDIR")) + "/netloop/tools/duel/duel";
  std::string cmd = duel + " --quick --cell-seconds 0.3 --warmup-seconds 0.1 --only udp " +
                    "--no-pin --out " + dir + "/udp.md --svg " + dir + "/udp.svg";
  int status = system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  std::stringstream md;
  md << std::ifstream(dir + "/udp.md").rdbuf();
  for (const char* server : {"raw epoll (floor)", "netloop callback", "netloop fiber"}) {
    EXPECT_NE(md.str().find(std::string("| udp echo 1KiB ×50 peers | ") + server + " |"),
              std::string::npos)
        << md.str();
  }
}

}  // namespace
}  // namespace netloop::loadgen
