// Name lookups for Engine::Dial, off the loop threads (engine internal).
//
// getaddrinfo blocks, for seconds when a name server is slow, so Dial must
// not call it on the caller's thread (which may be a loop) nor on a loop. A
// DialResolver runs lookups on one thread of its own, started on first use,
// and hands each result to a callback. Cancel() (from Engine::Stop) answers
// every lookup not yet delivered with ECANCELED at once; a lookup still
// blocked in getaddrinfo then finishes on the detached thread and its result
// is dropped, so stopping never waits for a name server.
#ifndef NETLOOP_REACTOR_INTERNAL_DIAL_RESOLVER_H_
#define NETLOOP_REACTOR_INTERNAL_DIAL_RESOLVER_H_

#include <cstdint>
#include <memory>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "reactor/address.h"

namespace netloop::internal {

class DialResolver {
 public:
  // Receives the resolved address or why there is none (ECANCELED-style
  // Cancelled after Cancel). Runs on the resolver's thread, or on the thread
  // that calls Cancel; it must only hand the result on (post to a loop).
  using Done = absl::AnyInvocable<void(absl::StatusOr<NetAddress>)>;

  DialResolver();
  ~DialResolver();  // cancels what is pending
  DialResolver(const DialResolver&) = delete;
  DialResolver& operator=(const DialResolver&) = delete;

  // Queues a lookup of addr.unresolved_host and returns its id. Any thread.
  // After Cancel, `done` runs at once with Cancelled.
  uint64_t Resolve(NetAddress addr, Done done);
  // Gives up on lookup `id` if its result has not been delivered yet (its
  // `done` will then never run; a lookup already in getaddrinfo finishes on
  // the resolver thread and is dropped). True if it was given up. Any thread.
  bool Abandon(uint64_t id);
  // Answers every pending lookup with Cancelled; later Resolve calls too.
  // Any thread.
  void Cancel();

  // Shared with the lookup thread, which may outlive the resolver.
  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace netloop::internal

#endif  // NETLOOP_REACTOR_INTERNAL_DIAL_RESOLVER_H_
