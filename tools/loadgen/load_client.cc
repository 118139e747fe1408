#include "tools/loadgen/load_client.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "reactor/clock.h"
#include "reactor/netloop.h"
#include "reactor/tls.h"
#include "tools/loadgen/proc_stats.h"

namespace netloop::loadgen {
namespace {

constexpr int kPatterns = 16;
constexpr std::string_view kHello = "Hello, World!";

// What one loop counts. Atomics are read by the main thread while the load
// runs; the histogram and error map only after the loops have stopped.
struct LoopStats {
  std::atomic<uint64_t> messages{0};
  std::atomic<uint64_t> bytes{0};
  Histogram latency;
  std::map<std::string, uint64_t> errors;
  std::vector<Conn*> conns;  // rate mode: this loop's open connections
  int64_t next_due_ns = 0;
  size_t next_conn = 0;
};

struct ConnState {
  uint32_t index = 0;
  uint64_t received = 0;  // echo: verified bytes
  int in_flight = 0;
  int to_send = 0;  // successors owed by the current OnTraffic
  std::vector<int64_t> send_times;  // FIFO ring, capacity = pipeline
  size_t head = 0;
  size_t count = 0;
  // HTTP: a large body being discarded as it arrives (not buffered whole),
  // and the size of its whole response.
  uint64_t body_left = 0;
  uint64_t response_bytes = 0;
  void PushSend(int64_t t) {
    send_times[(head + count) % send_times.size()] = t;
    ++count;
  }
  int64_t PopSend() {
    int64_t t = send_times[head];
    head = (head + 1) % send_times.size();
    --count;
    return t;
  }
};

// Bodies larger than this are discarded as they arrive.
constexpr size_t kStreamedBody = 64 * 1024;

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if ((a[i] | 0x20) != (b[i] | 0x20)) return false;
  }
  return true;
}

class LoadHandler final : public EventHandler {
 public:
  LoadHandler(const LoadSpec& spec, int loops) : spec_(spec) {
    for (int i = 0; i < loops; ++i) stats_.push_back(std::make_unique<LoopStats>());
    for (int i = 0; i < kPatterns; ++i) {
      std::string p(spec.message_size, '\0');
      uint32_t x = 0x9e3779b9u * (i + 1);
      for (char& c : p) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        c = static_cast<char>(x);
      }
      std::string batch;
      for (int k = 0; k < std::max(1, spec.pipeline); ++k) batch += p;
      batches_.push_back(std::move(batch));
      patterns_.push_back(std::move(p));
    }
    request_ = absl::StrCat("GET ", spec.http_path, " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    for (int k = 0; k < std::max(1, spec.pipeline); ++k) request_batch_ += request_;
  }

  Action OnOpen(Conn& conn) override {
    auto* st = new ConnState;
    st->index = next_index_.fetch_add(1, std::memory_order_relaxed);
    st->send_times.resize(std::max(1, spec_.pipeline));
    conn.set_context(st);
    opened_.fetch_add(1, std::memory_order_relaxed);
    if (spec_.workload == Workload::kIdle) return Action::kNone;
    if (spec_.rate > 0) {
      stats_[conn.loop_index()]->conns.push_back(&conn);
      return Action::kNone;
    }
    int64_t now = MonotonicNanos();
    for (int i = 0; i < spec_.pipeline; ++i) {
      st->PushSend(now);
      ++st->in_flight;
    }
    (void)conn.Write(spec_.workload == Workload::kEcho ? batches_[st->index % kPatterns]
                                                       : request_batch_);
    return Action::kNone;
  }

  Action OnTraffic(Conn& conn) override {
    auto* st = static_cast<ConnState*>(conn.context());
    if (spec_.workload == Workload::kIdle) {
      conn.Discard();
      return Action::kNone;
    }
    // Closed loop: every completion sends its successor, all of them in one
    // write at the end, as a pipelining client does (a server then sees
    // batches, not single messages).
    st->to_send = 0;
    Action a = spec_.workload == Workload::kEcho ? OnEchoBytes(conn, *st)
                                                 : OnHttpBytes(conn, *st);
    if (st->to_send > 0 && conn.is_open()) {
      const std::string& batch = spec_.workload == Workload::kEcho
                                     ? batches_[st->index % kPatterns]
                                     : request_batch_;
      size_t one = batch.size() / std::max(1, spec_.pipeline);
      int64_t now = MonotonicNanos();
      for (int i = 0; i < st->to_send; ++i) {
        st->PushSend(now);
        ++st->in_flight;
      }
      (void)conn.Write(std::string_view(batch).substr(0, one * st->to_send));
    }
    return a;
  }

