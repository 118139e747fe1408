#include "tests/echo_exerciser.h"


#include <algorithm>
#include <chrono>

#include "reactor/socket_types.h"
#include "tests/test_util.h"

namespace netloop::testing {
namespace {

// splitmix64, so a seed means the same plan everywhere.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 7) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  size_t Between(size_t lo, size_t hi) {
    return hi <= lo ? lo : lo + static_cast<size_t>(Next() % (hi - lo + 1));
  }

 private:
  uint64_t state_;
};

struct Client {
  SocketHandle fd = kInvalidSocket;
  std::string data;
  size_t reset_at = SIZE_MAX;  // reset once this many bytes came back
  int pause_reads = 0;         // poll rounds left without reading
  bool done = false;
  EchoClientResult r;
};

uint16_t LocalPort(SocketHandle fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
#if defined(_WIN32)
  if (getsockname(static_cast<SOCKET>(fd), reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
#else
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
#endif
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

void Finish(Client& c, bool early) {
  c.r.closed_early = early;
  c.done = true;
  if (c.fd != kInvalidSocket) CloseClient(c.fd);
  c.fd = kInvalidSocket;
}

}  // namespace

size_t EchoRunResult::total_received() const {
  size_t n = 0;
  for (const auto& c : clients) n += c.received;
  return n;
}

EchoRunResult RunEchoClients(const EchoPlan& plan) {
  Rng rng(plan.seed);
  std::vector<Client> clients(static_cast<size_t>(plan.clients));
  for (size_t i = 0; i < clients.size(); ++i) {
    Client& c = clients[i];
    c.data = Pattern(rng.Between(plan.min_bytes, plan.max_bytes),
                     static_cast<uint32_t>(plan.seed * 131 + i));
    c.r.to_send = c.data.size();
    if (plan.resets && rng.Next() % 4 == 0) c.reset_at = rng.Between(0, c.data.size());
    c.fd = Connect(plan.uri);
    if (c.fd == kInvalidSocket) {
      c.r.error = "connect failed";
      Finish(c, true);
      continue;
    }
    c.r.local_port = LocalPort(c.fd);
    if (c.data.empty()) {  // connect and close: churn, nothing to wait for
      Finish(c, false);
      continue;
    }
    SetClientNonBlocking(c.fd, true);
  }
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(plan.timeout_ms);
  std::vector<ClientPoll> pfds;
  std::vector<Client*> polled;
  char buf[65536];
  EchoRunResult out;
  for (;;) {
    pfds.clear();
    polled.clear();
    for (Client& c : clients) {
      if (c.done) continue;
      ClientPoll p;
      p.fd = c.fd;
      p.want_write = c.r.sent < c.data.size();
      if (c.pause_reads > 0) {
        --c.pause_reads;
      } else {
        p.want_read = true;
      }
      pfds.push_back(p);
      polled.push_back(&c);
    }
    if (pfds.empty()) break;
    if (std::chrono::steady_clock::now() > deadline) {
      out.timed_out = true;
      break;
    }
    if (PollClients(pfds, 100) < 0 && !LastCallWouldBlock()) {
      out.timed_out = true;  // cannot tell how the clients fared: a failure
      break;
    }
    for (size_t i = 0; i < pfds.size(); ++i) {
      Client& c = *polled[i];
      if (pfds[i].writable && c.r.sent < c.data.size()) {
        size_t chunk = std::min(rng.Between(1, plan.max_chunk), c.data.size() - c.r.sent);
        long n = SendSome(c.fd, c.data.data() + c.r.sent, chunk);
        if (n > 0) {
          c.r.sent += static_cast<size_t>(n);
        } else if (n < 0 && !LastCallWouldBlock()) {
          Finish(c, true);
          continue;
        }
      }
      if (pfds[i].readable) {
        long n = ReceiveSome(c.fd, buf, sizeof(buf));
        if (n > 0) {
          size_t k = static_cast<size_t>(n);
          if (c.r.received + k > c.r.sent ||
              c.data.compare(c.r.received, k, buf, k) != 0) {
            c.r.corrupt = true;
            c.r.error = "bytes differ from those sent at offset " +
                        std::to_string(c.r.received);
            Finish(c, true);
            continue;
          }
          c.r.received += k;
          if (plan.slow_readers && rng.Next() % 16 == 0) {
            c.pause_reads = static_cast<int>(rng.Between(1, 5));
          }
          if (c.r.received >= c.reset_at) {
            ResetClient(c.fd);  // SO_LINGER 0: the server sees a reset
            c.fd = kInvalidSocket;
            c.r.reset_by_us = true;
            Finish(c, false);
            continue;
          }
          if (c.r.received == c.data.size()) Finish(c, false);
        } else if (n == 0 || !LastCallWouldBlock()) {
          Finish(c, true);
        }
      }
    }
  }
  for (Client& c : clients) {
    if (c.fd != kInvalidSocket) CloseClient(c.fd);
    out.clients.push_back(c.r);
  }
  return out;
}

}  // namespace netloop::testing
