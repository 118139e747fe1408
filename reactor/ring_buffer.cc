#include "reactor/ring_buffer.h"

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace netloop {

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
  std::free(data_);
  data_ = nullptr;
  capacity_ = 0;
  head_ = 0;
  size_ = 0;
}

void RingBuffer::Reserve(size_t total) {
  if (total <= capacity_) return;
  size_t cap = std::max<size_t>(kMinCapacity, std::bit_ceil(total));
  char* fresh = static_cast<char*>(std::malloc(cap));
  if (fresh == nullptr) throw std::bad_alloc();
  // Linearise into the new block: the data starts at 0 again.
  Views v = Peek(size_);
  if (!v.first.empty()) std::memcpy(fresh, v.first.data(), v.first.size());
  if (!v.second.empty()) {
    std::memcpy(fresh + v.first.size(), v.second.data(), v.second.size());
  }
  std::free(data_);
  data_ = fresh;
  capacity_ = static_cast<uint32_t>(cap);
  head_ = 0;
}

void RingBuffer::Append(std::string_view data) {
  if (data.empty()) return;
  Reserve(size_ + data.size());
  size_t tail = (head_ + size_) & Mask();
  size_t first = std::min(data.size(), capacity_ - tail);
  std::memcpy(data_ + tail, data.data(), first);
  if (first < data.size()) std::memcpy(data_, data.data() + first, data.size() - first);
  size_ += data.size();
}

void RingBuffer::Append(const struct iovec* iov, int count) {
  size_t total = 0;
  for (int i = 0; i < count; ++i) total += iov[i].iov_len;
  Reserve(size_ + total);
  for (int i = 0; i < count; ++i) {
    Append(std::string_view(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len));
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
  head_ = size_ == 0 ? 0 : static_cast<uint32_t>((head_ + n) & Mask());
  return n;
}

std::string_view RingBuffer::MakeContiguous(size_t n) {
  n = std::min(n, size_);
  if (n == 0) return {};
  if (head_ + n <= capacity_) return std::string_view(data_ + head_, n);
  // Rotate the whole storage left by head_: data then starts at 0. Three
  // reversals do it in place without a temporary buffer.
  std::reverse(data_, data_ + head_);
  std::reverse(data_ + head_, data_ + capacity_);
  std::reverse(data_, data_ + capacity_);
  head_ = 0;
  return std::string_view(data_, n);
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
  size_t tail = (head_ + size_) & Mask();
  size_t free_total = capacity_ - size_;
  size_t first = std::min(free_total, capacity_ - tail);
  iov[0].iov_base = data_ + tail;
  iov[0].iov_len = first;
  if (first < free_total) {
    iov[1].iov_base = data_;
    iov[1].iov_len = free_total - first;
    return 2;
  }
  return 1;
}

}  // namespace netloop
