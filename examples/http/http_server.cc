// HTTP/1.1 plaintext server, callback model. The protocol work is the shared
// HttpSession; this file only moves bytes: OnTraffic hands the unconsumed
// inbound bytes to the session, writes all responses of a pipelined batch with
// one Write, and closes when the session says so.
//
//   bazel run -c opt //examples/http:http_server -- --address tcp://127.0.0.1:8080
#include <cstdio>
#include <ctime>
#include <string>

#include "CLI/CLI.hpp"
#include "examples/echo/echo_flags.h"
#include "examples/http/http_date.h"
#include "examples/http/http_session.h"
#include "reactor/netloop.h"

namespace {

// One per loop thread: the Date header value, refreshed by a 1 s loop timer,
// and the buffer responses are assembled in (reused: no allocation per
// request once it has grown).
thread_local netloop::http::HttpDate loop_date;
thread_local std::string loop_out;

class HttpHandler : public netloop::EventHandler {
 public:
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
    conn.set_context(new netloop::http::HttpSession());
    return netloop::Action::kNone;
  }

  netloop::Action OnTraffic(netloop::Conn& conn) override {
    auto* session = static_cast<netloop::http::HttpSession*>(conn.context());
    std::string_view input = conn.PeekContiguous();
    loop_out.clear();
    netloop::http::SessionResult r = session->Process(input, loop_date, &loop_out);
    conn.Discard(r.consumed);
    if (!loop_out.empty()) (void)conn.Write(loop_out);
    return r.close_after_write ? netloop::Action::kClose : netloop::Action::kNone;
  }

  void OnClose(netloop::Conn& conn, const absl::Status&) override {
    delete static_cast<netloop::http::HttpSession*>(conn.context());
    conn.set_context(nullptr);
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"netloop HTTP/1.1 plaintext server (callback model)"};
  netloop::examples::EchoFlags flags;
  flags.addresses = {"tcp://127.0.0.1:8080"};
  flags.idle_timeout_seconds = 60;
  netloop::examples::AddEchoFlags(app, flags);
  CLI11_PARSE(app, argc, argv);
  std::optional<netloop::Options> options =
      netloop::examples::OptionsOrReport(flags, "http_server");
  if (!options) return 2;
  HttpHandler handler;
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
