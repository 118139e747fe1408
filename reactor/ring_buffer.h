// A byte FIFO for the bytes a connection could not hand over yet: inbound
// bytes its handler left unconsumed, outbound bytes the socket would not take.
//
// A default-constructed RingBuffer owns no memory, so an idle connection
// costs nothing here; storage is allocated on the first Append and freed by
// Release / ReleaseIfEmpty. Capacity is a power of two, so positions wrap with
// a mask, and reads never copy: Peek returns up to two pieces when the bytes
// wrap around the end of the storage.
//
// Not thread-safe (one loop owns each connection). Views returned by Peek and
// MakeContiguous stay valid until the next non-const call.
#ifndef NETLOOP_REACTOR_RING_BUFFER_H_
#define NETLOOP_REACTOR_RING_BUFFER_H_

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace netloop {

class RingBuffer {
 public:
  static constexpr size_t kMinCapacity = 1024;

  struct Views {
    std::string_view first;
    std::string_view second;  // non-empty only when the bytes wrap
    size_t size() const { return first.size() + second.size(); }
  };

  RingBuffer() = default;
  ~RingBuffer() { Release(); }
  RingBuffer(RingBuffer&& other) noexcept;
  RingBuffer& operator=(RingBuffer&& other) noexcept;
  RingBuffer(const RingBuffer&) = delete;
  RingBuffer& operator=(const RingBuffer&) = delete;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t capacity() const { return capacity_; }

  // Copies `data` in, growing (doubling, data linearised) when needed.
  void Append(std::string_view data);
  void Append(const struct iovec* iov, int count);

  // The first min(n, size()) bytes, as one or two pieces; no copy.
  Views Peek(size_t n) const;
  // Drops up to n bytes from the front; returns how many. Emptying the
  // buffer resets its start so the next bytes are contiguous again (the
  // memory is kept: views of dropped bytes stay readable until the next
  // non-const call).
  size_t Discard(size_t n);
  // Makes the first min(n, size()) bytes one piece by rotating the storage
  // in place (no allocation), and returns them.
  std::string_view MakeContiguous(size_t n);

  // The readable bytes as up to two iovecs (for writev); returns the count.
  int ReadableIovecs(struct iovec iov[2]) const;
  // Ensures at least `min_free` free bytes and returns the free space as up
  // to two iovecs (for readv straight into the ring); Commit(n) afterwards.
  int WritableIovecs(struct iovec iov[2], size_t min_free);
  void Commit(size_t n) { size_ += n; }

  void Clear() {
    head_ = 0;
    size_ = 0;
  }
  // Frees the storage.
  void Release();
  void ReleaseIfEmpty() {
    if (size_ == 0) Release();
  }

 private:
  void Reserve(size_t total);
  size_t Mask() const { return capacity_ - 1; }

  char* data_ = nullptr;
  uint32_t capacity_ = 0;  // 0 or a power of two
  uint32_t head_ = 0;
  size_t size_ = 0;
};

}  // namespace netloop

#endif  // NETLOOP_REACTOR_RING_BUFFER_H_
