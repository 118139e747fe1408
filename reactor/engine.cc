#include "reactor/engine.h"

#include <pthread.h>
#include <string.h>

#include <thread>
#include <utility>

#ifndef _WIN32
#include <sched.h>
#include <signal.h>
#include <unistd.h>
#endif

#include "absl/strings/str_cat.h"
#include "reactor/clock.h"
#include "reactor/internal/dial_resolver.h"
#include "reactor/errors.h"
#include "reactor/internal/listener.h"
#include "reactor/logging.h"
#include "reactor/internal/socket_ops.h"
#include "reactor/internal/worker.h"

namespace netloop {
namespace {

std::atomic<Engine*> signal_engine{nullptr};

void StopSignalHandler(int) {
  Engine* e = signal_engine.load(std::memory_order_acquire);
  if (e != nullptr) e->StopFromSignalHandler();
}

#ifdef _WIN32
// Ctrl-C, Ctrl-Break, the console closing, logoff and shutdown: Windows
// runs this on a thread of its own, so it may do what a signal handler may.
BOOL WINAPI StopConsoleHandler(DWORD) {
  Engine* e = signal_engine.load(std::memory_order_acquire);
  if (e == nullptr) return FALSE;
  e->StopFromSignalHandler();
  return TRUE;
}
#endif

int OnlineCpus() {
#ifdef _WIN32
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
#else
  return std::max(1, static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)));
#endif
}

void PinThisThreadToCpu(int cpu) {
#ifdef _WIN32
  (void)SetThreadAffinityMask(GetCurrentThread(), DWORD_PTR{1} << (cpu % 64));
#else
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
#endif
}

void SetSocketBufferSize(SocketHandle fd, int option, int bytes) {
#ifdef _WIN32
  (void)setsockopt(static_cast<SOCKET>(fd), SOL_SOCKET, option,
                   reinterpret_cast<const char*>(&bytes), sizeof(bytes));
#else
  (void)setsockopt(fd, SOL_SOCKET, option, &bytes, sizeof(bytes));
#endif
}

uint64_t HashBytes(std::string_view bytes) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

Action EventHandler::OnTraffic(Conn& conn) {
  conn.Discard(kAll);
  return Action::kNone;
}

Engine::Engine() = default;

Engine::~Engine() {
  if (started_.load() && !waited_) {
    Stop(absl::Now());
    (void)Wait();
  }
  Engine* self = this;
  signal_engine.compare_exchange_strong(self, nullptr);
}

EventLoop& Engine::loop(int index) { return workers_[index]->loop(); }

absl::Status Engine::Start(EventHandler& handler, std::vector<std::string> addresses,
                           Options options) {
  if (options.tls != nullptr && !options.tls->is_server()) {
    return absl::InvalidArgumentError("Options::tls must be a server tls::Context");
  }
  if (started_.exchange(true)) {
    return absl::FailedPreconditionError("Engine::Start called twice");
  }
  IgnoreSigpipeOnce();
  handler_ = &handler;
  options_ = options;
  resolver_ = std::make_unique<internal::DialResolver>();
  int n = options_.loops > 0 ? options_.loops : OnlineCpus();
  for (int i = 0; i < n; ++i) {
    LoopOptions lo;
    lo.backend = options_.backend;
    lo.edge_triggered = options_.edge_triggered;
    lo.read_buffer_size = options_.read_buffer_size;
    lo.read_budget_per_event = options_.read_budget_per_event;
    lo.uring_buffer_size = options_.uring_buffer_size;
    lo.uring_buffer_count = options_.uring_buffer_count;
    lo.name = absl::StrCat("netloop-", i);
    auto loop = EventLoop::Create(std::move(lo));
    if (!loop.ok()) return AbandonStart(loop.status());
    workers_.push_back(std::make_unique<internal::Worker>(this, i, std::move(*loop)));
  }
  if (absl::Status s = BindListeners(addresses); !s.ok()) return AbandonStart(s);
  Action boot = handler_->OnBoot(*this);
  for (int i = 0; i < n; ++i) {
    threads_.emplace_back([this, i] {
      if (options_.pin_loops_to_cpus) PinThisThreadToCpu(i % OnlineCpus());
      pthread_setname_np(pthread_self(), workers_[i]->loop().name().c_str());
      workers_[i]->loop().Run();
    });
  }
  if (acceptor_loop_) {
    acceptor_thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "netloop-accept");
      acceptor_loop_->Run();
    });
  }
  // Start returns with every loop running: its backend is set up (io_uring
  // makes its ring on the loop thread), so what a caller measures or
  // connects after Start sees a settled engine.
  for (auto& w : workers_) w->loop().WaitUntilRunning();
  if (acceptor_loop_) acceptor_loop_->WaitUntilRunning();
  if (options_.ticker) workers_[0]->loop().QueueInLoop([this] { StartTicker(); });
  if (boot == Action::kShutdown) Stop();
  return absl::OkStatus();
}

