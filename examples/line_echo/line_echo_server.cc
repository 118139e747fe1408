// A line echo server, the fiber version of the classic Go handler:
//
//   r := bufio.NewReader(c)
//   for {
//     c.SetReadDeadline(time.Now().Add(5 * time.Minute))
//     line, err := r.ReadString('\n')
//     if err != nil { log.Printf("%v: %v", c.RemoteAddr(), err); return }
//     c.Write([]byte(line))
//   }
//
// Each connection's fiber reads a line through BufferedReader (a view into
// its buffer, no copy), writes it back, and logs to stderr why the
// connection ended. Same flags as examples/echo.
//
//   bazel run //examples/line_echo -- --address tcp://127.0.0.1:9003
//   printf 'one\r\ntwo\n' | nc -q1 127.0.0.1 9003
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "examples/echo/echo_flags.h"
#include "fiberbridge/buffered_reader.h"
#include "fiberbridge/fiber_conn.h"
#include "fiberbridge/server.h"
#include "reactor/errors.h"

namespace {

// A peer that sends nothing for this long is dropped; the deadline is
// pushed forward before every read, so it bounds idleness, not lifetime.
constexpr absl::Duration kIdleTimeout = absl::Minutes(5);

// Why a connection ended, in words for the log.
std::string Describe(const absl::Status& status) {
  if (netloop::IsPeerClosed(status)) return "peer closed the connection";
  if (absl::IsDeadlineExceeded(status)) return "idle for " + absl::FormatDuration(kIdleTimeout);
  if (absl::IsResourceExhausted(status)) return "line too long: " + std::string(status.message());
  switch (netloop::GetCloseReason(status)) {
    case netloop::CloseReason::kClosed:
    case netloop::CloseReason::kEngineStopping:
      return "server stopping";
    case netloop::CloseReason::kReset:
      return "reset: " + std::string(status.message());
    default:
      return status.ToString();
  }
}

void LineEcho(netloop::fiber::FiberConn& conn, size_t max_line_bytes) {
  const std::string peer = conn.RemoteAddress().ToString();
  netloop::fiber::BufferedReader reader(conn, {.max_token_size = max_line_bytes});
  absl::Status why;
  for (;;) {
    conn.SetReadDeadline(absl::Now() + kIdleTimeout);
    // ReadUntil rather than ReadLine: the echo keeps the peer's own line
    // ending ("\n" or "\r\n"), as ReadString does. A last line cut short by
    // EOF comes back without one and is echoed too; the next call reports
    // the EOF (Go drops that tail, since ReadString returns it with io.EOF).
    absl::StatusOr<std::string_view> line = reader.ReadUntil('\n');
    if (!line.ok()) {
      // An overlong line also ends the connection, though the reader could
      // skip it: a peer that ignores the limit is not speaking our protocol.
      why = line.status();
      break;
    }
    // WriteAll copies the bytes only if it has to wait, so the view (valid
    // until the reader's next call) is enough.
    if (absl::Status s = conn.WriteAll(*line); !s.ok()) {
      why = s;
      break;
    }
  }
  std::fprintf(stderr, "line_echo: %s: %s\n", peer.c_str(), Describe(why).c_str());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"netloop line echo server (fibers + BufferedReader)"};
  netloop::examples::EchoFlags flags;
  flags.addresses = {"tcp://127.0.0.1:9003"};
  netloop::examples::AddEchoFlags(app, flags);
  size_t max_line_bytes = 64 * 1024;
  app.add_option("--max-line", max_line_bytes, "longest line accepted, newline included (bytes)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  std::optional<netloop::Options> options =
      netloop::examples::OptionsOrReport(flags, "line_echo");
  if (!options) return 2;
  netloop::fiber::FiberServer server;
  absl::Status s =
      server.Start(flags.addresses, *options, [max_line_bytes](netloop::fiber::FiberConn& conn) {
        LineEcho(conn, max_line_bytes);
      });
  if (!s.ok()) {
    std::fprintf(stderr, "line_echo: %s\n", s.ToString().c_str());
    return 1;
  }
  server.engine().StopOnSignals();
  netloop::examples::PrintListening(server.ListenAddresses());
  return server.Wait().ok() ? 0 : 1;
}
