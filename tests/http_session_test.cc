#include "examples/http/http_session.h"

#include <time.h>

#include <random>
#include <string>
#include <vector>

#include "examples/http/http_date.h"
#include "gtest/gtest.h"

namespace netloop::http {
namespace {

constexpr std::string_view kPlaintext =
    "GET /plaintext HTTP/1.1\r\nHost: tfb-server:8080\r\n"
    "Accept: text/plain,text/html;q=0.9,application/xhtml+xml;q=0.9,"
    "application/xml;q=0.8,*/*;q=0.7\r\nConnection: keep-alive\r\n\r\n";

constexpr int64_t kRfcExampleSecond = 784111777;  // Sun, 06 Nov 1994 08:49:37 GMT

// The exact bytes a plaintext request must produce.
constexpr std::string_view kPlaintextResponse =
    "HTTP/1.1 200 OK\r\n"
    "Server: netloop\r\n"
    "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 13\r\n"
    "\r\n"
    "Hello, World!";

HttpDate FixedDate() {
  HttpDate date;
  date.Refresh(kRfcExampleSecond);
  return date;
}

// Drives a session the way a server does: input arrives in the given pieces,
// unconsumed bytes are kept and offered again with the next piece.
struct Driven {
  std::string out;
  bool closed = false;
  size_t left = 0;  // bytes never consumed
};

Driven Drive(std::string_view input, const std::vector<size_t>& cuts) {
  const HttpDate date = FixedDate();
  HttpSession session;
  Driven d;
  std::string buffer;
  size_t fed = 0;
  for (size_t cut : cuts) {
    buffer.append(input.substr(fed, cut - fed));
    fed = cut;
    SessionResult r = session.Process(buffer, date, &d.out);
    EXPECT_LE(r.consumed, buffer.size());
    buffer.erase(0, r.consumed);
    if (r.close_after_write) {
      d.closed = true;
      break;
    }
  }
  d.left = buffer.size();
  return d;
}

// Splits `out` into responses by their Content-Length (so not for responses
// to HEAD, which advertise a length they do not carry).
std::vector<std::string> SplitResponses(std::string_view out) {
  std::vector<std::string> responses;
  for (int guard = 0; guard < 1000 && !out.empty(); ++guard) {
    const size_t end = out.find("\r\n\r\n");
    if (end == std::string_view::npos) break;
    const std::string head(out.substr(0, end + 4));
    const size_t cl = head.find("\r\nContent-Length: ");
    if (cl == std::string::npos) break;
    const size_t size = end + 4 + std::stoul(head.substr(cl + 18));
    if (size > out.size()) break;
    responses.emplace_back(out.substr(0, size));
    out.remove_prefix(size);
  }
  EXPECT_TRUE(out.empty()) << out;
  return responses;
}

size_t CountResponses(std::string_view out) {
  size_t n = 0;
  for (size_t p = 0; (p = out.find("\r\nServer: netloop\r\n", p)) != std::string_view::npos; ++p) {
    ++n;
  }
  return n;
}

TEST(HttpDateTest, FormatsImfFixdate) {
  HttpDate date;
  date.Refresh(kRfcExampleSecond);
  EXPECT_EQ(date.Value(), "Sun, 06 Nov 1994 08:49:37 GMT");
  date.Refresh(0);
  EXPECT_EQ(date.Value(), "Thu, 01 Jan 1970 00:00:00 GMT");
  date.Refresh(951782400);
  EXPECT_EQ(date.Value(), "Tue, 29 Feb 2000 00:00:00 GMT");
  date.Refresh(4107542399);
  EXPECT_EQ(date.Value(), "Sun, 28 Feb 2100 23:59:59 GMT");
  date.Refresh(4107542400);
  EXPECT_EQ(date.Value(), "Mon, 01 Mar 2100 00:00:00 GMT") << "2100 is not a leap year";
  date.Refresh(-5);
  EXPECT_EQ(date.Value(), "Thu, 01 Jan 1970 00:00:00 GMT") << "clamped";
  date.Refresh(int64_t{1} << 50);
  EXPECT_EQ(date.Value(), "Fri, 31 Dec 9999 23:59:59 GMT") << "clamped";
}

TEST(HttpDateTest, AgreesWithStrftime) {
  std::mt19937_64 rng(7);
  HttpDate date;
  for (int i = 0; i < 20000; ++i) {
    const int64_t t = static_cast<int64_t>(rng() % 253402300800);
    date.Refresh(t);
    const time_t tt = static_cast<time_t>(t);
    struct tm tm;
    ASSERT_NE(gmtime_r(&tt, &tm), nullptr);
    char expected[64];
    ASSERT_EQ(strftime(expected, sizeof(expected), "%a, %d %b %Y %H:%M:%S GMT", &tm), 29u);
    ASSERT_EQ(date.Value(), std::string_view(expected)) << t;
  }
}

TEST(HttpDateTest, DefaultIsNowAndRefreshChangesOnlyOnANewSecond) {
  HttpDate date;
  // Whatever "now" is, it has the IMF-fixdate shape.
  const std::string now(date.Value());
  const std::string shape = "Ddd, 00 Mmm 0000 00:00:00 GMT";
  ASSERT_EQ(now.size(), shape.size());
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == '0') {
      EXPECT_TRUE(now[i] >= '0' && now[i] <= '9') << now;
    } else if (shape[i] == 'D' || shape[i] == 'M') {
      EXPECT_TRUE(now[i] >= 'A' && now[i] <= 'Z') << now;
    } else if (shape[i] == 'd' || shape[i] == 'm') {
      EXPECT_TRUE(now[i] >= 'a' && now[i] <= 'z') << now;
    } else {
      EXPECT_EQ(now[i], shape[i]) << now;
    }
  }
  EXPECT_GE(now.substr(12, 4), "2020") << "the clock is not at the epoch";
  date.Refresh(kRfcExampleSecond);
  const char* data = date.Value().data();
  date.Refresh(kRfcExampleSecond);
  EXPECT_EQ(date.Value(), "Sun, 06 Nov 1994 08:49:37 GMT");
  date.Refresh(kRfcExampleSecond + 1);
  EXPECT_EQ(date.Value(), "Sun, 06 Nov 1994 08:49:38 GMT");
  EXPECT_EQ(date.Value().data(), data) << "the view stays valid across refreshes";
}

