// A program in another workspace using netloop as a Bazel dependency: an echo
// server. With --selftest it dials itself, checks one echoed message and exits.
#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "reactor/netloop.h"

namespace {

constexpr std::string_view kHello = "hello from the consumer workspace";

class Echo : public netloop::EventHandler {
 public:
  netloop::Action OnTraffic(netloop::Conn& conn) override {
    if (conn.is_client()) {  // the self-test's client side
      got_ += conn.InboundBuffered();
      conn.Discard();
      if (got_ >= kHello.size()) {
        ok_ = true;
        return netloop::Action::kShutdown;
      }
      return netloop::Action::kNone;
    }
    netloop::ByteView bytes = conn.Next();
    std::string_view pieces[] = {bytes.first, bytes.second};
    (void)conn.Writev(pieces);
    return netloop::Action::kNone;
  }
  netloop::Action OnOpen(netloop::Conn& conn) override {
    if (conn.is_client()) (void)conn.Write(kHello);
    return netloop::Action::kNone;
  }
  bool ok() const { return ok_; }

 private:
  size_t got_ = 0;  // one client connection: touched by one loop only
  std::atomic<bool> ok_{false};
};

}  // namespace

int main(int argc, char** argv) {
  bool selftest = argc > 1 && std::strcmp(argv[1], "--selftest") == 0;
  Echo handler;
  netloop::Options options;
  options.loops = 1;
  netloop::Engine engine;
  absl::Status s = engine.Start(
      handler, {selftest ? "tcp://127.0.0.1:0" : "tcp://127.0.0.1:9000"}, options);
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  if (selftest) {
    auto dialled = engine.Dial(engine.ListenAddresses()[0]);
    if (!dialled.ok()) return 1;
    std::thread([&engine] {
      std::this_thread::sleep_for(std::chrono::seconds(10));
      engine.Stop();  // never hang: fail after 10 s
    }).detach();
  } else {
    engine.StopOnSignals();
  }
  (void)engine.Wait();
  if (selftest) {
    std::printf("consumer selftest: %s\n", handler.ok() ? "ok" : "FAILED");
    return handler.ok() ? 0 : 1;
  }
  return 0;
}
