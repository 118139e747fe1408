#include "tests/test_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef _WIN32
#include <io.h>

#include "reactor/socket_types.h"  // windows.h first

#include <psapi.h>
#else
#include <dirent.h>
#include <poll.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <atomic>

#include "reactor/address.h"
#include "reactor/options.h"

namespace netloop::testing {
namespace {

#ifdef _WIN32
// Blocking client sockets with timeouts (milliseconds on Windows).
SocketHandle NewClientSocket(int family, int type, int timeout_seconds) {
  static const bool started = [] {
    WSADATA data;
    return WSAStartup(MAKEWORD(2, 2), &data) == 0;
  }();
  (void)started;
  SOCKET s = socket(family, type, 0);
  if (s == INVALID_SOCKET) return kInvalidSocket;
  DWORD ms = static_cast<DWORD>(timeout_seconds) * 1000;
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, reinterpret_cast<const char*>(&ms), sizeof(ms));
  setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, reinterpret_cast<const char*>(&ms), sizeof(ms));
  return static_cast<SocketHandle>(s);
}
long ClientRecv(SocketHandle fd, char* buf, size_t n) {
  return recv(static_cast<SOCKET>(fd), buf, static_cast<int>(std::min<size_t>(n, 1 << 30)), 0);
}
long ClientSend(SocketHandle fd, const char* buf, size_t n) {
  return send(static_cast<SOCKET>(fd), buf, static_cast<int>(std::min<size_t>(n, 1 << 30)), 0);
}
int ClientConnect(SocketHandle fd, const sockaddr* a, socklen_t len) {
  return connect(static_cast<SOCKET>(fd), a, len);
}
#else
SocketHandle NewClientSocket(int family, int type, int timeout_seconds) {
  int fd = socket(family, type | SOCK_CLOEXEC, 0);
  if (fd < 0) return kInvalidSocket;
  timeval tv{timeout_seconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (type == SOCK_STREAM) setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return fd;
}
long ClientRecv(SocketHandle fd, char* buf, size_t n) { return recv(fd, buf, n, 0); }
long ClientSend(SocketHandle fd, const char* buf, size_t n) {
  return send(fd, buf, n, MSG_NOSIGNAL);
}
int ClientConnect(SocketHandle fd, const sockaddr* a, socklen_t len) {
  return connect(fd, a, len);
}
#endif

// A call that failed only because a signal came (POSIX); Windows has none.
bool Interrupted() {
#ifdef _WIN32
  return false;
#else
  return errno == EINTR;
#endif
}

}  // namespace

void CloseClient(SocketHandle fd) {
#ifdef _WIN32
  closesocket(static_cast<SOCKET>(fd));
#else
  close(fd);
#endif
}

void ShutdownClientWrite(SocketHandle fd) {
#ifdef _WIN32
  shutdown(static_cast<SOCKET>(fd), SD_SEND);
#else
  shutdown(fd, SHUT_WR);
#endif
}

void ResetClient(SocketHandle fd) {
  linger lg{};
  lg.l_onoff = 1;
  lg.l_linger = 0;
#ifdef _WIN32
  setsockopt(static_cast<SOCKET>(fd), SOL_SOCKET, SO_LINGER, reinterpret_cast<const char*>(&lg),
             sizeof(lg));
#else
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
#endif
  CloseClient(fd);
}

void SetClientNoDelay(SocketHandle fd) {
  int one = 1;
#ifdef _WIN32
  setsockopt(static_cast<SOCKET>(fd), IPPROTO_TCP, TCP_NODELAY,
             reinterpret_cast<const char*>(&one), sizeof(one));
#else
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
#endif
}

void SetClientSendBuffer(SocketHandle fd, int bytes) {
#ifdef _WIN32
  setsockopt(static_cast<SOCKET>(fd), SOL_SOCKET, SO_SNDBUF,
             reinterpret_cast<const char*>(&bytes), sizeof(bytes));
#else
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
#endif
}

void SetClientReceiveBuffer(SocketHandle fd, int bytes) {
#ifdef _WIN32
  setsockopt(static_cast<SOCKET>(fd), SOL_SOCKET, SO_RCVBUF,
             reinterpret_cast<const char*>(&bytes), sizeof(bytes));
#else
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
#endif
}

