// Fuzzes netloop::RingBuffer (reactor/ring_buffer.h) against a model.
//
// The input is a program: each byte picks an operation, the bytes after it
// its arguments (sizes, counts). The same operations are applied to a
// std::string holding the bytes the ring should hold, plus the capacity the
// header's rules predict (0 with no storage, else a power of two >= 1024,
// growing to the smallest such that fits, and changing only on growth,
// Release, ReleaseIfEmpty and ShrinkToFit). After every operation the ring
// must show exactly the model's bytes through each read API.
//
// Bytes written are a running counter, so a piece that comes out in the
// wrong order or twice is a visible difference. Every free-space iovec is
// filled completely, so one that strays outside the storage or over the
// readable bytes is an ASan report or a model mismatch.
#include <sys/uio.h>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <utility>

#include "fuzz/check.h"
#include "reactor/ring_buffer.h"

namespace netloop::fuzz {
namespace {

// Keeps one input's work small; the ring's own 2 GiB limit aborts by design
// and is not what is tested here.
constexpr size_t kMaxModelBytes = 256 * 1024;

// Reads the program; past the end every read is 0, so any input is valid.
class Program {
 public:
  Program(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool done() const { return pos_ >= size_; }
  uint8_t Byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  // Mostly small sizes (0..223), and sometimes up to ~32 KiB so growth past
  // several powers of two and the 1024-byte minimum is reachable too.
  size_t Size() {
    const uint8_t b = Byte();
    if (b < 0xe0) return b;
    return (size_t{b & 0x1fu} << 10) | (size_t{Byte()} << 2);
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

class Harness {
 public:
  void Step(Program& p) {
    const uint8_t op = p.Byte();
    switch (op % 13) {
      case 0: AppendString(p.Size()); break;
      case 1: AppendIovecs(p); break;
      case 2: PeekSome(p.Size()); break;
      case 3: Discard(p.Size()); break;
      case 4: MakeContiguous(p.Size()); break;
      case 5: WriteAndCommit(p.Size(), p.Size()); break;
      case 6:
        ring_.Clear();
        model_.clear();
        head_at_zero_ = true;
        break;
      case 7:
        ring_.Release();
        model_.clear();
        capacity_ = 0;
        head_at_zero_ = true;
        break;
      case 8:
        ring_.ReleaseIfEmpty();
        if (model_.empty()) capacity_ = 0;
        break;
      case 9: ShrinkToFit(); break;
      case 10: MoveAround(); break;
      case 11: MoveOntoNonEmpty(p.Size()); break;
      default: {
        // Self move-assignment must leave the ring as it was (through a
        // reference so the compiler does not warn about the obvious case).
        RingBuffer& alias = ring_;
        ring_ = std::move(alias);
        break;
      }
    }
    CheckState();
  }

 private:
  // The capacity Reserve must pick for `total` bytes.
  void ExpectRoomFor(size_t total) {
    if (total <= capacity_) return;
    capacity_ = std::max(RingBuffer::kMinCapacity, std::bit_ceil(total));
    head_at_zero_ = true;  // growth linearises the bytes to offset 0
  }

  std::string Pattern(size_t n) {
    std::string s(n, '\0');
    for (char& c : s) c = static_cast<char>(counter_++);
    return s;
  }

  void AppendString(size_t n) {
    if (model_.size() + n > kMaxModelBytes) return;
    const std::string bytes = Pattern(n);
    if (n > 0) ExpectRoomFor(model_.size() + n);
    ring_.Append(bytes);
    model_ += bytes;
  }

  void AppendIovecs(Program& p) {
    const int count = p.Byte() % 4;
    std::string pieces[3];
    struct iovec iov[3];
    size_t total = 0;
    for (int i = 0; i < count; ++i) {
      pieces[i] = Pattern(p.Size());
      iov[i].iov_base = pieces[i].data();
      iov[i].iov_len = pieces[i].size();
      total += pieces[i].size();
    }
    if (model_.size() + total > kMaxModelBytes) return;
    if (total > 0) ExpectRoomFor(model_.size() + total);
    ring_.Append(iov, count);
    for (int i = 0; i < count; ++i) model_ += pieces[i];
  }

  void PeekSome(size_t n) {
    const RingBuffer::Views v = ring_.Peek(n);
    const size_t want = std::min(n, model_.size());
    FUZZ_CHECK(v.size() == want, "Peek(%zu) gave %zu of %zu bytes", n, v.size(), model_.size());
    FUZZ_CHECK(std::string(v.first) + std::string(v.second) == model_.substr(0, want));
    // A prefix of the bytes is a prefix of the same pieces, in place.
    const RingBuffer::Views all = ring_.Peek(std::numeric_limits<size_t>::max());
    if (!v.first.empty()) FUZZ_CHECK(v.first.data() == all.first.data());
    if (!v.second.empty()) FUZZ_CHECK(v.second.data() == all.second.data());
  }

  void Discard(size_t n) {
    const size_t want = std::min(n, model_.size());
    FUZZ_CHECK(ring_.Discard(n) == want, "Discard(%zu) of %zu", n, model_.size());
    model_.erase(0, want);
    // Emptied: the start moves back to 0. Otherwise the start moved on.
    if (model_.empty()) {
      head_at_zero_ = true;
    } else if (want > 0) {
      head_at_zero_ = false;
    }
  }

  void MakeContiguous(size_t n) {
    const RingBuffer::Views before = ring_.Peek(n);
    const std::string_view piece = ring_.MakeContiguous(n);
    const size_t want = std::min(n, model_.size());
    FUZZ_CHECK(piece == std::string_view(model_).substr(0, want),
               "MakeContiguous(%zu) of %zu bytes", n, model_.size());
    // Free when already one piece: nothing moves.
    if (before.second.empty() && want > 0) FUZZ_CHECK(piece.data() == before.first.data());
    // The piece stays in place for Peek, and the rest of the bytes survive.
    const RingBuffer::Views after = ring_.Peek(n);
    FUZZ_CHECK(after.second.empty() && after.first.data() == piece.data());
    if (!before.second.empty()) head_at_zero_ = false;  // where it lands is unspecified
  }

  void WriteAndCommit(size_t min_free, size_t commit) {
    if (model_.size() + std::max<size_t>(min_free, 1) > kMaxModelBytes) return;
    ExpectRoomFor(model_.size() + std::max<size_t>(min_free, 1));
    struct iovec iov[2];
    const int count = ring_.WritableIovecs(iov, min_free);
    FUZZ_CHECK(count == 1 || count == 2, "count=%d", count);
    const size_t free_bytes = iov[0].iov_len + (count == 2 ? iov[1].iov_len : 0);
    FUZZ_CHECK(free_bytes == ring_.capacity() - model_.size(), "free=%zu capacity=%zu size=%zu",
               free_bytes, ring_.capacity(), model_.size());
    FUZZ_CHECK(free_bytes >= std::max<size_t>(min_free, 1));
    FUZZ_CHECK(iov[0].iov_len > 0 && (count == 1 || iov[1].iov_len > 0));
    // Fill every free byte, as a large readv would.
    std::string written;
    for (int i = 0; i < count; ++i) {
      const std::string bytes = Pattern(iov[i].iov_len);
      std::copy(bytes.begin(), bytes.end(), static_cast<char*>(iov[i].iov_base));
      written += bytes;
    }
    const size_t n = commit % (free_bytes + 1);
    ring_.Commit(n);
    model_ += written.substr(0, n);
  }

  void ShrinkToFit() {
    ring_.ShrinkToFit();
    if (model_.empty()) {
      capacity_ = 0;
      head_at_zero_ = true;
      return;
    }
    const size_t fit = std::max(RingBuffer::kMinCapacity, std::bit_ceil(model_.size()));
    if (fit < capacity_) {
      capacity_ = fit;
      head_at_zero_ = true;
    }
  }

  // Out and back by move construction and move assignment: the source is
  // left empty and unallocated each time.
  void MoveAround() {
    RingBuffer other(std::move(ring_));
    FUZZ_CHECK(ring_.size() == 0 && ring_.capacity() == 0 && ring_.Peek(1).size() == 0);
    FUZZ_CHECK(other.size() == model_.size() && other.capacity() == capacity_);
    ring_ = std::move(other);
    FUZZ_CHECK(other.size() == 0 && other.capacity() == 0);
    // The moved-from ring is still usable.
    other.Append("x");
    FUZZ_CHECK(other.size() == 1 && other.Peek(1).first == "x");
  }

  // Move-assignment onto a ring that holds bytes of its own: those are
  // dropped (LeakSanitizer checks their storage is freed).
  void MoveOntoNonEmpty(size_t n) {
    RingBuffer spare;
    spare.Append(Pattern(n + 1));
    spare = std::move(ring_);
    FUZZ_CHECK(spare.size() == model_.size() && ring_.capacity() == 0);
    ring_ = std::move(spare);
  }

  void CheckState() {
    FUZZ_CHECK(ring_.size() == model_.size(), "size %zu, model %zu", ring_.size(), model_.size());
    FUZZ_CHECK(ring_.empty() == model_.empty());
    FUZZ_CHECK(ring_.capacity() == capacity_, "capacity %zu, expected %zu", ring_.capacity(),
               capacity_);
    FUZZ_CHECK(capacity_ >= model_.size());
    const RingBuffer::Views v = ring_.Peek(std::numeric_limits<size_t>::max());
    FUZZ_CHECK(std::string(v.first) + std::string(v.second) == model_, "contents differ");
    FUZZ_CHECK(v.second.empty() || !v.first.empty(), "second piece without a first");
    if (head_at_zero_) FUZZ_CHECK(v.second.empty(), "bytes wrap though they start at offset 0");
    struct iovec iov[2];
    const int count = ring_.ReadableIovecs(iov);
    FUZZ_CHECK(count == (v.first.empty() ? 0 : 1) + (v.second.empty() ? 0 : 1));
    if (count >= 1) {
      FUZZ_CHECK(iov[0].iov_base == v.first.data() && iov[0].iov_len == v.first.size());
    }
    if (count == 2) {
      FUZZ_CHECK(iov[1].iov_base == v.second.data() && iov[1].iov_len == v.second.size());
    }
  }

  RingBuffer ring_;
  std::string model_;
  size_t capacity_ = 0;
  // True while the header promises the bytes start at offset 0 (emptied,
  // or just reallocated), so they must be one piece.
  bool head_at_zero_ = true;
  uint8_t counter_ = 0;
};

}  // namespace
}  // namespace netloop::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  netloop::fuzz::Program program(data, size);
  netloop::fuzz::Harness harness;
  while (!program.done()) harness.Step(program);
  return 0;
}
