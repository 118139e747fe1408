#include "reactor/errors.h"

#include <string.h>

#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "reactor/internal/errno_text.h"

namespace netloop {
namespace {

constexpr char kReasonUrl[] = "netloop/close-reason";

absl::Status WithReason(absl::Status status, CloseReason reason) {
  status.SetPayload(kReasonUrl,
                    absl::Cord(std::string(1, static_cast<char>(reason))));
  return status;
}

#ifdef _WIN32
const char* SocketErrnoText(int err) {
  switch (err) {
    case ECONNRESET: return "Connection reset by peer";
    case ECONNREFUSED: return "Connection refused";
    case ECONNABORTED: return "Software caused connection abort";
    case ETIMEDOUT: return "Connection timed out";
    case ECANCELED: return "Operation canceled";
    case ENOTCONN: return "Transport endpoint is not connected";
    case EHOSTUNREACH: return "No route to host";
    case ENETUNREACH: return "Network is unreachable";
    case ENETDOWN: return "Network is down";
    case ENETRESET: return "Network dropped connection on reset";
    case EADDRINUSE: return "Address already in use";
    case EADDRNOTAVAIL: return "Cannot assign requested address";
    case EAFNOSUPPORT: return "Address family not supported by protocol";
    case EMSGSIZE: return "Message too long";
    case ENOBUFS: return "No buffer space available";
    case EINPROGRESS: return "Operation now in progress";
    case EALREADY: return "Operation already in progress";
    case ENOTSOCK: return "Socket operation on non-socket";
    case EOPNOTSUPP: return "Operation not supported";
    case EWOULDBLOCK: return "Operation would block";
    default: return nullptr;
  }
}
#endif

}  // namespace

namespace internal {

std::string ErrnoText(int err) {
  char buf[128];
#ifdef _WIN32
  // The C runtime knows the classic errno values; the socket ones the
  // engine maps Winsock errors to (platform.h) get their POSIX names here.
  const char* text = SocketErrnoText(err);
  if (text == nullptr) text = strerror_s(buf, sizeof(buf), err) == 0 ? buf : "unknown error";
#else
  // GNU strerror_r returns the message pointer, which may not be `buf`.
  const char* text = strerror_r(err, buf, sizeof(buf));
#endif
  return absl::StrCat(text, " (errno ", err, ")");
}

}  // namespace internal

using internal::ErrnoText;

absl::Status PeerClosedError() {
  return WithReason(absl::UnavailableError("connection closed by peer (EOF)"),
                    CloseReason::kPeerClosed);
}

absl::Status PeerClosedError(std::string_view detail) {
  return WithReason(absl::UnavailableError(absl::StrCat("connection closed by peer (EOF): ",
                                                        absl::string_view(detail.data(),
                                                                          detail.size()))),
                    CloseReason::kPeerClosed);
}

absl::Status ResetError(int err) {
  return WithReason(absl::UnavailableError(ErrnoText(err)), CloseReason::kReset);
}

absl::Status ClosedError(std::string_view detail) {
  return WithReason(
      absl::CancelledError(absl::string_view(detail.data(), detail.size())),
      CloseReason::kClosed);
}

absl::Status DeadlineExceededError(std::string_view detail) {
  return WithReason(absl::DeadlineExceededError(
                        absl::string_view(detail.data(), detail.size())),
                    CloseReason::kDeadline);
}

absl::Status ConnectFailedError(int err) {
  return WithReason(absl::UnavailableError(absl::StrCat("connect: ", ErrnoText(err))),
                    CloseReason::kConnectFailed);
}

absl::Status ConnectFailedError(const absl::Status& cause) {
  return WithReason(absl::UnavailableError(absl::StrCat("connect: ", cause.message())),
                    CloseReason::kConnectFailed);
}

absl::Status EngineStoppingError() {
  return WithReason(
      absl::CancelledError("engine stopped before the connection drained"),
      CloseReason::kEngineStopping);
}

absl::Status LimitExceededError(std::string_view detail) {
  return WithReason(
      absl::ResourceExhaustedError(absl::string_view(detail.data(), detail.size())),
      CloseReason::kLimitExceeded);
}

absl::Status TlsError(std::string_view detail) {
  return WithReason(absl::UnavailableError(absl::StrCat("tls: ", absl::string_view(
                                                                     detail.data(), detail.size()))),
                    CloseReason::kTls);
}

CloseReason GetCloseReason(const absl::Status& status) {
  if (status.ok()) return CloseReason::kNone;
  auto payload = status.GetPayload(kReasonUrl);
  if (!payload.has_value()) return CloseReason::kNone;
  std::string bytes(*payload);
  if (bytes.size() != 1) return CloseReason::kNone;
  return static_cast<CloseReason>(bytes[0]);
}

}  // namespace netloop