long SendNow(SocketHandle fd, const char* data, size_t n) {
#ifdef _WIN32
  // No MSG_DONTWAIT: non-blocking for this one call.
  u_long on = 1, off = 0;
  ioctlsocket(static_cast<SOCKET>(fd), FIONBIO, &on);
  const long sent = ClientSend(fd, data, n);
  const int err = WSAGetLastError();
  ioctlsocket(static_cast<SOCKET>(fd), FIONBIO, &off);
  if (sent >= 0) return sent;
  return err == WSAEWOULDBLOCK ? 0 : -1;
#else
  const long sent = send(fd, data, n, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (sent >= 0) return sent;
  return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
#endif
}

long ReceiveNow(SocketHandle fd, char* buf, size_t n) {
#ifdef _WIN32
  // No MSG_DONTWAIT: ask whether bytes (or the FIN) are there first.
  fd_set readable;
  FD_ZERO(&readable);
  FD_SET(static_cast<SOCKET>(fd), &readable);
  timeval now{0, 0};
  if (select(0, &readable, nullptr, nullptr, &now) != 1) return -1;
  return ClientRecv(fd, buf, n);
#else
  return recv(fd, buf, n, MSG_DONTWAIT);
#endif
}

uint16_t PortOf(const std::string& uri) {
  size_t colon = uri.rfind(':');
  return static_cast<uint16_t>(std::stoi(uri.substr(colon + 1)));
}

SocketHandle UdpClient(uint16_t port, int family) {
  SocketHandle fd = NewClientSocket(family, SOCK_DGRAM, 10);
  if (family == AF_INET) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ClientConnect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  } else {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    a.sin6_addr = in6addr_loopback;
    ClientConnect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  }
  return fd;
}

std::string ReceiveDatagram(SocketHandle fd) {
  std::string buf(70000, '\0');
  long n = ClientRecv(fd, buf.data(), buf.size());
  if (n < 0) return "<timeout>";
  buf.resize(static_cast<size_t>(n));
  return buf;
}

SocketHandle Connect(const std::string& uri, int timeout_seconds) {
  auto addr = ParseAddress(uri);
  if (!addr.ok()) return kInvalidSocket;
  SocketHandle fd = NewClientSocket(addr->address.family(), SOCK_STREAM, timeout_seconds);
  if (!IsValidSocket(fd)) return kInvalidSocket;
  if (ClientConnect(fd, addr->address.sockaddr_ptr(), addr->address.length()) != 0) {
    CloseClient(fd);
    return kInvalidSocket;
  }
  return fd;
}

SocketHandle ConnectWithReceiveBuffer(const std::string& uri, int bytes) {
  auto addr = ParseAddress(uri);
  if (!addr.ok()) return kInvalidSocket;
  SocketHandle fd = NewClientSocket(addr->address.family(), SOCK_STREAM, 10);
  if (!IsValidSocket(fd)) return kInvalidSocket;
  SetClientReceiveBuffer(fd, bytes);
  if (ClientConnect(fd, addr->address.sockaddr_ptr(), addr->address.length()) != 0) {
    CloseClient(fd);
    return kInvalidSocket;
  }
  return fd;
}

void SetClientNonBlocking(SocketHandle fd, bool on) {
#ifdef _WIN32
  u_long mode = on ? 1 : 0;
  ioctlsocket(static_cast<SOCKET>(fd), FIONBIO, &mode);
#else
  const int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK));
#endif
}

long SendSome(SocketHandle fd, const char* data, size_t n) { return ClientSend(fd, data, n); }
long ReceiveSome(SocketHandle fd, char* buf, size_t n) { return ClientRecv(fd, buf, n); }

bool LastCallWouldBlock() {
#ifdef _WIN32
  return WSAGetLastError() == WSAEWOULDBLOCK || WSAGetLastError() == WSAEINTR;
#else
  return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
#endif
}

int PollClients(std::vector<ClientPoll>& polls, int timeout_ms) {
#ifdef _WIN32
  std::vector<WSAPOLLFD> fds(polls.size());
  const short in = POLLRDNORM, out = POLLWRNORM;
#else
  std::vector<pollfd> fds(polls.size());
  const short in = POLLIN, out = POLLOUT;
#endif
  for (size_t i = 0; i < polls.size(); ++i) {
    fds[i].fd = polls[i].fd;
    fds[i].events = static_cast<short>((polls[i].want_read ? in : 0) |
                                       (polls[i].want_write ? out : 0));
    fds[i].revents = 0;
  }
#ifdef _WIN32
  const int n = WSAPoll(fds.data(), static_cast<ULONG>(fds.size()), timeout_ms);
#else
  const int n = poll(fds.data(), fds.size(), timeout_ms);
#endif
  for (size_t i = 0; i < polls.size(); ++i) {
    const short re = n > 0 ? fds[i].revents : 0;
    polls[i].failed = (re & (POLLERR | POLLHUP)) != 0;
    polls[i].readable = (re & in) != 0 || polls[i].failed;
    polls[i].writable = (re & out) != 0;
  }
  return n;
}

