#include "tests/echo_exerciser.h"

#include <errno.h>
#if !defined(_WIN32)
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <chrono>

#include "reactor/socket_types.h"
#include "tests/test_util.h"

namespace netloop::testing {
namespace {

// The few socket calls that differ on Windows (WSAPoll, FIONBIO, and
// WSAGetLastError instead of errno).
#if defined(_WIN32)
using PollFd = WSAPOLLFD;
constexpr short kReadable = POLLRDNORM;
constexpr short kWritable = POLLWRNORM;
int PollAll(std::vector<PollFd>& fds, int ms) {
  return WSAPoll(fds.data(), static_cast<ULONG>(fds.size()), ms);
}
bool Interrupted() { return false; }
void SetNonBlocking(SocketHandle fd) {
  u_long on = 1;
  ioctlsocket(static_cast<SOCKET>(fd), FIONBIO, &on);
}
long SendSome(SocketHandle fd, const char* data, size_t n) {
  return send(static_cast<SOCKET>(fd), data, static_cast<int>(n), 0);
}
long ReceiveSome(SocketHandle fd, char* buf, size_t n) {
  return recv(static_cast<SOCKET>(fd), buf, static_cast<int>(n), 0);
}
// After a call that failed: whether it only would have blocked.
bool WouldBlock() { return WSAGetLastError() == WSAEWOULDBLOCK; }
#else
using PollFd = pollfd;
constexpr short kReadable = POLLIN;
constexpr short kWritable = POLLOUT;
int PollAll(std::vector<PollFd>& fds, int ms) { return poll(fds.data(), fds.size(), ms); }
bool Interrupted() { return errno == EINTR; }
void SetNonBlocking(SocketHandle fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }
long SendSome(SocketHandle fd, const char* data, size_t n) {
  return send(fd, data, n, MSG_NOSIGNAL);
}
long ReceiveSome(SocketHandle fd, char* buf, size_t n) { return recv(fd, buf, n, 0); }
bool WouldBlock() { return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR; }
#endif

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
    SetNonBlocking(c.fd);
  }
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(plan.timeout_ms);
  std::vector<PollFd> pfds;
  std::vector<Client*> polled;
  char buf[65536];
  EchoRunResult out;
  for (;;) {
    pfds.clear();
    polled.clear();
    for (Client& c : clients) {
      if (c.done) continue;
      short events = 0;
      if (c.r.sent < c.data.size()) events |= kWritable;
      if (c.pause_reads > 0) {
        --c.pause_reads;
      } else {
        events |= kReadable;
      }
      PollFd p{};
      p.fd = c.fd;
      p.events = events;
      pfds.push_back(p);
      polled.push_back(&c);
    }
    if (pfds.empty()) break;
    if (std::chrono::steady_clock::now() > deadline) {
      out.timed_out = true;
      break;
    }
    if (PollAll(pfds, 100) < 0 && !Interrupted()) {
      out.timed_out = true;  // cannot tell how the clients fared: a failure
      break;
    }
    for (size_t i = 0; i < pfds.size(); ++i) {
      Client& c = *polled[i];
      const short re = pfds[i].revents;
      if ((re & kWritable) && c.r.sent < c.data.size()) {
        size_t chunk = std::min(rng.Between(1, plan.max_chunk), c.data.size() - c.r.sent);
        long n = SendSome(c.fd, c.data.data() + c.r.sent, chunk);
        if (n > 0) {
          c.r.sent += static_cast<size_t>(n);
        } else if (n < 0 && !WouldBlock()) {
          Finish(c, true);
          continue;
        }
      }
      if (re & (kReadable | POLLHUP | POLLERR)) {
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
        } else if (n == 0 || !WouldBlock()) {
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
