// The one flag every C++ peer takes, spelled as netloop's example servers
// spell it (--address tcp://127.0.0.1:PORT, port 0 = any), so tools/duel
// starts peers and its own servers alike; and the line it waits for.
#ifndef NETLOOP_PEERS_LISTEN_ADDRESS_H_
#define NETLOOP_PEERS_LISTEN_ADDRESS_H_

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

namespace netloop::peers {

struct ListenAddress {
  std::string host;  // numeric IPv4
  int port = 0;
};

// Parses `--address tcp://HOST:PORT` or `--address=tcp://HOST:PORT` from the
// command line; without the flag, `fallback`. Prints the problem and returns
// nullopt on anything else, so a typo cannot start a server elsewhere.
inline std::optional<ListenAddress> ParseListenAddress(int argc, char** argv,
                                                       std::string_view fallback) {
  std::string_view uri = fallback;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--address" && i + 1 < argc) {
      uri = argv[++i];
    } else if (arg.substr(0, 10) == "--address=") {
      uri = arg.substr(10);
    } else {
      std::fprintf(stderr, "%s: unknown argument %s (usage: --address tcp://HOST:PORT)\n",
                   argv[0], argv[i]);
      return std::nullopt;
    }
  }
  constexpr std::string_view kScheme = "tcp://";
  const size_t colon = uri.rfind(':');
  if (uri.substr(0, kScheme.size()) != kScheme || colon < kScheme.size()) {
    std::fprintf(stderr, "%s: --address must be tcp://HOST:PORT\n", argv[0]);
    return std::nullopt;
  }
  ListenAddress a;
  a.host = std::string(uri.substr(kScheme.size(), colon - kScheme.size()));
  const std::string port(uri.substr(colon + 1));
  char* end = nullptr;
  const long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p < 0 || p > 65535) {
    std::fprintf(stderr, "%s: bad port in %s\n", argv[0], std::string(uri).c_str());
    return std::nullopt;
  }
  a.port = static_cast<int>(p);
  return a;
}

// tools/duel reads the port from this line; it is flushed at once because
// stdout is a pipe there.
inline void PrintListening(const std::string& host, int port) {
  std::printf("listening on tcp://%s:%d\n", host.c_str(), port);
  std::fflush(stdout);
}

}  // namespace netloop::peers

#endif  // NETLOOP_PEERS_LISTEN_ADDRESS_H_
