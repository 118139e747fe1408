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

// Read into a buffer of the fiber's own: on io_uring the kernel receives
// straight into it and the send goes from it, with no copy and no syscall of
// the fiber's own; on epoll it is one read and one write, as in the floor
// server. The buffer is on the fiber's stack and an idle connection writes
// none of it, but the parked Read's frames lie below it, on a second stack
// page: idle, a connection holds two pages (8.5 KB in bench/RESULTS.md)
// where --read-view holds one.
void EchoRead(netloop::fiber::FiberConn& conn) {
  char buf[16 * 1024];
  for (;;) {
    absl::StatusOr<size_t> n = conn.Read(buf);
    if (!n.ok()) return;  // EOF, reset, closed by Stop
    if (!conn.WriteAll(std::string_view(buf, *n)).ok()) return;
  }
}

// ReadView hands out the loop's shared read buffer (no per-connection
// buffer). On epoll that is zero-copy; on io_uring the provided buffer is
// copied into the shared one, and WriteAll then sends with a syscall of its
// own (see fiber_conn.h): --read-view measures that path.
void EchoReadView(netloop::fiber::FiberConn& conn) {
  for (;;) {
    absl::StatusOr<std::string_view> bytes = conn.ReadView();
    if (!bytes.ok()) return;
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
  bool read_view = false;
  app.add_flag("--read-view", read_view, "echo with ReadView instead of Read into a fiber-owned buffer");
  CLI11_PARSE(app, argc, argv);
  std::optional<netloop::Options> options =
      netloop::examples::OptionsOrReport(flags, "echo_fiber");
  if (!options) return 2;
  netloop::fiber::FiberServer server;
  netloop::fiber::SchedulerOptions sched;
  sched.stack_size = static_cast<size_t>(stack_kib) * 1024;
  absl::Status s = server.Start(flags.addresses, *options, read_view ? EchoReadView : EchoRead, sched);
  if (!s.ok()) {
    std::fprintf(stderr, "echo_fiber: %s\n", s.ToString().c_str());
    return 1;
  }
  server.engine().StopOnSignals();
  netloop::examples::PrintListening(server.ListenAddresses());
  return server.Wait().ok() ? 0 : 1;
}
