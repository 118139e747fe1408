// An incremental HTTP/1.x request-head parser shared by the callback and fiber
// servers. Pure: bytes in, a Request of views out; no allocation per request.
//
// Incremental means a request split at any byte boundary parses the same, and
// feeding more bytes does not rescan for the end of the header section (the
// scan offset is kept), so a client dripping one byte at a time costs O(n)
// total, not O(n^2).
//
// Not supported, answered with an error and a close: chunked request bodies
// (501), obs-fold header continuations (400). A bare LF line ending is
// rejected (400): accepting it invites request-smuggling disagreements with
// proxies.
#ifndef NETLOOP_EXAMPLES_HTTP_HTTP_PARSER_H_
#define NETLOOP_EXAMPLES_HTTP_HTTP_PARSER_H_

#include <array>
#include <cstddef>
#include <string_view>

namespace netloop::http {

struct ParserLimits {
  size_t max_header_bytes = 8 * 1024;  // request line + headers + blank line
  size_t max_headers = 64;
  size_t max_body_bytes = 1024 * 1024;
};

inline constexpr size_t kMaxHeaders = 64;  // storage; ParserLimits may lower it

struct Header {
  std::string_view name;
  std::string_view value;
};

// Views point into the bytes given to Parse and stay valid while those bytes
// are unchanged.
struct Request {
  std::string_view method;
  std::string_view target;
  int minor_version = 1;  // HTTP/1.<minor>
  std::array<Header, kMaxHeaders> headers;
  size_t header_count = 0;
  bool keep_alive = true;
  size_t content_length = 0;
  std::string_view body;

  // Case-insensitive lookup; empty if absent.
  std::string_view FindHeader(std::string_view name) const;
};

class RequestParser {
 public:
  enum class Result { kComplete, kNeedMore, kError };

  explicit RequestParser(ParserLimits limits = {}) : limits_(limits) {}

  // Parses the request at the start of `data`. kComplete: *req is filled and
  // *consumed is the request's length including its body; call Reset()
  // before parsing the next request. kNeedMore: call again with the same
  // bytes plus more. kError: error_status() is the status to answer with.
  Result Parse(std::string_view data, Request* req, size_t* consumed);
  void Reset() { scanned_ = 0; }
  int error_status() const { return error_status_; }

 private:
  Result Fail(int status) {
    error_status_ = status;
    return Result::kError;
  }
  Result ParseHead(std::string_view head, Request* req);

  ParserLimits limits_;
  size_t scanned_ = 0;  // bytes already searched for the blank line
  int error_status_ = 0;
};

}  // namespace netloop::http

#endif  // NETLOOP_EXAMPLES_HTTP_HTTP_PARSER_H_
