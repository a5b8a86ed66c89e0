// The sample-to-insert ratio limiter of a replay table (Reverb's SampleToInsertRatio): how many
// items may be inserted or sampled right now. It only counts; the owning Table waits on its
// own mutex until permits appear. Thread-compatible: the Table calls it under its mutex.
#ifndef PRL_REPLAY_RATE_LIMITER_H_
#define PRL_REPLAY_RATE_LIMITER_H_

#include <cstdint>

#include "absl/status/status.h"
#include "proto/replay.pb.h"

namespace prl::replay {

class RateLimiter {
 public:
  // `config` must have passed ValidateRateLimiterConfig (defaults filled).
  explicit RateLimiter(const v1::RateLimiterConfig& config);

  // Items that may be inserted now into a table holding `size` items (0 = an insert must
  // wait). A table below min_size_to_sample always accepts enough items to reach it, so a
  // table drained by max_times_sampled can never leave both sides waiting.
  int64_t InsertPermits(int64_t size) const;
  // Items that may be sampled now from a table holding `size` items (0 = must wait).
  int64_t SamplePermits(int64_t size) const;

  void OnInserted(int64_t n) { inserted_ += n; }
  void OnSampled(int64_t n) { sampled_ += n; }

  int64_t inserted() const { return inserted_; }
  int64_t sampled() const { return sampled_; }
  // Restores counters from a checkpoint.
  void SetCounts(int64_t inserted, int64_t sampled) {
    inserted_ = inserted;
    sampled_ = sampled;
  }

 private:
  const int64_t min_size_;
  const double samples_per_insert_;
  const double min_diff_;
  const double max_diff_;
  int64_t inserted_ = 0;
  int64_t sampled_ = 0;
};

// Checks a rate limiter config and fills its defaults (see replay.proto). Errors:
// INVALID_ARGUMENT naming the field (under `field_prefix`), the value and what is allowed.
absl::Status ValidateRateLimiterConfig(const std::string& field_prefix,
                                       v1::RateLimiterConfig* config);

}  // namespace prl::replay

#endif  // PRL_REPLAY_RATE_LIMITER_H_
