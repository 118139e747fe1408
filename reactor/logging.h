// A deliberately small logging seam. The system Abseil has no absl/log, and a
// library should not force a logging framework on its users anyway: everything
// netloop logs goes through one replaceable sink.
#ifndef NETLOOP_REACTOR_LOGGING_H_
#define NETLOOP_REACTOR_LOGGING_H_

#include <sstream>
#include <string_view>

namespace netloop {

enum class LogSeverity { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Receives every message at or above the minimum severity. Implementations
// must be thread-safe: loops on several threads log concurrently.
class LogSink {
 public:
  virtual ~LogSink() = default;
  virtual void Send(LogSeverity severity, std::string_view file, int line,
                    std::string_view message) = 0;
};

// Replaces the sink (nullptr restores the default, which writes one line per
// message to stderr). Any thread; the sink must outlive its use.
void SetLogSink(LogSink* sink);
// Messages below `severity` are dropped before formatting. Default: kWarning.
void SetMinLogSeverity(LogSeverity severity);
bool LogEnabled(LogSeverity severity);

namespace internal {
// Collects one message and hands it to the sink when destroyed.
class LogMessage {
 public:
  LogMessage(LogSeverity severity, const char* file, int line)
      : severity_(severity), file_(file), line_(line) {}
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  ~LogMessage();
  std::ostringstream& stream() { return stream_; }

 private:
  LogSeverity severity_;
  const char* file_;
  int line_;
  std::ostringstream stream_;
};
}  // namespace internal
}  // namespace netloop

// NETLOOP_LOG(kWarning) << "accept: " << strerror(errno);
// Costs one branch when the severity is disabled.
#define NETLOOP_LOG(severity)                                          \
  if (!::netloop::LogEnabled(::netloop::LogSeverity::severity)) {      \
  } else                                                               \
    ::netloop::internal::LogMessage(::netloop::LogSeverity::severity,  \
                                    __FILE__, __LINE__)                \
        .stream()

#endif  // NETLOOP_REACTOR_LOGGING_H_
