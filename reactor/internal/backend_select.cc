// Choosing a loop's backend: the explicit kind, or for kAuto the environment's
// NETLOOP_BACKEND, else io_uring when a probe succeeds, else epoll.
#include <stdlib.h>
#include <string.h>

#include <mutex>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "reactor/internal/backend.h"
#include "reactor/logging.h"

namespace netloop::internal {

#ifdef _WIN32

// Windows has one backend: IOCP.
absl::Status IoUringAvailable() {
  return absl::UnavailableError("io_uring is a Linux interface");
}

BackendKind ResolveAutoBackend() { return BackendKind::kIocp; }

absl::StatusOr<std::unique_ptr<Backend>> NewBackend(const BackendOptions& options) {
  if (options.kind != BackendKind::kAuto && options.kind != BackendKind::kIocp) {
    return absl::InvalidArgumentError(absl::StrCat(
        "backend ", BackendKindName(options.kind), " is not available on Windows: use iocp"));
  }
  return NewIocpBackend(options);
}

#else  // !_WIN32

absl::Status IoUringAvailable() {
  // The probe sets up a ring with every flag and feature the real one uses (a seccomp filter, kernel.io_uring_disabled, an old kernel or a
  // memlock limit fails it here, once, instead of in the middle of Start).
  static const absl::Status* status = new absl::Status(ProbeIoUring());
  return *status;
}

BackendKind ResolveAutoBackend() {
  static const BackendKind kind = [] {
    const char* env = getenv("NETLOOP_BACKEND");
    if (env != nullptr && *env != '\0') {
      absl::StatusOr<BackendKind> kind = ParseBackendKind(env);
      if (kind.ok() && *kind != BackendKind::kAuto) return *kind;
      if (!kind.ok()) {
        NETLOOP_LOG(kWarning) << "NETLOOP_BACKEND=" << env
                              << " is not epoll or io_uring; ignored";
      }
    }
    // epoll measured faster here on the workloads bench/RESULTS.md records;
    // io_uring is chosen explicitly (Options::backend, --backend).
    return BackendKind::kEpoll;
  }();
  return kind;
}

absl::StatusOr<std::unique_ptr<Backend>> NewBackend(const BackendOptions& options) {
  BackendKind kind = options.kind;
  if (kind == BackendKind::kAuto) kind = ResolveAutoBackend();
  if (kind == BackendKind::kIocp) {
    return absl::InvalidArgumentError("backend iocp is only available on Windows");
  }
  if (kind == BackendKind::kIoUring) {
    if (absl::Status s = IoUringAvailable(); !s.ok()) {
      if (options.kind == BackendKind::kIoUring) {
        return absl::FailedPreconditionError(
            absl::StrCat("backend io_uring asked for but unavailable: ", s.message()));
      }
      static std::once_flag logged;
      std::call_once(logged, [&] {
        NETLOOP_LOG(kWarning) << "io_uring unavailable (" << s.message()
                              << "); using epoll";
      });
      kind = BackendKind::kEpoll;
    } else {
      return NewIoUringBackend(options);
    }
  }
  return NewEpollBackend(options);
}

#endif  // _WIN32

}  // namespace netloop::internal

namespace netloop {

absl::StatusOr<BackendKind> ParseBackendKind(std::string_view name) {
  for (BackendKind kind : {BackendKind::kAuto, BackendKind::kEpoll, BackendKind::kIoUring,
                           BackendKind::kIocp}) {
    if (name == BackendKindName(kind)) return kind;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("backend must be auto, epoll, io_uring or iocp, not \"", std::string(name), "\""));
}

const char* BackendKindName(BackendKind kind) {
  switch (kind) {
    case BackendKind::kAuto:
      return "auto";
    case BackendKind::kEpoll:
      return "epoll";
    case BackendKind::kIoUring:
      return "io_uring";
    case BackendKind::kIocp:
      return "iocp";
  }
  return "?";
}

}  // namespace netloop
