// UDP echo, callback model: each loop owns a SO_REUSEPORT socket for the
// address, OnTraffic sees one datagram at a time with its sender, and Write
// sends the reply to that sender. Same flags as examples/echo.
//
//   bazel run -c opt //examples/udp_echo -- --address udp://127.0.0.1:9002
#include <cstdio>

#include "CLI/CLI.hpp"
#include "examples/echo/echo_flags.h"
#include "reactor/netloop.h"

namespace {

class UdpEcho : public netloop::EventHandler {
 public:
  netloop::Action OnTraffic(netloop::Conn& conn) override {
    // One datagram, whole (or cut at Options::udp_max_datagram); the reply
    // goes to whoever sent it. A full send buffer drops the reply, as UDP
    // may: the peer retries.
    netloop::ByteView datagram = conn.Next();
    (void)conn.Write(datagram.first);
    return netloop::Action::kNone;
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"netloop UDP echo server"};
  netloop::examples::EchoFlags flags;
  flags.addresses = {"udp://127.0.0.1:9002"};
  netloop::examples::AddEchoFlags(app, flags);
  CLI11_PARSE(app, argc, argv);
  std::optional<netloop::Options> options =
      netloop::examples::OptionsOrReport(flags, "udp_echo");
  if (!options) return 2;
  UdpEcho handler;
  netloop::Engine engine;
  absl::Status s = engine.Start(handler, flags.addresses, *options);
  if (!s.ok()) {
    std::fprintf(stderr, "udp_echo: %s\n", s.ToString().c_str());
    return 1;
  }
  engine.StopOnSignals();
  netloop::examples::PrintListening(engine.ListenAddresses());
  return engine.Wait().ok() ? 0 : 1;
}
