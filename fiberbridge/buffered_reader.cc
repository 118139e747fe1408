#include "fiberbridge/buffered_reader.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "reactor/errors.h"

namespace netloop::fiber {
namespace {

absl::Status ConcurrentCallError() {
  return absl::FailedPreconditionError(
      "BufferedReader: another fiber is in a call on this reader");
}

}  // namespace

// Marks the reader busy for the length of a call. A second fiber that enters
// while the first is parked in FiberConn::Read must not compact or grow the
// buffer that read is filling, so it is turned away instead.
class BufferedReader::BusyGuard {
 public:
  explicit BusyGuard(bool& busy) : busy_(busy), acquired_(!busy) { busy_ = true; }
  ~BusyGuard() {
    if (acquired_) busy_ = false;
  }
  BusyGuard(const BusyGuard&) = delete;
  BusyGuard& operator=(const BusyGuard&) = delete;
  bool acquired() const { return acquired_; }

 private:
  bool& busy_;
  const bool acquired_;
};

BufferedReader::BufferedReader(FiberConn& conn, BufferedReaderOptions options)
    : conn_(conn),
      max_token_size_(std::max<size_t>(options.max_token_size, 1)),
      capacity_(std::clamp<size_t>(options.buffer_size, 1, max_token_size_)) {}

BufferedReader::~BufferedReader() = default;

absl::StatusOr<std::string_view> BufferedReader::ReadUntil(char delim) {
  BusyGuard guard(busy_);
  if (!guard.acquired()) return ConcurrentCallError();
  if (absl::Status s = FinishSkip(); !s.ok()) return s;
  if (delim != scan_delim_) {
    scan_delim_ = delim;
    scanned_ = 0;
  }
  for (;;) {
    const size_t unread = end_ - start_;
    if (scanned_ < unread) {
      const char* base = buf_.get() + start_;
      const void* hit = std::memchr(base + scanned_, delim, unread - scanned_);
      if (hit != nullptr) return Take(static_cast<const char*>(hit) - base + 1);
      scanned_ = unread;
    }
    if (unread >= max_token_size_) {
      // Drop what we hold now rather than return it (see the header): the
      // caller gets the error without waiting for a peer that may never
      // send the delimiter, and the skip resumes on the next call.
      start_ = end_ = scanned_ = 0;
      skipping_ = true;
      skip_delim_ = delim;
      return absl::ResourceExhaustedError("BufferedReader: token longer than " +
                                          std::to_string(max_token_size_) + " bytes");
    }
    if (absl::Status s = Fill(unread + 1); !s.ok()) {
      // EOF ends the token: hand out what there is now, and let the next
      // call meet the EOF again (read(2) keeps returning 0).
      if (IsPeerClosed(s) && unread > 0) return Take(unread);
      return s;  // the partial token stays buffered for the next call
    }
  }
}

absl::StatusOr<std::string_view> BufferedReader::ReadLine() {
  absl::StatusOr<std::string_view> token = ReadUntil('\n');
  if (!token.ok()) return token;
  std::string_view line = *token;
  if (!line.empty() && line.back() == '\n') {
    line.remove_suffix(1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  }
  return line;
}

absl::StatusOr<size_t> BufferedReader::Read(std::span<char> buf) {
  if (buf.empty()) return 0;
  BusyGuard guard(busy_);
  if (!guard.acquired()) return ConcurrentCallError();
  if (absl::Status s = FinishSkip(); !s.ok()) return s;
  if (start_ == end_) {
    // A large read gains nothing from the buffer but a second copy.
    if (buf.size() >= capacity_) return conn_.Read(buf);
    if (absl::Status s = Fill(1); !s.ok()) return s;
  }
  const size_t n = std::min(buf.size(), end_ - start_);
  std::memcpy(buf.data(), buf_.get() + start_, n);
  start_ += n;
  scanned_ = 0;
  return n;
}

absl::StatusOr<std::string_view> BufferedReader::Peek(size_t n) {
  BusyGuard guard(busy_);
  if (!guard.acquired()) return ConcurrentCallError();
  if (n > max_token_size_) {
    return absl::ResourceExhaustedError("BufferedReader: Peek of " + std::to_string(n) +
                                        " bytes, more than the maximum " +
                                        std::to_string(max_token_size_));
  }
  if (absl::Status s = FinishSkip(); !s.ok()) return s;
  if (n == 0) return std::string_view();
  while (end_ - start_ < n) {
    if (absl::Status s = Fill(n); !s.ok()) return s;
  }
  return std::string_view(buf_.get() + start_, n);
}

size_t BufferedReader::Discard(size_t n) {
  BusyGuard guard(busy_);
  if (!guard.acquired()) return 0;
  n = std::min(n, end_ - start_);
  start_ += n;
  scanned_ = 0;
  return n;
}

absl::Status BufferedReader::Fill(size_t want) {
  MakeRoom(want);
  absl::StatusOr<size_t> n = conn_.Read(std::span<char>(buf_.get() + end_, capacity_ - end_));
  if (!n.ok()) return n.status();
  end_ += *n;
  return absl::OkStatus();
}

void BufferedReader::MakeRoom(size_t want) {
  if (start_ == end_) start_ = end_ = 0;  // empty: room at no cost
  if (buf_ == nullptr) buf_ = std::make_unique_for_overwrite<char[]>(capacity_);
  const size_t unread = end_ - start_;
  if (want > capacity_) {
    // Doubling keeps the copies for one long token linear in its length.
    const size_t grown = std::max(want, std::min(capacity_ * 2, max_token_size_));
    auto fresh = std::make_unique_for_overwrite<char[]>(grown);
    std::memcpy(fresh.get(), buf_.get() + start_, unread);
    buf_ = std::move(fresh);
    capacity_ = grown;
    start_ = 0;
    end_ = unread;
    return;
  }
  // Move the unread bytes (only ever a partial token) to the front when they
  // would not fit where they are, or when the free tail is under a quarter
  // of the buffer: a short tail means short reads, one syscall each, while
  // the move happens at most once per three quarters of a buffer consumed.
  if (start_ > 0 && (start_ + want > capacity_ || capacity_ - end_ < capacity_ / 4)) {
    std::memmove(buf_.get(), buf_.get() + start_, unread);
    start_ = 0;
    end_ = unread;
  }
}

absl::Status BufferedReader::FinishSkip() {
  while (skipping_) {
    // Nothing is buffered while skipping: every fill is either all discarded
    // or holds the delimiter that ends the skip.
    if (absl::Status s = Fill(1); !s.ok()) {
      if (IsPeerClosed(s)) skipping_ = false;  // EOF ended the overlong token too
      return s;
    }
    const char* base = buf_.get() + start_;
    const void* hit = std::memchr(base, skip_delim_, end_ - start_);
    if (hit != nullptr) {
      start_ += static_cast<const char*>(hit) - base + 1;
      skipping_ = false;
    } else {
      start_ = end_ = 0;
    }
  }
  return absl::OkStatus();
}

std::string_view BufferedReader::Take(size_t n) {
  std::string_view token(buf_.get() + start_, n);
  start_ += n;
  scanned_ = 0;
  return token;
}

}  // namespace netloop::fiber
