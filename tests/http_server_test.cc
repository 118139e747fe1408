// Both HTTP servers (callback and fiber) against a real client over
// loopback: keep-alive, pipelining, 400 and 431 paths, idle timeout;
// ambiguous framing and header bombs; the request-head deadline (slowloris);
// memory under a pipelining flood from a client that does not read, and a
// handler parked writing to such a client.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace netloop {
namespace {

using testing::Connect;
using testing::PortOf;
using testing::ReadExactly;
using testing::ReadToEof;
using testing::WriteAll;

// Starts a server binary from the runfiles with an ephemeral port, two loops
// and the given extra flags (by default a 1 s idle timeout).
class ServerBinary {
 public:
  explicit ServerBinary(const std::string& rel,
                        std::vector<std::string> flags = {"--idle-timeout", "1"}) {
    std::string path = std::string(getenv("TEST_SRCDIR")) + "/netloop/" + rel;
    std::vector<std::string> args = {path, "--address", "tcp://127.0.0.1:0"};
    if (std::find(flags.begin(), flags.end(), "--loops") == flags.end()) {
      args.insert(args.end(), {"--loops", "2"});
    }
    args.insert(args.end(), flags.begin(), flags.end());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int out[2];
    pipe(out);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      execv(path.c_str(), argv.data());
      _exit(127);
    }
    close(out[1]);
    FILE* f = fdopen(out[0], "r");
    char line[256] = {0};
    if (fgets(line, sizeof(line), f) != nullptr) {
      std::string l(line);
      uri_ = l.substr(l.find("tcp://"));
      uri_.erase(uri_.find_last_not_of("\n") + 1);
    }
  }
  ~ServerBinary() {
    kill(pid_, SIGTERM);
    int status;
    waitpid(pid_, &status, 0);
    exit_ok_ = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  const std::string& uri() const { return uri_; }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_;
  std::string uri_;
  bool exit_ok_ = false;
};

// Reads until `n` complete responses ("Hello, World!" bodies) arrived.
std::string ReadResponses(int fd, int n) {
  std::string got;
  char buf[65536];
  int seen = 0;
  while (seen < n) {
    ssize_t r = recv(fd, buf, sizeof(buf), 0);
    if (r <= 0) break;
    got.append(buf, static_cast<size_t>(r));
    seen = 0;
    for (size_t p = 0; (p = got.find("HTTP/1.1 ", p)) != std::string::npos; ++p) ++seen;
  }
  return got;
}

class HttpServerTest : public ::testing::TestWithParam<const char*> {};

TEST_P(HttpServerTest, KeepAlivePipeliningAndErrors) {
  ServerBinary server(GetParam());
  ASSERT_FALSE(server.uri().empty());
  int fd = Connect(server.uri());
  ASSERT_GE(fd, 0);
  // Keep-alive: three requests, one at a time, same connection.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(WriteAll(fd, "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n"));
    std::string r = ReadResponses(fd, 1);
    EXPECT_EQ(r.find("HTTP/1.1 200 OK"), 0u);
    EXPECT_NE(r.find("\r\nDate: "), std::string::npos);
    EXPECT_NE(r.find("Hello, World!"), std::string::npos);
  }
  // Pipelining: 16 requests in one write, split oddly, answered in order.
  std::string batch;
  for (int i = 0; i < 16; ++i) batch += "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_TRUE(WriteAll(fd, batch.substr(0, 100)));
  usleep(2000);
  ASSERT_TRUE(WriteAll(fd, batch.substr(100)));
  std::string r = ReadResponses(fd, 16);
  int oks = 0;
  for (size_t p = 0; (p = r.find("Hello, World!", p)) != std::string::npos; ++p) ++oks;
  EXPECT_EQ(oks, 16);
  close(fd);

