#include "examples/http/http_parser.h"

#include <chrono>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace netloop::http {
namespace {

using Result = RequestParser::Result;
using namespace std::string_literals;

// TechEmpower's plaintext request as wrk sends it.
constexpr std::string_view kPlaintext =
    "GET /plaintext HTTP/1.1\r\n"
    "Host: tfb-server:8080\r\n"
    "Accept: text/plain,text/html;q=0.9,application/xhtml+xml;q=0.9,"
    "application/xml;q=0.8,*/*;q=0.7\r\n"
    "Connection: keep-alive\r\n"
    "\r\n";

// Everything observable about one Parse outcome, copied out of the views so
// it outlives the bytes.
struct Outcome {
  Result result = Result::kNeedMore;
  int status = 0;
  size_t consumed = 0;
  std::string method, target, body;
  int minor_version = -1;
  bool keep_alive = false;
  size_t content_length = 0;
  std::vector<std::pair<std::string, std::string>> headers;

  bool operator==(const Outcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Outcome& o) {
  return os << "{result=" << static_cast<int>(o.result) << " status=" << o.status
            << " consumed=" << o.consumed << " " << o.method << " " << o.target << " 1."
            << o.minor_version << " ka=" << o.keep_alive << " headers=" << o.headers.size()
            << " body=" << o.body.size() << "}";
}

Outcome Capture(Result r, const RequestParser& p, const Request& req, size_t consumed) {
  Outcome o;
  o.result = r;
  o.status = p.error_status();
  if (r != Result::kComplete) return o;
  o.consumed = consumed;
  o.method = std::string(req.method);
  o.target = std::string(req.target);
  o.body = std::string(req.body);
  o.minor_version = req.minor_version;
  o.keep_alive = req.keep_alive;
  o.content_length = req.content_length;
  for (size_t i = 0; i < req.header_count; ++i) {
    o.headers.emplace_back(req.headers[i].name, req.headers[i].value);
  }
  return o;
}

// Feeds data[0, cut) for each cut in `cuts` (ascending, the last being
// data.size()) until the parser stops asking for more. Each call sees a fresh
// heap copy of the prefix, so any view kept from an earlier call would be
// dangling (ASan reports it) and any rescan assumption about addresses fails.
Outcome FeedCuts(std::string_view data, const std::vector<size_t>& cuts,
                 const ParserLimits& limits = {}) {
  RequestParser p(limits);
  Request req;
  for (size_t cut : cuts) {
    auto copy = std::make_unique<std::string>(data.substr(0, cut));
    size_t used = 0;
    Result r = p.Parse(*copy, &req, &used);
    if (r != Result::kNeedMore || cut == data.size()) return Capture(r, p, req, used);
  }
  return {};
}

Outcome Whole(std::string_view data, const ParserLimits& limits = {}) {
  return FeedCuts(data, {data.size()}, limits);
}

Outcome Split(std::string_view data, size_t split, const ParserLimits& limits = {}) {
  return FeedCuts(data, {split, data.size()}, limits);
}

Outcome Drip(std::string_view data, const ParserLimits& limits = {}) {
  std::vector<size_t> cuts;
  for (size_t i = 1; i <= data.size(); ++i) cuts.push_back(i);
  return FeedCuts(data, cuts, limits);
}

const std::string kPost =
    "POST /echo?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length:  11 \r\n\r\nab\r\n\r\ncd\nef\r\n";
const std::string kHttp10 = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nX-Empty:\r\n\r\n";
const std::string kLeadingCrlf = "\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n";

TEST(HttpParserTest, PlaintextRequestFields) {
  Outcome o = Whole(kPlaintext);
  ASSERT_EQ(o.result, Result::kComplete) << o.status;
  EXPECT_EQ(o.consumed, kPlaintext.size());
  EXPECT_EQ(o.method, "GET");
  EXPECT_EQ(o.target, "/plaintext");
  EXPECT_EQ(o.minor_version, 1);
  EXPECT_TRUE(o.keep_alive);
  EXPECT_EQ(o.content_length, 0u);
  EXPECT_EQ(o.body, "");
  ASSERT_EQ(o.headers.size(), 3u);
  EXPECT_EQ(o.headers[0], (std::pair<std::string, std::string>("Host", "tfb-server:8080")));
  EXPECT_EQ(o.headers[2], (std::pair<std::string, std::string>("Connection", "keep-alive")));
}

TEST(HttpParserTest, BodyAndOwsAndQuery) {
  Outcome o = Whole(kPost);
  ASSERT_EQ(o.result, Result::kComplete) << o.status;
  EXPECT_EQ(o.target, "/echo?x=1");
  EXPECT_EQ(o.content_length, 11u);
  EXPECT_EQ(o.body, "ab\r\n\r\ncd\nef");
  EXPECT_EQ(o.consumed, kPost.size() - 2) << "the trailing CRLF is not this request's";
  EXPECT_EQ(o.headers[1].second, "11") << "OWS trimmed";
}

TEST(HttpParserTest, FindHeaderIsCaseInsensitive) {
  RequestParser p;
  Request req;
  size_t used = 0;
  ASSERT_EQ(p.Parse(kPlaintext, &req, &used), Result::kComplete);
  EXPECT_EQ(req.FindHeader("HOST"), "tfb-server:8080");
  EXPECT_EQ(req.FindHeader("connection"), "keep-alive");
  EXPECT_EQ(req.FindHeader("Missing"), "");
  EXPECT_TRUE(req.FindHeader("Host-").empty());
}

TEST(HttpParserTest, OneLeadingEmptyLineIsSkipped) {
  Outcome o = Whole(kLeadingCrlf);
  ASSERT_EQ(o.result, Result::kComplete) << o.status;
  EXPECT_EQ(o.target, "/a");
  EXPECT_EQ(o.consumed, kLeadingCrlf.size());
  EXPECT_EQ(Whole("\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n").status, 400)
      << "only one is skipped";
}

// Valid and invalid requests alike: every way of cutting them gives the
// outcome the whole gives.
std::vector<std::string> SplitCorpus() {
  std::string many = "GET / HTTP/1.1\r\nHost: h\r\n";
  for (int i = 0; i < 65; ++i) many += "H" + std::to_string(i) + ": v\r\n";
  many += "\r\n";
  return {
      std::string(kPlaintext),
      kPost,
      kHttp10,
      kLeadingCrlf,
      many,                                                                      // 431 (count)
      "GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(9000, 'a') + "\r\n\r\n",  // 431 (size)
      std::string(40, 'A') + " / HTTP/1.1\r\nHost: h\r\n\r\n",                   // 501 (method)
      "G\x01T / HTTP/1.1\r\nHost: h\r\n\r\n",                                    // 400 (method)
      std::string(9000, 'G'),                                                    // 501 before 431
      "GET / HTTP/1.1\r\nHost: h\r\nA: b\nC: d\r\n\r\n",                         // bare LF
      "GET / HTTP/1.1\r\nHost: h\r\nA: b\rC: d\r\n\r\n",                         // bare CR
      "GET / HTTP/2.0\r\n\r\n",                                                  // 505
      "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2000000\r\n\r\n",           // 413
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",        // 501
      "\r\r\n",                                                                  // bare CR first
  };
}

TEST(HttpParserTest, EverySplitPointParsesTheSame) {
  for (const std::string& req : SplitCorpus()) {
    const Outcome whole = Whole(req);
    ASSERT_NE(whole.result, Result::kNeedMore) << req;
    for (size_t split = 0; split <= req.size(); ++split) {
      ASSERT_EQ(Split(req, split), whole) << "split at " << split << " of " << req.substr(0, 60);
    }
    ASSERT_EQ(Drip(req), whole) << req.substr(0, 60);
  }
}

TEST(HttpParserTest, ThreeWaySplitsParseTheSame) {
  const Outcome whole = Whole(kPost);
  for (size_t a = 0; a <= kPost.size(); ++a) {
    for (size_t b = a; b <= kPost.size(); b += 3) {
      ASSERT_EQ(FeedCuts(kPost, {a, b, kPost.size()}), whole) << a << " " << b;
    }
  }
}

TEST(HttpParserTest, OneByteDripNeedsMoreUntilTheLastByte) {
  RequestParser p;
  Request req;
  size_t used = 0;
  for (size_t n = 0; n < kPost.size() - 2; ++n) {
    ASSERT_EQ(p.Parse(std::string_view(kPost).substr(0, n), &req, &used), Result::kNeedMore)
        << n;
  }
  ASSERT_EQ(p.Parse(kPost, &req, &used), Result::kComplete);
  EXPECT_EQ(used, kPost.size() - 2);
  EXPECT_EQ(req.body, "ab\r\n\r\ncd\nef");
}

// A drip must cost O(n) in total: a big head and a 512 KiB body dripped one
// byte per call finish quickly. Re-parsing the head on each body byte (the
// quadratic mistake) would take minutes here.
TEST(HttpParserTest, DripIsLinear) {
  std::string req = "POST /echo HTTP/1.1\r\nHost: h\r\n";
  for (int i = 0; i < 60; ++i) {
    req += "X-Header-" + std::to_string(i) + ": " + std::string(100, 'v') + "\r\n";
  }
  const size_t body = 512 * 1024;
  req += "Content-Length: " + std::to_string(body) + "\r\n\r\n" + std::string(body, 'b');
  RequestParser p;
  Request r;
  size_t used = 0;
  const auto start = std::chrono::steady_clock::now();
  std::string_view all(req);
  for (size_t n = 1; n < req.size(); ++n) {
    ASSERT_EQ(p.Parse(all.substr(0, n), &r, &used), Result::kNeedMore) << n;
  }
  ASSERT_EQ(p.Parse(all, &r, &used), Result::kComplete);
  EXPECT_EQ(r.body.size(), body);
  EXPECT_EQ(r.header_count, 62u);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

// White-box check of the same property, independent of timing: bytes a
// previous call already judged are not read again until the request
// completes. Corrupting them between calls (which the contract forbids, and
// which is exactly why it is observable) goes unnoticed while the parser waits.
TEST(HttpParserTest, ResumedCallsDoNotRereadJudgedBytes) {
  const std::string head = "POST /echo HTTP/1.1\r\nHost: h\r\nX: abc\r\nContent-Length: 4\r\n";
  std::string buf = head;
  RequestParser p;
  Request req;
  size_t used = 0;
  ASSERT_EQ(p.Parse(buf, &req, &used), Result::kNeedMore);
  // A bare LF planted in the already-scanned header line is not seen again.
  buf[head.find("abc")] = '\n';
  ASSERT_EQ(p.Parse(buf + "Y", &req, &used), Result::kNeedMore) << "rescanned the head";
  buf[head.find("abc")] = 'a';
  buf += "\r\n";
  // The head is now complete; while the body trickles in, the head is not
  // parsed again (a planted error stays unseen)...
  std::string body_wait = buf + "pi";
  ASSERT_EQ(p.Parse(body_wait, &req, &used), Result::kNeedMore);
  body_wait[0] = '@';
  ASSERT_EQ(p.Parse(body_wait + "n", &req, &used), Result::kNeedMore) << "re-parsed the head";
  // ...but once the request completes its views are rebuilt from the bytes
  // given then.
  std::string done = buf + "ping";
  ASSERT_EQ(p.Parse(done, &req, &used), Result::kComplete);
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.method.data(), done.data());
  EXPECT_EQ(req.body, "ping");
  EXPECT_EQ(used, done.size());
}

TEST(HttpParserTest, PipelinedBatch) {
  std::string batch;
  for (int i = 0; i < 8; ++i) {
    batch += std::string(kPlaintext) + kPost.substr(0, kPost.size() - 2) + kHttp10;
  }
  RequestParser p;
  Request req;
  std::vector<std::string> targets;
  size_t pos = 0;
  for (int guard = 0; guard < 100 && pos < batch.size(); ++guard) {
    size_t used = 0;
    ASSERT_EQ(p.Parse(std::string_view(batch).substr(pos), &req, &used), Result::kComplete)
        << "at " << pos;
    targets.emplace_back(req.target);
    if (req.target == "/echo?x=1") {
      EXPECT_EQ(req.body, "ab\r\n\r\ncd\nef");
    }
    pos += used;
  }
  EXPECT_EQ(pos, batch.size());
  ASSERT_EQ(targets.size(), 24u);
  for (size_t i = 0; i < targets.size(); i += 3) {
    EXPECT_EQ(targets[i], "/plaintext");
    EXPECT_EQ(targets[i + 1], "/echo?x=1");
    EXPECT_EQ(targets[i + 2], "/");
  }
}

TEST(HttpParserTest, KeepAliveRules) {
  EXPECT_TRUE(Whole("GET / HTTP/1.1\r\nHost: h\r\n\r\n").keep_alive);
  EXPECT_FALSE(Whole("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").keep_alive);
  EXPECT_FALSE(Whole("GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, CLOSE\r\n\r\n").keep_alive);
  EXPECT_FALSE(
      Whole("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n")
          .keep_alive);
  EXPECT_FALSE(
      Whole("GET / HTTP/1.1\r\nHost: h\r\nConnection: close, keep-alive\r\n\r\n").keep_alive)
      << "close wins";
  EXPECT_TRUE(Whole("GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n").keep_alive);
  EXPECT_FALSE(Whole("GET / HTTP/1.0\r\n\r\n").keep_alive);
  EXPECT_TRUE(Whole(kHttp10).keep_alive);
  EXPECT_EQ(Whole(kHttp10).minor_version, 0);
  EXPECT_TRUE(Whole("GET / HTTP/1.0\r\nConnection: foo , keep-alive\r\n\r\n").keep_alive);
  EXPECT_FALSE(Whole("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
  EXPECT_FALSE(Whole("GET / HTTP/1.0\r\nX-Connection: keep-alive\r\n\r\n").keep_alive);
}

TEST(HttpParserTest, Rejections) {
  struct Case {
    std::string request;
    int status;
  } cases[] = {
      // Request line.
      {"G@T / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {" GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"GET / HTTP/1.1 \r\n\r\n", 400},
      {"GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"GET /a\rb HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"GET /a\0b HTTP/1.1\r\nHost: h\r\n\r\n"s, 400},  // NUL in the target
      {"GET / HTTX/1.1\r\n\r\n", 400},
      {"GET / HTTP/1\r\n\r\n", 400},
      {"GET / HTTP/1.x\r\n\r\n", 400},
      {"GET / HTTP/1.10\r\n\r\n", 400},
      {"GET / http/1.1\r\n\r\n", 400},
      {"GET /\r\n\r\n", 400},
      {"GET\r\n\r\n", 400},
      {"\r\n\r\n", 400},
      {std::string(kMaxMethodLength + 1, 'M') + " / HTTP/1.1\r\nHost: h\r\n\r\n", 501},
      {"GET / HTTP/2.0\r\n\r\n", 505},
      {"GET / HTTP/0.9\r\n\r\n", 505},
      // Header lines.
      {"GET / HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nName : x\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nName\t: x\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\n: x\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\n folded\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\n\tfolded\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\n Leading: x\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nA: b\0c\r\n\r\n"s, 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nA: b\x7f\r\n\r\n", 400},
      // Line endings.
      {"GET / HTTP/1.1\nHost: x\n\n", 400},
      {"GET / HTTP/1.1\r\nHost: x\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: x\r\n\n", 400},
      {"GET / HTTP/1.1\r\nHost: x\r\r\n\r\n", 400},
      {"\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      // Framing.
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\nxy", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\nx", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1,1\r\n\r\nx", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 1\r\n\r\nx", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5000000000\r\n\r\n", 413},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 1\r\n\r\nx", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x1\r\n\r\nx", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
       400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
       400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
      {"POST / HTTP/1.1\r\nHost: h\r\ntransfer-encoding: gzip, chunked\r\n\r\n", 501},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2000000\r\n\r\n", 413},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999999\r\n\r\n", 413},
  };
  for (const Case& c : cases) {
    Outcome o = Whole(c.request);
    EXPECT_EQ(o.result, Result::kError) << c.request;
    EXPECT_EQ(o.status, c.status) << c.request;
    EXPECT_EQ(Drip(c.request), o) << c.request;
  }
}

// RFC 9112 3.2: "A server MUST respond with a 400 (Bad Request) status code
// to any HTTP/1.1 request message that lacks a Host header field and to any
// request message that contains more than one Host header field line or a
// Host header field with an invalid field value." These were answered.
TEST(HttpParserTest, HostIsRequiredOnceAndValid) {
  EXPECT_EQ(Whole("GET / HTTP/1.1\r\n\r\n").status, 400) << "HTTP/1.1 without Host";
  EXPECT_EQ(Whole("GET / HTTP/1.1\r\nX-Host: a\r\nHosts: a\r\n\r\n").status, 400);
  EXPECT_EQ(Whole("GET / HTTP/1.2\r\n\r\n").status, 400) << "any later 1.x too";
  EXPECT_EQ(Whole("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n").status, 400);
  EXPECT_EQ(Whole("GET / HTTP/1.1\r\nHost: a\r\nhOST: b\r\n\r\n").status, 400);
  EXPECT_EQ(Whole("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n").status, 400)
      << "more than one is 400 in any version";
  // HTTP/1.0 did not have Host: its absence is fine.
  Outcome o = Whole("GET / HTTP/1.0\r\n\r\n");
  ASSERT_EQ(o.result, Result::kComplete) << o.status;
  RequestParser p;
  Request req;
  size_t used = 0;
  ASSERT_EQ(p.Parse("GET / HTTP/1.1\r\nhost:  example.com:8080 \r\n\r\n", &req, &used),
            Result::kComplete);
  EXPECT_EQ(req.host, "example.com:8080");
  ASSERT_EQ(p.Parse("GET / HTTP/1.0\r\n\r\n", &req, &used), Result::kComplete);
  EXPECT_EQ(req.host, "");

  // Host = uri-host [ ":" port ] (RFC 9110 7.2, RFC 3986 3.2.2); an empty
  // value is allowed (a target without an authority, RFC 9112 3.2).
  for (std::string_view ok : {
           "",
           "example.com",
           "example.com:8080",
           "EXAMPLE.com:",
           "127.0.0.1:80",
           "[::1]",
           "[::1]:8080",
           "[2001:db8::7]",
           "[v1.fe80::a+en1]",
           "a-b_c~d.e",
           "%41bc",
           "!$&'()*+,;=",
       }) {
    const std::string request = "GET / HTTP/1.1\r\nHost: " + std::string(ok) + "\r\n\r\n";
    EXPECT_EQ(Whole(request).result, Result::kComplete) << ok;
  }
  for (std::string_view bad : {
           "a b",           // whitespace inside
           "a\tb",          // HT is fine in field values, not in a host
           "user@example",  // userinfo is not part of Host
           "example.com:80x",
           "example.com:-1",
           "a:1:2",
           "example.com/path",
           "example.com?q",
           "example.com#f",
           "[::1",
           "::1]",
           "[::1]x",
           "[::1]:a",
           "[]",
           "[::1 ]",
           "%4",
           "%zz",
           "a\"b",
           "a<b",
           "caf\xc3\xa9",  // obs-text
       }) {
    const std::string request = "GET / HTTP/1.1\r\nHost: " + std::string(bad) + "\r\n\r\n";
    EXPECT_EQ(Whole(request).status, 400) << bad;
    const std::string http10 = "GET / HTTP/1.0\r\nHost: " + std::string(bad) + "\r\n\r\n";
    EXPECT_EQ(Whole(http10).status, 400) << bad << " (any version)";
  }
}

// RFC 9112 3.2: origin-form for every method, absolute-form likewise (a
// server MUST accept it, 3.2.2), asterisk-form only for OPTIONS (3.2.4) and
// authority-form only for CONNECT (3.2.3), which is not implemented here.
// Absolute-form targets were routed as sent, so "http://h/plaintext" was 404.
TEST(HttpParserTest, RequestTargetForms) {
  struct Case {
    std::string_view request_line;
    std::string_view path, query, host;
  } cases[] = {
      {"GET /plaintext HTTP/1.1", "/plaintext", "", "h"},
      {"GET /echo?x=1&y HTTP/1.1", "/echo", "x=1&y", "h"},
      {"GET /a? HTTP/1.1", "/a", "", "h"},
      // Absolute-form: routed on its path; its authority replaces Host.
      {"GET http://example.com/plaintext HTTP/1.1", "/plaintext", "", "example.com"},
      {"GET HTTP://Example.COM:8080/a/b?c=d HTTP/1.1", "/a/b", "c=d", "Example.COM:8080"},
      {"GET https://[::1]:443/x HTTP/1.1", "/x", "", "[::1]:443"},
      {"GET http://example.com HTTP/1.1", "/", "", "example.com"},
      {"GET http://example.com?q HTTP/1.1", "/", "q", "example.com"},
      {"OPTIONS * HTTP/1.1", "*", "", "h"},
  };
  for (const Case& c : cases) {
    const std::string request = std::string(c.request_line) + "\r\nHost: h\r\n\r\n";
    RequestParser p;
    Request req;
    size_t used = 0;
    ASSERT_EQ(p.Parse(request, &req, &used), Result::kComplete)
        << c.request_line << " status " << p.error_status();
    EXPECT_EQ(req.target,
              c.request_line.substr(c.request_line.find(' ') + 1,
                                    c.request_line.rfind(' ') - c.request_line.find(' ') - 1))
        << "target stays as sent";
    EXPECT_EQ(req.path, c.path) << c.request_line;
    EXPECT_EQ(req.query, c.query) << c.request_line;
    EXPECT_EQ(req.host, c.host) << c.request_line;
  }
  for (std::string_view bad : {
           "GET * HTTP/1.1",  // asterisk-form is OPTIONS only
           "OPTIONS *x HTTP/1.1",
           "GET example.com:80 HTTP/1.1",  // authority-form is CONNECT only
           "GET plaintext HTTP/1.1",
           "GET ftp://example.com/ HTTP/1.1",  // not an http(s) URI
           "GET 1http://example.com/ HTTP/1.1",
           "GET http:/example.com/ HTTP/1.1",
           "GET http:example.com HTTP/1.1",
           "GET http:// HTTP/1.1",  // empty host (RFC 9110 4.2.1)
           "GET http:///plaintext HTTP/1.1",
           "GET http://:80/plaintext HTTP/1.1",
           "GET http://user@example.com/ HTTP/1.1",  // userinfo (RFC 9110 4.2.4)
           "GET http://a b/ HTTP/1.1",
           "GET http://example.com:8x/ HTTP/1.1",
       }) {
    const std::string request = std::string(bad) + "\r\nHost: h\r\n\r\n";
    EXPECT_EQ(Whole(request).status, 400) << bad;
  }
  EXPECT_EQ(Whole("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n").status, 501);
  // Host is still required in HTTP/1.1 with an absolute-form target (RFC
  // 9112 3.2.2: "A client MUST send a Host header field in an HTTP/1.1
  // request even if the request-target is in the absolute-form"), and still
  // validated even though its value is then ignored.
  EXPECT_EQ(Whole("GET http://example.com/ HTTP/1.1\r\n\r\n").status, 400);
  EXPECT_EQ(Whole("GET http://example.com/ HTTP/1.1\r\nHost: a b\r\n\r\n").status, 400);
  Outcome o = Whole("GET http://example.com/ HTTP/1.0\r\n\r\n");
  EXPECT_EQ(o.result, Result::kComplete) << o.status;
}

TEST(HttpParserTest, AcceptedEdgeCases) {
  for (std::string_view ok : {
           "GET / HTTP/1.1\r\nHost: h\r\nA:\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: h\r\nA:b\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: h\r\nA: b\tc \t\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: h\r\nA: caf\xc3\xa9\r\n\r\n",  // obs-text in a value
           "GET / HTTP/1.2\r\nHost: h\r\n\r\n",                    // a later 1.x minor
           "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
           "M-SEARCH /x HTTP/1.1\r\nHost: h\r\n\r\n",
           "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 000\r\n\r\n",
       }) {
    EXPECT_EQ(Whole(ok).result, Result::kComplete) << ok << " status " << Whole(ok).status;
  }
  Outcome o = Whole("GET / HTTP/1.1\r\nHost: h\r\nA: b\tc \t\r\n\r\n");
  EXPECT_EQ(o.headers[1].second, "b\tc");
  EXPECT_EQ(Whole(std::string(kMaxMethodLength, 'M') + " / HTTP/1.1\r\nHost: h\r\n\r\n").result,
            Result::kComplete);
}

TEST(HttpParserTest, HeaderSizeLimit) {
  // A head of exactly 8 KiB is accepted, one byte more is 431.
  auto head_of = [](size_t size) {
    std::string prefix = "GET / HTTP/1.1\r\nHost: h\r\nX: ";
    return prefix + std::string(size - prefix.size() - 4, 'a') + "\r\n\r\n";
  };
  EXPECT_EQ(Whole(head_of(8192)).result, Result::kComplete);
  EXPECT_EQ(Whole(head_of(8193)).status, 431);
  EXPECT_EQ(Drip(head_of(8192)).result, Result::kComplete);
  EXPECT_EQ(Drip(head_of(8193)).status, 431);
  // No end in sight: 431 as soon as the limit is reached, without waiting.
  std::string no_end = "GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(9000, 'a');
  EXPECT_EQ(Whole(no_end.substr(0, 8191)).result, Result::kNeedMore);
  EXPECT_EQ(Whole(no_end.substr(0, 8192)).status, 431);
  // A custom limit.
  ParserLimits small;
  small.max_header_bytes = 64;
  EXPECT_EQ(Whole(head_of(64), small).result, Result::kComplete);
  EXPECT_EQ(Whole(head_of(65), small).status, 431);
}

TEST(HttpParserTest, HeaderCountLimit) {
  // n header lines in all, Host (which HTTP/1.1 requires) the first of them.
  auto with_headers = [](int n) {
    std::string r = "GET / HTTP/1.1\r\nHost: h\r\n";
    for (int i = 1; i < n; ++i) r += "H" + std::to_string(i) + ": v\r\n";
    return r + "\r\n";
  };
  Outcome ok = Whole(with_headers(64));
  ASSERT_EQ(ok.result, Result::kComplete);
  EXPECT_EQ(ok.headers.size(), 64u);
  EXPECT_EQ(ok.headers[63].first, "H63");
  EXPECT_EQ(Whole(with_headers(65)).status, 431);
  ParserLimits few;
  few.max_headers = 3;
  EXPECT_EQ(Whole(with_headers(3), few).result, Result::kComplete);
  EXPECT_EQ(Whole(with_headers(4), few).status, 431);
  few.max_headers = 1000;  // clamped to the storage
  EXPECT_EQ(Whole(with_headers(65), few).status, 431);
}

TEST(HttpParserTest, BodyLimit) {
  auto post = [](size_t n) {
    return "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: " + std::to_string(n) + "\r\n\r\n" +
           std::string(n, 'x');
  };
  Outcome max = Whole(post(1024 * 1024));
  ASSERT_EQ(max.result, Result::kComplete);
  EXPECT_EQ(max.body.size(), 1024u * 1024);
  // Judged from the head alone: no need to wait for the body.
  std::string over = post(1024 * 1024 + 1);
  EXPECT_EQ(Whole(over.substr(0, over.find("\r\n\r\n") + 4)).status, 413);
  ParserLimits tiny;
  tiny.max_body_bytes = 4;
  EXPECT_EQ(Whole(post(4), tiny).result, Result::kComplete);
  EXPECT_EQ(Whole(post(5), tiny).status, 413);
}

// Content-Length values at and beyond 2^64 once wrapped in the digit loop
// (n * 10 overflowed before the saturation caught it): 2^64 read as 0, so the
// declared body was parsed as the next request (request smuggling). Every
// value over the limit, however many digits, must be 413 and never wrap.
TEST(HttpParserTest, HugeContentLengthIsTooLargeNeverWrapped) {
  for (std::string_view length : {
           "18446744073709551616",     // 2^64: wrapped to 0
           "18446744073709551615",     // 2^64 - 1
           "18446744073709551617",     // 2^64 + 1: wrapped to 1
           "36893488147419103232",     // 2^65
           "99999999999999999999999",  // 23 digits
           "4294967295",               // 2^32 - 1: above the 32-bit clamp
           "4294967296",               // 2^32
           "1048577",                  // the default limit + 1
       }) {
    const std::string request =
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: " + std::string(length) + "\r\n\r\n" +
        "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n";
    const Outcome o = Whole(request);
    EXPECT_EQ(o.result, Result::kError) << length;
    EXPECT_EQ(o.status, 413) << length;
    EXPECT_EQ(Drip(request), o) << length;
  }
  // The largest limit the parser keeps (4 GiB - 2): one byte over is 413, and
  // so is 2^64 + that (which would wrap to exactly the limit).
  ParserLimits big;
  big.max_body_bytes = std::numeric_limits<size_t>::max();
  auto head_with = [](std::string_view length) {
    return "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: " + std::string(length) + "\r\n\r\n";
  };
  EXPECT_EQ(Whole(head_with("4294967294"), big).result, Result::kNeedMore) << "at the limit";
  EXPECT_EQ(Whole(head_with("4294967295"), big).status, 413);
  EXPECT_EQ(Whole(head_with("18446744078004518910"), big).status, 413);
  // A huge value is still judged for its syntax first: not a number is 400.
  EXPECT_EQ(Whole(head_with("99999999999999999999999x")).status, 400);
}

// RFC 9110 8.6: Content-Length = 1*DIGIT, a decimal number. Leading zeros
// are accepted and mean nothing (not octal, not "more digits, so bigger"),
// whatever their number.
TEST(HttpParserTest, ContentLengthLeadingZerosAreDecimal) {
  auto post = [](std::string_view length, std::string_view body) {
    return "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: " + std::string(length) + "\r\n\r\n" +
           std::string(body);
  };
  Outcome o = Whole(post("007", "abcdefg"));
  ASSERT_EQ(o.result, Result::kComplete) << o.status;
  EXPECT_EQ(o.content_length, 7u);
  EXPECT_EQ(o.body, "abcdefg");
  o = Whole(post("010", "0123456789"));
  ASSERT_EQ(o.result, Result::kComplete) << o.status;
  EXPECT_EQ(o.content_length, 10u) << "decimal, not octal";
  o = Whole(post(std::string(40, '0') + "5", "hello"));
  ASSERT_EQ(o.result, Result::kComplete) << o.status;
  EXPECT_EQ(o.content_length, 5u);
  o = Whole(post(std::string(40, '0'), ""));
  ASSERT_EQ(o.result, Result::kComplete) << o.status;
  EXPECT_EQ(o.content_length, 0u);
  EXPECT_EQ(Whole(post("0" + std::string(30, '0') + "2000000", "")).status, 413);
}

TEST(HttpParserTest, ErrorIsStickyUntilReset) {
  RequestParser p;
  Request req;
  size_t used = 0;
  ASSERT_EQ(p.Parse("G@T / HTTP/1.1\r\nHost: h\r\n\r\n", &req, &used), Result::kError);
  EXPECT_EQ(p.error_status(), 400);
  EXPECT_EQ(p.Parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n", &req, &used), Result::kError);
  p.Reset();
  EXPECT_EQ(p.error_status(), 0);
  ASSERT_EQ(p.Parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n", &req, &used), Result::kComplete);
  EXPECT_EQ(used, 27u);
}

TEST(HttpParserTest, ResetDropsAPartialRequest) {
  RequestParser p;
  Request req;
  size_t used = 0;
  ASSERT_EQ(p.Parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab", &req, &used),
            Result::kNeedMore);
  p.Reset();
  ASSERT_EQ(p.Parse("GET /b HTTP/1.1\r\nHost: h\r\n\r\n", &req, &used), Result::kComplete);
  EXPECT_EQ(req.target, "/b");
  EXPECT_EQ(req.body, "");
}

// Random bytes, some behind a valid request line, fed whole and in random
// pieces: never a crash or an out-of-range view; always a verdict that is
// consistent with the bytes.
TEST(HttpParserTest, GarbageNeverCrashes) {
  std::mt19937 rng(42);
  int errors = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string junk(rng() % 300, '\0');
    for (char& c : junk) {
      c = static_cast<char>(rng() % 4 == 0 ? "\r\n :/"[rng() % 5] : rng());
    }
    if (i % 3 == 0) junk = "GET / HTTP/1.1\r\nHost: h\r\n" + junk;
    if (i % 3 == 1) junk = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n" + junk;
    std::vector<size_t> cuts;
    for (size_t at = 0; at < junk.size(); at += 1 + rng() % 40) cuts.push_back(at);
    cuts.push_back(junk.size());
    const Outcome whole = Whole(junk);
    ASSERT_EQ(FeedCuts(junk, cuts), whole) << i;
    if (whole.result == Result::kComplete) {
      EXPECT_LE(whole.consumed, junk.size());
      EXPECT_NE(junk.find(whole.method + " " + whole.target + " HTTP/1."), std::string::npos);
    }
    if (whole.result == Result::kError) {
      ++errors;
      EXPECT_TRUE(whole.status == 400 || whole.status == 413 || whole.status == 431 ||
                  whole.status == 501 || whole.status == 505)
          << whole.status;
    } else {
      EXPECT_EQ(whole.status, 0);
    }
  }
  EXPECT_GT(errors, 10000) << "random bytes are mostly rejected";
}

TEST(HttpParserTest, ParserStateIsSmall) {
  // Ten thousand idle connections each hold one.
  EXPECT_LE(sizeof(RequestParser), 32u);
}

}  // namespace
}  // namespace netloop::http
