// A short soak (tools/soak): both echo models, churn, resets, slow readers,
// random sizes, every byte checked, and the descriptor count back where it
// started. The 10-minute run is `bazel run -c opt //tools:soak`.
#include "gtest/gtest.h"
#include "tools/soak/soak.h"

namespace netloop {
namespace {

TEST(SoakTest, ShortRunKeepsEveryByteAndGivesBackEveryDescriptor) {
  soak::SoakOptions o;
  o.duration = absl::Seconds(3);
  o.sample_every = absl::Seconds(1);
  o.print = false;
  soak::SoakResult r = soak::RunSoak(o);
  EXPECT_EQ(r.failure, "");
  ASSERT_GE(r.samples.size(), 2u);
  EXPECT_GT(r.samples.back().bytes_verified, 0u);
  EXPECT_GT(r.samples.back().rounds, 10u);
  EXPECT_EQ(r.descriptors_after, r.descriptors_before);
}

}  // namespace
}  // namespace netloop
