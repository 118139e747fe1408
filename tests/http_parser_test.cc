#include "examples/http/http_parser.h"

#include <random>
#include <string>

#include "examples/http/http_date.h"
#include "examples/http/http_session.h"
#include "gtest/gtest.h"

namespace netloop::http {
namespace {

constexpr std::string_view kPlaintext =
    "GET /plaintext HTTP/1.1\r\nHost: server\r\nUser-Agent: Mozilla/5.0\r\n"
    "Accept: text/plain,text/html;q=0.9\r\nConnection: keep-alive\r\n\r\n";

struct Parsed {
  RequestParser::Result result;
  std::string method, target;
  size_t consumed = 0;
  int status = 0;
  bool keep_alive = false;
  std::string body;
};

// Feeds `data` in two parts through one parser, as a connection would.
Parsed ParseSplit(std::string_view data, size_t split, ParserLimits limits = {}) {
  RequestParser p(limits);
  Request req;
  Parsed out;
  size_t used = 0;
  out.result = p.Parse(data.substr(0, split), &req, &used);
  if (out.result == RequestParser::Result::kNeedMore) {
    out.result = p.Parse(data, &req, &used);
  }
  if (out.result == RequestParser::Result::kComplete) {
    out.method = std::string(req.method);
    out.target = std::string(req.target);
    out.consumed = used;
    out.keep_alive = req.keep_alive;
    out.body = std::string(req.body);
  }
  out.status = p.error_status();
  return out;
}

TEST(HttpParserTest, EverySplitPointParsesTheSame) {
  std::string post = "POST /echo HTTP/1.1\r\nContent-Length: 7\r\n\r\nhe\nl\nlo";
  for (std::string_view req : {kPlaintext, std::string_view(post)}) {
    Parsed whole = ParseSplit(req, req.size());
    ASSERT_EQ(whole.result, RequestParser::Result::kComplete);
    for (size_t split = 0; split <= req.size(); ++split) {
      Parsed p = ParseSplit(req, split);
      ASSERT_EQ(p.result, RequestParser::Result::kComplete) << split;
      EXPECT_EQ(p.method, whole.method);
      EXPECT_EQ(p.target, whole.target);
      EXPECT_EQ(p.consumed, req.size());
      EXPECT_EQ(p.body, whole.body);
    }
  }
}

TEST(HttpParserTest, OneByteDripNeedsMoreUntilTheEnd) {
  RequestParser p;
  Request req;
  size_t used = 0;
  for (size_t n = 1; n < kPlaintext.size(); ++n) {
    ASSERT_EQ(p.Parse(kPlaintext.substr(0, n), &req, &used), RequestParser::Result::kNeedMore)
        << n;
  }
  ASSERT_EQ(p.Parse(kPlaintext, &req, &used), RequestParser::Result::kComplete);
  EXPECT_EQ(req.target, "/plaintext");
  EXPECT_EQ(req.FindHeader("user-agent"), "Mozilla/5.0");
}

TEST(HttpParserTest, KeepAliveRules) {
  EXPECT_TRUE(ParseSplit("GET / HTTP/1.1\r\n\r\n", 0).keep_alive);
  EXPECT_FALSE(ParseSplit("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 0).keep_alive);
  EXPECT_FALSE(ParseSplit("GET / HTTP/1.0\r\n\r\n", 0).keep_alive);
  EXPECT_TRUE(ParseSplit("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 0).keep_alive);
}

TEST(HttpParserTest, Rejections) {
  struct Case {
    std::string request;
    int status;
  } cases[] = {
      {"G@T / HTTP/1.1\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nName : x\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400},
      {"GET /a\x01 HTTP/1.1\r\n\r\n", 400},
      {"GET / HTTP/2.0\r\n\r\n", 505},
      {"GET / HTTX/1.1\r\n\r\n", 400},
      {"GET  HTTP/1.1\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400},
      {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
      {"POST / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n", 413},
      {"GET / HTTP/1.1\nHost: x\n\n", 400},
  };
  for (const Case& c : cases) {
    Parsed p = ParseSplit(c.request, c.request.size());
    EXPECT_EQ(p.result, RequestParser::Result::kError) << c.request;
    EXPECT_EQ(p.status, c.status) << c.request;
  }
}

TEST(HttpParserTest, HeaderLimits) {
  std::string big = "GET / HTTP/1.1\r\nX: " + std::string(9000, 'a') + "\r\n\r\n";
  EXPECT_EQ(ParseSplit(big, 100).status, 431);
  std::string no_end = "GET / HTTP/1.1\r\nX: " + std::string(9000, 'a');
  EXPECT_EQ(ParseSplit(no_end, no_end.size()).status, 431) << "no end in sight: 431 too";
  std::string many = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 65; ++i) many += "H" + std::to_string(i) + ": v\r\n";
  many += "\r\n";
  EXPECT_EQ(ParseSplit(many, many.size()).status, 431);
}

TEST(HttpParserTest, GarbageNeverCrashes) {
  std::mt19937 rng(42);
  for (int i = 0; i < 20000; ++i) {
    std::string junk(rng() % 300, '\0');
    for (char& c : junk) c = static_cast<char>(rng() % 4 == 0 ? "\r\n :/"[rng() % 5] : rng());
    if (i % 3 == 0) junk = "GET / HTTP/1.1\r\n" + junk;
    RequestParser p;
    Request req;
    size_t used = 0;
    auto r = p.Parse(junk, &req, &used);
    if (r == RequestParser::Result::kComplete) EXPECT_LE(used, junk.size());
    if (r == RequestParser::Result::kError) EXPECT_GE(p.error_status(), 400);
  }
}

TEST(HttpSessionTest, PipelinedBatchAnsweredInOrder) {
  HttpDate date;
  date.Refresh(784111777);  // Sun, 06 Nov 1994 08:49:37 GMT
  EXPECT_EQ(date.Value(), "Sun, 06 Nov 1994 08:49:37 GMT");
  HttpSession session;
  std::string in;
  for (int i = 0; i < 16; ++i) in += kPlaintext;
  in += "GET /nope HTTP/1.1\r\n\r\nHEAD / HTTP/1.1\r\n\r\nDELETE / HTTP/1.1\r\n\r\nGET /plain";
  std::string out;
  SessionResult r = session.Process(in, date, &out);
  EXPECT_EQ(r.consumed, in.size() - std::string("GET /plain").size());
  EXPECT_FALSE(r.close_after_write);
  const std::string ok =
      "HTTP/1.1 200 OK\r\nServer: netloop\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
      "Content-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
  std::string expected;
  for (int i = 0; i < 16; ++i) expected += ok;
  ASSERT_EQ(out.substr(0, expected.size()), expected);
  std::string rest = out.substr(expected.size());
  EXPECT_EQ(rest.find("HTTP/1.1 404 Not Found"), 0u);
  size_t head = rest.find("HTTP/1.1 200 OK");
  ASSERT_NE(head, std::string::npos);
  size_t after_head = rest.find("HTTP/1.1 405");
  ASSERT_NE(after_head, std::string::npos);
  EXPECT_EQ(rest.substr(head, after_head - head).find("Hello"), std::string::npos)
      << "HEAD has no body";
  EXPECT_NE(rest.find("Allow: GET, HEAD, POST"), std::string::npos);
}

TEST(HttpSessionTest, ErrorClosesAndStopsProcessing) {
  HttpDate date;
  HttpSession session;
  std::string out;
  std::string in = "GET / HTTP/1.1\r\n\r\nBROKEN\x01 / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n";
  SessionResult r = session.Process(in, date, &out);
  EXPECT_TRUE(r.close_after_write);
  EXPECT_EQ(r.consumed, in.size());
  EXPECT_NE(out.find("HTTP/1.1 200 OK"), std::string::npos);
  EXPECT_NE(out.find("HTTP/1.1 400 Bad Request"), std::string::npos);
  EXPECT_NE(out.find("Connection: close"), std::string::npos);
  EXPECT_EQ(out.find("HTTP/1.1 200 OK", out.find("400")), std::string::npos);
}

TEST(HttpSessionTest, ConnectionCloseAndPostEcho) {
  HttpDate date;
  HttpSession session;
  std::string out;
  std::string in = "POST /echo HTTP/1.1\r\nContent-Length: 4\r\nConnection: close\r\n\r\nping";
  SessionResult r = session.Process(in, date, &out);
  EXPECT_TRUE(r.close_after_write);
  EXPECT_NE(out.find("Content-Length: 4\r\nConnection: close\r\n\r\nping"), std::string::npos);
}

}  // namespace
}  // namespace netloop::http
