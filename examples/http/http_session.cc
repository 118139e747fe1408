#include "examples/http/http_session.h"

#include <unistd.h>

#include <string>

namespace netloop::http {
namespace {

constexpr std::string_view kHello = "Hello, World!";

// The plaintext response split around its Date value: the hot path is three
// appends.
constexpr std::string_view kPlaintextBeforeDate =
    "HTTP/1.1 200 OK\r\nServer: netloop\r\nDate: ";
constexpr std::string_view kPlaintextAfterDate =
    "\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n";

void AppendDecimal(std::string* out, size_t n) {
  char buf[20];
  char* end = buf + sizeof(buf);
  char* p = end;
  do {
    *--p = static_cast<char>('0' + n % 10);
    n /= 10;
  } while (n != 0);
  out->append(p, end - p);
}

struct Response {
  std::string_view status_line;  // "404 Not Found"
  std::string_view content_type;
  std::string_view body;
  std::string_view allow;  // methods for 405, else empty
};

// `connection` is the Connection header value to send, or empty for none.
void Append(const Response& r, const HttpDate& date, std::string_view connection,
            bool send_body, std::string* out) {
  out->append("HTTP/1.1 ").append(r.status_line);
  out->append("\r\nServer: netloop\r\nDate: ").append(date.Value());
  out->append("\r\nContent-Type: ").append(r.content_type);
  out->append("\r\nContent-Length: ");
  AppendDecimal(out, r.body.size());
  if (!connection.empty()) out->append("\r\nConnection: ").append(connection);
  if (!r.allow.empty()) out->append("\r\nAllow: ").append(r.allow);
  out->append("\r\n\r\n");
  if (send_body) out->append(r.body);
}

std::string_view ErrorStatusLine(int status) {
  switch (status) {
    case 400: return "400 Bad Request";
    case 408: return "408 Request Timeout";
    case 413: return "413 Content Too Large";
    case 431: return "431 Request Header Fields Too Large";
    case 501: return "501 Not Implemented";
    case 505: return "505 HTTP Version Not Supported";
    default: return "500 Internal Server Error";
  }
}

// An error response: its status line's reason as the body, and close.
void AppendError(int status, const HttpDate& date, std::string* out) {
  const std::string_view line = ErrorStatusLine(status);
  Append({line, "text/plain", line.substr(4), {}}, date, "close", true, out);
}

// A file from the root: its head (the body is the server's to send), or
// the status that says why not.
void RouteFile(const Request& req, const StaticRoot& root, const HttpDate& date,
               std::string_view connection, bool get, std::string* out, SessionResult* result) {
  StaticRoot::File f = root.Find(req.path);
  switch (f.status) {
    case 200:
      break;
    case 400:
      Append({"400 Bad Request", "text/plain", "Bad Request", {}}, date, connection, get, out);
      return;
    case 403:
      Append({"403 Forbidden", "text/plain", "Forbidden", {}}, date, connection, get, out);
      return;
    default:
      Append({"404 Not Found", "text/plain", "Not Found", {}}, date, connection, get, out);
      return;
  }
  out->append("HTTP/1.1 200 OK\r\nServer: netloop\r\nDate: ").append(date.Value());
  out->append("\r\nContent-Type: ").append(StaticRoot::ContentType(req.path));
  out->append("\r\nContent-Length: ");
  AppendDecimal(out, static_cast<size_t>(f.size));
  if (!connection.empty()) out->append("\r\nConnection: ").append(connection);
  out->append("\r\n\r\n");
  if (get && f.size > 0) {
    result->file_fd = f.fd;
    result->file_size = f.size;
  } else {
    ::close(f.fd);  // HEAD, or nothing to send
  }
}

void Route(const Request& req, const HttpDate& date, const StaticRoot* root, std::string* out,
           SessionResult* result) {
  const bool get = req.method == "GET";
  const bool head = req.method == "HEAD";
  // HTTP/1.0 closes by default, so keeping it open must be said; HTTP/1.1
  // keeps open by default, so closing must be said.
  std::string_view connection;
  if (!req.keep_alive) {
    connection = "close";
  } else if (req.minor_version == 0) {
    connection = "keep-alive";
  }
  const std::string_view path = req.path;
  if (path == "*") {  // OPTIONS * (the parser allows "*" for nothing else)
    Append({"200 OK", "text/plain", {}, "GET, HEAD, POST"}, date, connection, false, out);
    return;
  }
  if (path == "/plaintext" || path == "/") {
    if (get && connection.empty()) {  // the benchmarked case
      out->append(kPlaintextBeforeDate).append(date.Value()).append(kPlaintextAfterDate);
      out->append(kHello);
      return;
    }
    if (get || head) {
      Append({"200 OK", "text/plain", kHello, {}}, date, connection, get, out);
      return;
    }
    Append({"405 Method Not Allowed", "text/plain", "Method Not Allowed", "GET, HEAD"}, date,
           connection, true, out);
    return;
  }
  if (path == "/echo") {
    if (req.method == "POST") {
      Append({"200 OK", "application/octet-stream", req.body, {}}, date, connection, true, out);
    } else {
      Append({"405 Method Not Allowed", "text/plain", "Method Not Allowed", "POST"}, date,
             connection, !head, out);
    }
    return;
  }
  if (root != nullptr && (get || head)) {
    RouteFile(req, *root, date, connection, get, out, result);
    return;
  }
  Append({"404 Not Found", "text/plain", "Not Found", {}}, date, connection, !head, out);
}

// Request holds 64 header views (about 2 KiB): one per thread rather than on
// the stack keeps a fiber handler's stack small. Process never yields while
// using it, so fibers sharing the thread cannot interleave on it.
thread_local Request scratch_request;

}  // namespace

SessionResult HttpSession::Process(std::string_view input, const HttpDate& date, std::string* out,
                                   size_t output_budget, const StaticRoot* root) {
  SessionResult result;
  if (closed_) {
    result.consumed = input.size();
    result.close_after_write = true;
    return result;
  }
  Request& req = scratch_request;
  const size_t out_start = out->size();
  while (result.consumed < input.size()) {
    size_t used = 0;
    const RequestParser::Result r = parser_.Parse(input.substr(result.consumed), &req, &used);
    if (r == RequestParser::Result::kNeedMore) {
      if (!parser_.head_complete()) {
        // The one CRLF allowed before a request line does not start a head:
        // a client that sends it after a body and then idles is idle.
        std::string_view rest = input.substr(result.consumed);
        if (rest.starts_with("\r\n")) {
          rest.remove_prefix(2);
        } else if (rest == "\r") {
          rest = {};
        }
        result.head_pending = !rest.empty();
      }
      break;
    }
    if (r == RequestParser::Result::kError) {
      AppendError(parser_.error_status(), date, out);
      // Framing is lost after an error: nothing later in the stream can be
      // trusted to start a request.
      result.consumed = input.size();
      closed_ = true;
      break;
    }
    if (result.consumed > 0 && out->size() - out_start >= output_budget) {
      // Left for the next call, which parses it again (the parser has reset):
      // output_full thus always means a complete request is waiting.
      result.output_full = true;
      break;
    }
    result.consumed += used;
    Route(req, date, root, out, &result);
    if (!req.keep_alive) {
      closed_ = true;
      break;
    }
    if (result.file_fd >= 0) {
      // The file goes next; the requests after it wait for the next call.
      result.output_full = true;
      break;
    }
  }
  result.close_after_write = closed_;
  return result;
}

void HttpSession::TimeOutHead(const HttpDate& date, std::string* out) {
  if (closed_) return;
  AppendError(408, date, out);
  closed_ = true;
}

}  // namespace netloop::http
