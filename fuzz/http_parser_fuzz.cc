// Fuzzes netloop::http::RequestParser (examples/http/http_parser.h).
//
// The input is a client's byte stream, possibly several pipelined requests.
// It is parsed the way a server does (parse at the start of the unconsumed
// bytes, drop what a complete request consumed, wait for more on kNeedMore)
// with bytes arriving: all at once, in two pieces split at a point taken from
// the input, and one byte at a time (in input-chosen chunks for long
// inputs). The header promises that a split at any byte boundary parses to the
// same result, so all three runs must agree request by request and on how the
// stream ends (the same error status, or waiting for more).
//
// Every completed request is also checked against the header's grammar
// (tokens, CRLF framing, trimmed values, Content-Length, keep-alive) with
// views that must lie inside the request's bytes, and every call sees its
// bytes in a fresh exact-size heap copy: a read past them is an ASan report,
// and a view kept from an earlier call would point into freed memory.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "examples/http/http_parser.h"
#include "fuzz/check.h"

namespace netloop::fuzz {
namespace {

using http::Header;
using http::ParserLimits;
using http::Request;
using http::RequestParser;

// One completed request, copied out of its views so that runs over different
// buffers can be compared.
struct Parsed {
  std::string method;
  std::string target;
  int minor_version = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  bool keep_alive = false;
  size_t content_length = 0;
  std::string body;
  size_t consumed = 0;
  bool operator==(const Parsed&) const = default;
};

// What a stream parsed to: its complete requests, then how it ended.
struct Outcome {
  std::vector<Parsed> requests;
  bool error = false;    // else the parser was waiting for more bytes
  int error_status = 0;  // when `error`
  bool operator==(const Outcome&) const = default;
};

std::string Describe(const Outcome& o) {
  std::string s;
  for (const Parsed& p : o.requests) {
    s += "  [" + Escape(p.method) + " " + Escape(p.target) + " HTTP/1." +
         std::to_string(p.minor_version) + " headers=" + std::to_string(p.headers.size()) +
         " keep_alive=" + std::to_string(p.keep_alive) +
         " length=" + std::to_string(p.content_length) + " body=" + Escape(p.body, 40) +
         " consumed=" + std::to_string(p.consumed) + "]\n";
  }
  s += o.error ? "  error " + std::to_string(o.error_status) : std::string("  need more");
  return s;
}

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return Lower(x) == Lower(y); });
}

// RFC 9110 tchar, spelled out independently of the parser's table.
bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!alnum && std::string_view("!#$%&'*+-.^_`|~").find(c) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

