// The per-connection HTTP/1.1 protocol engine both server models drive: bytes
// in, responses out, no I/O and no dependency on the reactor.
//
// Routes, on the target's path (absolute-form "http://host/plaintext" is
// routed as "/plaintext"; the query string and host are ignored):
//   GET|HEAD /plaintext, GET|HEAD /  200 "Hello, World!" (text/plain)
//   POST /echo                       200, the request body echoed back
//   any other method on those paths  405 with Allow
//   OPTIONS *                        200, empty, Allow: GET, HEAD, POST
//   GET|HEAD other paths, with a     200 and the file under the root
//   StaticRoot (--root)                (its Content-Length; the body is the
//                                      server's to send: SessionResult::
//                                      file_fd), else 404, 403 for what
//                                      leaves the root or is no regular
//                                      file, 400 for a NUL byte
//   any other path                   404
// Every response carries Server, Date, Content-Type and Content-Length;
// responses to HEAD carry no body. Request bodies (Content-Length) are read
// and ignored except by /echo. Parser errors are answered with their status
// (400, 413, 431, 501, 505) and "Connection: close"; a request head that
// took too long (the server's deadline, see SessionResult::head_pending) is
// answered 408 with "Connection: close".
//
// What the servers built on it do with the two signals here:
//   - head_pending: a request head has started but not completed. Its
//     deadline (--header-timeout) runs from the read that left it pending;
//     when it expires, TimeOutHead() and close. Idle time between requests
//     (nothing pending), and a body arriving slowly, are left to the idle
//     timeout.
//   - output_full: Process stopped at its output budget so that a client
//     pipelining without reading cannot make the server buffer without
//     bound. Stop reading, write, and call again with the unconsumed bytes
//     once the client has taken the output.
#ifndef NETLOOP_EXAMPLES_HTTP_HTTP_SESSION_H_
#define NETLOOP_EXAMPLES_HTTP_HTTP_SESSION_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "examples/http/http_date.h"
#include "examples/http/http_parser.h"
#include "examples/http/static_files.h"

namespace netloop::http {

// The output budget both servers give Process, and the bound on unsent
// response bytes past which they stop reading a connection.
inline constexpr size_t kMaxUnsentBytes = 64 * 1024;

// No output budget: Process answers every complete request it is given.
inline constexpr size_t kUnlimitedOutput = static_cast<size_t>(-1);

struct SessionResult {
  // Bytes at the start of `input` that were handled; drop them from the
  // connection's input buffer. After an error this is all of `input`.
  size_t consumed = 0;
  // Close the connection once *out has been written: the client asked for it
  // ("Connection: close", or HTTP/1.0 without keep-alive) or sent garbage.
  bool close_after_write = false;
  // The unconsumed bytes begin a request head that is not complete yet (more
  // than the one empty line RFC 9112 2.2 lets precede a request). False while
  // only a body is awaited, when nothing is left, and when output_full.
  bool head_pending = false;
  // Processing stopped because *out had grown by the output budget, with a
  // complete request (at least) left in the unconsumed bytes, or because
  // the last response's body is a file (file_fd). Call again with them (no
  // new bytes needed) once *out, and the file, have been written.
  bool output_full = false;
  // A GET answered from the StaticRoot: after *out (which ends with its
  // head), send file_size bytes of file_fd from offset 0, then close it.
  int file_fd = -1;
  uint64_t file_size = 0;
};

// One per connection; a few dozen bytes (the parser's resume state), so idle
// connections cost little. Not thread-safe: use it on the thread that owns
// the connection.
class HttpSession {
 public:
  explicit HttpSession(const ParserLimits& limits = {}) : parser_(limits) {}

  // Answers every complete request at the start of `input`, appending one
  // response per request to *out in request order (pipelining). A trailing
  // incomplete request is left unconsumed: call again with those bytes
  // followed by whatever arrives next. Once a response closes the connection
  // nothing after it is processed, and later calls append nothing and report
  // close_after_write again.
  //
  // No request after *out has grown by `output_budget` bytes is answered
  // (output_full is then set): *out exceeds the budget by at most one
  // response. The first request is always answered, so every call with a
  // complete request at the start of `input` makes progress.
  //
  // *out is only appended to, so a reused std::string with enough capacity
  // costs no allocation. `date` is copied into each response. Uses a
  // thread-local scratch Request (2 KiB of header views kept off fiber
  // stacks); nothing of `input` is referenced after the call returns.
  //
  // `root` (the server's --root, shared by its connections; null for none)
  // answers GETs and HEADs of other paths with files.
  SessionResult Process(std::string_view input, const HttpDate& date, std::string* out,
                        size_t output_budget = kUnlimitedOutput,
                        const StaticRoot* root = nullptr);

  // The request head now pending took longer than the server allows:
  // appends "408 Request Timeout" with "Connection: close" to *out (nothing
  // if the session had already closed) and closes the session, so later
  // Process calls answer nothing. Close the connection once *out is written.
  void TimeOutHead(const HttpDate& date, std::string* out);

 private:
  RequestParser parser_;
  bool closed_ = false;
};

}  // namespace netloop::http

#endif  // NETLOOP_EXAMPLES_HTTP_HTTP_SESSION_H_
