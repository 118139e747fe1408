// A line-oriented server whose handler calls a slow, blocking function (a
// stand-in for a legacy client library or disk I/O) through Offload. The
// fiber parks while a pool thread blocks, so other connections on the same
// loop keep getting answers: try `PING` on one connection while another runs
// `SLOW 2000`.
//
//   bazel run //examples/fiber_offload -- --address tcp://127.0.0.1:9002 --loops 1
//   printf 'SLOW 2000\n' | nc 127.0.0.1 9002 &   # answers after 2 s
//   printf 'PING\n' | nc 127.0.0.1 9002          # answers at once
#include <unistd.h>

#include <cstdio>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "examples/echo/echo_flags.h"
#include "fiberbridge/offload.h"
#include "fiberbridge/server.h"

namespace {

// The legacy call: blocks its thread for `ms` milliseconds.
std::string SlowLegacyLookup(int ms) {
  usleep(static_cast<useconds_t>(ms) * 1000);
  return absl::StrCat("done after ", ms, " ms");
}

void Serve(netloop::fiber::FiberConn& conn) {
  std::string line;
  char buf[512];
  for (;;) {
    absl::StatusOr<size_t> n = conn.Read(buf);
    if (!n.ok()) return;
    line.append(buf, *n);
    size_t eol;
    while ((eol = line.find('\n')) != std::string::npos) {
      std::string cmd = line.substr(0, eol);
      line.erase(0, eol + 1);
      if (!cmd.empty() && cmd.back() == '\r') cmd.pop_back();
      std::string reply;
      int ms = 0;
      if (cmd == "PING") {
        reply = "PONG";
      } else if (cmd.rfind("SLOW ", 0) == 0 &&
                 absl::SimpleAtoi(absl::string_view(cmd).substr(5), &ms) && ms >= 0 &&
                 ms <= 60000) {
        reply = netloop::fiber::Offload([ms] { return SlowLegacyLookup(ms); });
      } else {
        reply = "ERR expected PING or SLOW <ms>";
      }
      reply.push_back('\n');
      if (!conn.WriteAll(reply).ok()) return;
    }
    if (line.size() > 4096) return;  // no newline in 4 KiB: not our protocol
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"netloop fiber server with Offload for blocking calls"};
  netloop::examples::EchoFlags flags;
  flags.addresses = {"tcp://127.0.0.1:9002"};
  netloop::examples::AddEchoFlags(app, flags);
  CLI11_PARSE(app, argc, argv);
  std::optional<netloop::Options> options =
      netloop::examples::OptionsOrReport(flags, "fiber_offload");
  if (!options) return 2;
  netloop::fiber::FiberServer server;
  absl::Status s = server.Start(flags.addresses, *options, Serve);
  if (!s.ok()) {
    std::fprintf(stderr, "fiber_offload: %s\n", s.ToString().c_str());
    return 1;
  }
  server.engine().StopOnSignals();
  netloop::examples::PrintListening(server.ListenAddresses());
  return server.Wait().ok() ? 0 : 1;
}