absl::Status Engine::AbandonStart(absl::Status error) {
  // No loop thread runs yet. Undo everything so that Wait, Stop and the
  // destructor see a never-started engine instead of waiting for loops that
  // will never report.
  acceptor_listeners_.clear();
  acceptor_loop_.reset();
  workers_.clear();
  listen_uris_.clear();
  resolver_.reset();
  handler_ = nullptr;
  started_.store(false);
  return error;
}

absl::Status Engine::BindListeners(const std::vector<std::string>& addresses) {
  for (const std::string& uri : addresses) {
    absl::StatusOr<NetAddress> parsed = ParseAddress(uri);
    if (!parsed.ok()) return parsed.status();
    NetAddress addr = *parsed;
    if (IsDatagram(addr.network)) {
      // UDP: a socket per loop in either accept mode (there is nothing to
      // accept), the kernel spreading peers over them.
      for (auto& worker : workers_) {
        absl::StatusOr<SocketHandle> fd = BindDatagram(addr, /*reuse_port=*/true);
        if (!fd.ok()) return fd.status();
        if (addr.address.port() == 0) addr.address = LocalAddressOf(*fd);
        const SocketTuning& t = options_.socket;
        if (t.receive_buffer_bytes > 0) {
          SetSocketBufferSize(*fd, SO_RCVBUF, t.receive_buffer_bytes);
        }
        if (t.send_buffer_bytes > 0) {
          SetSocketBufferSize(*fd, SO_SNDBUF, t.send_buffer_bytes);
        }
        auto socket = std::make_unique<internal::DatagramSocket>(
            worker.get(), *fd, options_.udp_max_datagram, options_.udp_batch);
        if (absl::Status s = socket->Watch(); !s.ok()) return s;
        worker->AddDatagramSocket(std::move(socket));
#ifdef _WIN32
        break;  // no SO_REUSEPORT: one socket, served by the first loop
#endif
      }
      listen_uris_.push_back(absl::StrCat("udp://", addr.address.ToString()));
      continue;
    }
    bool per_loop = options_.accept_mode == AcceptMode::kReusePort &&
                    addr.network != Network::kUnix;
    if (per_loop) {
      for (auto& worker : workers_) {
        absl::StatusOr<SocketHandle> fd = Listen(addr, options_.reuse_addr, true, options_.backlog);
        if (!fd.ok()) return fd.status();
        if (addr.address.port() == 0) {
          // Port 0: the first bind picked a port; the other loops share it.
          addr.address = LocalAddressOf(*fd);
        }
        internal::Worker* w = worker.get();
        auto listener = std::make_unique<internal::Listener>(
            &w->loop(), *fd,
            [this, w](SocketHandle cfd, const SocketAddress& peer) {
              accepted_.fetch_add(1, std::memory_order_relaxed);
              w->AddLoad(1);
              w->AddConnection(cfd, peer, NextConnId(), false, false, nullptr, 0);
            },
            &accept_pauses_);
        if (absl::Status s = listener->Watch(); !s.ok()) return s;
        w->AddListener(std::move(listener));
      }
    } else {
      if (!acceptor_loop_) {
        // Small receive buffers: the acceptor loop never reads.
        auto loop = EventLoop::Create(LoopOptions{.backend = options_.backend,
                                                  .uring_buffer_size = 4096,
                                                  .uring_buffer_count = 8,
                                                  .name = "netloop-accept"});
        if (!loop.ok()) return loop.status();
        acceptor_loop_ = std::move(*loop);
      }
      absl::StatusOr<SocketHandle> fd = Listen(addr, options_.reuse_addr, false, options_.backlog);
      if (!fd.ok()) return fd.status();
      if (addr.address.port() == 0 && addr.address.is_ip()) {
        addr.address = LocalAddressOf(*fd);
      }
      auto listener = std::make_unique<internal::Listener>(
          acceptor_loop_.get(), *fd,
          [this](SocketHandle cfd, const SocketAddress& peer) { OnAccepted(cfd, peer); },
          &accept_pauses_);
      if (absl::Status s = listener->Watch(); !s.ok()) return s;
      acceptor_listeners_.push_back(std::move(listener));
    }
    listen_uris_.push_back(addr.address.ToUri());
  }
  return absl::OkStatus();
}

