// A byte FIFO for the bytes a connection could not hand over yet: inbound
// bytes its handler left unconsumed, outbound bytes the socket would not take.
//
// A default-constructed RingBuffer owns no memory, so an idle connection pays
// only for the object itself (24 bytes); storage comes on the first write and
// goes back with Release / ReleaseIfEmpty / ShrinkToFit, never implicitly.
// Capacity is a power of two (positions wrap with a mask), at least
// kMinCapacity, and doubles on growth, so a connection that streams steadily
// stops allocating after its first few writes.
//
// Reads never copy: Peek and ReadableIovecs hand out the bytes in place as up
// to two pieces (the second is non-empty only when the bytes wrap around the
// end of the storage); WritableIovecs hands out the free space so readv can
// fill the ring directly.
//
// Threading: none. One thread (the loop that owns the connection) uses a
// RingBuffer at a time.
//
// View lifetime: every std::string_view and iovec a RingBuffer returns points
// into its storage and stays valid until the next non-const call on it (any
// of them may move or free the storage; Discard keeps it, but later writes
// reuse it).
#ifndef NETLOOP_REACTOR_RING_BUFFER_H_
#define NETLOOP_REACTOR_RING_BUFFER_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "reactor/iovec.h"

namespace netloop {

class RingBuffer {
 public:
  static constexpr size_t kMinCapacity = 1024;
  // Positions are 32-bit to keep the object small. A connection buffering
  // 2 GiB is a runaway peer or a missing high-water mark; growing past this
  // aborts the process rather than wrapping positions.
  static constexpr size_t kMaxCapacity = size_t{1} << 31;

  // The front bytes in place: `first` then `second`. `second` is non-empty
  // only when the bytes wrap around the end of the storage.
  struct Views {
    std::string_view first;
    std::string_view second;
    size_t size() const { return first.size() + second.size(); }
  };

  RingBuffer() = default;  // allocates nothing
  ~RingBuffer() { Release(); }
  RingBuffer(RingBuffer&& other) noexcept;  // `other` is left empty, unallocated
  RingBuffer& operator=(RingBuffer&& other) noexcept;
  RingBuffer(const RingBuffer&) = delete;
  RingBuffer& operator=(const RingBuffer&) = delete;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // 0 while no storage is held, otherwise a power of two >= kMinCapacity.
  size_t capacity() const { return capacity_; }

  // Copies bytes in at the back, growing first if they do not fit (one
  // allocation per call at most; the old bytes are linearised into the new
  // block).
  void Append(std::string_view data);
  void Append(const struct iovec* iov, int count);

  // Like Append, except that when it must grow it does not free the old
  // storage but returns it (nullptr when it did not grow), for the caller to
  // free with ::operator delete once nothing points into it any more (a
  // completion-based send in flight does).
  [[nodiscard]] void* AppendKeepingOldStorage(std::string_view data);
  // Empties the buffer and hands its storage (or nullptr) to the caller, who
  // frees it with ::operator delete.
  [[nodiscard]] void* TakeStorage();

  // The first min(n, size()) bytes, without copying.
  Views Peek(size_t n) const;

  // Drops up to n bytes from the front and returns how many were dropped.
  // When the buffer becomes empty its start moves back to offset 0, so the
  // next bytes are contiguous again; the storage is kept.
  size_t Discard(size_t n);

  // Rearranges the storage so that the first min(n, size()) bytes are one
  // piece, and returns them. Never allocates: when the bytes wrap, it slides
  // the smaller piece through the free gap with memmove (O(size)); only when
  // the gap is too small for either piece does it rotate the whole storage in
  // place (O(capacity), and then capacity < 2 * size). Free when the prefix
  // is already contiguous.
  std::string_view MakeContiguous(size_t n);

  // All readable bytes as up to two iovecs for writev; returns the count
  // (0 when empty). Follow a partial write with Discard(written).
  int ReadableIovecs(struct iovec iov[2]) const;

  // Ensures at least max(min_free, 1) free bytes (growing if needed) and
  // returns all the free space as up to two iovecs for readv; returns the
  // count (1 or 2). Afterwards call Commit(bytes_read) before any other
  // non-const call.
  int WritableIovecs(struct iovec iov[2], size_t min_free);
  // Appends the first n bytes of the space WritableIovecs returned.
  // n must not exceed that space.
  void Commit(size_t n);

  // Drops everything but keeps the storage.
  void Clear() {
    head_ = 0;
    size_ = 0;
  }
  // Drops everything and frees the storage.
  void Release();
  // Frees the storage if no bytes are buffered; otherwise does nothing.
  void ReleaseIfEmpty() {
    if (size_ == 0) Release();
  }
  // Moves the bytes into the smallest allowed capacity (releases when empty).
  // Allocates when it shrinks; a no-op when the capacity is already minimal.
  void ShrinkToFit();

 private:
  // Ensures capacity for `total` bytes.
  void Reserve(size_t total);
  // Reallocates to exactly `cap` bytes, linearising the data to offset 0.
  void Reallocate(size_t cap);
  // The same, returning the old storage instead of freeing it.
  void* ReallocateKeepingOld(size_t cap);
  // Copies n bytes in at the back; the room must already be there.
  void CopyIn(const char* src, size_t n);
  size_t Tail() const { return (head_ + size_) & (capacity_ - 1); }

  char* data_ = nullptr;
  uint32_t capacity_ = 0;  // 0 or a power of two
  uint32_t head_ = 0;      // offset of the first byte; 0 whenever empty
  size_t size_ = 0;
};

}  // namespace netloop

#endif  // NETLOOP_REACTOR_RING_BUFFER_H_
