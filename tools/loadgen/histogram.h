// A latency histogram with bounded relative error and no clipping: values in
// [2^k, 2^(k+1)) fall in one of 128 equal sub-buckets, so any reported
// percentile is within 1/128 (< 0.8%) of a recorded value, from 1 ns to 2^63
// ns. Fixed memory (~58 KiB), no allocation per Record. Not thread-safe: keep
// one per thread and Merge.
#ifndef NETLOOP_TOOLS_LOADGEN_HISTOGRAM_H_
#define NETLOOP_TOOLS_LOADGEN_HISTOGRAM_H_

#include <cstdint>
#include <vector>

namespace netloop::loadgen {

class Histogram {
 public:
  static constexpr int kSubBits = 7;
  static constexpr int kSub = 1 << kSubBits;
  // Relative error bound of every percentile.
  static constexpr double kRelativeError = 1.0 / kSub;

  Histogram();
  void Record(int64_t value);
  void Merge(const Histogram& other);
  void Clear();

  uint64_t count() const { return count_; }
  int64_t min() const { return count_ == 0 ? 0 : min_; }
  int64_t max() const { return max_; }
  double mean() const { return count_ == 0 ? 0 : static_cast<double>(sum_) / count_; }
  // The value at percentile p in [0, 100]; exact min/max at the ends.
  int64_t Percentile(double p) const;

 private:
  static int BucketOf(uint64_t v);
  static int64_t BucketMid(int bucket);

  std::vector<uint64_t> buckets_;
  uint64_t count_ = 0;
  int64_t min_ = 0;
  int64_t max_ = 0;
  __int128 sum_ = 0;
};

}  // namespace netloop::loadgen

#endif  // NETLOOP_TOOLS_LOADGEN_HISTOGRAM_H_
