#include "replay/rate_limiter.h"

#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl::replay {
namespace {

using ::testing::HasSubstr;

v1::RateLimiterConfig Config(int64_t min_size, double spi, double error_buffer) {
  v1::RateLimiterConfig c;
  c.set_min_size_to_sample(min_size);
  c.set_samples_per_insert(spi);
  c.set_error_buffer(error_buffer);
  EXPECT_TRUE(ValidateRateLimiterConfig("rate_limiter", &c).ok());
  return c;
}

TEST(RateLimiterTest, MinSizeOnly) {
  RateLimiter limiter(Config(3, 0, 0));
  EXPECT_GT(limiter.InsertPermits(100), 1000000);
  EXPECT_EQ(limiter.SamplePermits(2), 0);
  EXPECT_GT(limiter.SamplePermits(3), 1000000);
}

TEST(RateLimiterTest, RatioHoldsWithinErrorBuffer) {
  // 4 samples per insert, buffer 8, min size 2: center = 8, diff in [0, 16].
  RateLimiter limiter(Config(2, 4, 8));
  // before any sample, inserts are allowed until diff = 4 * inserted reaches 16.
  EXPECT_EQ(limiter.InsertPermits(100), 4);
  limiter.OnInserted(4);
  EXPECT_EQ(limiter.InsertPermits(100), 0);
  // diff 16: 16 samples allowed before diff hits min_diff 0.
  EXPECT_EQ(limiter.SamplePermits(4), 16);
  limiter.OnSampled(10);
  EXPECT_EQ(limiter.SamplePermits(4), 6);
  // diff 6 -> inserts allowed while 6 + 4k <= 16: k = 2.
  EXPECT_EQ(limiter.InsertPermits(100), 2);
  limiter.OnSampled(6);
  EXPECT_EQ(limiter.SamplePermits(4), 0);
  EXPECT_EQ(limiter.InsertPermits(100), 4);
}

TEST(RateLimiterTest, TableBelowMinSizeAlwaysAcceptsInserts) {
  // spi 2, buffer 2, min size 100: 101 inserts, 4 samples (the items removed by
  // max_times_sampled), 2 more inserts: the table holds 99 and the ratio is at its bound, yet
  // the table must be able to refill to its minimum.
  RateLimiter limiter(Config(100, 2, 2));
  limiter.OnInserted(103);
  limiter.OnSampled(4);
  EXPECT_EQ(limiter.SamplePermits(99), 0);
  EXPECT_EQ(limiter.InsertPermits(99), 1);
  EXPECT_EQ(limiter.InsertPermits(100), 0);
}

TEST(RateLimiterTest, SamplesNeedMinSizeEvenWithRatioRoom) {
  RateLimiter limiter(Config(10, 1, 100));
  limiter.OnInserted(5);
  EXPECT_EQ(limiter.SamplePermits(5), 0);
  EXPECT_GT(limiter.SamplePermits(10), 0);
}

TEST(RateLimiterValidationTest, FillsDefaults) {
  v1::RateLimiterConfig c;
  ASSERT_TRUE(ValidateRateLimiterConfig("t.rate_limiter", &c).ok());
  EXPECT_EQ(c.min_size_to_sample(), 1);
  c.set_samples_per_insert(256);
  ASSERT_TRUE(ValidateRateLimiterConfig("t.rate_limiter", &c).ok());
  EXPECT_EQ(c.error_buffer(), 25600);
}

TEST(RateLimiterValidationTest, RejectsBadValuesNamingTheField) {
  v1::RateLimiterConfig c;
  c.set_samples_per_insert(-1);
  absl::Status s = ValidateRateLimiterConfig("tables[0].rate_limiter", &c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("tables[0].rate_limiter.samples_per_insert"));

  c.set_samples_per_insert(8);
  c.set_error_buffer(2);
  s = ValidateRateLimiterConfig("r", &c);
  EXPECT_THAT(s.message(), HasSubstr("r.error_buffer"));
  EXPECT_THAT(s.message(), HasSubstr(">= max(1, samples_per_insert) = 8"));

  c.set_min_size_to_sample(-3);
  EXPECT_THAT(ValidateRateLimiterConfig("r", &c).message(), HasSubstr("r.min_size_to_sample"));
}

TEST(RateLimiterStateTest, ReportsThePermitsOfTheCountsAndTheTablesOwnAnswer) {
  // 4 samples per insert, buffer 8, min size 2 (diff in [0, 16]); 3 inserted, 2 sampled:
  // diff 10, so 1 more insert (10 + 4 <= 16) and 10 samples (10 - 10 >= 0).
  v1::TableInfo info;
  *info.mutable_config()->mutable_rate_limiter() = Config(2, 4, 8);
  info.set_size(3);
  info.set_inserted_total(3);
  info.set_sampled_total(2);
  info.set_can_insert(true);
  info.set_can_sample(true);
  v1::RateLimiterState state = RateLimiterStateOf(info);
  EXPECT_EQ(state.size(), 3);
  EXPECT_EQ(state.inserted(), 3);
  EXPECT_EQ(state.sampled(), 2);
  EXPECT_EQ(state.insert_permits(), 1);
  EXPECT_EQ(state.sample_permits(), 10);
  // samples in flight took the permits: the table says a sample would wait.
  info.set_can_sample(false);
  EXPECT_EQ(RateLimiterStateOf(info).sample_permits(), 0);
}

ShardSampleState Shard(int64_t size, int64_t permits, bool ready = true,
                       bool takes_inserts = true) {
  return ShardSampleState{size, permits, ready, takes_inserts};
}

TEST(SplitSampleBatchTest, BySizeWhileThePermitsSuffice) {
  using ::testing::ElementsAre;
  // no ratio limit: permits are unlimited, the split follows the sizes.
  EXPECT_THAT(SplitSampleBatch(64, {Shard(50, 1 << 30), Shard(150, 1 << 30)}), ElementsAre(16, 48));
  // a small shard restored with many permits (its limiter holds inserts until it is sampled)
  // gives only its share by size; a large shard with few permits gives what it can, and the
  // rest goes to the others by size.
  EXPECT_THAT(SplitSampleBatch(100, {Shard(10, 500, true, false), Shard(900, 1000)}),
              ElementsAre(1, 99));
  EXPECT_THAT(SplitSampleBatch(100, {Shard(10, 500, true, false), Shard(900, 30), Shard(90, 100)}),
              ElementsAre(7, 30, 63));
  // a shard with no permits is not asked at all.
  EXPECT_THAT(SplitSampleBatch(8, {Shard(1000, 0), Shard(11, 80, true, false)}), ElementsAre(0, 8));
}

TEST(SplitSampleBatchTest, WhenShortEachGivesItsPermitsAndTheRestWaitsWhereInsertsGo) {
  using ::testing::ElementsAre;
  // 10 + 0 + 4 permits for 32: each gives its permits; the 18 missing are split over the
  // shards that take inserts (not the second, below its minimum size, nor the first, whose
  // limiter holds inserts).
  EXPECT_THAT(SplitSampleBatch(32, {Shard(100, 10, true, false), Shard(3, 0, false, true),
                                    Shard(100, 4), Shard(100, 0)}),
              ElementsAre(10, 0, 13, 9));
  // nobody ready yet: equal parts.
  EXPECT_THAT(SplitSampleBatch(5, {Shard(0, 0, false), Shard(2, 0, false)}), ElementsAre(3, 2));
  EXPECT_THAT(SplitSampleBatch(5, {}), ElementsAre());
}

TEST(SplitSampleBatchTest, RandomRoundingGivesASmallShardItsShareOnAverage) {
  // 4 items over sizes 11 and 1000: the small shard's share is 0.0435 items a batch, which
  // largest-remainder rounding always rounds away.
  const std::vector<ShardSampleState> shards = {Shard(11, 1 << 30), Shard(1000, 1 << 30)};
  EXPECT_EQ(SplitSampleBatch(4, shards)[0], 0);
  std::seed_seq seed = {7};
  absl::BitGen rng(seed);
  int small = 0;
  constexpr int kBatches = 20000;
  for (int i = 0; i < kBatches; ++i) {
    const std::vector<int> counts = SplitSampleBatch(4, shards, &rng);
    ASSERT_EQ(counts[0] + counts[1], 4);
    small += counts[0];
  }
  EXPECT_NEAR(static_cast<double>(small) / kBatches, 4.0 * 11 / 1011, 0.006);
}

}  // namespace
}  // namespace prl::replay