bool Inside(std::string_view part, std::string_view whole) {
  if (part.empty()) return true;  // an empty view may point anywhere
  return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

std::string_view TrimOws(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

// Checks one kComplete result against the header's promises. `data` is what
// the call was given; the request occupies its first `consumed` bytes.
void CheckRequest(std::string_view data, const Request& req, size_t consumed,
                  const ParserLimits& limits) {
  FUZZ_CHECK(consumed > 0 && consumed <= data.size(), "consumed=%zu of %zu", consumed,
             data.size());
  const std::string_view request = data.substr(0, consumed);
  FUZZ_CHECK(req.body.size() == req.content_length, "body %zu, Content-Length %zu",
             req.body.size(), req.content_length);
  FUZZ_CHECK(req.content_length <= std::min<size_t>(limits.max_body_bytes,
                                                    std::numeric_limits<uint32_t>::max() - 1));
  FUZZ_CHECK(req.content_length <= consumed);
  // The body is the request's last bytes, right after the blank line.
  const std::string_view head = request.substr(0, consumed - req.content_length);
  FUZZ_CHECK(req.body == request.substr(head.size()), "body=%s", Escape(req.body).c_str());
  FUZZ_CHECK(Inside(req.body, request));
  FUZZ_CHECK(head.size() >= 4 && head.substr(head.size() - 4) == "\r\n\r\n", "head=%s",
             Escape(head).c_str());
  FUZZ_CHECK(head.size() <= limits.max_header_bytes + 2, "head %zu bytes", head.size());
  // Request line: one optional leading CRLF, then method SP target SP version.
  const std::string_view line = head.substr(head.starts_with("\r\n") ? 2 : 0);
  FUZZ_CHECK(line.starts_with(req.method) && Inside(req.method, head));
  FUZZ_CHECK(IsToken(req.method) && req.method.size() <= http::kMaxMethodLength, "method=%s",
             Escape(req.method).c_str());
  FUZZ_CHECK(!req.target.empty() && Inside(req.target, head));
  for (char c : req.target) {
    FUZZ_CHECK(static_cast<unsigned char>(c) > 0x20 && c != 0x7f, "target=%s",
               Escape(req.target).c_str());
  }
  FUZZ_CHECK(req.minor_version >= 0 && req.minor_version <= 9);
  FUZZ_CHECK(req.header_count <= std::min(limits.max_headers, http::kMaxHeaders));

  size_t lengths = 0;
  std::string_view length_value;
  bool close = false;
  bool keep_alive = false;
  for (size_t i = 0; i < req.header_count; ++i) {
    const Header& h = req.headers[i];
    FUZZ_CHECK(IsToken(h.name) && Inside(h.name, head), "name=%s", Escape(h.name).c_str());
    FUZZ_CHECK(Inside(h.value, head));
    FUZZ_CHECK(TrimOws(h.value) == h.value, "value=%s", Escape(h.value).c_str());
    for (char ch : h.value) {
      const unsigned char c = static_cast<unsigned char>(ch);
      FUZZ_CHECK((c >= 0x20 || c == '\t') && c != 0x7f, "value=%s", Escape(h.value).c_str());
    }
    FUZZ_CHECK(!EqualsIgnoreCase(h.name, "transfer-encoding"), "chunked bodies are refused");
    if (EqualsIgnoreCase(h.name, "content-length")) {
      ++lengths;
      length_value = h.value;
    }
    if (EqualsIgnoreCase(h.name, "connection")) {
      std::string_view rest = h.value;
      for (size_t comma = 0; comma != std::string_view::npos; rest.remove_prefix(comma + 1)) {
        comma = rest.find(',');
        const std::string_view option = TrimOws(rest.substr(0, comma));
        close |= EqualsIgnoreCase(option, "close");
        keep_alive |= EqualsIgnoreCase(option, "keep-alive");
        if (comma == std::string_view::npos) break;
      }
    }
  }
  FUZZ_CHECK(lengths <= 1, "%zu Content-Length headers accepted", lengths);
  // An independent, overflow-free reading of the Content-Length digits: any
  // number above the body limit must have been refused with 413.
  size_t expected_length = 0;
  bool wraps = false;  // the value is 2^64 or more
  uint64_t low = 0;
  for (char c : length_value) {
    FUZZ_CHECK(c >= '0' && c <= '9', "Content-Length: %s", Escape(length_value).c_str());
    expected_length = std::min<size_t>(expected_length * 10 + (c - '0'), size_t{1} << 40);
    wraps |= __builtin_mul_overflow(low, 10, &low) || __builtin_add_overflow(low, c - '0', &low);
  }
  // A value that wraps 64 bits must never parse (it is over any limit: 413);
  // regressions/http_parser_fuzz/content_length_2pow64 once read as 0.
  FUZZ_CHECK(!wraps, "Content-Length: %s parsed", Escape(length_value).c_str());
  FUZZ_CHECK(expected_length == req.content_length, "Content-Length: %s parsed as %zu",
             Escape(length_value).c_str(), req.content_length);
  FUZZ_CHECK(req.FindHeader("CoNtEnT-LeNgTh") == length_value);
  FUZZ_CHECK(req.keep_alive == (!close && (req.minor_version >= 1 || keep_alive)),
             "keep_alive=%d for HTTP/1.%d", req.keep_alive, req.minor_version);
}

// Parses `data` as a server would while its bytes arrive: `arrivals` are the
// increasing totals received so far, the last one data.size(). `dirty` first
// drives the parser into an error and resets it, which must leave no trace.
Outcome ParseStream(std::string_view data, const ParserLimits& limits,
                    const std::vector<size_t>& arrivals, bool dirty) {
  RequestParser parser(limits);
  // One Request reused for the whole stream, as HttpSession does: a field
  // left over from an earlier request would show as a difference between
  // runs.
  auto req = std::make_unique<Request>();
  size_t ignored;
  if (dirty) {
    FUZZ_CHECK(parser.Parse("\n", req.get(), &ignored) == RequestParser::Result::kError);
    parser.Reset();
    FUZZ_CHECK(parser.error_status() == 0);
  }
  Outcome outcome;
  size_t start = 0;  // first unconsumed byte
  for (size_t avail : arrivals) {
    for (;;) {
      // A fresh exact-size copy per call: the bytes "moved", as a connection's
      // buffer may between calls, and anything read past them is out of bounds.
      const size_t n = avail - start;
      auto copy = std::make_unique<char[]>(n);
      if (n > 0) std::memcpy(copy.get(), data.data() + start, n);
      const std::string_view window(copy.get(), n);
      size_t consumed = std::numeric_limits<size_t>::max();
      const RequestParser::Result r = parser.Parse(window, req.get(), &consumed);
      if (r == RequestParser::Result::kNeedMore) {
        FUZZ_CHECK(parser.error_status() == 0);
        break;
      }
      if (r == RequestParser::Result::kError) {
        const int status = parser.error_status();
        FUZZ_CHECK(status == 400 || status == 413 || status == 431 || status == 501 ||
                       status == 505,
                   "error status %d", status);
        // Sticky until Reset: even with more bytes.
        FUZZ_CHECK(parser.Parse(data.substr(start), req.get(), &ignored) ==
                   RequestParser::Result::kError);
        FUZZ_CHECK(parser.error_status() == status);
        outcome.error = true;
        outcome.error_status = status;
        return outcome;
      }
      FUZZ_CHECK(parser.error_status() == 0);
      CheckRequest(window, *req, consumed, limits);
      Parsed p;
      p.method = req->method;
      p.target = req->target;
      p.minor_version = req->minor_version;
      for (size_t i = 0; i < req->header_count; ++i) {
        p.headers.emplace_back(req->headers[i].name, req->headers[i].value);
      }
      p.keep_alive = req->keep_alive;
      p.content_length = req->content_length;
      p.body = req->body;
      p.consumed = consumed;
      outcome.requests.push_back(std::move(p));
      start += consumed;
    }
  }
  return outcome;
}

// FNV-1a: a split point that depends on every byte, so the fuzzer can steer it.
uint64_t Hash(std::string_view data) {
  uint64_t h = 1469598103934665603u;
  for (char c : data) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211u;
  return h;
}

void CheckStream(std::string_view data, const ParserLimits& limits) {
  const size_t n = data.size();
  const Outcome whole = ParseStream(data, limits, {n}, false);

  const size_t split = Hash(data) % (n + 1);
  const Outcome two = ParseStream(data, limits, {split, n}, true);
  FUZZ_CHECK(two == whole, "split at %zu:\n%s\nwhole:\n%s", split, Describe(two).c_str(),
             Describe(whole).c_str());

  // One byte per call is the hardest case for resumption, but each call
  // copies the unconsumed bytes, so long inputs arrive in chunks whose sizes
  // come from the input instead.
  std::vector<size_t> arrivals;
  for (size_t total = 0, i = 0; total < n; ++i) {
    total += n <= 512 ? 1 : 1 + static_cast<unsigned char>(data[i % n]) % 61;
    arrivals.push_back(std::min(total, n));
  }
  if (arrivals.empty()) arrivals.push_back(0);
  const Outcome drip = ParseStream(data, limits, arrivals, false);
  FUZZ_CHECK(drip == whole, "dripped:\n%s\nwhole:\n%s", Describe(drip).c_str(),
             Describe(whole).c_str());
}

}  // namespace
}  // namespace netloop::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  // The defaults, and limits small enough for short inputs to reach 413,
  // 431 and the header-count limit.
  netloop::fuzz::CheckStream(bytes, netloop::http::ParserLimits{});
  netloop::fuzz::CheckStream(bytes, netloop::http::ParserLimits{
                                        .max_header_bytes = 128, .max_headers = 4,
                                        .max_body_bytes = 32});
  return 0;
}
