#include "examples/http/http_parser.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>

namespace netloop::http {
namespace {

// RFC 9110 tchar, as a table: the method and every header name go through it.
constexpr std::array<bool, 256> kTokenChars = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (unsigned char c : std::string_view("!#$%&'*+-.^_`|~")) t[c] = true;
  return t;
}();

bool IsTokenChar(char c) { return kTokenChars[static_cast<unsigned char>(c)]; }

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsTokenChar(c)) return false;
  }
  return true;
}

// Controls other than HT may not appear in a field value (RFC 9110 5.5);
// obs-text (0x80-0xFF) may.
bool IsValidFieldValueSlow(std::string_view s) {
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

// Values are most of a head's bytes, so they are checked eight at a time:
// flag any byte below 0x20 or equal to 0x7f (the classic "has a byte less
// than n" word trick), and only on a flag look byte by byte, since HT is
// allowed and the trick cannot tell it apart.
bool IsValidFieldValue(std::string_view s) {
  constexpr uint64_t kOnes = 0x0101010101010101;
  constexpr uint64_t kHigh = 0x8080808080808080;
  uint64_t flags = 0;
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t x;
    std::memcpy(&x, s.data() + i, 8);
    const uint64_t del = x ^ (kOnes * 0x7f);  // 0x7f bytes become zero
    flags |= ((x - kOnes * 0x20) & ~x) | ((del - kOnes) & ~del);
  }
  if ((flags & kHigh) != 0) return IsValidFieldValueSlow(s);
  return IsValidFieldValueSlow(s.substr(i));
}

// RFC 3986 unreserved and sub-delims: the characters of a reg-name (and,
// with ':', of an IP literal), besides pct-encoded triplets.
constexpr std::array<bool, 256> kHostChars = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (unsigned char c : std::string_view("-._~!$&'()*+,;=")) t[c] = true;
  return t;
}();

bool IsHexDigit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// uri-host [ ":" port ] (RFC 9110 7.2 Host, RFC 3986 3.2.2 and 3.2.3):
//   uri-host = IP-literal / IPv4address / reg-name
//   IP-literal = "[" ( IPv6address / IPvFuture ) "]"
//   reg-name = *( unreserved / pct-encoded / sub-delims )
//   port = *DIGIT
// An IP literal is checked for its characters only (hex digits, ':' and '.'
// for IPv6, unreserved / sub-delims / ':' for IPvFuture), not as an address.
// No userinfo ("@"), path, query, fragment or whitespace. An empty host is
// valid here (Host may be empty); callers needing one check for it.
bool IsValidAuthority(std::string_view v) {
  size_t i = 0;
  if (!v.empty() && v[0] == '[') {
    const size_t close = v.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    for (i = 1; i < close; ++i) {
      if (v[i] != ':' && !kHostChars[static_cast<unsigned char>(v[i])]) return false;
    }
    i = close + 1;
  } else {
    while (i < v.size() && v[i] != ':') {
      if (v[i] == '%') {
        if (i + 2 >= v.size() || !IsHexDigit(v[i + 1]) || !IsHexDigit(v[i + 2])) return false;
        i += 3;
        continue;
      }
      if (!kHostChars[static_cast<unsigned char>(v[i])]) return false;
      ++i;
    }
  }
  if (i == v.size()) return true;
  if (v[i] != ':') return false;
  for (++i; i < v.size(); ++i) {
    if (v[i] < '0' || v[i] > '9') return false;
  }
  return true;
}

bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

char ToLowerAscii(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ToLowerAscii(a[i]) != ToLowerAscii(b[i])) return false;
  }
  return true;
}

std::string_view TrimOws(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

// Splits a target's path-and-query into req->path and req->query.
void SplitPathAndQuery(std::string_view path_and_query, Request* req) {
  const size_t q = path_and_query.find('?');
  req->path = path_and_query.substr(0, q);
  req->query = q == std::string_view::npos ? std::string_view() : path_and_query.substr(q + 1);
}

// Fills req->path, req->query and, for absolute-form, req->host from
// req->target (RFC 9112 3.2). Returns 0, or the status to fail with.
int ParseTarget(Request* req) {
  const std::string_view t = req->target;
  if (req->method == "CONNECT") return 501;  // authority-form tunnels: not served
  if (t[0] == '/') {  // origin-form
    SplitPathAndQuery(t, req);
    return 0;
  }
  if (t == "*") {  // asterisk-form: OPTIONS only (RFC 9112 3.2.4)
    if (req->method != "OPTIONS") return 400;
    req->path = t;
    req->query = {};
    return 0;
  }
  // absolute-form: scheme "://" authority path-abempty [ "?" query ]. Only
  // http and https URIs name resources of this server; scheme is
  // case-insensitive (RFC 9110 4.2.3).
  size_t i = 0;
  if (!IsAlpha(t[0])) return 400;
  while (i < t.size() && (IsAlpha(t[i]) || (t[i] >= '0' && t[i] <= '9') || t[i] == '+' ||
                          t[i] == '-' || t[i] == '.')) {
    ++i;
  }
  const std::string_view scheme = t.substr(0, i);
  if (t.substr(i, 3) != "://" ||
      !(EqualsIgnoreCase(scheme, "http") || EqualsIgnoreCase(scheme, "https"))) {
    return 400;
  }
  const std::string_view rest = t.substr(i + 3);
  const size_t authority_end = std::min(rest.find('/'), rest.find('?'));
  const std::string_view authority = rest.substr(0, authority_end);
  // An http(s) URI with an empty host is invalid (RFC 9110 4.2.1), and
  // userinfo is treated as an error (4.2.4: IsValidAuthority refuses "@").
  if (authority.empty() || authority[0] == ':' || !IsValidAuthority(authority)) return 400;
  // RFC 9112 3.2.2: the target's authority replaces the Host header.
  req->host = authority;
  if (authority_end == std::string_view::npos) {
    req->path = "/";
    req->query = {};
    return 0;
  }
  SplitPathAndQuery(rest.substr(authority_end), req);
  if (req->path.empty()) req->path = "/";  // "http://h?q": the path is "/"
  return 0;
}

uint32_t Clamp32(size_t v) {
  return static_cast<uint32_t>(std::min<size_t>(v, std::numeric_limits<uint32_t>::max()));
}

}  // namespace

