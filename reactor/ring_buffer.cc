#include "reactor/ring_buffer.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace netloop {

static_assert(sizeof(RingBuffer) <= 24, "a RingBuffer sits in every connection");

RingBuffer::RingBuffer(RingBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      capacity_(std::exchange(other.capacity_, 0)),
      head_(std::exchange(other.head_, 0)),
      size_(std::exchange(other.size_, 0)) {}

RingBuffer& RingBuffer::operator=(RingBuffer&& other) noexcept {
  if (this != &other) {
    Release();
    data_ = std::exchange(other.data_, nullptr);
    capacity_ = std::exchange(other.capacity_, 0);
    head_ = std::exchange(other.head_, 0);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void RingBuffer::Release() {
  // Global operator new/delete rather than malloc so allocation counters in
  // tests and benchmarks see the ring's storage too.
  ::operator delete(data_);
  data_ = nullptr;
  capacity_ = 0;
  head_ = 0;
  size_ = 0;
}

void RingBuffer::Reallocate(size_t cap) { ::operator delete(ReallocateKeepingOld(cap)); }

void* RingBuffer::ReallocateKeepingOld(size_t cap) {
  char* fresh = static_cast<char*>(::operator new(cap));
  Views v = Peek(size_);
  if (!v.first.empty()) std::memcpy(fresh, v.first.data(), v.first.size());
  if (!v.second.empty()) {
    std::memcpy(fresh + v.first.size(), v.second.data(), v.second.size());
  }
  char* old = data_;
  data_ = fresh;
  capacity_ = static_cast<uint32_t>(cap);
  head_ = 0;
  return old;
}

void* RingBuffer::AppendKeepingOldStorage(std::string_view data) {
  if (data.empty()) return nullptr;
  void* old = nullptr;
  const size_t total = size_ + data.size();
  if (total > capacity_) {
    if (total > kMaxCapacity) Reserve(total);  // aborts, with the message
    old = ReallocateKeepingOld(std::max(kMinCapacity, std::bit_ceil(total)));
  }
  CopyIn(data.data(), data.size());
  return old;
}

void* RingBuffer::TakeStorage() {
  void* old = data_;
  data_ = nullptr;
  capacity_ = 0;
  head_ = 0;
  size_ = 0;
  return old;
}

void RingBuffer::Reserve(size_t total) {
  if (total <= capacity_) return;
  if (total > kMaxCapacity) {
    std::fprintf(stderr, "RingBuffer: %zu bytes exceed the %zu-byte limit\n", total,
                 kMaxCapacity);
    std::abort();
  }
  // Doubling (bit_ceil of the need) keeps growth amortised O(1) per byte.
  Reallocate(std::max(kMinCapacity, std::bit_ceil(total)));
}

void RingBuffer::ShrinkToFit() {
  if (size_ == 0) {
    Release();
    return;
  }
  size_t cap = std::max(kMinCapacity, std::bit_ceil(size_));
  if (cap < capacity_) Reallocate(cap);
}

void RingBuffer::CopyIn(const char* src, size_t n) {
  if (n == 0) return;
  size_t tail = Tail();
  size_t first = std::min(n, capacity_ - tail);
  std::memcpy(data_ + tail, src, first);
  if (first < n) std::memcpy(data_, src + first, n - first);
  size_ += n;
}

void RingBuffer::Append(std::string_view data) {
  if (data.empty()) return;
  Reserve(size_ + data.size());
  CopyIn(data.data(), data.size());
}

void RingBuffer::Append(const struct iovec* iov, int count) {
  size_t total = 0;
  for (int i = 0; i < count; ++i) total += iov[i].iov_len;
  if (total == 0) return;
  Reserve(size_ + total);
  for (int i = 0; i < count; ++i) {
    CopyIn(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
  }
}

RingBuffer::Views RingBuffer::Peek(size_t n) const {
  n = std::min(n, size_);
  if (n == 0) return {};
  size_t first = std::min<size_t>(n, capacity_ - head_);
  Views v;
  v.first = std::string_view(data_ + head_, first);
  if (first < n) v.second = std::string_view(data_, n - first);
  return v;
}

size_t RingBuffer::Discard(size_t n) {
  n = std::min(n, size_);
  size_ -= n;
  head_ = size_ == 0 ? 0 : static_cast<uint32_t>((head_ + n) & (capacity_ - 1));
  return n;
}

std::string_view RingBuffer::MakeContiguous(size_t n) {
  n = std::min(n, size_);
  if (n == 0) return {};
  if (head_ + n <= capacity_) return std::string_view(data_ + head_, n);
  // Wrapped: the front piece is [head_, capacity_), the back piece is
  // [0, back), and the free gap [back, head_) lies between them.
  const size_t front = capacity_ - head_;
  const size_t back = size_ - front;
  const size_t gap = capacity_ - size_;
  if (gap >= front) {
    // Shift the back piece right by `front` (it stays clear of the front
    // piece because the gap absorbs the shift), then copy the front piece
    // down to offset 0.
    std::memmove(data_ + front, data_, back);
    std::memcpy(data_, data_ + head_, front);
    head_ = 0;
  } else if (gap >= back) {
    // Shift the front piece left by `back` (into the gap), then copy the back
    // piece to just after it, which ends exactly at capacity_.
    std::memmove(data_ + gap, data_ + head_, front);
    std::memcpy(data_ + gap + front, data_, back);
    head_ = static_cast<uint32_t>(gap);
  } else {
    // Nearly full, so the whole-storage rotation costs about the same as the
    // bytes themselves, and needs no temporary.
    std::rotate(data_, data_ + head_, data_ + capacity_);
    head_ = 0;
  }
  return std::string_view(data_ + head_, n);
}

int RingBuffer::ReadableIovecs(struct iovec iov[2]) const {
  Views v = Peek(size_);
  int count = 0;
  if (!v.first.empty()) {
    iov[count].iov_base = const_cast<char*>(v.first.data());
    iov[count].iov_len = v.first.size();
    ++count;
  }
  if (!v.second.empty()) {
    iov[count].iov_base = const_cast<char*>(v.second.data());
    iov[count].iov_len = v.second.size();
    ++count;
  }
  return count;
}

int RingBuffer::WritableIovecs(struct iovec iov[2], size_t min_free) {
  Reserve(size_ + std::max<size_t>(min_free, 1));
  const size_t tail = Tail();
  const size_t free_total = capacity_ - size_;
  const size_t first = std::min(free_total, capacity_ - tail);
  iov[0].iov_base = data_ + tail;
  iov[0].iov_len = first;
  if (first == free_total) return 1;
  iov[1].iov_base = data_;
  iov[1].iov_len = free_total - first;
  return 2;
}

void RingBuffer::Commit(size_t n) {
  assert(n <= capacity_ - size_ && "Commit beyond the space WritableIovecs gave");
  size_ += n;
}

}  // namespace netloop
