#include "tests/test_util.h"

#include <dirent.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <sys/time.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "reactor/address.h"
#include "reactor/options.h"

namespace netloop::testing {

uint16_t PortOf(const std::string& uri) {
  size_t colon = uri.rfind(':');
  return static_cast<uint16_t>(std::stoi(uri.substr(colon + 1)));
}

int UdpClient(uint16_t port, int family) {
  int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (family == AF_INET) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  } else {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    a.sin6_addr = in6addr_loopback;
    connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  }
  return fd;
}

std::string ReceiveDatagram(int fd) {
  std::string buf(70000, '\0');
  ssize_t n = recv(fd, buf.data(), buf.size(), 0);
  if (n < 0) return "<timeout>";
  buf.resize(static_cast<size_t>(n));
  return buf;
}

int Connect(const std::string& uri, int timeout_seconds) {
  auto addr = ParseAddress(uri);
  if (!addr.ok()) return -1;
  int fd = socket(addr->address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  timeval tv{timeout_seconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (connect(fd, addr->address.sockaddr_ptr(), addr->address.length()) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::optional<std::string> ReadExactly(int fd, size_t n) {
  std::string out(n, '\0');
  size_t got = 0;
  while (got < n) {
    ssize_t r = recv(fd, out.data() + got, n - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return std::nullopt;
    got += static_cast<size_t>(r);
  }
  return out;
}

std::optional<std::string> ReadToEof(int fd, size_t max) {
  std::string out;
  char buf[65536];
  while (out.size() < max) {
    ssize_t r = recv(fd, buf, sizeof(buf), 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return std::nullopt;
    if (r == 0) return out;
    out.append(buf, static_cast<size_t>(r));
  }
  return out;
}

std::string Pattern(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    s[i] = static_cast<char>(x);
  }
  return s;
}

namespace {

// Entries of a /proc/.../fd directory, or -1.
int CountFdEntries(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return -1;
  int n = 0;
  while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

}  // namespace

int OpenDescriptors() {
  const int n = CountFdEntries("/proc/self/fd");
  return n < 0 ? n : n - 1;  // the DIR's own descriptor
}

int OpenDescriptorsOf(int pid) { return CountFdEntries("/proc/" + std::to_string(pid) + "/fd"); }

long RaiseFdLimit() {
  rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  getrlimit(RLIMIT_NOFILE, &rl);
  return static_cast<long>(rl.rlim_cur);
}

bool TestingIoUring() {
  const char* env = getenv("NETLOOP_BACKEND");
  return env != nullptr && std::string_view(env) == "io_uring";
}

size_t ReceiveSlopBytesPerConnection() {
  // Twice the buffers: the inbound ring holding them grows by doubling.
  return TestingIoUring() ? 2 * 32 * Options{}.uring_buffer_size : 0;
}

size_t ReceivePoolBytesPerLoop() {
  const Options o;
  return TestingIoUring() ? o.uring_buffer_count * o.uring_buffer_size : 0;
}

CommandResult RunCommand(const std::string& command) {
  CommandResult result;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return result;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) result.output.append(buf, n);
  const int status = pclose(p);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

}  // namespace netloop::testing