bool WriteAll(SocketHandle fd, std::string_view data) {
  while (!data.empty()) {
    long n = ClientSend(fd, data.data(), data.size());
    if (n < 0 && Interrupted()) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::optional<std::string> ReadExactly(SocketHandle fd, size_t n) {
  std::string out(n, '\0');
  size_t got = 0;
  while (got < n) {
    long r = ClientRecv(fd, out.data() + got, n - got);
    if (r < 0 && Interrupted()) continue;
    if (r <= 0) return std::nullopt;
    got += static_cast<size_t>(r);
  }
  return out;
}

std::optional<std::string> ReadToEof(SocketHandle fd, size_t max) {
  std::string out;
  char buf[65536];
  while (out.size() < max) {
    long r = ClientRecv(fd, buf, sizeof(buf));
    if (r < 0 && Interrupted()) continue;
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
#ifdef _WIN32
  (void)dir;
  return -1;
#else
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return -1;
  int n = 0;
  while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
  closedir(d);
  return n;
#endif
}

}  // namespace

int OpenDescriptors() {
  const int n = CountFdEntries("/proc/self/fd");
  return n < 0 ? n : n - 1;  // the DIR's own descriptor
}

int OpenDescriptorsOf(int pid) { return CountFdEntries("/proc/" + std::to_string(pid) + "/fd"); }

long RaiseFdLimit() {
#ifdef _WIN32
  return 1 << 20;
#else
  rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  getrlimit(RLIMIT_NOFILE, &rl);
  return static_cast<long>(rl.rlim_cur);
#endif
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
#ifdef _WIN32
  FILE* p = _popen(command.c_str(), "r");
#else
  FILE* p = popen(command.c_str(), "r");
#endif
  if (p == nullptr) return result;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) result.output.append(buf, n);
#ifdef _WIN32
  result.exit_code = _pclose(p);
#else
  const int status = pclose(p);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
#endif
  return result;
}

long ResidentBytes() {
#ifdef _WIN32
  PROCESS_MEMORY_COUNTERS counters;
  if (!K32GetProcessMemoryInfo(GetCurrentProcess(), &counters, sizeof(counters))) return -1;
  return static_cast<long>(counters.WorkingSetSize);
#else
  FILE* f = fopen("/proc/self/statm", "r");
  long size = 0, resident = -1;
  if (f != nullptr) {
    if (fscanf(f, "%ld %ld", &size, &resident) != 2) resident = -1;
    fclose(f);
  }
  return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
#endif
}

std::string ShortTempPath(const std::string& name) {
#ifdef _WIN32
  char dir[MAX_PATH + 1] = {};
  const DWORD n = GetTempPathA(sizeof(dir), dir);  // ends with a backslash
  std::string path = std::string(dir, n) + "netloop_" +
                     std::to_string(GetCurrentProcessId()) + "_" + name;
#else
  std::string path = "/tmp/netloop_" + std::to_string(getpid()) + "_" + name;
#endif
  RemoveFile(path);
  return path;
}

void RemoveFile(const std::string& path) { unlink(path.c_str()); }

TempFile::TempFile(const std::string& content) {
  static std::atomic<int> n{0};
  const char* dir = getenv("TEST_TMPDIR");
  path_ = std::string(dir != nullptr ? dir : ".") + "/netloop_file" + std::to_string(n.fetch_add(1));
#ifdef _WIN32
  // Binary: the C runtime's text mode would turn every \n into \r\n.
  const int write_flags = O_CREAT | O_WRONLY | O_TRUNC | O_BINARY;
  const int read_flags = O_RDONLY | O_BINARY | O_NOINHERIT;
#else
  const int write_flags = O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC;
  const int read_flags = O_RDONLY | O_CLOEXEC;
#endif
  const int w = open(path_.c_str(), write_flags, 0644);
  if (w < 0) return;
  size_t done = 0;
  while (done < content.size()) {
    const size_t chunk = std::min<size_t>(content.size() - done, 1 << 20);
    const long wrote = write(w, content.data() + done, static_cast<unsigned>(chunk));
    if (wrote <= 0) break;
    done += static_cast<size_t>(wrote);
  }
  close(w);
  if (done == content.size()) fd_ = open(path_.c_str(), read_flags);
}

TempFile::~TempFile() {
  if (fd_ >= 0) close(fd_);
  unlink(path_.c_str());
}

}  // namespace netloop::testing
