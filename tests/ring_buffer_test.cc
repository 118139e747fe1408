#include "reactor/ring_buffer.h"

#ifndef _WIN32
#include <fcntl.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <utility>

#include "bench/alloc_counter.h"
#include "gtest/gtest.h"

namespace netloop {
namespace {

std::string Contents(const RingBuffer& rb) {
  RingBuffer::Views v = rb.Peek(rb.size());
  return std::string(v.first) + std::string(v.second);
}

// Bytes that differ from their neighbours, so a misplaced or reordered byte
// shows up in a comparison.
std::string Pattern(size_t n, int seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed * 17 + 7) % 251);
  return s;
}

// Puts the ring into a state with `head` as its start offset and `size`
// bytes, returning what it holds. The ring must be fresh.
std::string Prepare(RingBuffer& rb, size_t head, size_t size) {
  // One byte more than `head`, so dropping `head` bytes does not empty the
  // ring (which would move the start back to 0).
  rb.Append(std::string(head + 1, '#'));
  EXPECT_EQ(rb.Discard(head), head);
  std::string rest = Pattern(size - 1, static_cast<int>(head));
  rb.Append(rest);
  return "#" + rest;
}

TEST(RingBufferTest, DefaultOwnsNoMemoryAndIsSmall) {
  EXPECT_LE(sizeof(RingBuffer), 24u);
  uint64_t before = bench::Allocations();
  RingBuffer rb;
  EXPECT_EQ(rb.capacity(), 0u);
  EXPECT_TRUE(rb.empty());
  EXPECT_EQ(rb.Peek(10).size(), 0u);
  EXPECT_EQ(rb.Discard(10), 0u);
  EXPECT_EQ(rb.MakeContiguous(10).size(), 0u);
  iovec iov[2];
  EXPECT_EQ(rb.ReadableIovecs(iov), 0);
  rb.Append(std::string_view());
  rb.ReleaseIfEmpty();
  rb.ShrinkToFit();
  EXPECT_EQ(bench::Allocations(), before);
  EXPECT_EQ(rb.capacity(), 0u);
}

TEST(RingBufferTest, CapacityIsMinimumThenPowerOfTwoThenDoubles) {
  RingBuffer small;
  small.Append("x");
  EXPECT_EQ(small.capacity(), RingBuffer::kMinCapacity);
  small.Append(std::string(1023, 'y'));
  EXPECT_EQ(small.capacity(), 1024u) << "exactly full still fits";
  small.Append("z");
  EXPECT_EQ(small.capacity(), 2048u);

  RingBuffer big;
  big.Append(std::string(3000, 'b'));
  EXPECT_EQ(big.capacity(), 4096u);
  big.Discard(2999);
  EXPECT_EQ(big.capacity(), 4096u) << "never shrinks implicitly";
}

TEST(RingBufferTest, WrapsAndPeeksTwoPieces) {
  RingBuffer rb;
  rb.Append(std::string(1000, 'a'));
  ASSERT_EQ(rb.capacity(), 1024u);
  EXPECT_EQ(rb.Discard(900), 900u);
  rb.Append(std::string(200, 'b'));  // 100 a's at 900..1000, then b's wrap
  RingBuffer::Views v = rb.Peek(1000);
  EXPECT_EQ(v.size(), 300u);
  EXPECT_EQ(v.first, std::string(100, 'a') + std::string(24, 'b'));
  EXPECT_EQ(v.second, std::string(176, 'b'));
  EXPECT_EQ(rb.capacity(), 1024u) << "no growth needed";
  // A prefix that ends before the wrap is one piece; one that crosses it
  // is cut exactly at n.
  EXPECT_TRUE(rb.Peek(124).second.empty());
  RingBuffer::Views part = rb.Peek(130);
  EXPECT_EQ(part.first.size(), 124u);
  EXPECT_EQ(part.second, "bbbbbb");
}

TEST(RingBufferTest, GrowWhileWrappedKeepsOrderAndLinearises) {
  RingBuffer rb;
  std::string expected = Prepare(rb, 1000, 60);  // wraps at 1024
  ASSERT_FALSE(rb.Peek(rb.size()).second.empty());
  std::string more = Pattern(2000, 3);
  rb.Append(more);
  expected += more;
  EXPECT_EQ(rb.capacity(), 4096u);
  EXPECT_TRUE(rb.Peek(rb.size()).second.empty()) << "growth moves data to offset 0";
  EXPECT_EQ(Contents(rb), expected);
}

