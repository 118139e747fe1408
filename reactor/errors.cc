#include "reactor/errors.h"

#include <string.h>

#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace netloop {
namespace {

constexpr char kReasonUrl[] = "netloop/close-reason";

absl::Status WithReason(absl::Status status, CloseReason reason) {
  status.SetPayload(kReasonUrl,
                    absl::Cord(std::string(1, static_cast<char>(reason))));
  return status;
}

std::string ErrnoText(int err) {
  char buf[128];
#ifdef _WIN32
  // The C runtime's messages; it knows the POSIX errno values the engine
  // maps Winsock errors to (platform.h).
  const char* text = strerror_s(buf, sizeof(buf), err) == 0 ? buf : "unknown error";
#else
  // GNU strerror_r returns the message pointer, which may not be `buf`.
  const char* text = strerror_r(err, buf, sizeof(buf));
#endif
  return absl::StrCat(text, " (errno ", err, ")");
}

}  // namespace

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
