#include "reactor/fault_injection.h"

#include <errno.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "reactor/logging.h"
#include "reactor/internal/sys_io.h"

namespace netloop {

std::string FaultPlan::ToString() const {
  return absl::StrCat("seed=", seed, ",rate=", rate, ",eagain=", spurious_eagain ? 1 : 0,
                      ",conn=", connection_errors ? 1 : 0, ",accept=", accept_errors ? 1 : 0,
                      ",connect=", connect_errors ? 1 : 0, ",delay=", delays ? 1 : 0);
}

absl::StatusOr<FaultPlan> FaultPlan::Parse(std::string_view text) {
  FaultPlan plan;
  for (absl::string_view item :
       absl::StrSplit(absl::string_view(text.data(), text.size()), ',', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(item, '=');
    bool ok = true;
    int flag = 0;
    if (kv.first == "seed") {
      ok = absl::SimpleAtoi(kv.second, &plan.seed);
    } else if (kv.first == "rate") {
      ok = absl::SimpleAtod(kv.second, &plan.rate) && plan.rate >= 0 && plan.rate <= 1;
    } else if (absl::SimpleAtoi(kv.second, &flag) && (flag == 0 || flag == 1)) {
      if (kv.first == "eagain") {
        plan.spurious_eagain = flag;
      } else if (kv.first == "conn") {
        plan.connection_errors = flag;
      } else if (kv.first == "accept") {
        plan.accept_errors = flag;
      } else if (kv.first == "connect") {
        plan.connect_errors = flag;
      } else if (kv.first == "delay") {
        plan.delays = flag;
      } else {
        ok = false;
      }
    } else {
      ok = false;
    }
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat("bad fault plan item \"", item, "\""));
    }
  }
  return plan;
}

#ifdef NETLOOP_FAULT_INJECTION
namespace {

enum class Op { kRead, kSend, kAccept, kConnect, kResolve };

enum class Kind { kShort, kEintr, kEagain, kError, kDelay };

struct Decision {
  Kind kind = Kind::kDelay;
  bool faulted = false;
  int err = 0;
  size_t limit = 0;         // kShort: bytes the call may move
  uint32_t delay_us = 0;    // kDelay
};

class Injector {
 public:
  bool active() const { return active_.load(std::memory_order_acquire); }

  void Install(const FaultPlan& plan) {
    std::lock_guard<std::mutex> lock(mu_);
    plan_ = plan;
    state_ = plan.seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    counts_ = FaultCounts();
    active_.store(true, std::memory_order_release);
  }
  void Uninstall() { active_.store(false, std::memory_order_release); }
  FaultCounts Counts() {
    std::lock_guard<std::mutex> lock(mu_);
    return counts_;
  }

  Decision Decide(Op op, size_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    Decision d;
    ++counts_.calls;
    if (!active_.load(std::memory_order_relaxed)) return d;
    if (static_cast<double>(Next() % 1'000'000) >= plan_.rate * 1e6) return d;
    // The kinds this call can suffer under the plan, then one of them.
    Kind kinds[8];
    int errs[8];
    int count = 0;
    auto add = [&](Kind k, int err = 0) {
      kinds[count] = k;
      errs[count] = err;
      ++count;
    };
    switch (op) {
      case Op::kRead:
      case Op::kSend:
        if (n > 1) add(Kind::kShort);
        add(Kind::kEintr, EINTR);
        if (plan_.spurious_eagain) add(Kind::kEagain, EAGAIN);
        if (plan_.connection_errors) {
          add(Kind::kError, ECONNRESET);
          if (op == Op::kSend) {
            add(Kind::kError, EPIPE);
            add(Kind::kError, ENOBUFS);
          }
        }
        break;
      case Op::kAccept:
        add(Kind::kEintr, EINTR);
        if (plan_.accept_errors) {
          add(Kind::kError, ECONNABORTED);
          add(Kind::kError, EMFILE);
          add(Kind::kError, ENFILE);
          add(Kind::kError, ENOBUFS);
          add(Kind::kError, ENOMEM);
        }
        break;
      case Op::kConnect:
        if (plan_.connect_errors) {
          add(Kind::kError, ECONNREFUSED);
          add(Kind::kError, ENETUNREACH);
        }
        break;
      case Op::kResolve:
        if (plan_.connect_errors) add(Kind::kError, EAI_AGAIN);
        break;
    }
    if (plan_.delays) add(Kind::kDelay);
    if (count == 0) return d;
    const int pick = static_cast<int>(Next() % static_cast<uint64_t>(count));
    d.faulted = true;
    d.kind = kinds[pick];
    d.err = errs[pick];
    switch (d.kind) {
      case Kind::kShort:
        d.limit = 1 + static_cast<size_t>(Next() % (n - 1));
        ++counts_.short_io;
        break;
      case Kind::kEintr:
        ++counts_.eintr;
        break;
      case Kind::kEagain:
        ++counts_.eagain;
        break;
      case Kind::kError:
        if (op == Op::kAccept) {
          ++counts_.accept_errors;
        } else if (op == Op::kConnect || op == Op::kResolve) {
          ++counts_.connect_errors;
        } else {
          ++counts_.connection_errors;
        }
        break;
      case Kind::kDelay:
        d.delay_us = static_cast<uint32_t>(Next() % 300);
        ++counts_.delays;
        break;
    }
    return d;
  }

