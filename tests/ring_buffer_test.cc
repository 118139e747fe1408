#include "reactor/ring_buffer.h"

#include <sys/uio.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>

#include "gtest/gtest.h"

namespace netloop {
namespace {

std::string Contents(const RingBuffer& rb) {
  RingBuffer::Views v = rb.Peek(rb.size());
  return std::string(v.first) + std::string(v.second);
}

TEST(RingBufferTest, DefaultOwnsNoMemory) {
  RingBuffer rb;
  EXPECT_EQ(rb.capacity(), 0u);
  EXPECT_TRUE(rb.empty());
  EXPECT_EQ(rb.Peek(10).size(), 0u);
  EXPECT_EQ(rb.Discard(10), 0u);
}

TEST(RingBufferTest, WrapsAndPeeksTwoPieces) {
  RingBuffer rb;
  rb.Append(std::string(1000, 'a'));
  ASSERT_EQ(rb.capacity(), 1024u);
  EXPECT_EQ(rb.Discard(900), 900u);
  rb.Append(std::string(200, 'b'));  // 100 a's at 900..1000, b's wrap past 1024
  RingBuffer::Views v = rb.Peek(1000);
  EXPECT_EQ(v.size(), 300u);
  EXPECT_FALSE(v.second.empty()) << "data should wrap";
  EXPECT_EQ(std::string(v.first) + std::string(v.second),
            std::string(100, 'a') + std::string(200, 'b'));
  // Peek of a prefix that fits before the wrap is one piece.
  EXPECT_TRUE(rb.Peek(50).second.empty());
  EXPECT_EQ(rb.capacity(), 1024u) << "no growth needed";
}

TEST(RingBufferTest, GrowWhileWrappedKeepsOrder) {
  RingBuffer rb;
  rb.Append(std::string(1000, 'x'));
  rb.Discard(990);
  rb.Append("0123456789abcdef0123456789");  // wraps
  rb.Append(std::string(2000, 'y'));         // grows
  EXPECT_GE(rb.capacity(), 2048u);
  EXPECT_EQ(Contents(rb), std::string(10, 'x') + "0123456789abcdef0123456789" +
                              std::string(2000, 'y'));
}

TEST(RingBufferTest, MakeContiguousAcrossWrap) {
  RingBuffer rb;
  rb.Append(std::string(1020, 'a'));
  rb.Discard(1020 - 10);  // head at 1010 of 1024
  rb.Append("HELLO, WRAPPED WORLD");
  ASSERT_FALSE(rb.Peek(rb.size()).second.empty());
  std::string expected = std::string(10, 'a') + "HELLO, WRAPPED WORLD";
  EXPECT_EQ(rb.MakeContiguous(rb.size()), expected);
  EXPECT_TRUE(rb.Peek(rb.size()).second.empty());
  EXPECT_EQ(Contents(rb), expected);
}

TEST(RingBufferTest, ReleaseWhenEmptyAndReuse) {
  RingBuffer rb;
  rb.Append("abc");
  rb.Discard(3);
  EXPECT_TRUE(rb.empty());
  rb.ReleaseIfEmpty();
  EXPECT_EQ(rb.capacity(), 0u);
  rb.Append("xyz");
  EXPECT_EQ(Contents(rb), "xyz");
}

TEST(RingBufferTest, IovecPaths) {
  RingBuffer rb;
  rb.Append(std::string(1000, 'a'));
  rb.Discard(1000);
  rb.Append(std::string(1000, 'b'));
  rb.Discard(999);  // head near the end
  iovec w[2];
  int n = rb.WritableIovecs(w, 100);
  ASSERT_EQ(n, 2);
  size_t room = w[0].iov_len + w[1].iov_len;
  EXPECT_EQ(room, rb.capacity() - rb.size());
  std::string fill(100, 'c');
  size_t first = std::min<size_t>(100, w[0].iov_len);
  memcpy(w[0].iov_base, fill.data(), first);
  memcpy(w[1].iov_base, fill.data() + first, 100 - first);
  rb.Commit(100);
  iovec r[2];
  int rn = rb.ReadableIovecs(r);
  std::string out;
  for (int i = 0; i < rn; ++i) out.append(static_cast<char*>(r[i].iov_base), r[i].iov_len);
  EXPECT_EQ(out, "b" + fill);
  iovec in[2] = {{const_cast<char*>("12"), 2}, {const_cast<char*>("345"), 3}};
  rb.Append(in, 2);
  EXPECT_EQ(Contents(rb), "b" + fill + "12345");
}

TEST(RingBufferTest, RandomizedAgainstString) {
  std::mt19937 rng(12345);
  RingBuffer rb;
  std::string model;
  for (int step = 0; step < 20000; ++step) {
    switch (rng() % 5) {
      case 0:
      case 1: {
        std::string data(rng() % 700, static_cast<char>('a' + step % 26));
        rb.Append(data);
        model += data;
        break;
      }
      case 2: {
        size_t n = rng() % 900;
        size_t k = rb.Discard(n);
        ASSERT_EQ(k, std::min(n, model.size()));
        model.erase(0, k);
        break;
      }
      case 3: {
        size_t n = rng() % 1200;
        ASSERT_EQ(std::string(rb.MakeContiguous(n)), model.substr(0, n));
        break;
      }
      case 4:
        if (rb.empty()) rb.ReleaseIfEmpty();
        break;
    }
    ASSERT_EQ(rb.size(), model.size());
    if (step % 97 == 0) ASSERT_EQ(Contents(rb), model) << "step " << step;
  }
}

}  // namespace
}  // namespace netloop