TEST(HttpSessionTest, PlaintextResponseIsByteExact) {
  const HttpDate date = FixedDate();
  HttpSession session;
  std::string out;
  SessionResult r = session.Process(kPlaintext, date, &out);
  EXPECT_EQ(r.consumed, kPlaintext.size());
  EXPECT_FALSE(r.close_after_write);
  EXPECT_EQ(out, kPlaintextResponse);
  out.clear();
  // GET / is the same resource; a query string does not matter.
  session.Process("GET /?a=b HTTP/1.1\r\nHost: x\r\n\r\n", date, &out);
  EXPECT_EQ(out, kPlaintextResponse);
}

TEST(HttpSessionTest, SixteenPipelinedRequestsAnsweredInOrder) {
  const HttpDate date = FixedDate();
  HttpSession session;
  std::string in;
  for (int i = 0; i < 16; ++i) {
    // Alternate two resources so order is visible.
    in += i % 2 == 0 ? std::string(kPlaintext)
                     : "GET /missing-" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n";
  }
  std::string out;
  SessionResult r = session.Process(in, date, &out);
  EXPECT_EQ(r.consumed, in.size());
  EXPECT_FALSE(r.close_after_write);
  std::vector<std::string> responses = SplitResponses(out);
  ASSERT_EQ(responses.size(), 16u);
  for (int i = 0; i < 16; ++i) {
    if (i % 2 == 0) {
      EXPECT_EQ(responses[i], kPlaintextResponse) << i;
    } else {
      EXPECT_EQ(responses[i].find("HTTP/1.1 404 Not Found\r\n"), 0u) << i;
    }
  }
}

TEST(HttpSessionTest, IncompleteTailIsLeftForLater) {
  const HttpDate date = FixedDate();
  HttpSession session;
  std::string in = std::string(kPlaintext) + std::string(kPlaintext.substr(0, 30));
  std::string out;
  SessionResult r = session.Process(in, date, &out);
  EXPECT_EQ(r.consumed, kPlaintext.size());
  EXPECT_EQ(out, kPlaintextResponse);
  // The server keeps the tail and offers it again with the rest.
  std::string tail = in.substr(r.consumed) + std::string(kPlaintext.substr(30));
  out.clear();
  r = session.Process(tail, date, &out);
  EXPECT_EQ(r.consumed, tail.size());
  EXPECT_EQ(out, kPlaintextResponse);
}