  // Malformed: 400 and close.
  fd = Connect(server.uri());
  ASSERT_TRUE(WriteAll(fd, "NOT A REQUEST\x01\r\n\r\n"));
  auto bad = ReadToEof(fd);
  ASSERT_TRUE(bad.has_value());
  EXPECT_EQ(bad->find("HTTP/1.1 400"), 0u) << *bad;
  close(fd);

  // Too large a header section: 431 and close.
  fd = Connect(server.uri());
  std::string huge = "GET / HTTP/1.1\r\nX: " + std::string(10000, 'a') + "\r\n\r\n";
  WriteAll(fd, huge);
  auto big = ReadToEof(fd);
  ASSERT_TRUE(big.has_value());
  EXPECT_EQ(big->find("HTTP/1.1 431"), 0u);
  close(fd);

  // Idle timeout (1 s here): a silent client is closed.
  fd = Connect(server.uri());
  absl::Time start = absl::Now();
  auto idle = ReadToEof(fd);
  ASSERT_TRUE(idle.has_value());
  EXPECT_TRUE(idle->empty());
  EXPECT_LT(absl::Now() - start, absl::Seconds(8));
  close(fd);
}

// ---------------------------------------------------------------- helpers

// The value in kB of `field` ("VmRSS", "VmHWM") in /proc/<pid>/status; -1 if
// it cannot be read.
long ProcStatusKb(pid_t pid, const std::string& field) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
  }
  return -1;
}

struct Received {
  std::string bytes;
  bool closed = false;  // EOF or reset seen (not a timeout)
};

// Sends `data` (all of it unless the server closes first) while reading what
// comes back, until the server closes the connection or `limit` passes. For
// requests a server may answer before reading them whole: a blocking write of
// a 1 MiB header could wait forever on a server that stopped reading. A reset
// after the response counts as closed (closing with unread input sends RST).
Received SendAndReadUntilClosed(int fd, std::string_view data,
                                absl::Duration limit = absl::Seconds(10)) {
  Received got;
  const int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  const absl::Time deadline = absl::Now() + limit;
  size_t sent = 0;
  char buf[65536];
  for (int rounds = 0; rounds < 100000 && absl::Now() < deadline; ++rounds) {
    pollfd p{fd, static_cast<short>(POLLIN | (sent < data.size() ? POLLOUT : 0)), 0};
    const int ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now())) + 1;
    if (poll(&p, 1, ms) <= 0) continue;
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n > 0) {
        got.bytes.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        got.closed = true;
        break;
      }
    }
    if ((p.revents & POLLOUT) && sent < data.size()) {
      ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<size_t>(n);
      } else if (errno != EAGAIN && errno != EINTR) {
        sent = data.size();  // the server is gone; read what it said
      }
    }
  }
  fcntl(fd, F_SETFL, flags);
  return got;
}

size_t CountOccurrences(std::string_view haystack, std::string_view needle) {
  size_t n = 0;
  for (size_t p = 0; (p = haystack.find(needle, p)) != std::string_view::npos; p += needle.size()) {
    ++n;
  }
  return n;
}

