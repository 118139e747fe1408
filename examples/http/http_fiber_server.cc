// HTTP/1.1 plaintext server, fiber model: the same HttpSession driven by a
// linear handler per connection. Reads land in the loop's shared buffer
// (ReadView); only a partial request left at the end of a read is copied into
// the connection's own buffer.
//
//   bazel run -c opt //examples/http:http_fiber_server -- --address tcp://127.0.0.1:8081
#include <cstdio>
#include <ctime>
#include <string>

#include "CLI/CLI.hpp"
#include "examples/echo/echo_flags.h"
#include "examples/http/http_date.h"
#include "examples/http/http_session.h"
#include "fiberbridge/scheduler.h"
#include "fiberbridge/server.h"

namespace {

thread_local netloop::http::HttpDate loop_date;
// Response storage shared by the loop's fibers, without an allocation per
// request. A fiber borrows it (swap) for one Process + WriteAll and gives it
// back after: a fiber parked in WriteAll must own the bytes it is sending, or
// another connection's fiber would overwrite them (or free them, growing the
// buffer) meanwhile.
thread_local std::string loop_out;

void ServeHttp(netloop::fiber::FiberConn& conn, absl::Duration idle_timeout) {
  netloop::http::HttpSession session;
  std::string partial;  // bytes of an incomplete request, kept across reads
  for (;;) {
    if (idle_timeout > absl::ZeroDuration()) conn.SetReadDeadline(absl::Now() + idle_timeout);
    absl::StatusOr<std::string_view> bytes = conn.ReadView();
    if (!bytes.ok()) return;
    std::string_view input = *bytes;
    if (!partial.empty()) {
      partial.append(input);
      input = partial;
    }
    std::string out;
    out.swap(loop_out);
    out.clear();
    netloop::http::SessionResult r = session.Process(input, loop_date, &out);
    std::string_view rest = input.substr(r.consumed);
    if (partial.empty()) {
      partial.assign(rest);
    } else {
      partial.erase(0, r.consumed);
    }
    const bool written = out.empty() || conn.WriteAll(out).ok();
    // Give the storage back, unless a fiber that ran while this one was
    // parked gave back a larger one.
    if (out.capacity() > loop_out.capacity()) out.swap(loop_out);
    if (!written || r.close_after_write) return;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"netloop HTTP/1.1 plaintext server (fiber model)"};
  netloop::examples::EchoFlags flags;
  flags.addresses = {"tcp://127.0.0.1:8081"};
  flags.idle_timeout_seconds = 60;
  netloop::examples::AddEchoFlags(app, flags);
  CLI11_PARSE(app, argc, argv);
  std::optional<netloop::Options> options =
      netloop::examples::OptionsOrReport(flags, "http_fiber_server");
  if (!options) return 2;
  // The fiber applies the idle timeout itself, as a read deadline.
  absl::Duration idle = options->idle_timeout;
  options->idle_timeout = absl::ZeroDuration();
  netloop::fiber::FiberServer server;
  absl::Status s = server.Start(flags.addresses, *options,
                                [idle](netloop::fiber::FiberConn& c) { ServeHttp(c, idle); });
  if (!s.ok()) {
    std::fprintf(stderr, "http_fiber_server: %s\n", s.ToString().c_str());
    return 1;
  }
  // One small fiber per loop keeps that loop's Date header current; it ends
  // when the server stops (SleepFor returns early then).
  for (int i = 0; i < server.engine().num_loops(); ++i) {
    netloop::fiber::Spawn(server.engine().loop(i), [] {
      do {
        loop_date.Refresh(std::time(nullptr));
      } while (netloop::fiber::SleepFor(absl::Seconds(1)).ok());
    });
  }
  server.engine().StopOnSignals();
  netloop::examples::PrintListening(server.ListenAddresses());
  return server.Wait().ok() ? 0 : 1;
}
