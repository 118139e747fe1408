// BufferedReader over real loopback TCP connections: the reader runs in the
// handler fiber of a one-loop FiberServer, the test thread is the client.
// Lines split every way (a byte per read, across reads, many per read, mixed
// lengths through compaction and growth), CRLF and LF, the length limit and
// recovery after it, deadlines mid-line, EOF mid-line, zero copy, no
// allocation per line, and misuse from a second fiber.
//
// Where a test needs bytes to arrive in separate reads it waits for the
// fiber to report what it has buffered before sending more: no sleeps decide
// an outcome, and no test asserts on how long anything took.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <new>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "fiberbridge/buffered_reader.h"
#include "fiberbridge/fiber_conn.h"
#include "fiberbridge/scheduler.h"
#include "fiberbridge/server.h"
#include "fiberbridge/sync.h"
#include "gtest/gtest.h"
#include "reactor/errors.h"
#include "reactor/options.h"
#include "tests/test_util.h"

// Heap allocations made by the current thread: per thread, unlike
// bench/alloc_counter.h, because the client and the engine's other threads
// allocate meanwhile. The fibers of a loop all run on its thread, so a fiber
// that does not park counts only its own.
namespace {
thread_local uint64_t thread_allocations = 0;
}  // namespace

void* operator new(std::size_t n) {
  ++thread_allocations;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace netloop::fiber {
namespace {

using netloop::testing::CloseClient;
using netloop::testing::Connect;
using netloop::testing::Pattern;
using netloop::testing::SetClientNoDelay;
using netloop::testing::ShutdownClientWrite;
using netloop::testing::WaitFor;
using netloop::testing::WriteAll;

// One loopback TCP connection: the accepted end runs `body` in a fiber of a
// one-loop FiberServer; client() is a blocking socket (10 s timeouts, no
// Nagle delay) for the test thread.
class Loopback {
 public:
  explicit Loopback(std::function<void(FiberConn&)> body) : body_(std::move(body)) {
    Options o;
    o.loops = 1;
    started_ = server_.Start({"tcp://127.0.0.1:0"}, o, [this](FiberConn& conn) {
      body_(conn);
      done_ = true;
    });
    if (!started_.ok()) return;
    client_ = Connect(server_.ListenAddresses()[0]);
    if (client_ != kInvalidSocket) SetClientNoDelay(client_);
  }
  ~Loopback() {
    if (client_ != kInvalidSocket) CloseClient(client_);
    server_.Stop(absl::Now() + absl::Seconds(5));  // wakes a body still parked
    (void)server_.Wait();
  }
  bool ok() const { return started_.ok() && client_ != kInvalidSocket; }
  SocketHandle client() const { return client_; }
  bool Send(std::string_view bytes) { return WriteAll(client_, bytes); }
  void CloseWrite() { ShutdownClientWrite(client_); }
  // Waits (bounded) for the body to return.
  bool WaitDone() { return WaitFor([this] { return done_.load(); }, 20000); }

 private:
  // Declared before server_ so the handler's captures outlive the server.
  std::function<void(FiberConn&)> body_;
  std::atomic<bool> done_{false};
  absl::Status started_;
  SocketHandle client_ = kInvalidSocket;
  FiberServer server_;
};

TEST(BufferedReaderTest, LineDeliveredOneByteAtATime) {
  const std::string line = "hello, world\r\n";
  std::atomic<size_t> buffered{0};
  std::string got;
  Loopback lb([&](FiberConn& conn) {
    BufferedReader reader(conn);
    // A second fiber publishes how much the parked reader holds, so the
    // client can send each byte only after the previous one was read.
    std::atomic<bool> finished{false};
    WaitGroup wg;
    wg.Add(1);
    Spawn([&] {
      for (int i = 0; i < 30000 && !finished.load(); ++i) {
        buffered = reader.Buffered();
        if (!fiber::SleepFor(absl::Milliseconds(1)).ok()) break;
      }
      wg.Done();
    });
    absl::StatusOr<std::string_view> l = reader.ReadLine();
    if (l.ok()) got = std::string(*l);
    EXPECT_TRUE(l.ok()) << l.status();
    finished = true;
    (void)wg.Wait();
  });
  ASSERT_TRUE(lb.ok());
  for (size_t i = 0; i < line.size(); ++i) {
    ASSERT_TRUE(lb.Send(line.substr(i, 1)));
    if (i + 1 < line.size()) {
      ASSERT_TRUE(WaitFor([&] { return buffered.load() == i + 1; })) << "byte " << i;
    }
  }
  ASSERT_TRUE(lb.WaitDone());
  EXPECT_EQ(got, "hello, world");
}

TEST(BufferedReaderTest, LineSpanningReads) {
  std::atomic<bool> first_part_buffered{false};
  std::vector<std::string> lines;
  Loopback lb([&](FiberConn& conn) {
    BufferedReader reader(conn);
    absl::StatusOr<std::string_view> head = reader.Peek(8);
    ASSERT_TRUE(head.ok()) << head.status();
    EXPECT_EQ(*head, "first li");
    first_part_buffered = true;
    for (int i = 0; i < 2; ++i) {
      absl::StatusOr<std::string_view> l = reader.ReadLine();
      ASSERT_TRUE(l.ok()) << l.status();
      lines.emplace_back(*l);
    }
  });
  ASSERT_TRUE(lb.ok());
  ASSERT_TRUE(lb.Send("first li"));
  ASSERT_TRUE(WaitFor([&] { return first_part_buffered.load(); }));
  ASSERT_TRUE(lb.Send("ne\nsecond\n"));  // sent only after the first part was read
  ASSERT_TRUE(lb.WaitDone());
  EXPECT_EQ(lines, (std::vector<std::string>{"first line", "second"}));
}

TEST(BufferedReaderTest, ManyLinesInOneWrite) {
  std::string all;
  std::vector<std::string> want;
  for (int i = 0; i < 600; ++i) {  // about 6 KiB: more than the initial buffer
    want.push_back(absl::StrCat("line number ", i));
    absl::StrAppend(&all, want.back(), "\n");
  }
  std::vector<std::string> got;
  Loopback lb([&](FiberConn& conn) {
    BufferedReader reader(conn);
    for (size_t i = 0; i < want.size(); ++i) {
      absl::StatusOr<std::string_view> l = reader.ReadLine();
      ASSERT_TRUE(l.ok()) << i << ": " << l.status();
      got.emplace_back(*l);
    }
    EXPECT_TRUE(IsPeerClosed(reader.ReadLine().status()));
  });
  ASSERT_TRUE(lb.ok());
  ASSERT_TRUE(lb.Send(all));
  lb.CloseWrite();
  ASSERT_TRUE(lb.WaitDone());
  EXPECT_EQ(got, want);
}

// Lengths around the buffer sizes and up to the limit, streamed while the
// reader reads: every compaction and growth path, checked byte for byte.
TEST(BufferedReaderTest, MixedLengthsThroughCompactionAndGrowth) {
  std::vector<std::string> want;
  const size_t edges[] = {0, 1, 4094, 4095, 4096, 4097, 8191, 8192, 32768, 65535};
  const std::string noise = Pattern(1 << 20, 3);
  size_t at = 0;
  for (int i = 0; i < 300; ++i) {
    size_t len = i < 10 ? edges[i] : static_cast<unsigned char>(noise[i]) * 37 % 12000;
    std::string s(len, '\0');
    for (size_t k = 0; k < len; ++k, ++at) {
      s[k] = static_cast<char>('a' + static_cast<unsigned char>(noise[at % noise.size()]) % 26);
    }
    want.push_back(s + "\n");
  }
  std::vector<std::string> got;
  absl::Status end;
  Loopback lb([&](FiberConn& conn) {
    BufferedReader reader(conn);
    for (size_t i = 0; i <= want.size(); ++i) {  // bounded: one more than sent
      absl::StatusOr<std::string_view> t = reader.ReadUntil('\n');
      if (!t.ok()) {
        end = t.status();
        return;
      }
      got.emplace_back(*t);
    }
  });
  ASSERT_TRUE(lb.ok());
  std::string all;
  for (const std::string& s : want) all += s;
  ASSERT_TRUE(lb.Send(all));
  lb.CloseWrite();
  ASSERT_TRUE(lb.WaitDone());
  EXPECT_TRUE(IsPeerClosed(end)) << end;
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_TRUE(got[i] == want[i]) << "token " << i;
}

TEST(BufferedReaderTest, CrlfAndLf) {
  std::vector<std::string> lines;
  std::string raw_first;
  absl::Status end;
  Loopback lb([&](FiberConn& conn) {
    BufferedReader reader(conn);
    absl::StatusOr<std::string_view> t = reader.ReadUntil('\n');
    ASSERT_TRUE(t.ok()) << t.status();
    raw_first = std::string(*t);  // ReadUntil keeps the terminator
    for (int i = 0; i < 10; ++i) {
      absl::StatusOr<std::string_view> l = reader.ReadLine();
      if (!l.ok()) {
        end = l.status();
        return;
      }
      lines.emplace_back(*l);
    }
  });
  ASSERT_TRUE(lb.ok());
  ASSERT_TRUE(lb.Send("raw\r\na\r\nb\n\r\n\nc\rd\n\r\r\ne\r"));
  lb.CloseWrite();
  ASSERT_TRUE(lb.WaitDone());
  EXPECT_EQ(raw_first, "raw\r\n");
  // Only "\r\n" and "\n" are stripped; other '\r's are data.
  EXPECT_EQ(lines, (std::vector<std::string>{"a", "b", "", "", "c\rd", "\r", "e\r"}));
  EXPECT_TRUE(IsPeerClosed(end)) << end;
}

TEST(BufferedReaderTest, LineLongerThanTheLimitIsSkipped) {
  const BufferedReaderOptions small{.buffer_size = 16, .max_token_size = 64};
  std::vector<std::string> got;  // "!" marks ResourceExhausted
  std::vector<size_t> buffered_after_error;
  Loopback lb([&](FiberConn& conn) {
    BufferedReader reader(conn, small);
    for (int i = 0; i < 6; ++i) {
      absl::StatusOr<std::string_view> l = reader.ReadLine();
      if (absl::IsResourceExhausted(l.status())) {
        EXPECT_EQ(GetCloseReason(l.status()), CloseReason::kNone) << "not a close";
        got.emplace_back("!");
        buffered_after_error.push_back(reader.Buffered());
        continue;
      }
      ASSERT_TRUE(l.ok()) << l.status();
      got.emplace_back(*l);
    }
  });
  ASSERT_TRUE(lb.ok());
  const std::string max_line(63, 'y');  // 64 bytes with its '\n': just fits
  ASSERT_TRUE(lb.Send(absl::StrCat("short\n", std::string(200, 'x'), "\nnext\n", max_line,
                                   "\n", std::string(64, 'z'), "\nend\n")));
  ASSERT_TRUE(lb.WaitDone());
  EXPECT_EQ(got, (std::vector<std::string>{"short", "!", "next", max_line, "!", "end"}));
  EXPECT_EQ(buffered_after_error, (std::vector<size_t>{0, 0})) << "the partial line is dropped";
}

// The default limit (64 KiB, the delimiter included), past the initial 4 KiB.
TEST(BufferedReaderTest, DefaultLimitIs64KiB) {
  std::vector<std::string> got;
  Loopback lb([&](FiberConn& conn) {
    BufferedReader reader(conn);
    for (int i = 0; i < 3; ++i) {
      absl::StatusOr<std::string_view> t = reader.ReadUntil('\n');
      if (absl::IsResourceExhausted(t.status())) {
        got.emplace_back("!");
        continue;
      }
      ASSERT_TRUE(t.ok()) << t.status();
      got.emplace_back(*t);
    }
  });
  ASSERT_TRUE(lb.ok());
  const std::string fits = std::string(64 * 1024 - 1, 'f') + "\n";
  ASSERT_TRUE(lb.Send(absl::StrCat(fits, std::string(64 * 1024, 'g'), "\n", "after\n")));
  ASSERT_TRUE(lb.WaitDone());
  ASSERT_EQ(got.size(), 3u);
  EXPECT_TRUE(got[0] == fits);
  EXPECT_EQ(got[1], "!");
  EXPECT_EQ(got[2], "after\n");
}

// The error comes as soon as the limit is reached, before the rest of the
// line exists; skipping that rest survives a deadline and resumes after it.
TEST(BufferedReaderTest, SkipOfAnOverlongLineResumesAfterADeadline) {
  const BufferedReaderOptions small{.buffer_size = 16, .max_token_size = 64};
  std::atomic<bool> skip_timed_out{false};
  std::string next;
  Loopback lb([&](FiberConn& conn) {
    BufferedReader reader(conn, small);
    absl::StatusOr<std::string_view> l = reader.ReadLine();
    EXPECT_TRUE(absl::IsResourceExhausted(l.status())) << l.status();
    conn.SetReadDeadline(absl::Now() + absl::Milliseconds(20));
    l = reader.ReadLine();  // still skipping the long line: no '\n' comes
    EXPECT_TRUE(absl::IsDeadlineExceeded(l.status())) << l.status();
    skip_timed_out = true;
    conn.SetReadDeadline(absl::InfiniteFuture());
    l = reader.ReadLine();
    ASSERT_TRUE(l.ok()) << l.status();
    next = std::string(*l);
  });
  ASSERT_TRUE(lb.ok());
  ASSERT_TRUE(lb.Send(std::string(100, 'x')));
  ASSERT_TRUE(WaitFor([&] { return skip_timed_out.load(); }));
  ASSERT_TRUE(lb.Send(std::string(100, 'x') + "\nnext\n"));
  ASSERT_TRUE(lb.WaitDone());
  EXPECT_EQ(next, "next");
}

TEST(BufferedReaderTest, DeadlineMidLineKeepsThePartialLine) {
  std::atomic<bool> timed_out{false};
  std::string line;
  Loopback lb([&](FiberConn& conn) {
    BufferedReader reader(conn);
    ASSERT_TRUE(reader.Peek(3).ok());  // "hel" is buffered before the deadline
    conn.SetReadDeadline(absl::Now() + absl::Milliseconds(20));
    absl::StatusOr<std::string_view> l = reader.ReadLine();
    EXPECT_TRUE(absl::IsDeadlineExceeded(l.status())) << l.status();
    EXPECT_EQ(reader.Buffered(), 3u);
    // Go's rule: an expired deadline keeps failing until it is moved.
    EXPECT_TRUE(absl::IsDeadlineExceeded(reader.ReadLine().status()));
    EXPECT_EQ(reader.Buffered(), 3u);
    timed_out = true;
    conn.SetReadDeadline(absl::Now() + absl::Minutes(5));
    l = reader.ReadLine();
    ASSERT_TRUE(l.ok()) << l.status();
    line = std::string(*l);
  });
  ASSERT_TRUE(lb.ok());
  ASSERT_TRUE(lb.Send("hel"));
  ASSERT_TRUE(WaitFor([&] { return timed_out.load(); }));
  ASSERT_TRUE(lb.Send("lo\n"));
  ASSERT_TRUE(lb.WaitDone());
  EXPECT_EQ(line, "hello");
}

// Go's idiom to interrupt a blocked read, SetReadDeadline(past), while the
// reader is parked mid-line.
TEST(BufferedReaderTest, DeadlineMovedIntoThePastWhileParkedMidLine) {
  std::atomic<bool> interrupted{false};
  std::string line;
  Loopback lb([&](FiberConn& conn) {
    BufferedReader reader(conn);
    ASSERT_TRUE(reader.Peek(4).ok());
    FiberConn* c = &conn;
    WaitGroup wg;
    wg.Add(1);
    Spawn([c, &wg] {
      c->SetReadDeadline(absl::UnixEpoch());  // runs once the reader has parked
      wg.Done();
    });
    absl::StatusOr<std::string_view> l = reader.ReadLine();
    EXPECT_TRUE(absl::IsDeadlineExceeded(l.status())) << l.status();
    (void)wg.Wait();
    conn.SetReadDeadline(absl::InfiniteFuture());
    interrupted = true;
    l = reader.ReadLine();
    ASSERT_TRUE(l.ok()) << l.status();
    line = std::string(*l);
  });
  ASSERT_TRUE(lb.ok());
  ASSERT_TRUE(lb.Send("part"));
  ASSERT_TRUE(WaitFor([&] { return interrupted.load(); }));
  ASSERT_TRUE(lb.Send("ial\n"));
  ASSERT_TRUE(lb.WaitDone());
  EXPECT_EQ(line, "partial");
}

TEST(BufferedReaderTest, EofMidLineReturnsThePartialLineOnceThenEof) {
  std::vector<std::string> tokens;
  absl::Status first_end, second_end;
  Loopback lb([&](FiberConn& conn) {
    BufferedReader reader(conn);
    for (int i = 0; i < 2; ++i) {
      absl::StatusOr<std::string_view> t = reader.ReadUntil('\n');
      ASSERT_TRUE(t.ok()) << t.status();
      tokens.emplace_back(*t);
    }
    first_end = reader.ReadUntil('\n').status();
    second_end = reader.ReadLine().status();
  });
  ASSERT_TRUE(lb.ok());
  ASSERT_TRUE(lb.Send("one\ntw"));
  lb.CloseWrite();
  ASSERT_TRUE(lb.WaitDone());
  EXPECT_EQ(tokens, (std::vector<std::string>{"one\n", "tw"})) << "no '\\n': the stream ended";
  EXPECT_TRUE(IsPeerClosed(first_end)) << first_end;
  EXPECT_TRUE(IsPeerClosed(second_end)) << second_end;
}

TEST(BufferedReaderTest, LinesAreViewsIntoTheReadersBuffer) {
  bool first_aliases = false, second_aliases = false;
  Loopback lb([&](FiberConn& conn) {
    BufferedReader reader(conn);
    absl::StatusOr<std::string_view> all = reader.Peek(11);  // the buffered bytes
    ASSERT_TRUE(all.ok()) << all.status();
    const char* base = all->data();
    absl::StatusOr<std::string_view> a = reader.ReadLine();
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(*a, "alpha");
    first_aliases = a->data() == base;
    absl::StatusOr<std::string_view> b = reader.ReadLine();
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(*b, "beta");
    second_aliases = b->data() == base + 6;
  });
  ASSERT_TRUE(lb.ok());
  ASSERT_TRUE(lb.Send("alpha\nbeta\n"));
  ASSERT_TRUE(lb.WaitDone());
  EXPECT_TRUE(first_aliases) << "the line was copied";
  EXPECT_TRUE(second_aliases) << "the line was copied";
}

TEST(BufferedReaderTest, NoAllocationPerLineOnceTheBufferHasGrown) {
  const std::string long_line = std::string(30000, 'L') + "\n";  // grows the buffer
  std::string shorts;
  for (int i = 0; i < 1000; ++i) absl::StrAppend(&shorts, "line ", i % 10, "\n");
  const size_t total = long_line.size() + shorts.size();  // under 64 KiB
  uint64_t allocations = ~uint64_t{0};
  int lines = 0;
  Loopback lb([&](FiberConn& conn) {
    BufferedReader reader(conn);
    ASSERT_TRUE(reader.Peek(total).ok());  // all buffered: the reads below never park
    const uint64_t before = thread_allocations;
    for (int i = 0; i < 1001; ++i) {
      absl::StatusOr<std::string_view> l = reader.ReadLine();
      if (!l.ok()) break;
      ++lines;
    }
    allocations = thread_allocations - before;
  });
  ASSERT_TRUE(lb.ok());
  ASSERT_TRUE(lb.Send(long_line + shorts));
  ASSERT_TRUE(lb.WaitDone());
  EXPECT_EQ(lines, 1001);
  EXPECT_EQ(allocations, 0u);
}

TEST(BufferedReaderTest, PeekReadAndDiscard) {
  std::atomic<bool> drained{false};
  std::string peeked, after_discard, rest, direct;
  size_t discarded = 0;
  absl::Status end;
  Loopback lb([&](FiberConn& conn) {
    BufferedReader reader(conn, {.buffer_size = 16, .max_token_size = 64});
    ASSERT_TRUE(reader.Peek(10).ok());  // all ten buffered
    absl::StatusOr<std::string_view> p = reader.Peek(4);
    ASSERT_TRUE(p.ok());
    peeked = std::string(*p);
    discarded = reader.Discard(2);
    char small[3];
    absl::StatusOr<size_t> n = reader.Read(small);
    ASSERT_TRUE(n.ok());
    after_discard.assign(small, *n);
    // Buffered bytes are returned without reading the connection.
    char big[64];
    n = reader.Read(big);
    ASSERT_TRUE(n.ok());
    rest.assign(big, *n);
    EXPECT_EQ(reader.Buffered(), 0u);
    EXPECT_TRUE(absl::IsResourceExhausted(reader.Peek(65).status())) << "past the limit";
    drained = true;
    // Empty buffer and a destination at least as large: read straight into it.
    n = reader.Read(big);
    ASSERT_TRUE(n.ok()) << n.status();
    direct.assign(big, *n);
    EXPECT_EQ(reader.Buffered(), 0u);
    end = reader.Read(big).status();
  });
  ASSERT_TRUE(lb.ok());
  ASSERT_TRUE(lb.Send("0123456789"));
  ASSERT_TRUE(WaitFor([&] { return drained.load(); }));
  ASSERT_TRUE(lb.Send("x"));  // only after the ten were read: a read of its own
  lb.CloseWrite();
  ASSERT_TRUE(lb.WaitDone());
  EXPECT_EQ(peeked, "0123");
  EXPECT_EQ(discarded, 2u);
  EXPECT_EQ(after_discard, "234");
  EXPECT_EQ(rest, "56789");
  EXPECT_EQ(direct, "x");
  EXPECT_TRUE(IsPeerClosed(end)) << end;
}

TEST(BufferedReaderTest, PeekPastEofKeepsTheBytes) {
  absl::Status peek;
  size_t buffered = 0;
  std::string read;
  absl::Status end;
  Loopback lb([&](FiberConn& conn) {
    BufferedReader reader(conn);
    peek = reader.Peek(5).status();
    buffered = reader.Buffered();
    char buf[16];
    absl::StatusOr<size_t> n = reader.Read(buf);
    ASSERT_TRUE(n.ok()) << n.status();
    read.assign(buf, *n);
    end = reader.Read(buf).status();
  });
  ASSERT_TRUE(lb.ok());
  ASSERT_TRUE(lb.Send("xy"));
  lb.CloseWrite();
  ASSERT_TRUE(lb.WaitDone());
  EXPECT_TRUE(IsPeerClosed(peek)) << peek;
  EXPECT_EQ(buffered, 2u);
  EXPECT_EQ(read, "xy");
  EXPECT_TRUE(IsPeerClosed(end)) << end;
}

// A second fiber must not touch the buffer a parked call is filling.
TEST(BufferedReaderTest, ACallFromASecondFiberWhileOneIsParkedIsRefused) {
  std::atomic<bool> refused{false};
  std::string line;
  Loopback lb([&](FiberConn& conn) {
    BufferedReader reader(conn);
    Spawn([&] {  // runs once the first fiber has parked in ReadLine
      EXPECT_TRUE(absl::IsFailedPrecondition(reader.ReadLine().status()));
      EXPECT_TRUE(absl::IsFailedPrecondition(reader.Peek(1).status()));
      char b[4];
      EXPECT_TRUE(absl::IsFailedPrecondition(reader.Read(b).status()));
      EXPECT_EQ(reader.Discard(1), 0u);
      EXPECT_EQ(reader.Buffered(), 0u);
      refused = true;  // the client sends only now, so the reader is still parked
    });
    absl::StatusOr<std::string_view> l = reader.ReadLine();
    ASSERT_TRUE(l.ok()) << l.status();
    line = std::string(*l);
  });
  ASSERT_TRUE(lb.ok());
  ASSERT_TRUE(WaitFor([&] { return refused.load(); }));
  ASSERT_TRUE(lb.Send("x\n"));
  ASSERT_TRUE(lb.WaitDone());
  EXPECT_EQ(line, "x");
}

}  // namespace
}  // namespace netloop::fiber
