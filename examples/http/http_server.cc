// HTTP/1.1 server, callback model; HTTPS with --tls-cert and --tls-key (the
// engine does TLS: OnTraffic sees plaintext either way). The protocol work is
// the shared HttpSession; this file only moves bytes: OnTraffic hands the
// unconsumed inbound bytes to the session, writes all responses of a
// pipelined batch with one Write, and closes when the session says so.
//
// Two bounds on what a client can make a connection hold:
//   - Unsent responses: at most about kMaxUnsentBytes. The session answers
//     requests only while the connection's outbound bytes are within it, and
//     the engine's write high-water mark (set to the same bound) stops reading
//     the connection meanwhile; once the client has read enough,
//     OnBackpressure wakes the connection and the waiting requests are
//     answered. A client pipelining without reading costs about 64 KiB of
//     responses plus one read buffer of requests, not all it sends.
//   - Time for a request head: --header-timeout seconds from the read that
//     left a head incomplete (slowloris: one header byte now and then keeps
//     the idle timeout from ever firing). Then 408 and close. The timer is
//     armed only when a read ends mid-head and no such timer is pending, and
//     re-checks a timestamp when it fires, so heads that arrive whole cost no
//     timer work. Idle time between requests is the idle timeout's business.
//
//   bazel run -c opt //examples/http:http_server -- --address tcp://127.0.0.1:8080
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <string>

#include "CLI/CLI.hpp"
#include "examples/echo/echo_flags.h"
#include "examples/http/http_date.h"
#include "examples/http/http_flags.h"
#include "examples/http/http_session.h"
#include "reactor/clock.h"
#include "reactor/netloop.h"

namespace {

using netloop::http::kMaxUnsentBytes;

// One per loop thread: the Date header value, refreshed by a 1 s loop timer,
// and the buffer responses are assembled in (reused: no allocation per
// request once it has grown).
thread_local netloop::http::HttpDate loop_date;
thread_local std::string loop_out;

// Per-connection state, the Conn's context.
struct HttpConn {
  netloop::http::HttpSession session;
  // Loop time (NowNanos) of the read that left the pending request head
  // incomplete; 0 while no head is pending.
  int64_t head_started_ns = 0;
  // At most one head timer per connection; it may outlive the head it was
  // armed for (it then re-checks head_started_ns and goes quiet).
  netloop::TimerId head_timer;
};

class HttpHandler : public netloop::EventHandler {
 public:
  // `header_timeout` zero or less: no request-head deadline.
  // `root` (may be null) outlives the handler.
  HttpHandler(absl::Duration header_timeout, const netloop::http::StaticRoot* root)
      : header_timeout_ns_(header_timeout > absl::ZeroDuration()
                               ? netloop::DurationToNanosSaturated(header_timeout)
                               : 0),
        root_(root) {}

  netloop::Action OnBoot(netloop::Engine& engine) override {
    for (int i = 0; i < engine.num_loops(); ++i) {
      netloop::EventLoop& loop = engine.loop(i);
      loop.QueueInLoop([&loop] {
        loop_date.Refresh(std::time(nullptr));
        loop.RunEvery(absl::Seconds(1), [] { loop_date.Refresh(std::time(nullptr)); });
      });
    }
    return netloop::Action::kNone;
  }

  netloop::Action OnOpen(netloop::Conn& conn) override {
    conn.set_context(new HttpConn());
    return netloop::Action::kNone;
  }

  netloop::Action OnTraffic(netloop::Conn& conn) override {
    auto* c = static_cast<HttpConn*>(conn.context());
    // Each round answers at least one request (output_full guarantees one
    // was waiting), so this ends within the input's request count.
    for (;;) {
      std::string_view input = conn.PeekContiguous();
      loop_out.clear();
      netloop::http::SessionResult r =
          c->session.Process(input, loop_date, &loop_out, kMaxUnsentBytes, root_);
      conn.Discard(r.consumed);
      if (!loop_out.empty()) (void)conn.Write(loop_out);
      if (r.file_fd >= 0) {
        // Queued after the head, before anything written later; the file
        // counts toward the high-water mark like written bytes.
        (void)conn.SendFile(r.file_fd, 0, r.file_size);
        ::close(r.file_fd);
      }
      if (r.close_after_write) return netloop::Action::kClose;
      if (!conn.is_open()) return netloop::Action::kNone;  // the write failed
      if (!r.output_full) {
        TrackHead(conn, *c, r.head_pending);
        return netloop::Action::kNone;
      }
      // Over the bound the engine has stopped reading (the high-water mark
      // is the same bound); OnBackpressure resumes. Within it the socket
      // took the bytes: keep answering.
      if (conn.OutboundBuffered() > kMaxUnsentBytes) return netloop::Action::kNone;
    }
  }