// Connects with a small receive buffer, so a client that does not read fills
// up quickly and the server's own buffering is what is measured.
int ConnectSmallReceiveBuffer(const std::string& uri) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int size = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(PortOf(uri));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Sends pipelined copies of `request` on every fd without ever reading, until
// the server takes no more bytes on any of them (none becomes writable within
// `quiet_ms`). Returns the bytes sent on each (whole requests, then possibly
// part of one), or an empty vector if a connection failed or the bounds ran
// out first: a server that keeps reading is buffering without bound.
std::vector<size_t> FloodUntilStalled(const std::vector<int>& fds, std::string_view request,
                                      size_t max_bytes_each, absl::Duration max_time,
                                      int quiet_ms = 1000) {
  std::string chunk;
  while (chunk.size() < 64 * 1024) chunk.append(request);
  std::vector<size_t> sent(fds.size(), 0);
  std::vector<int> flags;
  for (int fd : fds) {
    flags.push_back(fcntl(fd, F_GETFL));
    fcntl(fd, F_SETFL, flags.back() | O_NONBLOCK);
  }
  const absl::Time deadline = absl::Now() + max_time;
  bool stalled = false;
  bool failed = false;
  while (!stalled && !failed && absl::Now() < deadline) {
    for (size_t i = 0; i < fds.size() && !failed; ++i) {
      for (int k = 0; k < 1000; ++k) {
        const size_t offset = sent[i] % chunk.size();
        ssize_t n = send(fds[i], chunk.data() + offset, chunk.size() - offset, MSG_NOSIGNAL);
        if (n <= 0) {
          failed = n < 0 && errno != EAGAIN && errno != EINTR;
          break;
        }
        sent[i] += static_cast<size_t>(n);
      }
      failed |= sent[i] > max_bytes_each;
    }
    std::vector<pollfd> polls;
    for (int fd : fds) polls.push_back(pollfd{fd, POLLOUT, 0});
    const int ready = poll(polls.data(), polls.size(), quiet_ms);
    if (ready == 0) stalled = true;
    for (const pollfd& p : polls) failed |= (p.revents & (POLLERR | POLLHUP)) != 0;
  }
  for (size_t i = 0; i < fds.size(); ++i) fcntl(fds[i], F_SETFL, flags[i]);
  if (!stalled || failed) return {};
  return sent;
}