 private:
  // splitmix64: tiny, fast, and the same sequence for the same seed anywhere.
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  std::atomic<bool> active_{false};
  std::mutex mu_;
  FaultPlan plan_;
  uint64_t state_ = 0;
  FaultCounts counts_;
};

// HoldLookups: a gate every lookup passes. Never destroyed, like the
// injector: a detached resolver thread may still wait here at exit.
struct LookupGate {
  std::mutex mu;
  std::condition_variable cv;
  bool held = false;  // guarded by mu
};
LookupGate& TheLookupGate() {
  static LookupGate* gate = new LookupGate();
  return *gate;
}

void PassLookupGate() {
  LookupGate& g = TheLookupGate();
  std::unique_lock<std::mutex> lock(g.mu);
  g.cv.wait(lock, [&g] { return !g.held; });
}

Injector& TheInjector() {
  static Injector* injector = [] {
    auto* inj = new Injector();  // never destroyed: calls may come during exit
    if (const char* env = getenv("NETLOOP_FAULTS"); env != nullptr && *env != '\0') {
      absl::StatusOr<FaultPlan> plan = FaultPlan::Parse(env);
      if (plan.ok()) {
        inj->Install(*plan);
        NETLOOP_LOG(kWarning) << "fault injection on: " << plan->ToString();
      } else {
        NETLOOP_LOG(kError) << "NETLOOP_FAULTS ignored: " << plan.status().message();
      }
    }
    return inj;
  }();
  return *injector;
}

// Applies the parts of a decision every call shares. Returns true when the
// call must fail now with errno = d.err.
bool FailsBeforeTheCall(const Decision& d) {
  if (!d.faulted) return false;
  if (d.kind == Kind::kDelay) {
    std::this_thread::sleep_for(std::chrono::microseconds(d.delay_us));
    return false;
  }
  if (d.kind == Kind::kShort) return false;
  errno = d.err;
  return true;
}

}  // namespace

bool FaultInjection::Available() { return true; }
bool FaultInjection::Install(const FaultPlan& plan) {
  TheInjector().Install(plan);
  return true;
}
void FaultInjection::Uninstall() { TheInjector().Uninstall(); }
FaultCounts FaultInjection::Counts() { return TheInjector().Counts(); }
void FaultInjection::HoldLookups(bool hold) {
  LookupGate& g = TheLookupGate();
  std::lock_guard<std::mutex> lock(g.mu);
  g.held = hold;
  g.cv.notify_all();
}