  void OnClose(Conn& conn, const absl::Status& reason) override {
    LoopStats& ls = *stats_[conn.loop_index()];
    if (!stopping_.load(std::memory_order_relaxed)) {
      std::string kind;
      switch (GetCloseReason(reason)) {
        case CloseReason::kPeerClosed: kind = "closed_by_server"; break;
        case CloseReason::kReset: kind = "reset"; break;
        case CloseReason::kConnectFailed: kind = "connect_failed"; break;
        case CloseReason::kDeadline: kind = "timeout"; break;
        default:
          kind = reason.ok() ? "closed" : std::string(reason.message());
      }
      ++ls.errors[kind];
    }
    auto& v = ls.conns;
    v.erase(std::remove(v.begin(), v.end(), &conn), v.end());
    delete static_cast<ConnState*>(conn.context());
    conn.set_context(nullptr);
    closed_.fetch_add(1, std::memory_order_relaxed);
  }

  // Rate mode: every millisecond each loop sends what its schedule says is
  // due; a message's latency counts from when it was due, not from when a
  // connection was free (no coordinated omission).
  void RateTick(int loop_index, double rate_per_loop) {
    LoopStats& ls = *stats_[loop_index];
    int64_t now = MonotonicNanos();
    int64_t interval = static_cast<int64_t>(1e9 / rate_per_loop);
    if (ls.next_due_ns == 0) ls.next_due_ns = now;
    while (ls.next_due_ns <= now && !ls.conns.empty()) {
      bool sent = false;
      for (size_t tries = 0; tries < ls.conns.size(); ++tries) {
        Conn* c = ls.conns[ls.next_conn++ % ls.conns.size()];
        auto* st = static_cast<ConnState*>(c->context());
        if (st->in_flight < spec_.pipeline) {
          Send(*c, *st, ls.next_due_ns);
          sent = true;
          break;
        }
      }
      if (!sent) break;  // every connection is busy: the backlog waits
      ls.next_due_ns += interval;
    }
  }

  void set_measuring(bool on) { measuring_.store(on, std::memory_order_relaxed); }
  void set_stopping() { stopping_.store(true, std::memory_order_relaxed); }
  uint64_t TotalMessages() const {
    uint64_t n = 0;
    for (auto& s : stats_) n += s->messages.load(std::memory_order_relaxed);
    return n;
  }
  uint64_t TotalBytes() const {
    uint64_t n = 0;
    for (auto& s : stats_) n += s->bytes.load(std::memory_order_relaxed);
    return n;
  }
  int opened() const { return opened_.load(); }
  int closed() const { return closed_.load(); }
  std::vector<std::unique_ptr<LoopStats>>& stats() { return stats_; }

 private:
  void Send(Conn& conn, ConnState& st, int64_t due_ns) {
    st.PushSend(due_ns);
    ++st.in_flight;
    if (spec_.workload == Workload::kEcho) {
      (void)conn.Write(patterns_[st.index % kPatterns]);
    } else {
      (void)conn.Write(request_);
    }
  }

  void Completed(Conn& conn, ConnState& st, size_t bytes) {
    int64_t now = MonotonicNanos();
    int64_t sent = st.PopSend();
    --st.in_flight;
    LoopStats& ls = *stats_[conn.loop_index()];
    if (measuring_.load(std::memory_order_relaxed)) {
      ls.latency.Record(now - sent);
      ls.messages.fetch_add(1, std::memory_order_relaxed);
      ls.bytes.fetch_add(bytes, std::memory_order_relaxed);
    }
    if (spec_.rate <= 0 && !stopping_.load(std::memory_order_relaxed)) ++st.to_send;
  }

