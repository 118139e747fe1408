// The per-connection HTTP/1.1 protocol engine both server models drive: bytes
// in, responses out. It answers TechEmpower's plaintext test (GET /plaintext
// and GET /), HEAD, POST /echo (echoes the body), 404 and 405, and every
// parser error with its status and a close. Pipelined requests are answered in
// order, all appended to one output buffer so a server writes them at once.
#ifndef NETLOOP_EXAMPLES_HTTP_HTTP_SESSION_H_
#define NETLOOP_EXAMPLES_HTTP_HTTP_SESSION_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "examples/http/http_date.h"
#include "examples/http/http_parser.h"

namespace netloop::http {

struct SessionResult {
  size_t consumed = 0;             // bytes of input fully handled
  bool close_after_write = false;  // close once *out is written
};

class HttpSession {
 public:
  explicit HttpSession(ParserLimits limits = {}) : parser_(limits) {}

  // Handles every complete request at the start of `input`, appending one
  // response each to *out; an incomplete tail is left unconsumed for the next
  // call (with more bytes appended). After an error response, or a request
  // asking to close, nothing further is processed and close_after_write is
  // set. Loop thread of the connection (uses per-thread scratch space).
  SessionResult Process(std::string_view input, const HttpDate& date, std::string* out);

 private:
  RequestParser parser_;
};

}  // namespace netloop::http

#endif  // NETLOOP_EXAMPLES_HTTP_HTTP_SESSION_H_
