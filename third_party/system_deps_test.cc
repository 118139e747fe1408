// Proves the repositories declared by system_deps.bzl: every upstream label
// used here resolves, its headers come from the repository, and its library
// links and runs.
#include <liburing.h>

#include <cerrno>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/random/random.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "boost/context/stack_traits.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace {

using ::testing::HasSubstr;

absl::StatusOr<int> Sum(absl::Span<const int> values) {
  if (values.empty()) return absl::InvalidArgumentError("nothing to add");
  int total = 0;
  for (int v : values) total += v;
  return total;
}

TEST(SystemDepsTest, AbseilStatusStringsContainersAcrossThreads) {
  absl::flat_hash_map<std::string, int> counts;
  std::thread worker([&counts] {
    for (int i = 0; i < 100; ++i) ++counts[absl::StrCat("k", i % 10)];
  });
  worker.join();
  ASSERT_EQ(counts.size(), 10u);
  EXPECT_EQ(counts["k3"], 10);

  std::vector<int> values = {1, 2, 3};
  absl::StatusOr<int> sum = Sum(values);
  ASSERT_TRUE(sum.ok());
  EXPECT_EQ(*sum, 6);
  EXPECT_THAT(Sum({}).status().message(), HasSubstr("nothing"));
  EXPECT_EQ(absl::StrFormat("%05d|%s", 42, "x"), "00042|x");

  absl::AnyInvocable<int(int)> twice = [](int x) { return 2 * x; };
  EXPECT_EQ(twice(21), 42);
}

TEST(SystemDepsTest, AbseilTimeAndRandom) {
  absl::Time start = absl::Now();
  EXPECT_GT(start, absl::UnixEpoch());
  EXPECT_EQ(absl::FormatDuration(absl::Milliseconds(1500)), "1.5s");
  absl::BitGen gen;
  for (int i = 0; i < 100; ++i) {
    int v = absl::Uniform(gen, 3, 7);
    EXPECT_GE(v, 3);
    EXPECT_LT(v, 7);
  }
}

TEST(SystemDepsTest, Cli11ParsesFlags) {
  CLI::App app{"test"};
  int port = 0;
  app.add_option("--port", port);
  const char* argv[] = {"test", "--port", "9000"};
  app.parse(3, argv);
  EXPECT_EQ(port, 9000);
}

TEST(SystemDepsTest, BoostContextLinks) {
  // stack_traits lives in libboost_context, so this proves the link line.
  EXPECT_GE(boost::context::stack_traits::default_size(),
            boost::context::stack_traits::minimum_size());
}

TEST(SystemDepsTest, LiburingSetsUpARing) {
  io_uring ring;
  int rc = io_uring_queue_init(4, &ring, 0);
  if (rc == -ENOSYS || rc == -EPERM) {
    GTEST_SKIP() << "io_uring is not allowed here: " << rc;
  }
  ASSERT_EQ(rc, 0);
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  ASSERT_NE(sqe, nullptr);
  io_uring_prep_nop(sqe);
  sqe->user_data = 7;
  ASSERT_EQ(io_uring_submit(&ring), 1);
  io_uring_cqe* cqe = nullptr;
  ASSERT_EQ(io_uring_wait_cqe(&ring, &cqe), 0);
  EXPECT_EQ(cqe->user_data, 7u);
  EXPECT_EQ(cqe->res, 0);
  io_uring_cqe_seen(&ring, cqe);
  io_uring_queue_exit(&ring);
}

}  // namespace