TEST(RingBufferTest, DiscardingEverythingRestartsAtOffsetZero) {
  RingBuffer rb;
  Prepare(rb, 1000, 10);
  EXPECT_EQ(rb.Discard(100), 10u) << "returns what was there";
  EXPECT_TRUE(rb.empty());
  // Had the start stayed at 1010, these bytes would wrap.
  std::string next = Pattern(1000, 9);
  rb.Append(next);
  EXPECT_TRUE(rb.Peek(1000).second.empty());
  EXPECT_EQ(rb.Peek(1000).first, next);
}

// Each case lands in a different branch of MakeContiguous: the gap absorbs
// the front piece, the gap absorbs the back piece, or neither (rotation).
struct ContiguousCase {
  size_t head;
  size_t size;
};
class MakeContiguousTest : public testing::TestWithParam<ContiguousCase> {};

TEST_P(MakeContiguousTest, JoinsWrappedBytesWithoutAllocating) {
  RingBuffer rb;
  std::string expected = Prepare(rb, GetParam().head, GetParam().size);
  ASSERT_EQ(rb.capacity(), 1024u);
  ASSERT_FALSE(rb.Peek(rb.size()).second.empty()) << "setup must wrap";
  uint64_t before = bench::Allocations();
  std::string_view all = rb.MakeContiguous(rb.size());
  EXPECT_EQ(bench::Allocations(), before);
  EXPECT_EQ(rb.capacity(), 1024u);
  EXPECT_EQ(all, expected);
  EXPECT_TRUE(rb.Peek(rb.size()).second.empty());
  EXPECT_EQ(Contents(rb), expected);
  // The ring still works as a ring afterwards.
  std::string more = Pattern(1024 - rb.size(), 5);
  rb.Append(more);
  EXPECT_EQ(rb.capacity(), 1024u);
  EXPECT_EQ(Contents(rb), expected + more);
}

INSTANTIATE_TEST_SUITE_P(Branches, MakeContiguousTest,
                         testing::Values(ContiguousCase{1010, 30},    // gap > front
                                         ContiguousCase{600, 600},    // gap == front
                                         ContiguousCase{100, 974},    // gap == back
                                         ContiguousCase{300, 900},    // front > gap > back
                                         ContiguousCase{500, 1020},   // rotate
                                         ContiguousCase{1023, 1024},  // full: rotate
                                         ContiguousCase{1, 1024}));   // full: rotate

TEST(RingBufferTest, MakeContiguousOfAContiguousPrefixMovesNothing) {
  RingBuffer rb;
  std::string expected = Prepare(rb, 900, 300);
  const char* before = rb.Peek(1).first.data();
  std::string_view prefix = rb.MakeContiguous(50);
  EXPECT_EQ(prefix.data(), before);
  EXPECT_EQ(prefix, expected.substr(0, 50));
  EXPECT_FALSE(rb.Peek(rb.size()).second.empty()) << "still wrapped";
  EXPECT_EQ(rb.MakeContiguous(5000), expected) << "n is clamped to size()";
}

TEST(RingBufferTest, ReleaseOnlyWhenEmptyAndShrinkToFit) {
  RingBuffer rb;
  rb.Append("abc");
  rb.ReleaseIfEmpty();
  EXPECT_EQ(rb.capacity(), 1024u) << "holds bytes: must keep them";
  EXPECT_EQ(Contents(rb), "abc");
  rb.Discard(3);
  rb.ReleaseIfEmpty();
  EXPECT_EQ(rb.capacity(), 0u);
  rb.Append("xyz");
  EXPECT_EQ(Contents(rb), "xyz");

  std::string expected = Pattern(9000, 1);
  rb.Clear();
  rb.Append(expected);
  EXPECT_EQ(rb.capacity(), 16384u);
  rb.Discard(8000);
  expected.erase(0, 8000);
  rb.ShrinkToFit();
  EXPECT_EQ(rb.capacity(), 1024u);
  EXPECT_EQ(Contents(rb), expected);
  rb.Release();
  EXPECT_EQ(rb.capacity(), 0u);
  EXPECT_TRUE(rb.empty());
}

