// HTTP/1.1 server, fiber model; HTTPS with --tls-cert and --tls-key (the
// FiberServer runs the handshake before the handler, which then reads and
// writes plaintext). The same HttpSession driven by a linear handler per
// connection. Reads land in the loop's shared buffer
// (ReadView); only bytes left unconsumed at the end of a read (a partial
// request, or requests waiting while output is full) are copied into the
// connection's own buffer.
//
// Bounds, as in the callback server (http_server.cc):
//   - Unsent responses: the session answers at most about kMaxUnsentBytes per
//     write, and the fiber does not read while it is parked in that write, so
//     a client pipelining without reading holds one write's worth of
//     responses. The write is also bounded in time by the idle timeout (a
//     client that reads nothing for that long is closed).
//   - Time for a request head: --header-timeout seconds from the read that
//     left a head incomplete, applied as the read deadline (the earlier of it
//     and the idle deadline). Then 408 and close.
//
//   bazel run -c opt //examples/http:http_fiber_server -- --address tcp://127.0.0.1:8081
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <string>

#include "CLI/CLI.hpp"
#include "examples/echo/echo_flags.h"
#include "examples/http/http_date.h"
#include "examples/http/http_flags.h"
#include "examples/http/http_session.h"
#include "fiberbridge/scheduler.h"
#include "fiberbridge/server.h"

namespace {

using netloop::http::kMaxUnsentBytes;

thread_local netloop::http::HttpDate loop_date;
// Response storage shared by the loop's fibers, without an allocation per
// request. A fiber borrows it (swap) for one Process + WriteAll and gives it
// back after: a fiber parked in WriteAll must own the bytes it is sending, or
// another connection's fiber would overwrite them (or free them, growing the
// buffer) meanwhile.
thread_local std::string loop_out;

struct Timeouts {
  absl::Duration idle;    // zero: none
  absl::Duration header;  // zero: none
  const netloop::http::StaticRoot* root = nullptr;  // --root; outlives the server
};

void ServeHttp(netloop::fiber::FiberConn& conn, const Timeouts& timeouts) {
  const bool has_idle = timeouts.idle > absl::ZeroDuration();
  const bool has_header = timeouts.header > absl::ZeroDuration();
  netloop::http::HttpSession session;
  std::string partial;  // unconsumed bytes, kept across reads and writes
  // When the pending request head must have completed; InfiniteFuture while
  // no head is pending.
  absl::Time head_deadline = absl::InfiniteFuture();
  for (;;) {
    absl::Time read_deadline = head_deadline;
    if (has_idle) read_deadline = std::min(read_deadline, absl::Now() + timeouts.idle);
    conn.SetReadDeadline(read_deadline);
    absl::StatusOr<std::string_view> bytes = conn.ReadView();
    if (!bytes.ok()) {
      if (absl::IsDeadlineExceeded(bytes.status()) && head_deadline <= absl::Now()) {
        std::string out;
        session.TimeOutHead(loop_date, &out);
        conn.SetWriteDeadline(absl::Now() + timeouts.header);
        (void)conn.WriteAll(out);
      }
      return;
    }
    std::string_view input = *bytes;
    if (!partial.empty()) {
      partial.append(input);
      input = partial;
    }
    // Each round answers at least one request (output_full guarantees one
    // was waiting), so this ends within the input's request count.
    for (;;) {
      std::string out;
      out.swap(loop_out);
      out.clear();
      netloop::http::SessionResult r =
          session.Process(input, loop_date, &out, kMaxUnsentBytes, timeouts.root);
      // Keep what is left before writing: the write may park, and other
      // connections' reads then overwrite the loop buffer `input` may be in.
      if (partial.empty()) {
        partial.assign(input.substr(r.consumed));
      } else {
        partial.erase(0, r.consumed);
      }
      bool written = true;
      if (!out.empty()) {
        if (has_idle) conn.SetWriteDeadline(absl::Now() + timeouts.idle);
        written = conn.WriteAll(out).ok();
      }
      // Give the storage back, unless a fiber that ran while this one was
      // parked gave back a larger one.
      if (out.capacity() > loop_out.capacity()) out.swap(loop_out);
      if (r.file_fd >= 0) {
        // A chunk per deadline: the idle timeout bounds a client that takes
        // nothing, not a long download it keeps taking.
        constexpr uint64_t kChunk = 4 << 20;
        for (uint64_t off = 0; written && off < r.file_size; off += kChunk) {
          if (has_idle) conn.SetWriteDeadline(absl::Now() + timeouts.idle);
          written = conn.SendFile(r.file_fd, off, std::min(kChunk, r.file_size - off)).ok();
        }
        ::close(r.file_fd);
      }
      if (!written || r.close_after_write) return;
      if (!r.output_full) {
        if (!r.head_pending) {
          head_deadline = absl::InfiniteFuture();
        } else if (has_header && head_deadline == absl::InfiniteFuture()) {
          head_deadline = absl::Now() + timeouts.header;
        }
        break;
      }
      input = partial;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"netloop HTTP/1.1 server (fiber model)"};
  netloop::examples::EchoFlags flags;
  flags.addresses = {"tcp://127.0.0.1:8081"};
  flags.idle_timeout_seconds = 60;
  netloop::examples::AddEchoFlags(app, flags);
  double header_timeout_seconds = 10;
  app.add_option("--header-timeout", header_timeout_seconds,
                 "answer 408 and close when a request head has not completed this many "
                 "seconds after it started (0 = never)")
      ->capture_default_str();
  netloop::examples::HttpServerFlags http_flags;
  netloop::examples::AddHttpServerFlags(app, http_flags);
  CLI11_PARSE(app, argc, argv);
  std::optional<netloop::Options> options =
      netloop::examples::OptionsOrReport(flags, "http_fiber_server");
  if (!options) return 2;
  std::unique_ptr<netloop::http::StaticRoot> root;
  if (!netloop::examples::ApplyHttpServerFlags(http_flags, "http_fiber_server", &*options, &root)) {
    return 2;
  }
  // The fiber applies the idle timeout itself, as read and write deadlines.
  Timeouts timeouts{options->idle_timeout, absl::Seconds(header_timeout_seconds), root.get()};
  options->idle_timeout = absl::ZeroDuration();
  netloop::fiber::FiberServer server;
  absl::Status s =
      server.Start(flags.addresses, *options,
                   [timeouts](netloop::fiber::FiberConn& c) { ServeHttp(c, timeouts); });
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