internal::Worker* Engine::PickWorker(const SocketAddress& peer) {
  const size_t n = workers_.size();
  if (n == 1) return workers_[0].get();
  switch (options_.load_balancing) {
    case LoadBalancing::kLeastConnections: {
      internal::Worker* best = workers_[0].get();
      for (size_t i = 1; i < n; ++i) {
        if (workers_[i]->load() < best->load()) best = workers_[i].get();
      }
      return best;
    }
    case LoadBalancing::kSourceAddrHash:
      if (peer.is_ip()) return workers_[HashBytes(peer.HostBytes()) % n].get();
      [[fallthrough]];
    case LoadBalancing::kRoundRobin:
    default:
      return workers_[round_robin_.fetch_add(1, std::memory_order_relaxed) % n].get();
  }
}

void Engine::OnAccepted(SocketHandle fd, const SocketAddress& peer) {
  accepted_.fetch_add(1, std::memory_order_relaxed);
  internal::Worker* w = PickWorker(peer);
  // Counted now, not when the worker gets to it, so a burst of accepts sees
  // the hand-offs still in flight (least-connections stays fair).
  w->AddLoad(1);
  uint64_t id = NextConnId();
  w->loop().QueueInLoop([w, fd, peer, id] {
    w->AddConnection(fd, peer, id, false, false, nullptr, 0);
  });
}

absl::StatusOr<ConnRef> Engine::Dial(std::string_view address, DialOptions dial) {
  if (!started_.load()) return absl::FailedPreconditionError("Dial before Start");
  absl::StatusOr<NetAddress> parsed = ParseAddressNoLookup(address);
  if (!parsed.ok()) return parsed.status();
  if (IsDatagram(parsed->network)) {
    return absl::UnimplementedError("Dial: udp:// (a connected datagram Conn) is not supported");
  }
  internal::Worker* w =
      dial.loop >= 0 && dial.loop < num_loops()
          ? workers_[dial.loop].get()
          : workers_[round_robin_.fetch_add(1, std::memory_order_relaxed) %
                     workers_.size()]
                .get();
  // Counted before the stop check, both sequentially consistent: either
  // this Dial sees the stop and backs out, or the stopping worker sees the
  // count and waits for the hand-off (and reports its OnClose) before it
  // says it has stopped. A Dial racing Stop is never dropped silently.
  w->AddLoad(1, std::memory_order_seq_cst);
  auto back_out = [w](absl::Status why) {
    w->AddLoad(-1, std::memory_order_seq_cst);
    w->loop().Wakeup();  // it may be waiting for this count to reach zero
    return why;
  };
  if (stop_requested_.load(std::memory_order_seq_cst)) {
    return back_out(absl::FailedPreconditionError("engine is stopping"));
  }
  std::shared_ptr<std::unique_ptr<internal::TlsSession>> tls;
  if (dial.tls != nullptr) {
    // Made here so a bad context or name fails the Dial itself. Shared
    // (not unique) only to ride through the resolver's copyable callback.
    std::string name = !dial.server_name.empty()      ? dial.server_name
                       : !parsed->unresolved_host.empty() ? parsed->unresolved_host
                                                          : parsed->address.IpToString();
    absl::StatusOr<std::unique_ptr<internal::TlsSession>> session =
        internal::NewTlsSession(*dial.tls, name);
    if (!session.ok()) return back_out(session.status());
    tls = std::make_shared<std::unique_ptr<internal::TlsSession>>(*std::move(session));
  }
  if (!parsed->unresolved_host.empty()) {
    return DialByName(w, *std::move(parsed), dial, std::move(tls));
  }
  bool in_progress = false;
  absl::StatusOr<SocketHandle> fd = StartConnect(parsed->address, &in_progress);
  if (!fd.ok()) return back_out(fd.status());
  dialled_.fetch_add(1, std::memory_order_relaxed);
  uint64_t id = NextConnId();
  int64_t timeout = DurationToNanosSaturated(dial.timeout);
  int64_t deadline = timeout == kNeverNanos ? kNeverNanos : MonotonicNanos() + timeout;
  SocketAddress peer = parsed->address;
  SocketHandle cfd = *fd;
  void* context = dial.context;
  w->loop().RunInLoop([w, cfd, peer, id, in_progress, context, deadline, tls] {
    w->AddConnection(cfd, peer, id, true, in_progress, context, deadline,
                     tls != nullptr ? std::move(*tls) : nullptr);
  });
  return ConnRef(w, id);
}