TEST(RingBufferTest, MoveTransfersStorage) {
  RingBuffer a;
  std::string expected = Prepare(a, 1000, 100);
  const char* storage = a.Peek(1).first.data();
  RingBuffer b(std::move(a));
  EXPECT_EQ(a.capacity(), 0u);  // NOLINT(bugprone-use-after-move): documented state
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(b.Peek(1).first.data(), storage);
  EXPECT_EQ(Contents(b), expected);
  RingBuffer c;
  c.Append("old");
  c = std::move(b);
  EXPECT_EQ(Contents(c), expected);
  EXPECT_EQ(b.capacity(), 0u);  // NOLINT(bugprone-use-after-move)
}

TEST(RingBufferTest, IovecViewsAcrossTheWrap) {
  RingBuffer rb;
  iovec w[2];
  ASSERT_EQ(rb.WritableIovecs(w, 0), 1) << "allocates, one piece when empty";
  EXPECT_EQ(w[0].iov_len, 1024u);

  std::string expected = Prepare(rb, 1000, 1);  // head 1000, one byte
  ASSERT_EQ(rb.WritableIovecs(w, 100), 2);
  EXPECT_EQ(w[0].iov_len, 23u);
  EXPECT_EQ(w[1].iov_len, 1000u);
  std::string fill = Pattern(100, 2);
  std::memcpy(w[0].iov_base, fill.data(), 23);
  std::memcpy(w[1].iov_base, fill.data() + 23, 77);
  rb.Commit(100);
  expected += fill;
  iovec r[2];
  ASSERT_EQ(rb.ReadableIovecs(r), 2);
  EXPECT_EQ(r[0].iov_len + r[1].iov_len, rb.size());
  std::string out = std::string(static_cast<char*>(r[0].iov_base), r[0].iov_len) +
                    std::string(static_cast<char*>(r[1].iov_base), r[1].iov_len);
  EXPECT_EQ(out, expected);

  // Needing more than is free grows (to the power of two that holds the
  // bytes plus min_free), keeping the bytes in order; the data then starts
  // at 0, so the free space is one piece.
  ASSERT_EQ(rb.WritableIovecs(w, 1500), 1);
  EXPECT_EQ(rb.capacity(), 2048u);
  EXPECT_EQ(w[0].iov_len, rb.capacity() - rb.size());
  EXPECT_EQ(Contents(rb), expected);

  char p1[] = "12";
  char p2[] = "345";
  iovec in[3] = {{p1, 2}, {nullptr, 0}, {p2, 3}};
  rb.Append(in, 3);
  EXPECT_EQ(Contents(rb), expected + "12345");
}

TEST(RingBufferTest, AppendIovecAcrossTheWrapAndGrowth) {
  RingBuffer rb;
  std::string expected = Prepare(rb, 1020, 2);
  std::string a = Pattern(10, 4), b = Pattern(1500, 5);
  iovec in[2] = {{a.data(), a.size()}, {b.data(), b.size()}};
  rb.Append(in, 2);
  EXPECT_EQ(Contents(rb), expected + a + b);
  EXPECT_EQ(rb.capacity(), 2048u);
}

#ifndef _WIN32  // no pipe2/readv/writev: the Windows backend's tests cover its own paths
// Moves bytes through a pipe with writev/readv on the ring's own iovecs: the
// zero-copy paths a connection uses.
TEST(RingBufferTest, WritevAndReadvThroughAPipe) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
  RingBuffer out, in;
  std::string expected = Prepare(out, 1000, 500);  // wrapped: writev of 2
  iovec iov[2];
  int n = out.ReadableIovecs(iov);
  ASSERT_EQ(n, 2);
  ssize_t written = writev(fds[1], iov, n);
  ASSERT_EQ(written, 500);
  out.Discard(static_cast<size_t>(written));
  EXPECT_TRUE(out.empty());

  Prepare(in, 900, 1);  // one placeholder byte; the free space wraps
  n = in.WritableIovecs(iov, 500);
  ASSERT_EQ(n, 2);
  ssize_t got = readv(fds[0], iov, n);
  ASSERT_EQ(got, 500);
  in.Commit(static_cast<size_t>(got));
  in.Discard(1);
  EXPECT_EQ(Contents(in), expected);
  close(fds[0]);
  close(fds[1]);
}
#endif

