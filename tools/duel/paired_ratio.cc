#include "tools/duel/paired_ratio.h"

#include <algorithm>
#include <vector>

namespace netloop::duel {

PairedRatio Paired(const std::map<int, double>& a, const std::map<int, double>& b) {
  std::vector<double> ratios;
  for (const auto& [rep, num] : a) {
    auto den = b.find(rep);
    if (den == b.end() || num <= 0 || den->second <= 0) continue;
    ratios.push_back(num / den->second);
  }
  if (ratios.empty()) return {};
  std::sort(ratios.begin(), ratios.end());
  const size_t n = ratios.size();
  const double median = n % 2 ? ratios[n / 2] : (ratios[n / 2 - 1] + ratios[n / 2]) / 2;
  return {median, ratios.front(), ratios.back()};
}

}  // namespace netloop::duel