  Action OnEchoBytes(Conn& conn, ConnState& st) {
    const std::string& p = patterns_[st.index % kPatterns];
    const size_t size = p.size();
    ByteView v = conn.Next();
    for (std::string_view piece : {v.first, v.second}) {
      while (!piece.empty()) {
        size_t off = st.received % size;
        size_t n = std::min(piece.size(), size - off);
        if (st.in_flight == 0 || memcmp(piece.data(), p.data() + off, n) != 0) {
          conn.CloseWithError(absl::DataLossError("verify_mismatch"));
          return Action::kNone;
        }
        st.received += n;
        piece.remove_prefix(n);
        if (st.received % size == 0) Completed(conn, st, size);
      }
    }
    return Action::kNone;
  }

  Action OnHttpBytes(Conn& conn, ConnState& st) {
    for (;;) {
      if (st.body_left > 0) {
        st.body_left -= conn.Discard(static_cast<size_t>(st.body_left));
        if (st.body_left > 0) return Action::kNone;
        Completed(conn, st, st.response_bytes);
        continue;
      }
      std::string_view in = conn.PeekContiguous();
      size_t end = in.find("\r\n\r\n");
      if (end == std::string_view::npos) {
        if (in.size() > 16384) conn.CloseWithError(absl::DataLossError("bad_response"));
        return Action::kNone;
      }
      std::string_view head = in.substr(0, end + 2);
      if (head.size() < 12 || head.substr(0, 9) != "HTTP/1.1 " || st.in_flight == 0) {
        conn.CloseWithError(absl::DataLossError("bad_response"));
        return Action::kNone;
      }
      bool ok_status = head.substr(9, 3) == "200";
      size_t length = 0;
      size_t pos = head.find("\r\n") + 2;
      while (pos < head.size()) {
        size_t eol = head.find("\r\n", pos);
        std::string_view line = head.substr(pos, eol - pos);
        pos = eol + 2;
        size_t colon = line.find(':');
        if (colon != std::string_view::npos &&
            EqualsIgnoreCase(line.substr(0, colon), "content-length")) {
          std::string_view value = line.substr(colon + 1);
          while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
          for (char c : value) {
            if (c >= '0' && c <= '9') length = length * 10 + (c - '0');
          }
        }
      }
      if (spec_.http_body_size > 0 && (!ok_status || length != spec_.http_body_size)) {
        conn.CloseWithError(absl::DataLossError(ok_status ? "bad_length" : "http_status"));
        return Action::kNone;
      }
      size_t total = end + 4 + length;
      if (length > kStreamedBody) {
        // A file: counted as it streams past, never held whole.
        conn.Discard(end + 4);
        st.body_left = length;
        st.response_bytes = total;
        continue;
      }
      if (in.size() < total) return Action::kNone;
      std::string_view body = in.substr(end + 4, length);
      if (!ok_status || (spec_.http_path == "/plaintext" && body != kHello)) {
        conn.CloseWithError(absl::DataLossError(ok_status ? "bad_body" : "http_status"));
        return Action::kNone;
      }
      conn.Discard(total);
      Completed(conn, st, total);
    }
  }

  const LoadSpec& spec_;
  std::vector<std::unique_ptr<LoopStats>> stats_;
  std::vector<std::string> patterns_;
  std::vector<std::string> batches_;  // each pattern repeated `pipeline` times
  std::string request_;
  std::string request_batch_;
  std::atomic<uint32_t> next_index_{0};
  std::atomic<bool> measuring_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<int> opened_{0};
  std::atomic<int> closed_{0};
};

int64_t ServerCpuNs(const std::vector<pid_t>& pids) {
  int64_t total = 0;
  for (pid_t pid : pids) {
    if (auto s = SampleProcess(pid); s.ok()) total += s->cpu_ns;
  }
  return total;
}

int64_t ServerRss(const std::vector<pid_t>& pids) {
  int64_t total = 0;
  for (pid_t pid : pids) {
    if (auto s = SampleProcess(pid); s.ok()) total += s->rss_bytes;
  }
  return total;
}

