// The callback echo server: every byte that arrives is written straight back
// from the loop's shared read buffer, without a copy of its own.
//
//   bazel run -c opt //examples/echo -- --address tcp://127.0.0.1:9000 --loops 2
#include <cstdio>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "examples/echo/echo_flags.h"
#include "reactor/netloop.h"

namespace {

class EchoHandler : public netloop::EventHandler {
 public:
  netloop::Action OnTraffic(netloop::Conn& conn) override {
    netloop::ByteView bytes = conn.Next();
    std::string_view pieces[] = {bytes.first, bytes.second};
    if (bytes.second.empty()) {
      (void)conn.Write(bytes.first);
    } else {
      (void)conn.Writev(pieces);
    }
    return netloop::Action::kNone;
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"netloop callback echo server"};
  netloop::examples::EchoFlags flags;
  netloop::examples::AddEchoFlags(app, flags);
  CLI11_PARSE(app, argc, argv);
  std::optional<netloop::Options> options =
      netloop::examples::OptionsOrReport(flags, "echo");
  if (!options) return 2;
  EchoHandler handler;
  netloop::Engine engine;
  absl::Status s = engine.Start(handler, flags.addresses, *options);
  if (!s.ok()) {
    std::fprintf(stderr, "echo: %s\n", s.ToString().c_str());
    return 1;
  }
  engine.StopOnSignals();
  netloop::examples::PrintListening(engine.ListenAddresses());
  s = engine.Wait();
  return s.ok() ? 0 : 1;
}