absl::StatusOr<ConnRef> Engine::DialByName(
    internal::Worker* w, NetAddress address, const DialOptions& dial,
    std::shared_ptr<std::unique_ptr<internal::TlsSession>> tls) {
  dialled_.fetch_add(1, std::memory_order_relaxed);
  const uint64_t id = NextConnId();
  const int64_t timeout = DurationToNanosSaturated(dial.timeout);
  const int64_t deadline = timeout == kNeverNanos ? kNeverNanos : MonotonicNanos() + timeout;
  void* context = dial.context;
  // Runs on the resolver's thread (or in Stop, cancelled), then moves to w.
  const uint64_t job = resolver_->Resolve(std::move(address), [w, id, context, deadline,
                                          tls](absl::StatusOr<NetAddress> resolved) {
    if (!resolved.ok()) {
      absl::Status reason = absl::IsCancelled(resolved.status())
                                ? ConnectFailedError(ECANCELED)
                                : ConnectFailedError(resolved.status());
      w->loop().RunInLoop([w, id, context, reason = std::move(reason)]() mutable {
        w->FailDial(id, context, std::move(reason));
      });
      return;
    }
    bool in_progress = false;
    absl::StatusOr<SocketHandle> fd = StartConnect(resolved->address, &in_progress);
    if (!fd.ok()) {
      w->loop().RunInLoop([w, id, context, reason = fd.status()]() mutable {
        w->FailDial(id, context, ConnectFailedError(reason));
      });
      return;
    }
    SocketAddress peer = resolved->address;
    w->loop().RunInLoop([w, cfd = *fd, peer, id, in_progress, context, deadline, tls] {
      w->AddConnection(cfd, peer, id, true, in_progress, context, deadline,
                       tls != nullptr ? std::move(*tls) : nullptr);
    });
  });
  // The Dial's timeout covers its lookup too: a name server that does not
  // answer in time costs this Dial an ETIMEDOUT, not the lookup's own
  // timeouts. A lookup that delivered first makes the timer a no-op.
  if (deadline != kNeverNanos) {
    internal::DialResolver* resolver = resolver_.get();
    w->loop().RunInLoop([w, resolver, job, id, context, deadline] {
      w->loop().RunAtNanos(deadline, [w, resolver, job, id, context] {
        if (resolver->Abandon(job)) w->FailDial(id, context, ConnectFailedError(ETIMEDOUT));
      });
    });
  }
  return ConnRef(w, id);
}

