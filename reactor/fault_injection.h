// Deterministic fault injection at the syscall boundary, for tests.
//
// With a FaultPlan installed, the engine's socket calls (reactor/internal/sys_io.h)
// fail, shorten or delay some calls, chosen by a PRNG seeded from the plan:
// short reads and writes, EINTR, spurious EAGAIN, ECONNRESET and EPIPE
// mid-stream, ENOBUFS, EMFILE/ENFILE/ENOBUFS/ENOMEM/ECONNABORTED at accept,
// refused connects, failed name lookups, and delays of up to a few hundred
// microseconds. Accept faults are injected before the real accept4, so a
// connection waiting in the backlog is never lost to one. Every injected fault
// is one the kernel can produce, with one exception spelled out by
// `spurious_eagain`: a socket that has data yet answers EAGAIN. Level-
// triggered loops survive that (they are asked again); edge-triggered ones
// rightly do not (no new edge comes), so leave it off for them. Two
// simplifications: connect failures come back from connect() itself (as
// loopback and unix sockets can answer), not later through SO_ERROR as a
// remote TCP refusal would; and EINTR, which non-blocking socket calls do
// not really return, is injected anyway (the engine retries it).
//
// The same seed replays the same decisions for the same sequence of calls
// (one loop, one client: the sequence is then nearly always the same).
//
// Compiled in only where NETLOOP_FAULT_INJECTION is defined (every build but
// -c opt); elsewhere Install returns false and nothing is injected. A process
// started with NETLOOP_FAULTS="seed=7,rate=0.05,eagain=1" in its environment
// installs that plan before its first socket call (how tests inject faults
// into the example servers).
#ifndef NETLOOP_REACTOR_FAULT_INJECTION_H_
#define NETLOOP_REACTOR_FAULT_INJECTION_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace netloop {

struct FaultPlan {
  uint64_t seed = 1;
  // Probability that one call is faulted.
  double rate = 0.05;
  // Spurious EAGAIN on read and send: level-triggered loops only (see above).
  bool spurious_eagain = true;
  // ECONNRESET/EPIPE/ENOBUFS that end a connection.
  bool connection_errors = true;
  // Descriptor and memory exhaustion at accept.
  bool accept_errors = true;
  // Refused connects and failed name lookups.
  bool connect_errors = true;
  // Sleeps of up to 300 µs before a call.
  bool delays = true;

  // "seed=7,rate=0.05,eagain=1,conn=1,accept=1,connect=1,delay=1".
  std::string ToString() const;
  static absl::StatusOr<FaultPlan> Parse(std::string_view text);
};

// What was injected since Install, by kind.
struct FaultCounts {
  uint64_t calls = 0;  // calls that went through the seam
  uint64_t short_io = 0, eintr = 0, eagain = 0, connection_errors = 0;
  uint64_t accept_errors = 0, connect_errors = 0, delays = 0;
  uint64_t total() const {
    return short_io + eintr + eagain + connection_errors + accept_errors + connect_errors +
           delays;
  }
};

class FaultInjection {
 public:
  // True when this build has the seam compiled in.
  static bool Available();
  // Installs `plan` for the whole process, replacing any other; false if not
  // Available. Any thread; takes effect for calls that start afterwards.
  static bool Install(const FaultPlan& plan);
  // Stops injecting. Any thread.
  static void Uninstall();
  static FaultCounts Counts();
  // While held, every name lookup through the seam waits (whether or not a
  // plan is installed) until released: a test's way to keep a Dial in its
  // lookup while it stops the engine. Any thread.
  static void HoldLookups(bool hold);
};

// Installs a plan for a scope (a test), and uninstalls it at the end.
class ScopedFaultInjection {
 public:
  explicit ScopedFaultInjection(const FaultPlan& plan) { FaultInjection::Install(plan); }
  ~ScopedFaultInjection() { FaultInjection::Uninstall(); }
  ScopedFaultInjection(const ScopedFaultInjection&) = delete;
  ScopedFaultInjection& operator=(const ScopedFaultInjection&) = delete;
};

}  // namespace netloop

#endif  // NETLOOP_REACTOR_FAULT_INJECTION_H_