namespace internal {

namespace {
thread_local bool last_read_shortened = false;
}  // namespace

bool LastReadWasShortened() { return last_read_shortened; }

ssize_t SysRead(SocketHandle fd, void* buf, size_t n) {
  last_read_shortened = false;
  Injector& inj = TheInjector();
  if (!inj.active()) return RawRead(fd, buf, n);
  Decision d = inj.Decide(Op::kRead, n);
  if (FailsBeforeTheCall(d)) return -1;
  if (d.faulted && d.kind == Kind::kShort) {
    n = d.limit;
    last_read_shortened = true;
  }
  return RawRead(fd, buf, n);
}

ssize_t FaultCompletedReceive(size_t n) {
  Injector& inj = TheInjector();
  if (!inj.active()) return static_cast<ssize_t>(n);
  Decision d = inj.Decide(Op::kRead, n);
  if (!d.faulted) return static_cast<ssize_t>(n);
  switch (d.kind) {
    case Kind::kShort:
      return static_cast<ssize_t>(d.limit);
    case Kind::kError:
      return -d.err;
    case Kind::kDelay:
      std::this_thread::sleep_for(std::chrono::microseconds(d.delay_us));
      return static_cast<ssize_t>(n);
    default:  // EINTR and EAGAIN have no meaning for a completed receive
      return static_cast<ssize_t>(n);
  }
}

ssize_t FaultSubmittedSend(size_t n) {
  Injector& inj = TheInjector();
  if (!inj.active()) return static_cast<ssize_t>(n);
  Decision d = inj.Decide(Op::kSend, n);
  if (!d.faulted) return static_cast<ssize_t>(n);
  switch (d.kind) {
    case Kind::kShort:
      return static_cast<ssize_t>(std::max<size_t>(d.limit, 1));
    case Kind::kError:
      return -d.err;
    case Kind::kDelay:
      std::this_thread::sleep_for(std::chrono::microseconds(d.delay_us));
      return static_cast<ssize_t>(n);
    default:
      return static_cast<ssize_t>(n);
  }
}

ssize_t SysSend(SocketHandle fd, const void* buf, size_t n, int flags) {
  Injector& inj = TheInjector();
  if (!inj.active()) return RawSend(fd, buf, n, flags);
  Decision d = inj.Decide(Op::kSend, n);
  if (FailsBeforeTheCall(d)) return -1;
  if (d.faulted && d.kind == Kind::kShort) n = d.limit;
  return RawSend(fd, buf, n, flags);
}

#ifndef _WIN32
ssize_t SysSendMsg(SocketHandle fd, const msghdr* msg, int flags) {
  Injector& inj = TheInjector();
  if (!inj.active()) return RawSendMsg(fd, msg, flags);
  size_t total = 0;
  for (size_t i = 0; i < msg->msg_iovlen; ++i) total += msg->msg_iov[i].iov_len;
  Decision d = inj.Decide(Op::kSend, total);
  if (FailsBeforeTheCall(d)) return -1;
  if (!(d.faulted && d.kind == Kind::kShort)) return RawSendMsg(fd, msg, flags);
  // A short write: the same pieces, cut after d.limit bytes.
  std::vector<iovec> cut;
  size_t left = d.limit;
  for (size_t i = 0; i < msg->msg_iovlen && left > 0; ++i) {
    iovec piece = msg->msg_iov[i];
    piece.iov_len = std::min(piece.iov_len, left);
    left -= piece.iov_len;
    cut.push_back(piece);
  }
  msghdr shorter = *msg;
  shorter.msg_iov = cut.data();
  shorter.msg_iovlen = cut.size();
  return RawSendMsg(fd, &shorter, flags);
}

int SysAccept4(SocketHandle fd, sockaddr* addr, socklen_t* len, int flags) {
  Injector& inj = TheInjector();
  if (inj.active() && FailsBeforeTheCall(inj.Decide(Op::kAccept, 0))) return -1;
  return RawAccept4(fd, addr, len, flags);
}

#endif  // !_WIN32

int FaultPostedAccept() {
  Injector& inj = TheInjector();
  if (inj.active() && FailsBeforeTheCall(inj.Decide(Op::kAccept, 0))) return errno;
  return 0;
}

int SysConnect(SocketHandle fd, const sockaddr* addr, socklen_t len) {
  Injector& inj = TheInjector();
  if (inj.active() && FailsBeforeTheCall(inj.Decide(Op::kConnect, 0))) return -1;
  return RawConnect(fd, addr, len);
}

int SysGetAddrInfo(const char* host, const char* service, const addrinfo* hints,
                   addrinfo** res) {
  PassLookupGate();
  Injector& inj = TheInjector();
  if (inj.active()) {
    Decision d = inj.Decide(Op::kResolve, 0);
    if (d.faulted && d.kind == Kind::kError) return d.err;
    (void)FailsBeforeTheCall(d);  // a delay
  }
  return RawGetAddrInfo(host, service, hints, res);
}

}  // namespace internal

#else  // !NETLOOP_FAULT_INJECTION

bool FaultInjection::Available() { return false; }
bool FaultInjection::Install(const FaultPlan&) { return false; }
void FaultInjection::Uninstall() {}
FaultCounts FaultInjection::Counts() { return {}; }
void FaultInjection::HoldLookups(bool) {}

#endif  // NETLOOP_FAULT_INJECTION

}  // namespace netloop
