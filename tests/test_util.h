// Blocking loopback client helpers for tests. Every socket gets 10 s send and
// receive timeouts, so a broken server fails a test instead of hanging it.
#ifndef NETLOOP_TESTS_TEST_UTIL_H_
#define NETLOOP_TESTS_TEST_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>
#include <string_view>

#include "reactor/socket_handle.h"
#include "reactor/socket_types.h"

namespace netloop::testing {

// Client sockets are SocketHandles: ints on POSIX, SOCKETs on Windows,
// where they must be closed with CloseClient (not close(2)).

// Port of "tcp://host:port" / "tcp://[::1]:port".
uint16_t PortOf(const std::string& uri);
// Connects to a "tcp://..." or "unix://..." URI; kInvalidSocket (-1 on
// POSIX) on failure.
SocketHandle Connect(const std::string& uri, int timeout_seconds = 10);
bool WriteAll(SocketHandle fd, std::string_view data);
void CloseClient(SocketHandle fd);
// shutdown(SHUT_WR): the server sees EOF.
void ShutdownClientWrite(SocketHandle fd);
// Closes with SO_LINGER 0: the server sees a reset (RST), not a FIN.
void ResetClient(SocketHandle fd);
// TCP_NODELAY on.
void SetClientNoDelay(SocketHandle fd);
// SO_SNDBUF, SO_RCVBUF.
void SetClientSendBuffer(SocketHandle fd, int bytes);
void SetClientReceiveBuffer(SocketHandle fd, int bytes);
// Connects like Connect, with SO_RCVBUF set to `bytes` first (so that a
// client that does not read fills up quickly).
SocketHandle ConnectWithReceiveBuffer(const std::string& uri, int bytes);
// Puts a client socket in or out of non-blocking mode.
void SetClientNonBlocking(SocketHandle fd, bool on);
// One send or recv as the socket's mode has it: the bytes, 0 at EOF (recv),
// or -1; then LastCallWouldBlock() says whether it only had to wait
// (EAGAIN, EWOULDBLOCK, EINTR; WSAEWOULDBLOCK).
long SendSome(SocketHandle fd, const char* data, size_t n);
long ReceiveSome(SocketHandle fd, char* buf, size_t n);
bool LastCallWouldBlock();
// poll(2) (WSAPoll on Windows) over client sockets.
struct ClientPoll {
  SocketHandle fd = kInvalidSocket;
  bool want_read = false;
  bool want_write = false;
  // Out:
  bool readable = false;  // bytes, EOF or an error to read
  bool writable = false;
  bool failed = false;  // an error or hang-up
};
// Waits up to timeout_ms for any of `polls`; the number ready, 0 on
// timeout, -1 on an error.
int PollClients(std::vector<ClientPoll>& polls, int timeout_ms);

// One send that does not wait: the bytes taken, 0 when the socket has no
// room, -1 on an error.
long SendNow(SocketHandle fd, const char* data, size_t n);
// One recv that does not wait: the bytes read (0 at EOF), or -1 when none
// are there yet (or on an error).
long ReceiveNow(SocketHandle fd, char* buf, size_t n);
// A UDP socket (10 s receive timeout) connected to `port` on 127.0.0.1, or
// on ::1 for AF_INET6, so it hears only the server.
SocketHandle UdpClient(uint16_t port, int family = AF_INET);
// One datagram (up to 70,000 bytes), or "<timeout>".
std::string ReceiveDatagram(SocketHandle fd);
// Exactly n bytes, or nullopt on EOF, error or timeout.
std::optional<std::string> ReadExactly(SocketHandle fd, size_t n);
// Everything until EOF (at most `max` bytes); nullopt on error or timeout.
std::optional<std::string> ReadToEof(SocketHandle fd, size_t max = 1 << 26);
// Deterministic pseudo-random bytes.
std::string Pattern(size_t n, uint32_t seed);

// A path for a unix socket named `name`, short enough for sun_path (108
// bytes) and unique to this process, in the system's temporary directory;
// nothing is there yet.
std::string ShortTempPath(const std::string& name);
// Removes a file, if there is one.
void RemoveFile(const std::string& path);

// A file under the test's temporary directory (TEST_TMPDIR) holding
// `content`, open for reading (binary on Windows), removed when destroyed.
class TempFile {
 public:
  explicit TempFile(const std::string& content);
  ~TempFile();
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  // The open file, or -1 when it could not be made.
  int fd() const { return fd_; }

 private:
  std::string path_;
  int fd_ = -1;
};
// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the new limit
// (Windows has no such limit: a large number).
long RaiseFdLimit();
// Descriptors this process has open now (from /proc/self/fd), or -1 (also
// on Windows).
int OpenDescriptors();
// This process's resident bytes (/proc/self/statm; on Windows its working
// set, which wine takes from Linux's RSS), or -1.
long ResidentBytes();
// Descriptors process `pid` has open now (from /proc/PID/fd), or -1.
int OpenDescriptorsOf(int pid);
// Memory a server may hold past its write high-water mark because of its
// backend, with default Options: on io_uring (NETLOOP_BACKEND=io_uring, how
// the suite runs on that backend) up to 32 in-flight receive buffers per
// connection, and each loop's pool of provided receive buffers, which the
// kernel fills in turn (so all of it becomes resident under load). 0 on
// epoll.
bool TestingIoUring();
size_t ReceiveSlopBytesPerConnection();
size_t ReceivePoolBytesPerLoop();
// Runs a shell command; its stdout and its exit code (-1 if it did not
// exit normally). Add "2>&1" to the command for stderr too.
struct CommandResult {
  int exit_code = -1;
  std::string output;
};
CommandResult RunCommand(const std::string& command);
// Waits (bounded) until pred() holds; false on timeout.
template <typename Pred>
bool WaitFor(Pred pred, int timeout_ms = 10000);

}  // namespace netloop::testing

#include <chrono>
#include <thread>

template <typename Pred>
bool netloop::testing::WaitFor(Pred pred, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

#endif  // NETLOOP_TESTS_TEST_UTIL_H_
