// Drives many echo clients at once from one thread (non-blocking sockets and
// poll), each sending a seeded stream in seeded chunk sizes while reading
// back, and checks every byte that comes back against what was sent. Used by
// the fault-injection tests and the soak command against any echo server.
#ifndef NETLOOP_TESTS_ECHO_EXERCISER_H_
#define NETLOOP_TESTS_ECHO_EXERCISER_H_

#include <cstdint>
#include <string>
#include <vector>

namespace netloop::testing {

struct EchoPlan {
  std::string uri;  // tcp://127.0.0.1:PORT
  int clients = 4;
  uint64_t seed = 1;
  size_t min_bytes = 1;          // per client, drawn from the seed
  size_t max_bytes = 64 * 1024;  // per client
  size_t max_chunk = 16 * 1024;  // per send
  // Some clients stop reading for a while (slow readers), some close with
  // RST halfway instead of finishing (when `resets`).
  bool slow_readers = false;
  bool resets = false;
  int timeout_ms = 20000;  // for the whole run
};

struct EchoClientResult {
  uint16_t local_port = 0;
  size_t sent = 0;      // bytes the kernel took from this client
  size_t to_send = 0;   // bytes it meant to send
  size_t received = 0;  // bytes echoed back, all matching what was sent
  bool corrupt = false;       // a byte came back that was not the one sent
  bool closed_early = false;  // EOF or error before every byte came back
  bool reset_by_us = false;   // this client reset the connection on purpose
  std::string error;          // connect failure, corruption detail
};

struct EchoRunResult {
  std::vector<EchoClientResult> clients;
  bool timed_out = false;  // some client neither finished nor failed in time
  size_t total_received() const;
};

EchoRunResult RunEchoClients(const EchoPlan& plan);

}  // namespace netloop::testing

#endif  // NETLOOP_TESTS_ECHO_EXERCISER_H_
