#include "reactor/logging.h"

#include <unistd.h>

#include <atomic>
#include <string>

namespace netloop {
namespace {

class StderrSink : public LogSink {
 public:
  void Send(LogSeverity severity, std::string_view file, int line,
            std::string_view message) override {
    static constexpr const char* kNames[] = {"D", "I", "W", "E"};
    size_t slash = file.rfind('/');
    if (slash != std::string_view::npos) file.remove_prefix(slash + 1);
    std::string out;
    out.reserve(message.size() + file.size() + 32);
    out.append("netloop ").append(kNames[static_cast<int>(severity)]);
    out.append(" ").append(file).append(":").append(std::to_string(line));
    out.append("] ").append(message).append("\n");
    // One write(2) per line keeps lines from different loops whole.
    ssize_t ignored = ::write(STDERR_FILENO, out.data(), out.size());
    (void)ignored;
  }
};

StderrSink default_sink;
std::atomic<LogSink*> current_sink{&default_sink};
std::atomic<int> min_severity{static_cast<int>(LogSeverity::kWarning)};

}  // namespace

void SetLogSink(LogSink* sink) {
  current_sink.store(sink != nullptr ? sink : &default_sink,
                     std::memory_order_release);
}

void SetMinLogSeverity(LogSeverity severity) {
  min_severity.store(static_cast<int>(severity), std::memory_order_relaxed);
}

bool LogEnabled(LogSeverity severity) {
  return static_cast<int>(severity) >=
         min_severity.load(std::memory_order_relaxed);
}

namespace internal {
LogMessage::~LogMessage() {
  current_sink.load(std::memory_order_acquire)
      ->Send(severity_, file_, line_, stream_.str());
}
}  // namespace internal
}  // namespace netloop