void SleepWithProgress(absl::Duration d, const LoadSpec& spec, LoadHandler& h,
                       const char* phase) {
  absl::Time end = absl::Now() + d;
  uint64_t last = h.TotalMessages();
  absl::Time last_t = absl::Now();
  while (absl::Now() < end) {
    absl::SleepFor(std::min(absl::Seconds(1), end - absl::Now()));
    if (spec.progress) {
      uint64_t now_count = h.TotalMessages();
      double dt = absl::ToDoubleSeconds(absl::Now() - last_t);
      std::fprintf(stderr, "\r%s: %.0f msgs/s, %d connections   ", phase,
                   dt > 0 ? (now_count - last) / dt : 0.0, h.opened() - h.closed());
      last = now_count;
      last_t = absl::Now();
    }
  }
  if (spec.progress) std::fprintf(stderr, "\n");
}

}  // namespace

uint64_t LoadResult::error_count() const {
  uint64_t n = 0;
  for (const auto& [k, v] : errors) n += v;
  return n;
}

std::string LoadResult::ToText() const {
  std::string out = absl::StrFormat(
      "messages %d in %.2f s: %.0f msgs/s, %.1f MB/s\n"
      "latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
      messages, seconds, messages_per_second, bytes_per_second / 1e6,
      latency_ns.Percentile(50) / 1e3, latency_ns.Percentile(90) / 1e3,
      latency_ns.Percentile(99) / 1e3, latency_ns.Percentile(99.9) / 1e3,
      latency_ns.max() / 1e3);
  if (server_cpu_seconds > 0 || server_rss_bytes > 0) {
    absl::StrAppendFormat(&out, "server: %.3f CPU s, %.3f CPU us/msg, RSS %.1f MiB\n",
                          server_cpu_seconds, server_cpu_us_per_message,
                          server_rss_bytes / 1048576.0);
  }
  if (idle_connections > 0) {
    absl::StrAppendFormat(&out, "idle: %d connections, server RSS %.0f bytes/connection\n",
                          idle_connections, server_rss_per_connection);
  }
  for (const auto& [k, v] : errors) absl::StrAppendFormat(&out, "errors %s: %d\n", k, v);
  return out;
}

std::string LoadResult::ToJson() const {
  std::string errs;
  for (const auto& [k, v] : errors) {
    absl::StrAppendFormat(&errs, "%s\"%s\": %d", errs.empty() ? "" : ", ", k, v);
  }
  return absl::StrFormat(
      "{\"messages\": %d, \"seconds\": %.3f, \"messages_per_second\": %.1f, "
      "\"bytes_per_second\": %.1f, \"latency_us\": {\"p50\": %.2f, \"p90\": %.2f, "
      "\"p99\": %.2f, \"p999\": %.2f, \"max\": %.2f, \"mean\": %.2f}, "
      "\"server_cpu_seconds\": %.4f, \"server_cpu_us_per_message\": %.4f, "
      "\"server_rss_bytes\": %d, \"idle_connections\": %d, "
      "\"server_rss_per_connection\": %.1f, \"errors\": {%s}}",
      messages, seconds, messages_per_second, bytes_per_second,
      latency_ns.Percentile(50) / 1e3, latency_ns.Percentile(90) / 1e3,
      latency_ns.Percentile(99) / 1e3, latency_ns.Percentile(99.9) / 1e3,
      latency_ns.max() / 1e3, latency_ns.mean() / 1e3, server_cpu_seconds,
      server_cpu_us_per_message, server_rss_bytes, idle_connections,
      server_rss_per_connection, errs);
}

