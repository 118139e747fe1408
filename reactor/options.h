// Engine configuration. Every field has a production-sane default; a
// zero-initialised Options{} is valid.
#ifndef NETLOOP_REACTOR_OPTIONS_H_
#define NETLOOP_REACTOR_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace netloop {

namespace tls {
class Context;  // reactor/tls.h
}  // namespace tls

// How accepted connections reach the loops.
enum class AcceptMode {
  // Every loop owns its own listening socket per address (SO_REUSEPORT): the
  // kernel spreads connections, no thread hand-off. Unix-socket addresses
  // cannot be shared this way and are served by an acceptor loop instead.
  kReusePort,
  // One acceptor thread accept4()s every connection and hands it to a worker
  // loop chosen by `load_balancing` (nginx's accept model without the mutex).
  kAcceptor,
};

enum class LoadBalancing {
  kRoundRobin,
  kLeastConnections,
  kSourceAddrHash,  // same client IP -> same loop (per-loop caches stay warm)
};

// Socket options applied to every accepted or dialled TCP connection.
struct SocketTuning {
  bool tcp_nodelay = true;
  // Zero disables keep-alive. Otherwise TCP_KEEPIDLE = keepalive_idle,
  // TCP_KEEPINTVL = keepalive_interval, TCP_KEEPCNT = keepalive_count.
  absl::Duration keepalive_idle = absl::ZeroDuration();
  absl::Duration keepalive_interval = absl::Seconds(15);
  int keepalive_count = 4;
  int send_buffer_bytes = 0;     // SO_SNDBUF; 0 leaves the kernel's autotuning
  int receive_buffer_bytes = 0;  // SO_RCVBUF; 0 leaves the kernel's autotuning
};

// The kernel interface each loop uses (see reactor/internal/backend.h).
enum class BackendKind : uint8_t {
  // The environment variable NETLOOP_BACKEND (epoll | io_uring) if set, else
  // epoll (the default measured best overall here: bench/RESULTS.md). When
  // NETLOOP_BACKEND asks for io_uring and this process cannot use it (probed
  // once: seccomp filters, kernel.io_uring_disabled and old kernels block
  // it), epoll, with one log line saying why. On Windows: IOCP.
  kAuto,
  kEpoll,
  // Completion-based: multishot accept, multishot receive into a provided
  // buffer ring, sends through the ring. Engine::Start fails with a clear
  // error when io_uring is unavailable.
  kIoUring,
  // Windows' I/O completion ports: the only backend there, and what kAuto
  // means there. Asking for it elsewhere (or for epoll or io_uring on
  // Windows) fails Start with a clear error.
  kIocp,
};

// "auto", "epoll", "io_uring" or "iocp", as the examples' and tools' --backend and
// NETLOOP_BACKEND spell them. Any thread.
absl::StatusOr<BackendKind> ParseBackendKind(std::string_view name);
const char* BackendKindName(BackendKind kind);

struct Options {
  // Number of event loops (threads). 0 means one per online CPU.
  int loops = 0;
#ifdef _WIN32
  // Windows has no SO_REUSEPORT: kReusePort fails Start there.
  AcceptMode accept_mode = AcceptMode::kAcceptor;
#else
  AcceptMode accept_mode = AcceptMode::kReusePort;
#endif
  LoadBalancing load_balancing = LoadBalancing::kRoundRobin;
  bool reuse_addr = true;
  int backlog = 4096;

  BackendKind backend = BackendKind::kAuto;
  // io_uring's provided receive buffers, per loop: `uring_buffer_count`
  // buffers of `uring_buffer_size` bytes (reserved address space; pages are
  // touched as the kernel fills them). OnTraffic sees the kernel-filled
  // buffer directly. The count is rounded up to a power of two.
  size_t uring_buffer_size = 16 * 1024;
  size_t uring_buffer_count = 256;

  // Edge-triggered epoll (EPOLLET). Level-triggered is the default: it was as
  // fast here, and a handler that stops reading early cannot lose an event.
  bool edge_triggered = false;
  // Size of the per-loop buffer every read lands in first.
  size_t read_buffer_size = 64 * 1024;
  // With edge-triggered epoll, bytes read from one connection per readiness
  // event before the loop moves on to others (the rest is read next round).
  size_t read_budget_per_event = 1024 * 1024;

  // Backpressure: once a connection's unsent bytes exceed the high-water mark
  // the loop stops reading from it until they drop to the low-water mark.
  // 0 disables the mark. A low mark of 0 means high / 2. The default keeps a
  // peer that does not read to about this much of our memory (nginx and Go
  // hold tens of KiB per connection; the kernel's socket buffer comes on top).
  // On io_uring, receives already in flight when the mark is passed still
  // land (a multishot receive fills up to 32 buffers per round before its
  // cancellation reaches it); they are held unread, not handed to OnTraffic,
  // so a connection holds at most the mark plus that one round of input.
  size_t write_high_water = 256 * 1024;
  size_t write_low_water = 0;
  // Inbound bytes a handler may leave unconsumed on one connection. Past it
  // the connection is closed with a LimitExceeded reason (OnClose sees it):
  // a handler that waits for a message larger than this would otherwise
  // buffer whatever a peer sends. 0: no bound.
  size_t max_inbound_bytes = 1024 * 1024;
  // Memory all connections together may hold in their buffers (inbound and
  // outbound rings, counted by capacity), split evenly between the loops.
  // When a loop's share is spent, its heaviest connections are closed with a
  // LimitExceeded reason until it is back under 90% of the share
  // (EngineStats::budget_closes counts them). 0: no budget.
  size_t buffer_budget_bytes = 256 * 1024 * 1024;

  SocketTuning socket;

  // UDP (udp:// addresses): bytes read per datagram (a longer one is cut and
  // Conn::DatagramTruncated says so), and datagrams per recvmmsg. Each
  // loop's socket reserves their product (2 MiB by default) on its first
  // datagram; pages are touched as datagrams fill them.
  size_t udp_max_datagram = 65535;
  size_t udp_batch = 32;

  // Calls EventHandler::OnTick on loop 0, first right after OnBoot.
  bool ticker = false;
  // Closes connections with no bytes received or sent for this long (zero:
  // never): a long download the peer keeps taking is not idle.
  absl::Duration idle_timeout = absl::ZeroDuration();
  // How long Conn::Close() waits while unsent bytes (files included) make no
  // progress before giving up (the same bound applies after the peer
  // half-closed with bytes unsent).
  absl::Duration close_drain_timeout = absl::Seconds(10);
  // Pin loop i to CPU i % ncpu.
  bool pin_loops_to_cpus = false;

  // TLS on every tcp and unix listener: a server tls::Context (reactor/tls.h;
  // link //reactor:tls to make one). OnOpen runs once the handshake is
  // complete; OnTraffic sees plaintext and Write encrypts. A connection whose
  // handshake fails or does not finish within `tls_handshake_timeout` is
  // closed without OnOpen or OnClose (EngineStats::tls_handshake_failures
  // counts them): a client that never finishes costs one socket until then,
  // and holds up nobody else.
  std::shared_ptr<const tls::Context> tls;
  // Also bounds the handshake of a TLS Dial (OnClose then gets the reason).
  absl::Duration tls_handshake_timeout = absl::Seconds(10);
};

}  // namespace netloop

#endif  // NETLOOP_REACTOR_OPTIONS_H_
