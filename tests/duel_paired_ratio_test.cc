#include "gtest/gtest.h"
#include "tools/duel/paired_ratio.h"

namespace netloop::duel {
namespace {

TEST(PairedRatioTest, RatiosAreTakenWithinEachRepeat) {
  // Two of three repeats say the server costs 1.1x the floor. A ratio of the
  // medians (1.1 / 2.0) would say 0.55, mixing the floor's slow repeats with
  // the server's fast one; the paired median says 1.1.
  const std::map<int, double> server = {{0, 1.1}, {1, 2.2}, {2, 1.0}};
  const std::map<int, double> floor = {{0, 1.0}, {1, 2.0}, {2, 2.0}};
  const PairedRatio q = Paired(server, floor);
  EXPECT_DOUBLE_EQ(q.median, 1.1);
  EXPECT_DOUBLE_EQ(q.min, 0.5);
  EXPECT_DOUBLE_EQ(q.max, 1.1);
}

TEST(PairedRatioTest, MedianAndRangeOverRepeats) {
  const PairedRatio q =
      Paired({{0, 0.9}, {1, 1.2}, {2, 1.0}, {3, 1.5}}, {{0, 1.0}, {1, 1.0}, {2, 1.0}, {3, 1.0}});
  EXPECT_DOUBLE_EQ(q.median, 1.1);  // even count: the mean of the middle two
  EXPECT_DOUBLE_EQ(q.min, 0.9);
  EXPECT_DOUBLE_EQ(q.max, 1.5);
}

TEST(PairedRatioTest, RepeatsMissingOnEitherSideOrEmptyAreLeftOut) {
  // Repeat 1: the reference failed; repeat 2: the server has no figure (0);
  // repeat 3: only the server ran.
  const PairedRatio q = Paired({{0, 2.0}, {1, 5.0}, {2, 0.0}, {3, 9.0}}, {{0, 1.0}, {2, 1.0}});
  EXPECT_DOUBLE_EQ(q.median, 2.0);
  EXPECT_DOUBLE_EQ(q.min, 2.0);
  EXPECT_DOUBLE_EQ(q.max, 2.0);
}

TEST(PairedRatioTest, NoCommonRepeatGivesNoRatio) {
  const PairedRatio q = Paired({{0, 1.0}}, {{1, 1.0}});
  EXPECT_EQ(q.median, 0);
  EXPECT_EQ(Paired({}, {}).median, 0);
}

}  // namespace
}  // namespace netloop::duel