TEST(HttpSessionTest, EverySplitGivesTheSameBytes) {
  std::string in;
  for (int i = 0; i < 3; ++i) in += kPlaintext;
  in += "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
  in += "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n";
  in += "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
  in += "GET / HTTP/1.1\r\nHost: h\r\n\r\n";  // after the close: never answered
  const Driven whole = Drive(in, {in.size()});
  EXPECT_TRUE(whole.closed);
  EXPECT_EQ(CountResponses(whole.out), 6u);
  for (size_t split = 0; split <= in.size(); ++split) {
    const Driven d = Drive(in, {split, in.size()});
    ASSERT_EQ(d.out, whole.out) << split;
    ASSERT_TRUE(d.closed) << split;
  }
  std::vector<size_t> drip;
  for (size_t i = 1; i <= in.size(); ++i) drip.push_back(i);
  const Driven dripped = Drive(in, drip);
  EXPECT_EQ(dripped.out, whole.out);
  EXPECT_TRUE(dripped.closed);
}

TEST(HttpSessionTest, HeadHasHeadersButNoBody) {
  const HttpDate date = FixedDate();
  HttpSession session;
  std::string out;
  std::string in = "HEAD /plaintext HTTP/1.1\r\nHost: x\r\n\r\n" + std::string(kPlaintext);
  SessionResult r = session.Process(in, date, &out);
  EXPECT_EQ(r.consumed, in.size());
  const std::string head_response(kPlaintextResponse.substr(0, kPlaintextResponse.size() - 13));
  EXPECT_EQ(out, head_response + std::string(kPlaintextResponse));
  out.clear();
  session.Process("HEAD /nope HTTP/1.1\r\nHost: h\r\n\r\n", date, &out);
  EXPECT_EQ(out.find("HTTP/1.1 404 Not Found\r\n"), 0u);
  EXPECT_NE(out.find("Content-Length: 9\r\n"), std::string::npos);
  EXPECT_EQ(out.substr(out.size() - 4), "\r\n\r\n") << "no body";
}

TEST(HttpSessionTest, NotFoundAndMethodNotAllowed) {
  const HttpDate date = FixedDate();
  HttpSession session;
  std::string out;
  session.Process("GET /nope HTTP/1.1\r\nHost: h\r\n\r\n", date, &out);
  EXPECT_EQ(out,
            "HTTP/1.1 404 Not Found\r\nServer: netloop\r\n"
            "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Type: text/plain\r\n"
            "Content-Length: 9\r\n\r\nNot Found");
  out.clear();
  session.Process("DELETE /plaintext HTTP/1.1\r\nHost: h\r\n\r\n", date, &out);
  EXPECT_EQ(out,
            "HTTP/1.1 405 Method Not Allowed\r\nServer: netloop\r\n"
            "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Type: text/plain\r\n"
            "Content-Length: 18\r\nAllow: GET, HEAD\r\n\r\nMethod Not Allowed");
  out.clear();
  session.Process("GET /echo HTTP/1.1\r\nHost: h\r\n\r\n", date, &out);
  EXPECT_EQ(out.find("HTTP/1.1 405 "), 0u);
  EXPECT_NE(out.find("\r\nAllow: POST\r\n"), std::string::npos);
  out.clear();
  // Methods are case-sensitive: "get" is some other method.
  SessionResult r = session.Process("get / HTTP/1.1\r\nHost: h\r\n\r\n", date, &out);
  EXPECT_EQ(out.find("HTTP/1.1 405 "), 0u);
  EXPECT_FALSE(r.close_after_write);
}

