// Proves the offline toolchain: Abseil status types, GoogleMock matchers and
// std::thread link and run (also under the sanitizer configs).
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace {

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError(absl::StrCat(x, " is odd"));
  return x / 2;
}

TEST(ToolchainSmokeTest, AbseilGmockAndThreads) {
  int result = 0;
  std::thread t([&] { result = *Half(8); });
  t.join();
  EXPECT_EQ(result, 4);
  EXPECT_THAT(Half(3).status().message(), testing::HasSubstr("odd"));
}

}  // namespace
