// Fuzzes netloop::http::HttpSession (examples/http/http_session.h) over a
// fake transport.
//
// Input layout: byte 0 holds the number of chunk-size bytes in its low four
// bits (0: the stream arrives in one piece) and, in bit 4, a choice of tight
// parser limits; then those chunk-size bytes (each a chunk of byte+1 bytes,
// used in turn); the rest is what the client sends.
//
// The transport does what a server's connection does: appends each arriving
// chunk to the unconsumed bytes, calls Process on all of them, drops the
// `consumed` prefix and keeps the rest for the next call. Each call sees its
// bytes in a fresh heap copy that is freed right after, so a session that
// kept a view of its input would read freed memory on the next call.
//
// Checked: consumed never exceeds the input (and is all of it once closed);
// *out is only appended to, and not at all once close_after_write was
// reported; the output is the same however the stream was chunked (whole,
// the input's chunks, one byte at a time); it is a sequence of well-formed
// HTTP/1.1 responses, one per request a RequestParser finds in the whole
// stream (plus one for a parse error), each answering its request as the
// header's route table says, with a Content-Length that frames its body.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "examples/http/http_date.h"
#include "examples/http/http_parser.h"
#include "examples/http/http_session.h"
#include "fuzz/check.h"

namespace netloop::fuzz {
namespace {

using http::HttpDate;
using http::HttpSession;
using http::ParserLimits;
using http::RequestParser;

// Sun, 06 Nov 1994 08:49:37 GMT: fixed, so runs compare byte for byte.
constexpr int64_t kDateSeconds = 784111777;

// What the response to one request must say.
struct Expected {
  bool error = false;      // answers a parse error
  int status = 0;
  bool head = false;       // no body is sent, whatever Content-Length says
  bool body_known = false;
  std::string body;        // when body_known
  std::string allow;       // 405 only
  bool route_known = true;  // else any of 200, 404, 405, with any Allow
  std::string connection;  // "close", "keep-alive" or empty for none
};

// The requests of the whole stream by a plain RequestParser, mapped through
// the route table in http_session.h.
std::vector<Expected> ExpectedResponses(std::string_view stream, const ParserLimits& limits) {
  std::vector<Expected> out;
  RequestParser parser(limits);
  auto req = std::make_unique<http::Request>();
  size_t start = 0;
  while (start < stream.size()) {
    size_t used = 0;
    const RequestParser::Result r = parser.Parse(stream.substr(start), req.get(), &used);
    if (r == RequestParser::Result::kNeedMore) break;
    Expected e;
    if (r == RequestParser::Result::kError) {
      e.error = true;
      e.status = parser.error_status();
      e.connection = "close";
      out.push_back(e);
      break;
    }
    start += used;
    const std::string_view method = req->method;
    const std::string_view path = req->target.substr(0, req->target.find('?'));
    e.head = method == "HEAD";
    if (!path.starts_with('/')) {
      // Absolute- or asterisk-form: how those route is still changing (the
      // parser may reduce them to a path), so only "some route's answer".
      e.route_known = false;
    } else if (path == "/" || path == "/plaintext") {
      if (method == "GET" || method == "HEAD") {
        e.status = 200;
        e.body_known = true;
        e.body = "Hello, World!";
      } else {
        e.status = 405;
        e.allow = "GET, HEAD";
      }
    } else if (path == "/echo") {
      if (method == "POST") {
        e.status = 200;
        e.body_known = true;
        e.body = req->body;
      } else {
        e.status = 405;
        e.allow = "POST";
      }
    } else {
      e.status = 404;
    }
    if (!req->keep_alive) {
      e.connection = "close";
    } else if (req->minor_version == 0) {
      e.connection = "keep-alive";
    }
    out.push_back(e);
    if (!req->keep_alive) break;
  }
  return out;
}

// Reads `out` as HTTP/1.1 responses and checks them against `expected`.
void CheckResponses(std::string_view out, const std::vector<Expected>& expected,
                    std::string_view date) {
  size_t index = 0;
  while (!out.empty()) {
    FUZZ_CHECK(index < expected.size(), "response %zu of %zu expected:\n%s", index + 1,
               expected.size(), Escape(out, 400).c_str());
    const Expected& e = expected[index];
    const size_t head_end = out.find("\r\n\r\n");
    FUZZ_CHECK(head_end != std::string_view::npos, "unterminated head: %s",
               Escape(out).c_str());
    const std::string_view head = out.substr(0, head_end + 2);  // each line with its CRLF
    const size_t eol = head.find("\r\n");
    const std::string_view status_line = head.substr(0, eol);
    FUZZ_CHECK(status_line.size() > 13 && status_line.starts_with("HTTP/1.1 ") &&
                   status_line[12] == ' ',
               "status line %s", Escape(status_line).c_str());
    const std::string_view status = status_line.substr(9, 3);
    if (e.route_known) {
      FUZZ_CHECK(status == std::to_string(e.status), "status line %s, expected %d",
                 Escape(status_line).c_str(), e.status);
    } else {
      FUZZ_CHECK(status == "200" || status == "404" || status == "405", "status line %s",
                 Escape(status_line).c_str());
    }
    std::string_view length_value;
    std::string_view connection;
    std::string_view allow;
    size_t lengths = 0;
    bool server = false;
    bool dated = false;
    bool typed = false;
    for (size_t pos = eol + 2; pos < head.size();) {
      const size_t end = head.find("\r\n", pos);
      const std::string_view line = head.substr(pos, end - pos);
      pos = end + 2;
      const size_t colon = line.find(": ");
      FUZZ_CHECK(colon != std::string_view::npos && colon > 0, "header line %s",
                 Escape(line).c_str());
      const std::string_view name = line.substr(0, colon);
      const std::string_view value = line.substr(colon + 2);
      if (name == "Content-Length") {
        ++lengths;
        length_value = value;
      } else if (name == "Connection") {
        connection = value;
      } else if (name == "Allow") {
        allow = value;
      } else if (name == "Server") {
        server = true;
      } else if (name == "Date") {
        FUZZ_CHECK(value == date, "Date: %s", Escape(value).c_str());
        dated = true;
      } else if (name == "Content-Type") {
        typed = !value.empty();
      }
    }
    FUZZ_CHECK(server && dated && typed, "missing Server, Date or Content-Type");
    FUZZ_CHECK(lengths == 1 && !length_value.empty() && length_value.size() < 12,
               "Content-Length: %s", Escape(length_value).c_str());
    size_t length = 0;
    for (char c : length_value) {
      FUZZ_CHECK(c >= '0' && c <= '9', "Content-Length: %s", Escape(length_value).c_str());
      length = length * 10 + (c - '0');
    }
    FUZZ_CHECK(connection == e.connection, "Connection: %s, expected %s",
               Escape(connection).c_str(), e.connection.c_str());
    if (e.route_known) {
      FUZZ_CHECK(allow == e.allow, "Allow: %s, expected %s", Escape(allow).c_str(),
                 e.allow.c_str());
    }
    if (e.body_known) FUZZ_CHECK(length == e.body.size());
    out.remove_prefix(head_end + 4);
    const size_t body_size = e.head ? 0 : length;
    FUZZ_CHECK(out.size() >= body_size, "body cut short: %zu of %zu", out.size(), body_size);
    if (e.body_known && !e.head) FUZZ_CHECK(out.substr(0, body_size) == e.body);
    out.remove_prefix(body_size);
    ++index;
  }
  FUZZ_CHECK(index == expected.size(), "%zu responses, %zu requests", index, expected.size());
}

// Feeds `stream` to a fresh session in chunks of the given sizes (cycled;
// empty: all at once) and returns everything it wrote. `ends_in_error`: the
// stream's last request is a parse error, after which the session must
// consume all of its input.
std::string Serve(std::string_view stream, const ParserLimits& limits,
                  const std::vector<size_t>& chunk_sizes, const HttpDate& date,
                  bool ends_in_error) {
  HttpSession session(limits);
  std::string out = "(earlier output)";  // Process must only append
  const size_t prefix = out.size();
  std::string pending;  // received but not consumed
  bool closed = false;
  size_t next = 0;
  for (size_t i = 0; next < stream.size(); ++i) {
    const size_t n = chunk_sizes.empty() ? stream.size() : chunk_sizes[i % chunk_sizes.size()];
    pending.append(stream.substr(next, n));
    next += std::min(n, stream.size() - next);
    auto copy = std::make_unique<char[]>(pending.size());
    std::memcpy(copy.get(), pending.data(), pending.size());
    const size_t before = out.size();
    const std::string tail = out.substr(before - std::min<size_t>(before, 32));
    const http::SessionResult r =
        session.Process(std::string_view(copy.get(), pending.size()), date, &out);
    copy.reset();  // the session may keep nothing of its input
    FUZZ_CHECK(r.consumed <= pending.size(), "consumed %zu of %zu", r.consumed, pending.size());
    FUZZ_CHECK(out.size() >= before && out.compare(before - tail.size(), tail.size(), tail) == 0,
               "output was rewritten");
    if (closed) {
      FUZZ_CHECK(out.size() == before, "%zu bytes appended after close_after_write",
                 out.size() - before);
      // Later calls swallow their input (the call that closed may leave
      // the bytes after a "Connection: close" request unconsumed).
      FUZZ_CHECK(r.close_after_write && r.consumed == pending.size(),
                 "closed, then consumed %zu of %zu", r.consumed, pending.size());
    }
    if (r.close_after_write && !closed && ends_in_error) {
      FUZZ_CHECK(r.consumed == pending.size(), "error, but consumed %zu of %zu", r.consumed,
                 pending.size());
    }
    closed |= r.close_after_write;
    pending.erase(0, r.consumed);
  }
  FUZZ_CHECK(out.compare(0, prefix, "(earlier output)") == 0);
  return out.substr(prefix);
}

}  // namespace
}  // namespace netloop::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace netloop::fuzz;
  if (size == 0) return 0;
  const size_t size_bytes = std::min<size_t>(data[0] & 0x0f, size - 1);
  netloop::http::ParserLimits limits;
  if (data[0] & 0x10) {
    limits = {.max_header_bytes = 128, .max_headers = 4, .max_body_bytes = 32};
  }
  std::vector<size_t> chunks;
  for (size_t i = 0; i < size_bytes; ++i) chunks.push_back(size_t{data[1 + i]} + 1);
  const std::string_view stream(reinterpret_cast<const char*>(data) + 1 + size_bytes,
                                size - 1 - size_bytes);

  netloop::http::HttpDate date;
  date.Refresh(kDateSeconds);
  const std::vector<Expected> expected = ExpectedResponses(stream, limits);
  const bool error = !expected.empty() && expected.back().error;
  const std::string whole = Serve(stream, limits, {}, date, error);
  CheckResponses(whole, expected, date.Value());
  if (!chunks.empty()) {
    const std::string chunked = Serve(stream, limits, chunks, date, error);
    FUZZ_CHECK(chunked == whole, "chunked:\n%s\nwhole:\n%s", Escape(chunked, 400).c_str(),
               Escape(whole, 400).c_str());
  }
  if (stream.size() <= 512) {
    const std::string dripped = Serve(stream, limits, {1}, date, error);
    FUZZ_CHECK(dripped == whole, "one byte at a time:\n%s\nwhole:\n%s",
               Escape(dripped, 400).c_str(), Escape(whole, 400).c_str());
  }
  return 0;
}