// Absolute-form targets are routed on their path (they were 404: the route
// compared the whole URI); asterisk-form is for OPTIONS only.
TEST(HttpSessionTest, AbsoluteFormAndAsteriskForm) {
  const HttpDate date = FixedDate();
  HttpSession session;
  std::string out;
  SessionResult r = session.Process(
      "GET http://example.com/plaintext HTTP/1.1\r\nHost: example.com\r\n\r\n", date, &out);
  EXPECT_FALSE(r.close_after_write);
  EXPECT_EQ(out, kPlaintextResponse);
  out.clear();
  session.Process("GET HTTP://EXAMPLE.COM:80?x=1 HTTP/1.1\r\nHost: e\r\n\r\n", date, &out);
  EXPECT_EQ(out, kPlaintextResponse) << "an empty path is /";
  out.clear();
  session.Process("POST https://h/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi", date,
                  &out);
  EXPECT_EQ(out.find("HTTP/1.1 200 OK\r\n"), 0u);
  EXPECT_EQ(out.substr(out.size() - 6), "\r\n\r\nhi");
  out.clear();
  session.Process("GET http://h/nope HTTP/1.1\r\nHost: h\r\n\r\n", date, &out);
  EXPECT_EQ(out.find("HTTP/1.1 404 "), 0u);
  out.clear();
  r = session.Process("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", date, &out);
  EXPECT_FALSE(r.close_after_write);
  EXPECT_EQ(out,
            "HTTP/1.1 200 OK\r\nServer: netloop\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
            "Content-Type: text/plain\r\nContent-Length: 0\r\nAllow: GET, HEAD, POST\r\n\r\n");
  out.clear();
  r = session.Process("GET * HTTP/1.1\r\nHost: h\r\n\r\n", date, &out);
  EXPECT_TRUE(r.close_after_write);
  EXPECT_EQ(out.find("HTTP/1.1 400 "), 0u);
}

TEST(HttpSessionTest, PostEchoAndIgnoredBodies) {
  const HttpDate date = FixedDate();
  HttpSession session;
  std::string out;
  std::string in =
      "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nping"
      "POST /plaintext HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nGET"  // body ignored
      "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n";
  SessionResult r = session.Process(in, date, &out);
  EXPECT_EQ(r.consumed, in.size());
  std::vector<std::string> responses = SplitResponses(out);
  ASSERT_EQ(responses.size(), 3u);
  EXPECT_EQ(responses[0],
            "HTTP/1.1 200 OK\r\nServer: netloop\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: 4\r\n\r\nping");
  EXPECT_EQ(responses[1].find("HTTP/1.1 405 "), 0u);
  EXPECT_NE(responses[2].find("Content-Length: 0\r\n\r\n"), std::string::npos);
}

