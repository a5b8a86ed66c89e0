#include "replay/rate_limiter.h"

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

}  // namespace
}  // namespace prl::replay