void Engine::StartTicker() {
  if (stopping()) return;
  TickResult tick = handler_->OnTick();
  if (tick.action == Action::kShutdown) {
    Stop();
    return;
  }
  workers_[0]->loop().RunAfter(std::max(tick.next_delay, absl::ZeroDuration()),
                               [this] { StartTicker(); });
}

void Engine::Stop(absl::Time deadline) {
  if (!started_.load() || stop_requested_.exchange(true, std::memory_order_seq_cst)) {
    return;
  }
  int64_t deadline_ns = ToMonotonicNanos(deadline);
  stop_deadline_ns_.store(deadline_ns);
  // Lookups still pending report ECANCELED on their loops, queued ahead of
  // the stop itself.
  resolver_->Cancel();
  if (acceptor_loop_) {
    acceptor_loop_->RunInLoop([this] {
      for (auto& l : acceptor_listeners_) l->Close();
    });
  }
  for (auto& worker : workers_) {
    internal::Worker* w = worker.get();
    w->loop().RunInLoop([w, deadline_ns] { w->BeginStop(deadline_ns); });
  }
}

void Engine::Stop() { Stop(absl::Now() + options_.close_drain_timeout); }

void Engine::StopFromSignalHandler() {
  // Only lock-free atomics and write(2) here: both are async-signal-safe.
  signal_stop_.store(true, std::memory_order_relaxed);
  if (!workers_.empty()) workers_[0]->loop().Wakeup();
}

void Engine::StopOnSignals() {
  signal_engine.store(this, std::memory_order_release);
#ifdef _WIN32
  (void)StopSignalHandler;
  SetConsoleCtrlHandler(StopConsoleHandler, TRUE);
#else
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = StopSignalHandler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
#endif
}

void Engine::WorkerStopped() {
  std::lock_guard<std::mutex> lock(mu_);
  ++workers_stopped_;
  cv_.notify_all();
}

absl::Status Engine::Wait() {
  if (!started_.load()) return absl::FailedPreconditionError("Wait before Start");
  if (waited_) return absl::OkStatus();
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return workers_stopped_ == static_cast<int>(workers_.size()); });
  }
  waited_ = true;
  handler_->OnShutdown(*this);
  // The acceptor goes first: a connection it accepted just before its
  // listeners closed is a task queued on a worker, and a worker loop still
  // runs queued tasks when it quits (closing such a socket), not after.
  if (acceptor_loop_) {
    acceptor_loop_->Quit();
    acceptor_thread_.join();
    acceptor_listeners_.clear();
  }
  for (auto& worker : workers_) worker->loop().Quit();
  for (auto& t : threads_) t.join();
  return absl::OkStatus();
}

absl::Status Engine::Run(EventHandler& handler, std::vector<std::string> addresses,
                         Options options) {
  Engine engine;
  absl::Status s = engine.Start(handler, std::move(addresses), options);
  if (!s.ok()) return s;
  return engine.Wait();
}

void internal::SetAcceptedSocketTaker(Engine& engine, AcceptedSocketTaker* taker) {
  engine.socket_taker_ = taker;
}

void internal::ReleaseTakenSocket(Engine& engine, int loop_index) {
  engine.workers_[static_cast<size_t>(loop_index)]->ReleaseTaken();
}

size_t Engine::CountConnections() const {
  int64_t total = 0;
  for (auto& w : workers_) total += w->load();
  return total > 0 ? static_cast<size_t>(total) : 0;
}

EngineStats Engine::stats() const {
  EngineStats s;
  s.accepted = accepted_.load(std::memory_order_relaxed);
  s.accept_pauses = accept_pauses_.load(std::memory_order_relaxed);
  s.dialled = dialled_.load(std::memory_order_relaxed);
  for (auto& w : workers_) {
    s.budget_closes += w->budget_closes();
    s.tls_handshake_failures += w->tls_handshake_failures();
    s.udp_send_drops += w->udp_send_drops();
    s.buffered_bytes += w->buffered_bytes();
  }
  return s;
}

void Engine::AddLoopService(int index, LoopService* service) {
  workers_[index]->AddService(service);
}

}  // namespace netloop
