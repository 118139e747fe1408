// UDP echo in both models. Callbacks (the default): each loop owns a
// SO_REUSEPORT socket for the address, OnTraffic sees one datagram at a time
// with its sender, and Write sends the reply to that sender. --fiber: a fiber
// per loop with a PacketConn of its own on the same port, ReadFrom then
// WriteTo. Same flags as examples/echo.
//
//   bazel run -c opt //examples/udp_echo -- --address udp://127.0.0.1:9002 [--fiber]
#include <cstdio>
#include <future>
#include <string>

#include "CLI/CLI.hpp"
#include "examples/echo/echo_flags.h"
#include "fiberbridge/packet_conn.h"
#include "fiberbridge/scheduler.h"
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

// The fiber model: one fiber per loop, each with its own socket on the port.
void ServeDatagrams(netloop::fiber::PacketConn& pc) {
  std::string buf(65536, '\0');  // on the heap: a fiber's stack is small
  for (;;) {
    absl::StatusOr<netloop::fiber::PacketConn::Datagram> d =
        pc.ReadFrom(std::span<char>(buf.data(), buf.size()));
    if (!d.ok()) return;  // closed by Stop
    (void)pc.WriteTo(std::string_view(buf.data(), d->size), d->from);
  }
}

int RunFibers(const std::string& address, const netloop::Options& options) {
  netloop::EventHandler none;
  netloop::Engine engine;
  if (absl::Status s = engine.Start(none, {}, options); !s.ok()) {
    std::fprintf(stderr, "udp_echo: %s\n", s.ToString().c_str());
    return 1;
  }
  // Loop 0's socket picks the port (for :0); the other loops bind that one.
  std::promise<std::string> bound;
  std::future<std::string> port_uri = bound.get_future();
  auto serve_on = [&engine](int loop, std::string uri, std::promise<std::string>* report) {
    netloop::EventLoop& l = engine.loop(loop);
    // On the loop's thread: Stop then waits for this loop's fibers.
    l.RunInLoop([&engine, loop] {
      engine.AddLoopService(loop, &netloop::fiber::Scheduler::For(engine.loop(loop)));
    });
    netloop::fiber::Spawn(l, [uri, report] {
      auto pc = netloop::fiber::PacketConn::Listen(uri);
      if (report != nullptr) {
        report->set_value(pc.ok() ? "udp://" + (*pc)->LocalAddress().ToString()
                                  : "error: " + pc.status().ToString());
      }
      if (pc.ok()) ServeDatagrams(**pc);
    });
  };
  serve_on(0, address, &bound);
  const std::string uri = port_uri.get();
  if (uri.rfind("error: ", 0) == 0) {
    std::fprintf(stderr, "udp_echo: %s\n", uri.c_str());
    return 1;
  }
  for (int i = 1; i < engine.num_loops(); ++i) serve_on(i, uri, nullptr);
  engine.StopOnSignals();
  netloop::examples::PrintListening({uri});
  return engine.Wait().ok() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"netloop UDP echo server"};
  netloop::examples::EchoFlags flags;
  flags.addresses = {"udp://127.0.0.1:9002"};
  netloop::examples::AddEchoFlags(app, flags);
  bool fiber = false;
  app.add_flag("--fiber", fiber, "serve with a fiber and a PacketConn per loop");
  CLI11_PARSE(app, argc, argv);
  std::optional<netloop::Options> options =
      netloop::examples::OptionsOrReport(flags, "udp_echo");
  if (!options) return 2;
  if (fiber) return RunFibers(flags.addresses.at(0), *options);
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