TEST(HttpSessionTest, ErrorRespondsClosesAndStopsProcessing) {
  struct Case {
    std::string bad;
    std::string_view status_line;
  } cases[] = {
      {"BROKEN\x01 / HTTP/1.1\r\nHost: h\r\n\r\n", "400 Bad Request"},
      {"GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(9000, 'a') + "\r\n\r\n",
       "431 Request Header Fields Too Large"},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9999999\r\n\r\n", "413 Content Too Large"},
      // 2^64 once wrapped to 0, and the request after it was answered as a
      // second, smuggled request.
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551616\r\n\r\n",
       "413 Content Too Large"},
      {"GET / HTTP/3.0\r\n\r\n", "505 HTTP Version Not Supported"},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", "501 Not Implemented"},
      // RFC 9112 3.2: no Host in HTTP/1.1, two Hosts, or a bad one is 400.
      {"GET / HTTP/1.1\r\n\r\n", "400 Bad Request"},
      {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400 Bad Request"},
      {"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", "400 Bad Request"},
  };
  for (const Case& c : cases) {
    const HttpDate date = FixedDate();
    HttpSession session;
    std::string out;
    std::string in = std::string(kPlaintext) + c.bad + std::string(kPlaintext);
    SessionResult r = session.Process(in, date, &out);
    EXPECT_TRUE(r.close_after_write) << c.status_line;
    EXPECT_EQ(r.consumed, in.size());
    std::string body(c.status_line.substr(4));
    EXPECT_EQ(out, std::string(kPlaintextResponse) + "HTTP/1.1 " + std::string(c.status_line) +
                       "\r\nServer: netloop\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
                       "Content-Type: text/plain\r\nContent-Length: " +
                       std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
    // A closing session answers nothing more.
    out.clear();
    r = session.Process(kPlaintext, date, &out);
    EXPECT_TRUE(r.close_after_write);
    EXPECT_TRUE(out.empty());
  }
}

TEST(HttpSessionTest, ConnectionCloseStopsAfterItsResponse) {
  const HttpDate date = FixedDate();
  HttpSession session;
  std::string out;
  std::string first = "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
  std::string in = first + std::string(kPlaintext);
  SessionResult r = session.Process(in, date, &out);
  EXPECT_TRUE(r.close_after_write);
  EXPECT_EQ(r.consumed, first.size());
  std::string expected(kPlaintextResponse);
  expected.insert(expected.find("\r\n\r\n"), "\r\nConnection: close");
  EXPECT_EQ(out, expected);
}

TEST(HttpSessionTest, Http10KeepAliveRules) {
  const HttpDate date = FixedDate();
  {
    HttpSession session;
    std::string out;
    SessionResult r = session.Process("GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n", date, &out);
    EXPECT_TRUE(r.close_after_write);
    EXPECT_EQ(SplitResponses(out).size(), 1u);
    EXPECT_NE(out.find("\r\nConnection: close\r\n"), std::string::npos);
  }
  {
    HttpSession session;
    std::string out;
    std::string one = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    SessionResult r = session.Process(one + one, date, &out);
    EXPECT_FALSE(r.close_after_write);
    EXPECT_EQ(r.consumed, 2 * one.size());
    std::vector<std::string> responses = SplitResponses(out);
    ASSERT_EQ(responses.size(), 2u);
    EXPECT_NE(responses[1].find("\r\nConnection: keep-alive\r\n"), std::string::npos);
    EXPECT_NE(responses[1].find("Hello, World!"), std::string::npos);
  }
}

TEST(HttpSessionTest, DateFollowsRefresh) {
  HttpDate date = FixedDate();
  HttpSession session;
  std::string out;
  session.Process(kPlaintext, date, &out);
  EXPECT_NE(out.find("\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"), std::string::npos);
  date.Refresh(kRfcExampleSecond + 86400 * 3 + 1);
  out.clear();
  session.Process(kPlaintext, date, &out);
  EXPECT_NE(out.find("\r\nDate: Wed, 09 Nov 1994 08:49:38 GMT\r\n"), std::string::npos) << out;
}

TEST(HttpSessionTest, ReusedOutputBufferIsNotReallocated) {
  const HttpDate date = FixedDate();
  HttpSession session;
  std::string in;
  for (int i = 0; i < 16; ++i) in += kPlaintext;
  std::string out;
  session.Process(in, date, &out);
  const size_t size = out.size();
  const char* storage = out.data();
  for (int round = 0; round < 100; ++round) {
    out.clear();
    SessionResult r = session.Process(in, date, &out);
    ASSERT_EQ(r.consumed, in.size());
    ASSERT_EQ(out.size(), size);
    ASSERT_EQ(out.data(), storage) << "appending within capacity must not reallocate";
  }
}

TEST(HttpSessionTest, GarbageStreamsAreAnsweredOrClosed) {
  std::mt19937 rng(1234);
  for (int i = 0; i < 3000; ++i) {
    std::string junk(rng() % 200, '\0');
    for (char& c : junk) c = static_cast<char>(rng() % 3 == 0 ? "\r\n :/"[rng() % 5] : rng());
    std::string in = std::string(kPlaintext) + junk;
    std::vector<size_t> cuts;
    for (size_t at = 1; at < in.size(); at += 1 + rng() % 50) cuts.push_back(at);
    cuts.push_back(in.size());
    Driven d = Drive(in, cuts);
    ASSERT_EQ(d.out.compare(0, kPlaintextResponse.size(), kPlaintextResponse), 0) << i;
    // Either the junk was rejected (and the connection closes), or whatever
    // did not parse is still waiting for more bytes.
    if (!d.closed) {
      EXPECT_EQ(d.out.size(), kPlaintextResponse.size()) << i;
    }
  }
}

// The servers' request-head deadline hangs on head_pending: set while the
// unconsumed bytes begin a head that has not completed, and only then (not
// for a body still arriving, nor for the lone CRLF RFC 9112 2.2 allows
// before a request line, nor once nothing is left).
TEST(HttpSessionTest, HeadPendingMeansAnIncompleteHead) {
  const HttpDate date = FixedDate();
  struct Case {
    std::string input;
    bool head_pending;
  } cases[] = {
      {"G", true},
      {"GET /plaintext HTTP/1.1\r\nHost: h\r\n", true},
      {std::string(kPlaintext), false},
      {std::string(kPlaintext) + "GET / HT", true},
      {std::string(kPlaintext) + "\r", false},
      {std::string(kPlaintext) + "\r\n", false},
      {std::string(kPlaintext) + "\r\nG", true},
      {"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab", false},
      {"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n", false},
      {"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nabG", true},
      {"G@T / HTTP/1.1\r\n", false},  // an error closes: nothing is pending
  };
  for (const Case& c : cases) {
    HttpSession session;
    std::string out;
    SessionResult r = session.Process(c.input, date, &out);
    EXPECT_EQ(r.head_pending, c.head_pending) << c.input;
    EXPECT_FALSE(r.output_full);
  }
  // Resuming with the rest completes the head.
  HttpSession session;
  std::string out;
  std::string in(kPlaintext.substr(0, 20));
  SessionResult r = session.Process(in, date, &out);
  ASSERT_TRUE(r.head_pending);
  ASSERT_EQ(r.consumed, 0u);
  r = session.Process(kPlaintext, date, &out);
  EXPECT_FALSE(r.head_pending);
  EXPECT_EQ(out, kPlaintextResponse);
}

TEST(HttpSessionTest, TimeOutHeadAnswers408AndCloses) {
  const HttpDate date = FixedDate();
  HttpSession session;
  std::string out;
  SessionResult r = session.Process(std::string(kPlaintext) + "GET / HT", date, &out);
  ASSERT_TRUE(r.head_pending);
  out.clear();
  session.TimeOutHead(date, &out);
  EXPECT_EQ(out,
            "HTTP/1.1 408 Request Timeout\r\nServer: netloop\r\n"
            "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Type: text/plain\r\n"
            "Content-Length: 15\r\nConnection: close\r\n\r\nRequest Timeout");
  // The rest of that head arriving later is not answered.
  out.clear();
  r = session.Process(std::string("GET / HT") + "TP/1.1\r\nHost: h\r\n\r\n", date, &out);
  EXPECT_TRUE(r.close_after_write);
  EXPECT_TRUE(out.empty());
  session.TimeOutHead(date, &out);
  EXPECT_TRUE(out.empty()) << "a closed session answers nothing more";
}

// A client pipelining without reading must not make the server build
// responses without bound: Process stops once the budget is spent, and
// resuming with the unconsumed bytes gives exactly the unbudgeted output.
TEST(HttpSessionTest, OutputBudgetBoundsEachCall) {
  const HttpDate date = FixedDate();
  std::string in;
  for (int i = 0; i < 100; ++i) {
    in += i % 3 == 0 ? "GET /missing-" + std::to_string(i) + " HTTP/1.1\r\nHost: h\r\n\r\n"
                     : std::string(kPlaintext);
  }
  in += "GET / HT";  // a partial head at the end
  std::string whole;
  {
    HttpSession session;
    SessionResult r = session.Process(in, date, &whole);
    ASSERT_FALSE(r.output_full);
    ASSERT_TRUE(r.head_pending);
  }
  for (size_t budget : {size_t{1}, size_t{200}, size_t{1000}, size_t{4096}}) {
    HttpSession session;
    std::string all;
    std::string_view rest = in;
    int calls = 0;
    SessionResult r;
    do {
      std::string out = "prefix";  // the budget counts what this call appends
      r = session.Process(rest, date, &out, budget);
      ASSERT_EQ(out.compare(0, 6, "prefix"), 0);
      const size_t appended = out.size() - 6;
      ASSERT_GT(appended, 0u) << "every call answers at least one request";
      // At most one response past the budget (each is under 200 bytes).
      ASSERT_LT(appended, budget + 200) << budget;
      if (r.output_full) {
        ASSERT_GE(appended, budget);
        ASSERT_FALSE(r.head_pending) << "not judged while output is full";
      }
      all.append(out, 6);
      rest.remove_prefix(r.consumed);
      ASSERT_LT(++calls, 200);
    } while (r.output_full);
    EXPECT_FALSE(r.close_after_write);
    EXPECT_TRUE(r.head_pending);
    EXPECT_EQ(rest, "GET / HT");
    EXPECT_EQ(all, whole) << budget;
  }
}

TEST(HttpSessionTest, SessionStateIsSmall) {
  EXPECT_LE(sizeof(HttpSession), 40u);
}

}  // namespace
}  // namespace netloop::http
