// Ratios between two servers' figures taken repeat by repeat.
//
// The duel runs every server once per repeat, back to back, and the VM this
// project measures on moves whole repeats by 10-30% (host load it cannot
// see). A ratio of medians mixes runs minutes apart; pairing each server's
// run with the reference's run of the same repeat cancels that drift, the way
// a blocked experiment does.
#ifndef NETLOOP_TOOLS_DUEL_PAIRED_RATIO_H_
#define NETLOOP_TOOLS_DUEL_PAIRED_RATIO_H_

#include <map>

namespace netloop::duel {

struct PairedRatio {
  double median = 0;  // 0: no repeat has a positive figure for both
  double min = 0;
  double max = 0;
};

// a[rep] / b[rep] for every repeat number present in both with positive
// figures; the median and range of those ratios.
PairedRatio Paired(const std::map<int, double>& a, const std::map<int, double>& b);

}  // namespace netloop::duel

#endif  // NETLOOP_TOOLS_DUEL_PAIRED_RATIO_H_
