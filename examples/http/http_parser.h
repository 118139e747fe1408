// An incremental HTTP/1.x request parser shared by the callback and fiber
// servers. Pure: bytes in, a Request of views out; no allocation, no I/O, no
// dependency on the reactor.
//
// Incremental: a request split at any byte boundary parses to the same result
// (the same Request, or the same error status). Calling again with more bytes
// resumes the search for the end of the header section where the last call
// stopped, and while a body is arriving only its length is compared, so a
// client dripping one byte per call costs O(n) in total, not O(n^2).
//
// What is accepted and what is refused (RFC 9112 terms):
//   - Line endings must be CRLF. A bare LF anywhere in the head is answered
//     400: servers and proxies that disagree on lenient line endings are how
//     requests get smuggled. A bare CR (not followed by LF) is 400 too.
//   - One empty line (CRLF) before the request line is skipped (RFC 9112 2.2:
//     some clients send one after a POST body); a second one is 400.
//   - Request line: method is a token of at most kMaxMethodLength bytes
//     (longer: 501); exactly one SP, a target without controls or spaces, one
//     SP, "HTTP/<digit>.<digit>". Major version other than 1: 505.
//   - Request target (RFC 9112 3.2): origin-form ("/path?query") for any
//     method; absolute-form ("http://host/path?query", scheme http or https,
//     any case) for any method, reduced to its path and query, its authority
//     replacing Host; asterisk-form ("*") for OPTIONS only. Anything else is
//     400: authority-form, other schemes, an empty host, userinfo ("@").
//     CONNECT (authority-form tunnels) is 501.
//   - Header lines: "name: value", name a token (so no whitespace before the
//     colon), value without controls other than HT. obs-fold (a line starting
//     with SP or HT) is 400.
//   - Content-Length: 1*DIGIT, decimal (leading zeros are accepted and mean
//     nothing: "007" is 7); anything else (sign, space, comma list, empty) is
//     400, as is a second Content-Length line even with the same value. Over
//     ParserLimits::max_body_bytes is 413, judged from the head alone, for
//     any number of digits (a huge value never wraps to a small one).
//   - Transfer-Encoding: with Content-Length 400; alone 501 (chunked request
//     bodies are not supported: the server answers 501 and closes).
//   - Header section (request line through the blank line) over
//     ParserLimits::max_header_bytes, or more than max_headers header lines:
//     431.
//   - Host (RFC 9112 3.2): an HTTP/1.1 (or later 1.x) request without one is
//     400; more than one Host line is 400 in any version (HTTP/1.0 may omit
//     it), and so is a value that is not uri-host [":" port] (whitespace,
//     userinfo "@", a path, a bad port, ...). An empty value is valid.
#ifndef NETLOOP_EXAMPLES_HTTP_HTTP_PARSER_H_
#define NETLOOP_EXAMPLES_HTTP_HTTP_PARSER_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace netloop::http {

// Storage for header views in a Request; ParserLimits::max_headers may lower
// the accepted count but not raise it.
inline constexpr size_t kMaxHeaders = 64;

// Longer method tokens are answered 501 (no method we know is that long, and
// the parser must be able to judge a method before the whole head arrives).
inline constexpr size_t kMaxMethodLength = 32;

struct ParserLimits {
  // Request line + header lines + the blank line. Values above 4 GiB are
  // clamped (the parser keeps its state in 32-bit fields).
  size_t max_header_bytes = 8 * 1024;
  // Header lines; clamped to kMaxHeaders.
  size_t max_headers = kMaxHeaders;
  // Content-Length above this is 413. Clamped to 4 GiB - 1.
  size_t max_body_bytes = 1024 * 1024;
};

struct Header {
  std::string_view name;   // as sent (compare case-insensitively)
  std::string_view value;  // leading and trailing SP/HT removed
};

// A parsed request. Every view points into the bytes last passed to
// RequestParser::Parse and stays valid while those bytes are neither changed,
// moved nor freed. Only meaningful after Parse returned kComplete.
struct Request {
  std::string_view method;  // case-sensitive token, e.g. "GET"
  std::string_view target;  // as sent: origin-, absolute- or asterisk-form
  // From the target: the path ("/" for an absolute-form target without one,
  // "*" for OPTIONS *) and the query (after '?', empty if none), views into
  // the target (or a static "/").
  std::string_view path;
  std::string_view query;
  int minor_version = 1;  // HTTP/1.<minor_version>
  // The authority of an absolute-form target (RFC 9112 3.2.2: it replaces
  // Host), else the Host header's value (OWS trimmed; empty when absent).
  std::string_view host;
  std::array<Header, kMaxHeaders> headers;
  size_t header_count = 0;
  // HTTP/1.1: true unless a Connection header lists "close". HTTP/1.0: false
  // unless it lists "keep-alive". "close" wins over "keep-alive".
  bool keep_alive = true;
  size_t content_length = 0;
  std::string_view body;  // content_length bytes

  // Value of the first header named `name` (ASCII case-insensitive), or an
  // empty view if there is none. Linear in header_count.
  std::string_view FindHeader(std::string_view name) const;
};

// Parses one request at a time from the start of a connection's unconsumed
// input. One parser per connection; not thread-safe (use it from the thread
// that owns the connection). It holds only a few integers between calls.
class RequestParser {
 public:
  enum class Result {
    kComplete,  // *req filled; the parser is ready for the next request
    kNeedMore,  // call again with the same bytes followed by more
    kError,     // answer error_status() and close; sticky until Reset()
  };

  explicit RequestParser(const ParserLimits& limits = {});

  // Parses the request at the start of `data`. Between calls returning
  // kNeedMore, `data` must start with the same bytes as before (it may have
  // moved in memory). On kComplete, *consumed is the request's size including
  // its body and any skipped leading CRLF; the next request starts at
  // data[*consumed], to be passed to the next call. On kNeedMore and kError,
  // *req and *consumed are unspecified.
  Result Parse(std::string_view data, Request* req, size_t* consumed);

  // Forgets any partial request and error; the next Parse starts afresh.
  void Reset();

  // The HTTP status to answer after kError (400, 413, 431, 501 or 505);
  // 0 otherwise.
  int error_status() const { return error_status_; }

  // After kNeedMore: true once the pending request's head has parsed and
  // only its body is awaited; false while the head itself is incomplete.
  bool head_complete() const { return head_end_ != 0; }

 private:
  Result Fail(int status);
  // The status a bad method at the start of `data` earns, or 0. A method can
  // be judged before the rest of the head has arrived, so a stream of garbage
  // fails at once instead of after max_header_bytes.
  int MethodPrefixStatus(std::string_view data) const;
  // Parses the head data[skip_, head_end_) into *req.
  Result ParseHead(std::string_view data, Request* req);

  // Limits, clamped to 32 bits so 10k idle connections hold 32 bytes each.
  uint32_t max_header_bytes_;
  uint32_t max_body_bytes_;
  uint16_t max_headers_;
  uint16_t error_status_ = 0;
  uint8_t skip_ = 0;          // leading CRLF bytes skipped (0 or 2)
  uint32_t scanned_ = 0;      // bytes searched for the end of the head so far
  uint32_t head_end_ = 0;     // end of the blank line once found, else 0
  uint32_t body_length_ = 0;  // Content-Length, once the head has parsed
};

}  // namespace netloop::http

#endif  // NETLOOP_EXAMPLES_HTTP_HTTP_PARSER_H_