// UDP echo: `connections` connected client sockets, `pipeline` datagrams in
// flight on each, every reply checked against what was sent (a datagram's
// first 8 bytes carry its sequence number). A datagram lost on loopback
// would stall its socket: counted as "udp_lost" at the end.
absl::StatusOr<LoadResult> RunUdpLoad(const LoadSpec& spec) {
  absl::StatusOr<NetAddress> target = ParseAddress(spec.address);
  if (!target.ok()) return target.status();
  const size_t size = std::max<size_t>(spec.message_size, 8);
  struct Peer {
    int fd = -1;
    uint64_t next_seq = 0;  // to send
    uint64_t want_seq = 0;  // to receive
    std::vector<int64_t> sent_at;  // by seq % pipeline
  };
  const int pipeline = std::max(1, spec.pipeline);
  std::vector<Peer> peers(static_cast<size_t>(spec.connections));
  int ep = epoll_create1(EPOLL_CLOEXEC);
  std::string pattern(size, '\0');
  for (size_t i = 0; i < size; ++i) pattern[i] = static_cast<char>('a' + i % 26);
  auto send_one = [&](Peer& p) {
    std::memcpy(pattern.data(), &p.next_seq, 8);
    p.sent_at[p.next_seq % pipeline] = MonotonicNanos();
    ++p.next_seq;
    return ::send(p.fd, pattern.data(), size, MSG_DONTWAIT) == static_cast<ssize_t>(size);
  };
  for (size_t i = 0; i < peers.size(); ++i) {
    Peer& p = peers[i];
    p.fd = socket(target->address.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p.fd < 0 || connect(p.fd, target->address.sockaddr_ptr(), target->address.length()) != 0) {
      return absl::UnavailableError(absl::StrCat("udp socket/connect: ", strerror(errno)));
    }
    p.sent_at.resize(static_cast<size_t>(pipeline));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    epoll_ctl(ep, EPOLL_CTL_ADD, p.fd, &ev);
  }
  for (Peer& p : peers) {
    for (int k = 0; k < pipeline; ++k) send_one(p);
  }
  LoadResult result;
  std::map<std::string, uint64_t> errors;
  Histogram latency;
  uint64_t messages = 0, bytes = 0;
  std::string buf(size + 64, '\0');
  bool measuring = false;
  int64_t cpu0 = 0;
  const absl::Time start = absl::Now();
  absl::Time t0 = start + spec.warmup;
  const absl::Time end = t0 + spec.duration;
  epoll_event events[64];
  for (;;) {
    const absl::Time now = absl::Now();
    if (!measuring && now >= t0) {
      measuring = true;
      cpu0 = ServerCpuNs(spec.server_pids);
      t0 = now;
    }
    if (now >= end) break;
    int n = epoll_wait(ep, events, 64, 100);
    for (int e = 0; e < n; ++e) {
      Peer& p = peers[events[e].data.u64];
      for (;;) {
        ssize_t r = ::recv(p.fd, buf.data(), buf.size(), MSG_DONTWAIT);
        if (r < 0) break;
        uint64_t seq = 0;
        if (static_cast<size_t>(r) != size || (std::memcpy(&seq, buf.data(), 8), seq) != p.want_seq ||
            std::memcmp(buf.data() + 8, pattern.data() + 8, size - 8) != 0) {
          ++errors["bad_datagram"];
          continue;
        }
        ++p.want_seq;
        if (measuring) {
          ++messages;
          bytes += size;
          latency.Record(MonotonicNanos() - p.sent_at[seq % pipeline]);
        }
        if (!send_one(p)) ++errors["udp_send_failed"];
      }
    }
  }
  const absl::Time t1 = absl::Now();
  const int64_t cpu1 = ServerCpuNs(spec.server_pids);
  for (Peer& p : peers) {
    if (p.next_seq != p.want_seq + pipeline) ++errors["udp_lost"];
    ::close(p.fd);
  }
  ::close(ep);
  result.messages = messages;
  result.bytes = bytes;
  result.seconds = absl::ToDoubleSeconds(t1 - t0);
  result.messages_per_second = messages / result.seconds;
  result.bytes_per_second = bytes / result.seconds;
  result.server_cpu_seconds = (cpu1 - cpu0) / 1e9;
  if (messages > 0) result.server_cpu_us_per_message = (cpu1 - cpu0) / 1e3 / messages;
  result.server_rss_bytes = ServerRss(spec.server_pids);
  result.latency_ns.Merge(latency);
  result.errors = std::move(errors);
  return result;
}