std::string_view Request::FindHeader(std::string_view name) const {
  for (size_t i = 0; i < header_count; ++i) {
    if (EqualsIgnoreCase(headers[i].name, name)) return headers[i].value;
  }
  return {};
}

RequestParser::RequestParser(const ParserLimits& limits)
    : max_header_bytes_(Clamp32(limits.max_header_bytes)),
      max_body_bytes_(std::min<uint32_t>(Clamp32(limits.max_body_bytes),
                                         std::numeric_limits<uint32_t>::max() - 1)),
      max_headers_(static_cast<uint16_t>(std::min(limits.max_headers, kMaxHeaders))) {}

void RequestParser::Reset() {
  error_status_ = 0;
  skip_ = 0;
  scanned_ = 0;
  head_end_ = 0;
  body_length_ = 0;
}

RequestParser::Result RequestParser::Fail(int status) {
  error_status_ = static_cast<uint16_t>(status);
  return Result::kError;
}

int RequestParser::MethodPrefixStatus(std::string_view data) const {
  // Looks at no more than kMaxMethodLength + 1 bytes, so running it on every
  // call keeps a one-byte drip linear.
  const size_t end = std::min(data.size(), skip_ + kMaxMethodLength + 1);
  for (size_t i = skip_; i < end; ++i) {
    if (data[i] == ' ') return i == skip_ ? 400 : 0;
    if (!IsTokenChar(data[i])) return 400;
  }
  return end - skip_ > kMaxMethodLength ? 501 : 0;
}

RequestParser::Result RequestParser::Parse(std::string_view data, Request* req,
                                           size_t* consumed) {
  if (error_status_ != 0) return Result::kError;
  bool parsed_now = false;
  if (head_end_ == 0) {
    if (scanned_ == 0) {
      if (data.empty()) return Result::kNeedMore;
      if (data[0] == '\r') {
        if (data.size() < 2) return Result::kNeedMore;
        if (data[1] != '\n') return Fail(400);
        skip_ = 2;
        scanned_ = 2;
      }
    }
    if (int status = MethodPrefixStatus(data); status != 0) return Fail(status);
    // Every LF must close a CRLF; the head ends at the first CRLF CRLF. Only
    // bytes not looked at before are searched, and never past the limit, so
    // an oversized head costs max_header_bytes and no more.
    const size_t limit = std::min<size_t>(data.size(), max_header_bytes_);
    size_t i = scanned_;
    while (i < limit) {
      const void* hit = std::memchr(data.data() + i, '\n', limit - i);
      if (hit == nullptr) {
        i = limit;
        break;
      }
      const size_t lf = static_cast<const char*>(hit) - data.data();
      if (lf == 0 || data[lf - 1] != '\r') return Fail(400);
      // The previous LF, two back, was itself checked to follow a CR; it must
      // not be the skipped leading CRLF's (that would be an empty request
      // line, which ParseHead rejects once a real end arrives).
      if (lf >= skip_ + 3u && data[lf - 2] == '\n') {
        head_end_ = static_cast<uint32_t>(lf + 1);
        break;
      }
      i = lf + 1;
    }
    if (head_end_ == 0) {
      scanned_ = static_cast<uint32_t>(i);
      if (data.size() >= max_header_bytes_) return Fail(431);
      return Result::kNeedMore;
    }
    if (Result r = ParseHead(data, req); r != Result::kComplete) return r;
    body_length_ = static_cast<uint32_t>(req->content_length);
    parsed_now = true;
  }
  if (data.size() - head_end_ < body_length_) return Result::kNeedMore;
  // The head was judged on an earlier call, but the caller's bytes may have
  // moved since: rebuild the views (once per request, so still linear).
  if (!parsed_now) {
    if (Result r = ParseHead(data, req); r != Result::kComplete) return r;
  }
  req->body = data.substr(head_end_, body_length_);
  *consumed = head_end_ + body_length_;
  Reset();
  return Result::kComplete;
}

