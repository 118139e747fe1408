// The fiber echo server: a linear, blocking-style handler per connection,
// running as a fiber on the same loops the callback engine uses. Same flags as
// examples/echo, so the two models can be compared directly.
//
//   bazel run -c opt //examples/echo_fiber -- --address tcp://127.0.0.1:9001
#include <cstdio>
#include <string>

#include "CLI/CLI.hpp"
#include "examples/echo/echo_flags.h"
#include "fiberbridge/server.h"

namespace {

// ReadView hands out the loop's shared read buffer (no copy, no per-connection
// buffer: an idle connection costs its fiber's touched stack page and little
// else); WriteAll keeps its own copy only if it must wait.
void Echo(netloop::fiber::FiberConn& conn) {
  for (;;) {
    absl::StatusOr<std::string_view> bytes = conn.ReadView();
    if (!bytes.ok()) return;  // EOF, reset, closed by Stop
    if (!conn.WriteAll(*bytes).ok()) return;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"netloop fiber echo server"};
  netloop::examples::EchoFlags flags;
  netloop::examples::AddEchoFlags(app, flags);
  int stack_kib = 64;
  app.add_option("--stack-kib", stack_kib, "fiber stack size in KiB")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  std::optional<netloop::Options> options =
      netloop::examples::OptionsOrReport(flags, "echo_fiber");
  if (!options) return 2;
  netloop::fiber::FiberServer server;
  netloop::fiber::SchedulerOptions sched;
  sched.stack_size = static_cast<size_t>(stack_kib) * 1024;
  absl::Status s = server.Start(flags.addresses, *options, Echo, sched);
  if (!s.ok()) {
    std::fprintf(stderr, "echo_fiber: %s\n", s.ToString().c_str());
    return 1;
  }
  server.engine().StopOnSignals();
  netloop::examples::PrintListening(server.ListenAddresses());
  return server.Wait().ok() ? 0 : 1;
}