TEST(RingBufferTest, SteadyStreamingDoesNotAllocate) {
  RingBuffer rb;
  std::string msg = Pattern(700, 6);  // does not divide 1024: data wraps
  rb.Append(msg);
  rb.Append(msg);  // grows to 2048 once: room for the 1400 bytes peak below
  rb.Discard(msg.size());
  uint64_t before = bench::Allocations();
  for (int i = 0; i < 1000; ++i) {
    rb.Append(msg);
    ASSERT_EQ(rb.Discard(msg.size()), msg.size());
  }
  EXPECT_EQ(bench::Allocations(), before);
  EXPECT_EQ(rb.capacity(), 2048u);
  EXPECT_EQ(Contents(rb), msg);
}

// Every operation, in random order and sizes, against std::string; the whole
// contents and the invariants are compared after each one.
TEST(RingBufferTest, RandomizedAgainstString) {
  std::mt19937 rng(12345);
  auto uniform = [&rng](size_t n) { return n == 0 ? size_t{0} : size_t{rng() % n}; };
  auto random_bytes = [&rng](size_t n) {
    std::string s(n, '\0');
    for (char& c : s) c = static_cast<char>(rng());
    return s;
  };
  RingBuffer rb;
  std::string model;
  for (int step = 0; step < 20000; ++step) {
    int op = static_cast<int>(uniform(10));
    // Keep the contents small enough that comparing them every step is cheap.
    if (model.size() > 12000) op = 2;
    switch (op) {
      case 0:
      case 1: {
        std::string data = random_bytes(uniform(1500));
        rb.Append(data);
        model += data;
        break;
      }
      case 2: {
        size_t n = uniform(1600);
        size_t k = rb.Discard(n);
        ASSERT_EQ(k, std::min(n, model.size()));
        model.erase(0, k);
        break;
      }
      case 3: {
        size_t n = uniform(2000);
        RingBuffer::Views v = rb.Peek(n);
        ASSERT_EQ(std::string(v.first) + std::string(v.second), model.substr(0, n));
        ASSERT_TRUE(v.second.empty() || !v.first.empty());
        break;
      }
      case 4: {
        size_t n = uniform(3000);
        size_t cap = rb.capacity();
        ASSERT_EQ(rb.MakeContiguous(n), model.substr(0, n));
        ASSERT_EQ(rb.capacity(), cap);
        break;
      }
      case 5: {
        std::string a = random_bytes(uniform(300)), b = random_bytes(uniform(900));
        iovec in[2] = {{a.data(), a.size()}, {b.data(), b.size()}};
        rb.Append(in, 2);
        model += a + b;
        break;
      }
      case 6: {
        iovec w[2];
        int n = rb.WritableIovecs(w, uniform(2000));
        size_t room = w[0].iov_len + (n == 2 ? w[1].iov_len : 0);
        ASSERT_EQ(room, rb.capacity() - rb.size());
        std::string data = random_bytes(uniform(room + 1));
        size_t first = std::min(data.size(), w[0].iov_len);
        std::memcpy(w[0].iov_base, data.data(), first);
        if (first < data.size()) std::memcpy(w[1].iov_base, data.data() + first, data.size() - first);
        rb.Commit(data.size());
        model += data;
        break;
      }
      case 7: {
        iovec r[2];
        int n = rb.ReadableIovecs(r);
        std::string out;
        for (int i = 0; i < n; ++i) out.append(static_cast<char*>(r[i].iov_base), r[i].iov_len);
        ASSERT_EQ(out, model);
        break;
      }
      case 8:
        rb.ReleaseIfEmpty();
        if (model.empty()) {
          ASSERT_EQ(rb.capacity(), 0u);
        }
        break;
      case 9:
        if (uniform(8) == 0) rb.ShrinkToFit();
        break;
    }
    ASSERT_EQ(rb.size(), model.size()) << "step " << step;
    ASSERT_EQ(Contents(rb), model) << "step " << step;
    size_t cap = rb.capacity();
    ASSERT_TRUE(cap == 0 || (cap >= RingBuffer::kMinCapacity && (cap & (cap - 1)) == 0));
    ASSERT_LE(rb.size(), cap);
  }
}

}  // namespace
}  // namespace netloop