// Reads `n` responses of `size` bytes each and counts those that are a
// whole plaintext 200 (responses are fixed-size: the Date value is too).
size_t ReadPlaintextResponses(int fd, size_t n, size_t size) {
  std::optional<std::string> got = ReadExactly(fd, n * size);
  if (!got) return 0;
  size_t good = 0;
  for (size_t k = 0; k < n; ++k) {
    std::string_view r = std::string_view(*got).substr(k * size, size);
    if (r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\nHello, World!")) ++good;
  }
  return good;
}

// ---------------------------------------------------------------- tests

constexpr std::string_view kGet = "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";

// The servers under test are built with the test's configuration. ASan's
// quarantine and shadow memory, and TSan's, make RSS say nothing about what
// the server itself holds.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

// RFC 9112: ambiguous or invalid framing is answered 400 (413 for a body too
// large) and the connection closed; nothing after it in the stream is taken
// for a request. A declared multi-gigabyte body is refused from the head
// alone, at once, without waiting for (or buffering) the body. Another
// client is served throughout.
TEST_P(HttpServerTest, AmbiguousFramingIsRefusedAndClosed) {
  ServerBinary server(GetParam());
  ASSERT_FALSE(server.uri().empty());
  const int other = Connect(server.uri());
  ASSERT_GE(other, 0);
  struct Case {
    std::string head;
    std::string_view status;
  } cases[] = {
      {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
       "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
       "400"},
      {"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
       "Content-Length: 5\r\n\r\n0\r\n\r\n",
       "400"},
      {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
       "400"},
      {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
       "400"},
      {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", "400"},
      {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", "400"},
      {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello", "400"},
      {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5 5\r\n\r\nhello", "400"},
      {"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n", "400"},  // obs-fold
      {"GET /plaintext HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", "400"},            // bare CR
      {"GET /plaintext HTTP/1.1\r\nHost: x\nX: b\r\n\r\n", "400"},                 // bare LF
      {std::string("GET /plaintext HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n", 41), "400"},
      {std::string("GET /plain\0text HTTP/1.1\r\nHost: x\r\n\r\n", 38), "400"},
      {"GET /plaintext HTTP/1.1\r\n\r\n", "400"},  // no Host
      {"GET /plaintext HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", "400"},
      {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551616\r\n\r\n", "413"},
      {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000000\r\n\r\n", "413"},
  };
  for (const Case& c : cases) {
    const int fd = Connect(server.uri());
    ASSERT_GE(fd, 0);
    // A valid request right behind: answering it would mean the framing was
    // guessed at (how requests get smuggled).
    // (A server waiting for a declared body would instead be closed silently
    // by the 1 s idle timeout.)
    Received got = SendAndReadUntilClosed(fd, c.head + std::string(kGet));
    EXPECT_TRUE(got.closed) << c.head;
    EXPECT_EQ(got.bytes.find("HTTP/1.1 " + std::string(c.status) + " "), 0u)
        << c.head << "\n-> " << got.bytes;
    EXPECT_EQ(CountOccurrences(got.bytes, "HTTP/1.1 "), 1u) << c.head << "\n-> " << got.bytes;
    EXPECT_NE(got.bytes.find("\r\nConnection: close\r\n"), std::string::npos) << c.head;
    close(fd);
    ASSERT_TRUE(WriteAll(other, kGet));
    EXPECT_EQ(ReadResponses(other, 1).find("HTTP/1.1 200 OK"), 0u) << "after " << c.head;
  }
  close(other);
}

// Header bombs: thousands of small header lines, one 1 MiB header, a head
// that never ends. Each is 431 and closed as soon as the limit is passed,
// and the server keeps serving another client.
TEST_P(HttpServerTest, HeaderBombsAre431AndOthersAreStillServed) {
  ServerBinary server(GetParam());
  ASSERT_FALSE(server.uri().empty());
  const int other = Connect(server.uri());
  ASSERT_GE(other, 0);
  std::string many = "GET /plaintext HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 5000; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
  many += "\r\n";
  const std::string one_mib =
      "GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(1 << 20, 'a') + "\r\n\r\n";
  const std::string endless = "GET /plaintext HTTP/1.1\r\nHost: x\r\nX: " + std::string(9000, 'a');
  for (const std::string* bomb : {&std::as_const(many), &one_mib, &endless}) {
    const int fd = Connect(server.uri());
    ASSERT_GE(fd, 0);
    Received got = SendAndReadUntilClosed(fd, *bomb);
    EXPECT_TRUE(got.closed) << bomb->size();
    EXPECT_EQ(got.bytes.find("HTTP/1.1 431 "), 0u) << bomb->size() << " -> " << got.bytes;
    EXPECT_EQ(CountOccurrences(got.bytes, "HTTP/1.1 "), 1u);
    close(fd);
    ASSERT_TRUE(WriteAll(other, kGet));
    EXPECT_EQ(ReadResponses(other, 1).find("HTTP/1.1 200 OK"), 0u);
  }
  close(other);
}

// Slowloris: a client that trickles a header byte every 50 ms used to keep
// its connection forever, each byte re-arming the idle timeout. The head
// deadline (1 s here) runs from the head's first read, bytes or not: the
// client gets 408 and the connection closes, while another client on the
// same server is answered normally throughout.
TEST_P(HttpServerTest, SlowHeadIsAnswered408WhileOthersAreServed) {
  ServerBinary server(GetParam(), {"--idle-timeout", "5", "--header-timeout", "1"});
  ASSERT_FALSE(server.uri().empty());
  const int slow = Connect(server.uri());
  const int busy = Connect(server.uri());
  ASSERT_GE(slow, 0);
  ASSERT_GE(busy, 0);
  const absl::Time start = absl::Now();
  ASSERT_TRUE(WriteAll(slow, "GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Slow: "));
  bool answered = false;
  int served = 0;
  // 200 rounds of at least 50 ms: 10 s, twice the idle timeout.
  for (int round = 0; round < 200 && !answered; ++round) {
    pollfd p{slow, POLLIN, 0};
    if (poll(&p, 1, 50) > 0) {
      answered = true;
      break;
    }
    (void)WriteAll(slow, "a");
    ASSERT_TRUE(WriteAll(busy, kGet));
    const std::string r = ReadResponses(busy, 1);
    ASSERT_EQ(r.find("HTTP/1.1 200 OK"), 0u) << r;
    ++served;
  }
  const absl::Duration waited = absl::Now() - start;
  ASSERT_TRUE(answered) << "a trickled head is never timed out";
  Received got = SendAndReadUntilClosed(slow, "");
  EXPECT_TRUE(got.closed);
  EXPECT_EQ(got.bytes.find("HTTP/1.1 408 Request Timeout\r\n"), 0u) << got.bytes;
  EXPECT_NE(got.bytes.find("\r\nConnection: close\r\n"), std::string::npos);
  EXPECT_GE(waited, absl::Milliseconds(900)) << "before the deadline";
  EXPECT_LT(waited, absl::Seconds(5)) << "the deadline moved with the bytes";
  EXPECT_GT(served, 5);
  close(slow);
  close(busy);
}

// The head deadline is for heads only: a keep-alive connection idle between
// requests (also after the one CRLF allowed before a request line), and a
// body arriving slowly, are left to the idle timeout (4 s here). All three
// wait past the 1 s head deadline, then are answered normally.
TEST_P(HttpServerTest, IdleKeepAliveAndSlowBodiesAreNotHeadTimeouts) {
  ServerBinary server(GetParam(), {"--idle-timeout", "4", "--header-timeout", "1"});
  ASSERT_FALSE(server.uri().empty());
  const int idle = Connect(server.uri());
  const int crlf = Connect(server.uri());
  const int body = Connect(server.uri());
  ASSERT_GE(idle, 0);
  ASSERT_GE(crlf, 0);
  ASSERT_GE(body, 0);
  for (int fd : {idle, crlf}) {
    ASSERT_TRUE(WriteAll(fd, kGet));
    ASSERT_EQ(ReadResponses(fd, 1).find("HTTP/1.1 200 OK"), 0u);
  }
  ASSERT_TRUE(WriteAll(crlf, "\r\n"));
  ASSERT_TRUE(WriteAll(body, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhe"));
  // 1.5 s with nothing from the server on any of them: no 408, no close.
  std::vector<pollfd> polls = {{idle, POLLIN, 0}, {crlf, POLLIN, 0}, {body, POLLIN, 0}};
  EXPECT_EQ(poll(polls.data(), polls.size(), 1500), 0) << "answered or closed while idle";
  for (int fd : {idle, crlf}) {
    ASSERT_TRUE(WriteAll(fd, kGet));
    EXPECT_EQ(ReadResponses(fd, 1).find("HTTP/1.1 200 OK"), 0u);
  }
  ASSERT_TRUE(WriteAll(body, "llo"));
  const std::string echoed = ReadResponses(body, 1);
  EXPECT_EQ(echoed.find("HTTP/1.1 200 OK"), 0u) << echoed;
  EXPECT_TRUE(echoed.ends_with("\r\n\r\nhello")) << echoed;
  for (int fd : {idle, crlf, body}) close(fd);
}

// Four clients pipeline GETs as fast as they can and never read. The server
// must stop reading each once about 64 KiB of responses wait unsent, so its
// memory stays bounded (the callback server used to buffer up to its 4 MiB
// write high-water mark per connection, plus a whole read's responses). Then
// each client reads, and every request it sent is answered, in order: the
// waiting requests resume when the output drains.
TEST_P(HttpServerTest, PipelinedFloodWithoutReadingStaysBounded) {
  ServerBinary server(GetParam(), {"--idle-timeout", "60"});
  ASSERT_FALSE(server.uri().empty());
  std::vector<int> fds;
  size_t response_size = 0;
  for (int i = 0; i < 4; ++i) {
    fds.push_back(ConnectSmallReceiveBuffer(server.uri()));
    ASSERT_GE(fds.back(), 0);
    ASSERT_TRUE(WriteAll(fds.back(), kGet));
    const std::string r = ReadResponses(fds.back(), 1);
    ASSERT_EQ(r.find("HTTP/1.1 200 OK"), 0u);
    response_size = r.size();
  }
  const long rss_before = ProcStatusKb(server.pid(), "VmRSS");
  ASSERT_GT(rss_before, 0);
  const std::vector<size_t> sent =
      FloodUntilStalled(fds, kGet, size_t{256} << 20, absl::Seconds(30));
  ASSERT_EQ(sent.size(), fds.size()) << "the server kept reading (or failed) while nobody read";
  // The peak over the flood. The bound is generous (1 MiB per client, where
  // the 64 KiB budget and the buffers around it measured about 350 KiB); the
  // point is that it does not grow with what the clients send (about 20 MiB
  // here) or with the engine's default write high-water mark (4 MiB each).
  const long peak = ProcStatusKb(server.pid(), "VmHWM");
  const long growth_kb = peak - rss_before;
  size_t total_sent = 0;
  for (size_t s : sent) total_sent += s;
  RecordProperty("rss_growth_kb", std::to_string(growth_kb));
  if (!kSanitized) {
    // On io_uring, plus each connection's in-flight receives and the pool of
    // receive buffers of each of the server's loops (two by default here).
    // The receives are held in the connection's inbound ring, whose
    // capacity doubles as it grows: up to twice the bytes held (a run
    // measured 16.2 MiB against 16 MiB when the slop was counted once).
    const long backend_kb = static_cast<long>(
        (fds.size() * 2 * testing::ReceiveSlopBytesPerConnection() +
         2 * testing::ReceivePoolBytesPerLoop()) / 1024);
    EXPECT_LT(growth_kb, 4 * 1024 + backend_kb)
        << "server RSS grew " << growth_kb << " KiB while " << total_sent << " bytes were sent";
  }
  for (size_t i = 0; i < fds.size(); ++i) {
    const size_t whole = sent[i] / kGet.size();
    EXPECT_EQ(ReadPlaintextResponses(fds[i], whole, response_size), whole) << i;
    // The last request may have been cut short by the stall: finish it.
    if (const size_t part = sent[i] % kGet.size(); part != 0) {
      ASSERT_TRUE(WriteAll(fds[i], kGet.substr(part)));
      EXPECT_EQ(ReadPlaintextResponses(fds[i], 1, response_size), 1u);
    }
    close(fds[i]);
  }
}

// One loop, two connections. The first pipelines without reading, so its
// handler is parked writing a batch of responses; the second then sends a
// batch of 404s and reads them. The parked write must still send its own
// bytes: the fiber server used to write every connection's responses from
// one per-loop buffer, which the second connection's batch overwrote (or
// reallocated) under the parked write.
TEST_P(HttpServerTest, ParkedWriteKeepsItsOwnBytes) {
  ServerBinary server(GetParam(), {"--idle-timeout", "60", "--loops", "1"});
  ASSERT_FALSE(server.uri().empty());
  const int flooder = ConnectSmallReceiveBuffer(server.uri());
  const int other = Connect(server.uri());
  ASSERT_GE(flooder, 0);
  ASSERT_GE(other, 0);
  ASSERT_TRUE(WriteAll(flooder, kGet));
  const std::string first = ReadResponses(flooder, 1);
  ASSERT_EQ(first.find("HTTP/1.1 200 OK"), 0u);
  const std::vector<size_t> sent =
      FloodUntilStalled({flooder}, kGet, size_t{256} << 20, absl::Seconds(30));
  ASSERT_EQ(sent.size(), 1u);
  std::string batch;
  constexpr int kMissing = 3000;
  for (int i = 0; i < kMissing; ++i) batch += "GET /missing HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_TRUE(WriteAll(other, batch));
  const std::string missing = ReadResponses(other, kMissing);
  EXPECT_EQ(CountOccurrences(missing, "HTTP/1.1 404 Not Found\r\n"), size_t{kMissing});
  const size_t whole = sent[0] / kGet.size();
  EXPECT_EQ(ReadPlaintextResponses(flooder, whole, first.size()), whole);
  close(flooder);
  close(other);
}

INSTANTIATE_TEST_SUITE_P(BothModels, HttpServerTest,
                         ::testing::Values("examples/http/http_server",
                                           "examples/http/http_fiber_server"));

}  // namespace
}  // namespace netloop
