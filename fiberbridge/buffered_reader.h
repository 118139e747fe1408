// Go's bufio.Reader for a FiberConn: line- and token-oriented reads over a
// connection that a fiber reads with blocking-style calls.
//
//   BufferedReader reader(conn);
//   for (;;) {
//     conn.SetReadDeadline(absl::Now() + absl::Minutes(5));
//     absl::StatusOr<std::string_view> line = reader.ReadLine();
//     if (!line.ok()) return;            // EOF, deadline, reset, line too long
//     Handle(*line);                     // a view into the reader's buffer
//   }
//
// Thread rules: the rules of the FiberConn it reads: call it from fibers of
// the connection's loop, and from one fiber at a time. A call made while
// another fiber is parked inside one of this reader's calls fails with
// FailedPrecondition (it would move the buffer under the parked read);
// Buffered() is the exception and may be called at any time from the loop's
// fibers. Writes on the connection from another fiber are fine meanwhile.
//
// Views: every string_view returned points into the reader's own buffer (no
// copy) and stays valid until the next non-const call on the reader (or its
// destruction). Copy the bytes to keep them longer.
//
// Lifetime: the reader does not own the connection, which must outlive it.
// Reads go through FiberConn::Read, so the connection's read deadline, Close
// and the unread bytes of Adopt/HandOff all apply as they do to Read.
//
// Memory: the buffer is allocated on the first read (an idle connection that
// never sent anything costs nothing), starts at `buffer_size` and doubles
// only while one token (or one Peek) does not fit, up to `max_token_size`.
// It keeps its size afterwards, so a steady stream of lines causes no
// allocation. Consumed space is reclaimed by moving the unread bytes (a
// partial token) to the front, and only when the free tail runs short.
//
// Errors, and what stays buffered after them:
//   - Deadline, reset, Closed: returned as they come from FiberConn::Read;
//     the bytes already read (a partial line) stay buffered, and a later call
//     (after moving the deadline, say) continues where this one stopped.
//   - EOF (netloop::IsPeerClosed): ReadUntil/ReadLine first return the
//     partial token before the EOF as a normal value, once (Go returns it
//     together with io.EOF); the next call returns the EOF status.
//   - A token longer than `max_token_size`: ResourceExhausted, returned as
//     soon as the limit is reached (without waiting for the rest of the
//     token, so a server can close a hostile connection at once). Unlike
//     Go's ErrBufferFull the partial data is dropped, not returned: the
//     reader stays usable, and the next ReadUntil, ReadLine, Read or Peek
//     first discards the rest of that token through its delimiter (reading
//     as needed; an error there, a deadline say, is returned and the skip
//     resumes on the next call), then proceeds normally. The connection is
//     not closed: GetCloseReason() of this status is kNone.
#ifndef NETLOOP_FIBERBRIDGE_BUFFERED_READER_H_
#define NETLOOP_FIBERBRIDGE_BUFFERED_READER_H_

#include <cstddef>
#include <memory>
#include <span>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fiberbridge/fiber_conn.h"

namespace netloop::fiber {

struct BufferedReaderOptions {
  // Initial buffer size (bufio's default).
  size_t buffer_size = 4 * 1024;
  // The longest token ReadUntil/ReadLine return, delimiter included, and the
  // most Peek can look ahead. The buffer never grows beyond it. Both sizes
  // are raised to at least 1, and buffer_size is capped at max_token_size.
  size_t max_token_size = 64 * 1024;
};

class BufferedReader {
 public:
  explicit BufferedReader(FiberConn& conn, BufferedReaderOptions options = {});
  ~BufferedReader();
  // Not copyable or movable: views handed out point into this object's buffer
  // and a parked read holds a pointer into it.
  BufferedReader(const BufferedReader&) = delete;
  BufferedReader& operator=(const BufferedReader&) = delete;

  // Reads through the first `delim` and returns the bytes up to and
  // including it (bufio.ReadSlice, without the copy ReadString makes).
  // The view ends with `delim`, except for the final unterminated token
  // returned before EOF (see the header comment). Errors: those of
  // FiberConn::Read, ResourceExhausted for a token longer than
  // max_token_size, FailedPrecondition for a concurrent call.
  absl::StatusOr<std::string_view> ReadUntil(char delim);

  // ReadUntil('\n') without the terminator: strips "\n" or "\r\n" (a lone
  // '\r' elsewhere, or at the end of an unterminated last line, is kept).
  // The limit counts the terminator. The last line before EOF need not end
  // in '\n'; use ReadUntil to tell whether it did.
  absl::StatusOr<std::string_view> ReadLine();

  // bufio.Read: copies buffered bytes if there are any, without reading the
  // connection; otherwise reads once, straight into `buf` if it is at least
  // as large as the buffer (no point copying twice), else into the buffer.
  // Returns at least 1 byte unless `buf` is empty. Errors: those of
  // FiberConn::Read (EOF only once nothing is buffered).
  absl::StatusOr<size_t> Read(std::span<char> buf);

  // The next `n` bytes without consuming them, reading until that many are
  // buffered. n > max_token_size: ResourceExhausted at once, nothing read.
  // An error before n bytes arrive (EOF included) is returned and the bytes
  // read so far stay buffered: Read or ReadUntil still return them.
  absl::StatusOr<std::string_view> Peek(size_t n);

  // Drops up to `n` buffered bytes, typically after Peek; never reads from
  // the connection (unlike bufio's Discard). Returns how many were dropped:
  // 0 while another fiber is in a call on this reader.
  size_t Discard(size_t n);

  // Bytes read from the connection and not yet returned. Any fiber of the
  // connection's loop, at any time (even while another is parked in a read).
  size_t Buffered() const { return end_ - start_; }

 private:
  class BusyGuard;

  // Reads once more into the buffer, first making room for `want` unread
  // bytes in all (compacting or growing as needed); want <= max_token_size_.
  absl::Status Fill(size_t want);
  // Makes the unread bytes fit `want` bytes of contiguous space.
  void MakeRoom(size_t want);
  // Discards the rest of an overlong token (see the header comment).
  absl::Status FinishSkip();
  // Consumes `n` buffered bytes and returns them.
  std::string_view Take(size_t n);

  FiberConn& conn_;
  const size_t max_token_size_;
  std::unique_ptr<char[]> buf_;  // allocated on the first read
  size_t capacity_;              // the size buf_ has, or will have
  size_t start_ = 0;             // unread bytes are [start_, end_)
  size_t end_ = 0;
  // How many unread bytes from start_ are known not to hold `scan_delim_`:
  // a ReadUntil interrupted by a deadline resumes its scan there, so a line
  // arriving a byte at a time costs O(length), not O(length^2).
  size_t scanned_ = 0;
  char scan_delim_ = '\n';
  // Set after ResourceExhausted: bytes up to and including skip_delim_ are
  // still to be discarded. While set, nothing is buffered.
  bool skipping_ = false;
  char skip_delim_ = '\n';
  bool busy_ = false;  // a call is in progress (maybe parked)
};

}  // namespace netloop::fiber

#endif  // NETLOOP_FIBERBRIDGE_BUFFERED_READER_H_
