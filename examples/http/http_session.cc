#include "examples/http/http_session.h"

#include <string>

namespace netloop::http {
namespace {

// Request is ~2 KiB (64 header views): kept per thread, not on the stack, so
// a fiber handler's resident stack stays small.
thread_local Request scratch_request;

constexpr std::string_view kHello = "Hello, World!";

void AppendHead(std::string* out, std::string_view status_line, const HttpDate& date,
                std::string_view content_type, size_t length, bool close,
                bool http10_keep_alive, std::string_view extra = {}) {
  out->append("HTTP/1.1 ").append(status_line).append("\r\nServer: netloop\r\nDate: ");
  out->append(date.Value());
  out->append("\r\nContent-Type: ").append(content_type);
  out->append("\r\nContent-Length: ").append(std::to_string(length));
  out->append("\r\n");
  if (close) {
    out->append("Connection: close\r\n");
  } else if (http10_keep_alive) {
    out->append("Connection: keep-alive\r\n");
  }
  out->append(extra);
  out->append("\r\n");
}

std::string_view StatusLine(int status) {
  switch (status) {
    case 400: return "400 Bad Request";
    case 413: return "413 Content Too Large";
    case 431: return "431 Request Header Fields Too Large";
    case 501: return "501 Not Implemented";
    case 505: return "505 HTTP Version Not Supported";
    default: return "500 Internal Server Error";
  }
}

}  // namespace

SessionResult HttpSession::Process(std::string_view input, const HttpDate& date,
                                   std::string* out) {
  SessionResult result;
  Request& req = scratch_request;
  while (result.consumed < input.size()) {
    size_t used = 0;
    RequestParser::Result r = parser_.Parse(input.substr(result.consumed), &req, &used);
    if (r == RequestParser::Result::kNeedMore) break;
    if (r == RequestParser::Result::kError) {
      std::string_view line = StatusLine(parser_.error_status());
      std::string_view body = line.substr(4);
      AppendHead(out, line, date, "text/plain", body.size(), true, false);
      out->append(body);
      result.consumed = input.size();  // the rest is not trusted
      result.close_after_write = true;
      parser_.Reset();
      return result;
    }
    parser_.Reset();
    result.consumed += used;
    const bool close = !req.keep_alive;
    const bool http10_ka = req.minor_version == 0 && req.keep_alive;
    const bool head = req.method == "HEAD";
    std::string_view path = req.target.substr(0, req.target.find('?'));
    if (req.method == "GET" || head) {
      if (path == "/plaintext" || path == "/") {
        AppendHead(out, "200 OK", date, "text/plain", kHello.size(), close, http10_ka);
        if (!head) out->append(kHello);
      } else {
        AppendHead(out, "404 Not Found", date, "text/plain", 9, close, http10_ka);
        if (!head) out->append("Not Found");
      }
    } else if (req.method == "POST" && path == "/echo") {
      AppendHead(out, "200 OK", date, "application/octet-stream", req.body.size(), close,
                 http10_ka);
      out->append(req.body);
    } else {
      AppendHead(out, "405 Method Not Allowed", date, "text/plain", 18, close, http10_ka,
                 "Allow: GET, HEAD, POST\r\n");
      out->append("Method Not Allowed");
    }
    if (close) {
      result.close_after_write = true;
      return result;
    }
  }
  return result;
}

}  // namespace netloop::http