RequestParser::Result RequestParser::ParseHead(std::string_view data, Request* req) {
  // Every line in `head` ends with CRLF (the scan checked each LF); the last
  // is the empty line.
  const std::string_view head = data.substr(skip_, head_end_ - skip_);
  req->header_count = 0;
  req->content_length = 0;
  req->body = {};

  size_t eol = head.find("\r\n");
  const std::string_view line = head.substr(0, eol);
  // Request line: method SP request-target SP HTTP-version.
  const size_t sp1 = line.find(' ');
  if (sp1 == 0 || sp1 == std::string_view::npos) return Fail(400);
  req->method = line.substr(0, sp1);
  if (!IsToken(req->method)) return Fail(400);
  if (req->method.size() > kMaxMethodLength) return Fail(501);
  const size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp2 == sp1 + 1) return Fail(400);
  req->target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  for (char ch : req->target) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c == 0x7f) return Fail(400);
  }
  const std::string_view version = line.substr(sp2 + 1);
  auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || !is_digit(version[5]) ||
      version[6] != '.' || !is_digit(version[7])) {
    return Fail(400);
  }
  if (version[5] != '1') return Fail(505);
  req->minor_version = version[7] - '0';

  bool have_length = false;
  bool have_host = false;
  bool have_transfer_encoding = false;
  req->host = {};
  std::string_view host_header;
  bool saw_close = false;
  bool saw_keep_alive = false;
  size_t pos = eol + 2;
  while (true) {
    eol = head.find("\r\n", pos);
    const std::string_view h = head.substr(pos, eol - pos);
    pos = eol + 2;
    if (h.empty()) break;  // the blank line: always the last
    if (h[0] == ' ' || h[0] == '\t') return Fail(400);  // obs-fold
    const size_t colon = h.find(':');
    if (colon == std::string_view::npos) return Fail(400);
    const std::string_view name = h.substr(0, colon);
    if (!IsToken(name)) return Fail(400);  // also whitespace before the colon
    const std::string_view raw_value = h.substr(colon + 1);
    if (!IsValidFieldValue(raw_value)) return Fail(400);  // bare CR, NUL, ...
    const std::string_view value = TrimOws(raw_value);
    if (req->header_count >= max_headers_) return Fail(431);
    req->headers[req->header_count++] = Header{name, value};

    // Most names are none of the four that matter; comparing lengths
    // inline first skips the calls for them.
    if (name.size() == 14 && EqualsIgnoreCase(name, "content-length")) {
      if (have_length || value.empty()) return Fail(400);
      have_length = true;
      // 1*DIGIT, decimal; leading zeros add nothing. Accumulation stops once
      // the value passes the limit (below 2^32), so n * 10 never nears 2^64
      // and cannot wrap: any longer number, 2^64 included, stays above the
      // limit and is 413. Every digit is still checked (a huge non-number
      // is 400).
      uint64_t n = 0;
      for (char c : value) {
        if (c < '0' || c > '9') return Fail(400);
        if (n <= max_body_bytes_) n = n * 10 + static_cast<uint64_t>(c - '0');
      }
      req->content_length = n;
    } else if (name.size() == 4 && EqualsIgnoreCase(name, "host")) {
      // RFC 9112 3.2: more than one Host line, or an invalid value, is 400
      // in any version.
      if (have_host || !IsValidAuthority(value)) return Fail(400);
      have_host = true;
      host_header = value;
    } else if (name.size() == 17 && EqualsIgnoreCase(name, "transfer-encoding")) {
      have_transfer_encoding = true;
    } else if (name.size() == 10 && EqualsIgnoreCase(name, "connection")) {
      std::string_view rest = value;
      while (!rest.empty()) {
        const size_t comma = rest.find(',');
        const std::string_view option = TrimOws(rest.substr(0, comma));
        saw_close |= EqualsIgnoreCase(option, "close");
        saw_keep_alive |= EqualsIgnoreCase(option, "keep-alive");
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
      }
    }
  }
  // RFC 9112 3.2: an HTTP/1.1 request must carry Host (HTTP/1.0 predates it),
  // even with an absolute-form target, whose authority then replaces it.
  if (!have_host && req->minor_version >= 1) return Fail(400);
  req->host = host_header;
  if (int status = ParseTarget(req); status != 0) return Fail(status);
  // Both framings at once is the classic smuggling vector: refuse outright.
  if (have_transfer_encoding) return Fail(have_length ? 400 : 501);
  if (req->content_length > max_body_bytes_) return Fail(413);
  req->keep_alive = !saw_close && (req->minor_version >= 1 || saw_keep_alive);
  return Result::kComplete;
}

}  // namespace netloop::http
