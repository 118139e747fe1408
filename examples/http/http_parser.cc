#include "examples/http/http_parser.h"

#include <cstring>

namespace netloop::http {
namespace {

bool IsTokenChar(unsigned char c) {
  // RFC 9110 tchar.
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != 0;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if ((a[i] | 0x20) != (b[i] | 0x20)) return false;
  }
  return true;
}

std::string_view TrimOws(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

// Applies a Connection header's comma-separated options.
void ApplyConnection(std::string_view value, Request* req) {
  while (!value.empty()) {
    size_t comma = value.find(',');
    std::string_view opt = TrimOws(value.substr(0, comma));
    if (EqualsIgnoreCase(opt, "close")) req->keep_alive = false;
    if (EqualsIgnoreCase(opt, "keep-alive")) req->keep_alive = true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
}

}  // namespace

std::string_view Request::FindHeader(std::string_view name) const {
  for (size_t i = 0; i < header_count; ++i) {
    if (EqualsIgnoreCase(headers[i].name, name)) return headers[i].value;
  }
  return {};
}

RequestParser::Result RequestParser::Parse(std::string_view data, Request* req,
                                           size_t* consumed) {
  // A bare LF is rejected as soon as it arrives (only new bytes are looked
  // at): lenient line endings are where proxies and servers disagree.
  size_t from = scanned_ > 3 ? scanned_ - 3 : 0;
  size_t end = data.find("\r\n\r\n", from);
  const size_t head_limit = end == std::string_view::npos ? data.size() : end + 4;
  for (size_t i = scanned_; i < head_limit; ++i) {  // never the body
    if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r')) return Fail(400);
  }
  if (end == std::string_view::npos) {
    scanned_ = data.size();
    if (data.size() >= limits_.max_header_bytes) return Fail(431);
    // Reject an obviously bad start early instead of buffering 8 KiB of it.
    // (Methods are short: looking at 32 bytes keeps a one-byte drip O(n).)
    for (size_t i = 0; i < data.size() && data[i] != ' '; ++i) {
      if (i >= 32 || !IsTokenChar(static_cast<unsigned char>(data[i]))) return Fail(400);
    }
    return Result::kNeedMore;
  }
  scanned_ = end;
  size_t head_size = end + 4;
  if (head_size > limits_.max_header_bytes) return Fail(431);
  Result r = ParseHead(data.substr(0, end + 2), req);
  if (r != Result::kComplete) return r;
  if (data.size() - head_size < req->content_length) return Result::kNeedMore;
  req->body = data.substr(head_size, req->content_length);
  *consumed = head_size + req->content_length;
  return Result::kComplete;
}

RequestParser::Result RequestParser::ParseHead(std::string_view head, Request* req) {
  // `head` ends with the CRLF of the last header line (or the request line).
  req->header_count = 0;
  req->content_length = 0;
  req->body = {};
  bool have_length = false;
  bool have_transfer_encoding = false;

  size_t line_end = head.find("\r\n");
  std::string_view line = head.substr(0, line_end);
  // Request line: method SP target SP HTTP/1.x
  size_t sp1 = line.find(' ');
  if (sp1 == 0 || sp1 == std::string_view::npos) return Fail(400);
  req->method = line.substr(0, sp1);
  for (unsigned char c : req->method) {
    if (!IsTokenChar(c)) return Fail(400);
  }
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp2 == sp1 + 1) return Fail(400);
  req->target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  for (unsigned char c : req->target) {
    if (c <= 0x20 || c == 0x7f) return Fail(400);
  }
  std::string_view version = line.substr(sp2 + 1);
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' ||
      version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9') {
    return Fail(400);
  }
  if (version[5] != '1') return Fail(505);
  req->minor_version = version[7] - '0';
  req->keep_alive = req->minor_version >= 1;

  size_t pos = line_end + 2;
  while (pos < head.size()) {
    size_t eol = head.find("\r\n", pos);
    if (eol == std::string_view::npos) return Fail(400);
    std::string_view h = head.substr(pos, eol - pos);
    pos = eol + 2;
    if (h.empty()) return Fail(400);
    if (h[0] == ' ' || h[0] == '\t') return Fail(400);  // obs-fold
    for (char c : h) {
      if (c == '\r' || c == '\n' || c == '\0') return Fail(400);  // bare CR/LF
    }
    size_t colon = h.find(':');
    if (colon == 0 || colon == std::string_view::npos) return Fail(400);
    std::string_view name = h.substr(0, colon);
    for (unsigned char c : name) {
      if (!IsTokenChar(c)) return Fail(400);  // includes whitespace before ':'
    }
    std::string_view value = TrimOws(h.substr(colon + 1));
    if (req->header_count >= limits_.max_headers || req->header_count >= kMaxHeaders) {
      return Fail(431);
    }
    req->headers[req->header_count++] = Header{name, value};
    if (EqualsIgnoreCase(name, "content-length")) {
      if (have_length || value.empty() || value.size() > 18) return Fail(400);
      size_t n = 0;
      for (char c : value) {
        if (c < '0' || c > '9') return Fail(400);
        n = n * 10 + static_cast<size_t>(c - '0');
      }
      have_length = true;
      req->content_length = n;
    } else if (EqualsIgnoreCase(name, "transfer-encoding")) {
      have_transfer_encoding = true;
    } else if (EqualsIgnoreCase(name, "connection")) {
      ApplyConnection(value, req);
    }
  }
  if (have_transfer_encoding) return Fail(have_length ? 400 : 501);
  if (req->content_length > limits_.max_body_bytes) return Fail(413);
  return Result::kComplete;
}

}  // namespace netloop::http
