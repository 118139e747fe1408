// Why a connection ended, as absl::Status values both the callback and the
// fiber APIs hand to user code. Each reason carries a machine-readable payload
// so that callers test with the predicates below instead of parsing messages.
#ifndef NETLOOP_REACTOR_ERRORS_H_
#define NETLOOP_REACTOR_ERRORS_H_

#include <string_view>

#include "absl/status/status.h"

namespace netloop {

enum class CloseReason {
  kNone = 0,        // not a netloop reason (OK, or a user's own status)
  kPeerClosed,      // the peer sent FIN (EOF)            code: kUnavailable
  kReset,           // ECONNRESET / EPIPE / other socket error  kUnavailable
  kClosed,          // closed locally (Close, engine stop)      kCancelled
  kDeadline,        // an I/O deadline or idle timeout passed   kDeadlineExceeded
  kConnectFailed,   // Dial could not connect                    kUnavailable
  kEngineStopping,  // forced by Engine::Stop after its deadline kCancelled
  kLimitExceeded,   // a memory bound (Options) was reached  kResourceExhausted
  kTls,             // a TLS handshake or record failed           kUnavailable
};

absl::Status PeerClosedError();
// The same reason with a detail: how the peer closed ("without close_notify").
absl::Status PeerClosedError(std::string_view detail);
absl::Status ResetError(int err);  // errno from the failing syscall
absl::Status ClosedError(std::string_view detail = "connection closed");
absl::Status DeadlineExceededError(std::string_view detail = "i/o deadline exceeded");
absl::Status ConnectFailedError(int err);
// A Dial that failed before connecting (its name did not resolve).
absl::Status ConnectFailedError(const absl::Status& cause);
absl::Status EngineStoppingError();
absl::Status LimitExceededError(std::string_view detail);
// The peer's certificate did not verify, the handshake failed, a record was
// malformed, or the peer asked for something refused (renegotiation).
absl::Status TlsError(std::string_view detail);

// The reason attached by one of the constructors above, or kNone.
CloseReason GetCloseReason(const absl::Status& status);
inline bool IsPeerClosed(const absl::Status& s) {
  return GetCloseReason(s) == CloseReason::kPeerClosed;
}
inline bool IsTlsError(const absl::Status& s) { return GetCloseReason(s) == CloseReason::kTls; }
// For deadlines use absl::IsDeadlineExceeded (the code says it all).

}  // namespace netloop

#endif  // NETLOOP_REACTOR_ERRORS_H_
