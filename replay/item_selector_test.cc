#include "replay/item_selector.h"

#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace prl::replay {
namespace {

// Pearson's chi-square statistic of observed counts against expected probabilities.
double ChiSquare(const std::map<uint64_t, int>& counts, const std::map<uint64_t, double>& p,
                 int n) {
  double chi2 = 0;
  for (const auto& [key, prob] : p) {
    const double expected = prob * n;
    const double observed = counts.count(key) ? counts.at(key) : 0;
    chi2 += (observed - expected) * (observed - expected) / expected;
  }
  return chi2;
}

// 99.9% quantile of chi-square with 9 degrees of freedom.
constexpr double kChi2Df9 = 27.88;

TEST(UniformSelectorTest, FrequenciesAreUniformAfterDeletes) {
  UniformSelector s;
  for (uint64_t k = 0; k < 20; ++k) s.Insert(k, 1.0);
  for (uint64_t k = 0; k < 20; k += 2) s.Delete(k);  // 10 odd keys remain
  ASSERT_EQ(s.size(), 10u);
  std::mt19937 rng(7);
  std::map<uint64_t, int> counts;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    auto sel = s.Select(rng);
    ASSERT_EQ(sel.key % 2, 1u);
    EXPECT_DOUBLE_EQ(sel.probability, 0.1);
    ++counts[sel.key];
  }
  std::map<uint64_t, double> p;
  for (uint64_t k = 1; k < 20; k += 2) p[k] = 0.1;
  EXPECT_LT(ChiSquare(counts, p, n), kChi2Df9);
}

TEST(PrioritizedSelectorTest, FrequenciesFollowPriorityToTheExponent) {
  const double a = 0.6;
  PrioritizedSelector s(a);
  std::map<uint64_t, double> weight;
  double total = 0;
  // more keys than the initial 64 leaves, so the tree grows; then delete most of them.
  for (uint64_t k = 0; k < 150; ++k) s.Insert(k, 1.0);
  for (uint64_t k = 0; k < 140; ++k) s.Delete(k);
  for (uint64_t k = 140; k < 150; ++k) {
    const double priority = static_cast<double>(k - 139);  // 1..10
    s.Update(k, priority);
    weight[k] = std::pow(priority, a);
    total += weight[k];
  }
  std::map<uint64_t, double> p;
  for (const auto& [k, w] : weight) p[k] = w / total;

  std::mt19937 rng(11);
  std::map<uint64_t, int> counts;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    auto sel = s.Select(rng);
    ASSERT_TRUE(p.count(sel.key)) << sel.key;
    EXPECT_NEAR(sel.probability, p[sel.key], 1e-12);
    ++counts[sel.key];
  }
  EXPECT_LT(ChiSquare(counts, p, n), kChi2Df9);
}

TEST(PrioritizedSelectorTest, ZeroPriorityItemsAreNeverSelectedUnlessAllAreZero) {
  PrioritizedSelector s(1.0);
  s.Insert(1, 0.0);
  s.Insert(2, 5.0);
  s.Insert(3, 0.0);
  std::mt19937 rng(3);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(s.Select(rng).key, 2u);
  s.Update(2, 0.0);
  std::map<uint64_t, int> counts;
  for (int i = 0; i < 3000; ++i) ++counts[s.Select(rng).key];
  EXPECT_EQ(counts.size(), 3u);
}

TEST(OrderedSelectorTest, FifoAndLifo) {
  OrderedSelector fifo(false), lifo(true);
  for (uint64_t k : {5, 6, 7}) {
    fifo.Insert(k, 0);
    lifo.Insert(k, 0);
  }
  std::mt19937 rng(1);
  EXPECT_EQ(fifo.Select(rng).key, 5u);
  EXPECT_EQ(lifo.Select(rng).key, 7u);
  fifo.Delete(5);
  lifo.Delete(7);
  EXPECT_EQ(fifo.Select(rng).key, 6u);
  EXPECT_EQ(lifo.Select(rng).key, 6u);
  EXPECT_DOUBLE_EQ(fifo.Select(rng).probability, 1.0);
}

TEST(LowestPrioritySelectorTest, PicksLowestThenOldest) {
  LowestPrioritySelector s;
  s.Insert(1, 3.0);
  s.Insert(2, 1.0);
  s.Insert(3, 1.0);
  std::mt19937 rng(1);
  EXPECT_EQ(s.Select(rng).key, 2u);
  s.Update(2, 9.0);
  EXPECT_EQ(s.Select(rng).key, 3u);
  s.Delete(3);
  EXPECT_EQ(s.Select(rng).key, 1u);
}

TEST(CreateSelectorTest, ConfigNamesMapToStrategies) {
  std::mt19937 rng(1);
  auto lifo = CreateSampler(v1::SAMPLER_LIFO, 0.6);
  lifo->Insert(1, 1);
  lifo->Insert(2, 1);
  EXPECT_EQ(lifo->Select(rng).key, 2u);
  auto remover = CreateRemover(v1::REMOVER_UNSPECIFIED);
  remover->Insert(1, 1);
  remover->Insert(2, 1);
  EXPECT_EQ(remover->Select(rng).key, 1u);
}

}  // namespace
}  // namespace prl::replay