absl::StatusOr<LoadResult> RunLoad(const LoadSpec& spec) {
  if (spec.workload == Workload::kUdpEcho) return RunUdpLoad(spec);
  const int loops = std::max(1, spec.threads);
  LoadHandler handler(spec, loops);
  Engine engine;
  Options o;
  o.loops = loops;
  o.backend = spec.backend;
  o.write_high_water = 0;
  DialOptions dial;
  dial.timeout = absl::Seconds(10);
  if (!spec.tls_ca_file.empty()) {
    tls::ClientConfig config;
    config.ca_file = spec.tls_ca_file;
    config.resume_sessions = false;
    absl::StatusOr<std::shared_ptr<const tls::Context>> ctx = tls::Context::NewClient(config);
    if (!ctx.ok()) return ctx.status();
    dial.tls = *std::move(ctx);
    dial.server_name = spec.tls_server_name;
  }
  if (absl::Status s = engine.Start(handler, {}, o); !s.ok()) return s;
  LoadResult result;
  const int64_t rss_before = ServerRss(spec.server_pids);

  // Connect in batches: a burst larger than the server's backlog would turn
  // into SYN retries (a second each) rather than load.
  constexpr int kBatch = 512;
  for (int i = 0; i < spec.connections; ++i) {
    DialOptions d = dial;
    d.loop = i % loops;
    auto ref = engine.Dial(spec.address, d);
    if (!ref.ok()) {
      engine.Stop(absl::Now());
      (void)engine.Wait();
      return ref.status();
    }
    if ((i + 1) % kBatch == 0 || i + 1 == spec.connections) {
      absl::Time until = absl::Now() + absl::Seconds(15);
      while (handler.opened() + handler.closed() < i + 1 && absl::Now() < until) {
        absl::SleepFor(absl::Milliseconds(1));
      }
    }
  }
  if (handler.opened() == 0) {
    handler.set_stopping();
    engine.Stop(absl::Now());
    (void)engine.Wait();
    return absl::UnavailableError(absl::StrCat("could not connect to ", spec.address));
  }

  if (spec.workload == Workload::kIdle) {
    absl::SleepFor(absl::Milliseconds(500));  // let the server settle
    result.idle_connections = handler.opened() - handler.closed();
    result.server_rss_bytes = ServerRss(spec.server_pids);
    if (result.idle_connections > 0) {
      result.server_rss_per_connection =
          static_cast<double>(result.server_rss_bytes - rss_before) / result.idle_connections;
    }
  } else {
    if (spec.rate > 0) {
      double per_loop = spec.rate / loops;
      for (int i = 0; i < loops; ++i) {
        engine.loop(i).RunInLoop([&handler, &engine, i, per_loop] {
          engine.loop(i).RunEvery(absl::Milliseconds(1),
                                  [&handler, i, per_loop] { handler.RateTick(i, per_loop); });
        });
      }
    }
    SleepWithProgress(spec.warmup, spec, handler, "warm-up");
    handler.set_measuring(true);
    const int64_t cpu0 = ServerCpuNs(spec.server_pids);
    const uint64_t m0 = handler.TotalMessages();
    const uint64_t b0 = handler.TotalBytes();
    const absl::Time t0 = absl::Now();
    SleepWithProgress(spec.duration, spec, handler, "measuring");
    // Close the window first, so counters and histograms stop together (a
    // completion already past the flag check may still land: at most one per
    // loop).
    handler.set_measuring(false);
    const uint64_t m1 = handler.TotalMessages();
    const uint64_t b1 = handler.TotalBytes();
    const absl::Time t1 = absl::Now();
    const int64_t cpu1 = ServerCpuNs(spec.server_pids);
    result.messages = m1 - m0;
    result.bytes = b1 - b0;
    result.seconds = absl::ToDoubleSeconds(t1 - t0);
    result.messages_per_second = result.messages / result.seconds;
    result.bytes_per_second = result.bytes / result.seconds;
    result.server_cpu_seconds = (cpu1 - cpu0) / 1e9;
    if (result.messages > 0) {
      result.server_cpu_us_per_message = (cpu1 - cpu0) / 1e3 / result.messages;
    }
    result.server_rss_bytes = ServerRss(spec.server_pids);
  }
  handler.set_stopping();
  engine.Stop(absl::Now() + absl::Seconds(1));
  (void)engine.Wait();
  // The loops have stopped: their histograms and error maps are ours now.
  for (auto& s : handler.stats()) {
    result.latency_ns.Merge(s->latency);
    for (const auto& [k, v] : s->errors) result.errors[k] += v;
  }
  return result;
}

}  // namespace netloop::loadgen
