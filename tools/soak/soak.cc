#include "tools/soak/soak.h"


#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "fiberbridge/server.h"
#include "reactor/netloop.h"
#include "tests/echo_exerciser.h"
#include "tests/test_util.h"

namespace netloop::soak {
namespace {

class Echo : public EventHandler {
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
    absl::StatusOr<std::string_view> bytes = conn.ReadView();
    if (!bytes.ok() || !conn.WriteAll(*bytes).ok()) return;
  }
}

}  // namespace

SoakResult RunSoak(const SoakOptions& options) {
  SoakResult result;
  result.descriptors_before = testing::OpenDescriptors();
  {
    Echo handler;
    Engine engine;
    Options o;
    o.loops = 1;
    fiber::FiberServer fibers;
    if (absl::Status s = engine.Start(handler, {"tcp://127.0.0.1:0"}, o); !s.ok()) {
      result.failure = "callback server: " + s.ToString();
      return result;
    }
    if (absl::Status s = fibers.Start({"tcp://127.0.0.1:0"}, o, FiberEcho); !s.ok()) {
      result.failure = "fiber server: " + s.ToString();
      return result;
    }
    const std::string uris[2] = {engine.ListenAddresses()[0], fibers.ListenAddresses()[0]};
    const absl::Time start = absl::Now();
    absl::Time next_sample = start;
    SoakSample totals;
    bool warmed = false;
    for (uint64_t round = 0; result.failure.empty(); ++round) {
      const absl::Time now = absl::Now();
      if (warmed && now >= next_sample) {
        SoakSample s = totals;
        s.seconds = absl::ToDoubleSeconds(now - start);
        s.rss_bytes = testing::ResidentBytes();
        s.descriptors = testing::OpenDescriptors();
        s.buffered_bytes = engine.stats().buffered_bytes + fibers.engine().stats().buffered_bytes;
        result.samples.push_back(s);
        if (options.print) {
          std::printf("soak t=%.0fs rounds=%llu conns=%llu verified_mib=%.1f rss_kib=%lld "
                      "fds=%d buffered=%llu\n",
                      s.seconds, static_cast<unsigned long long>(s.rounds),
                      static_cast<unsigned long long>(s.connections),
                      static_cast<double>(s.bytes_verified) / (1 << 20),
                      static_cast<long long>(s.rss_bytes / 1024), s.descriptors,
                      static_cast<unsigned long long>(s.buffered_bytes));
          std::fflush(stdout);
        }
        next_sample += options.sample_every;
        if (now - start >= options.duration) break;
      }
      testing::EchoPlan plan;
      plan.uri = uris[round % 2];
      plan.seed = options.seed * 1'000'003 + round;
      plan.clients = 1 + static_cast<int>(plan.seed % options.max_clients);
      plan.min_bytes = 0;  // some connections only connect and close: churn
      plan.max_bytes = round % 5 == 0 ? 1 << 20 : 64 * 1024;
      plan.slow_readers = round % 3 == 0;
      plan.resets = round % 2 == 0;
      testing::EchoRunResult run = testing::RunEchoClients(plan);
      if (run.timed_out) result.failure = absl::StrCat("round ", round, ": a client hung");
      for (const auto& c : run.clients) {
        if (c.corrupt || !c.error.empty()) {
          result.failure = absl::StrCat("round ", round, " seed ", plan.seed, ": ", c.error);
        }
        if (c.closed_early && !c.reset_by_us) {
          result.failure =
              absl::StrCat("round ", round, " seed ", plan.seed, ": cut after ", c.received,
                           " of ", c.to_send, " bytes with no fault to explain it");
        }
      }
      totals.rounds = round + 1;
      totals.connections += run.clients.size();
      totals.bytes_verified += run.total_received();
      warmed = true;
    }
    // Every connection of the last round is closed on the client side; wait
    // until both servers have noticed, then stop.
    testing::WaitFor([&] {
      return engine.CountConnections() == 0 && fibers.CountConnections() == 0;
    });
    engine.Stop(absl::Now() + absl::Seconds(5));
    (void)engine.Wait();
    fibers.Stop(absl::Now() + absl::Seconds(5));
    (void)fibers.Wait();
  }
  result.descriptors_after = testing::OpenDescriptors();
  if (result.failure.empty() && result.descriptors_after != result.descriptors_before) {
    result.failure = absl::StrCat("descriptors: ", result.descriptors_before, " before, ",
                                  result.descriptors_after, " after");
  }
  return result;
}

}  // namespace netloop::soak