  void OnBackpressure(netloop::Conn& conn, bool paused) override {
    // Requests left unanswered while the output was full wait in the input
    // buffer, and no new bytes may ever arrive to trigger OnTraffic (the
    // client may have sent everything): look again now.
    if (!paused) conn.Wake();
  }

  void OnClose(netloop::Conn& conn, const absl::Status&) override {
    auto* c = static_cast<HttpConn*>(conn.context());
    if (c->head_timer.valid()) conn.loop().CancelTimer(c->head_timer);
    delete c;
    conn.set_context(nullptr);
  }

 private:
  // Starts the head deadline when a read ends mid-head, clears it when not.
  // Costs a store when heads arrive whole.
  void TrackHead(netloop::Conn& conn, HttpConn& c, bool head_pending) {
    if (!head_pending) {
      c.head_started_ns = 0;
      return;
    }
    if (header_timeout_ns_ == 0 || c.head_started_ns != 0) return;
    c.head_started_ns = conn.loop().NowNanos();
    if (!c.head_timer.valid()) ArmHeadTimer(conn, c, c.head_started_ns + header_timeout_ns_);
  }

  void ArmHeadTimer(netloop::Conn& conn, HttpConn& c, int64_t when_ns) {
    // The timer goes through the ConnRef: Run finds the connection by id (it
    // may have closed) and keeps it alive while OnHeadTimer may close it.
    c.head_timer = conn.loop().RunAtNanos(when_ns, [this, ref = conn.Ref()] {
      ref.Run([this](netloop::Conn* conn) {
        if (conn != nullptr && conn->is_open()) OnHeadTimer(*conn);
      });
    });
  }

  void OnHeadTimer(netloop::Conn& conn) {
    auto* c = static_cast<HttpConn*>(conn.context());
    c->head_timer = netloop::TimerId();
    if (c->head_started_ns == 0) return;  // that head completed
    const int64_t deadline = c->head_started_ns + header_timeout_ns_;
    if (conn.loop().NowNanos() < deadline) {  // a later head started since
      ArmHeadTimer(conn, *c, deadline);
      return;
    }
    loop_out.clear();
    c->session.TimeOutHead(loop_date, &loop_out);
    if (!loop_out.empty()) (void)conn.Write(loop_out);
    conn.Close();  // may free *c
  }

  const int64_t header_timeout_ns_;
  const netloop::http::StaticRoot* const root_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"netloop HTTP/1.1 server (callback model)"};
  netloop::examples::EchoFlags flags;
  flags.addresses = {"tcp://127.0.0.1:8080"};
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
      netloop::examples::OptionsOrReport(flags, "http_server");
  if (!options) return 2;
  std::unique_ptr<netloop::http::StaticRoot> root;
  if (!netloop::examples::ApplyHttpServerFlags(http_flags, "http_server", &*options, &root)) {
    return 2;
  }
  // Stop reading a connection whose unsent responses pass the session's
  // output budget (see the top of this file); resume at half of it.
  options->write_high_water = kMaxUnsentBytes;
  options->write_low_water = kMaxUnsentBytes / 2;
  // Unconsumed input is at most one request not yet complete (head and body
  // within the parser's limits) plus the read that brought its last bytes,
  // plus on io_uring the receives in flight when backpressure set in (see
  // Options::write_high_water: up to 32 buffers).
  const netloop::http::ParserLimits limits;
  options->max_inbound_bytes = limits.max_header_bytes + limits.max_body_bytes +
                               options->read_buffer_size + 32 * options->uring_buffer_size;
  HttpHandler handler(absl::Seconds(header_timeout_seconds), root.get());
  netloop::Engine engine;
  absl::Status s = engine.Start(handler, flags.addresses, *options);
  if (!s.ok()) {
    std::fprintf(stderr, "http_server: %s\n", s.ToString().c_str());
    return 1;
  }
  engine.StopOnSignals();
  netloop::examples::PrintListening(engine.ListenAddresses());
  return engine.Wait().ok() ? 0 : 1;
}
