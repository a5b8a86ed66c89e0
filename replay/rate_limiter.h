// The sample-to-insert ratio limiter of a replay table (Reverb's SampleToInsertRatio): how many
// items may be inserted or sampled right now. It only counts; the owning Table waits on its
// own mutex until permits appear. Thread-compatible: the Table calls it under its mutex.
#ifndef PRL_REPLAY_RATE_LIMITER_H_
#define PRL_REPLAY_RATE_LIMITER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/random/random.h"
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

// What a table's limiter allows as clients see it (v1::RateLimiterState), from the table's
// `info` (config with defaults filled, size, counters, can_insert/can_sample): the permits
// RateLimiter gives for those counters, 0 where `info` says the call would wait. Permits are
// at most 2^61 (no ratio limit).
v1::RateLimiterState RateLimiterStateOf(const v1::TableInfo& info);

// What a client of several shards last heard of one shard's table, for SplitSampleBatch.
struct ShardSampleState {
  // Items in the table.
  int64_t size = 0;
  // Items it can give now without waiting on its rate limiter.
  int64_t sample_permits = 0;
  // It holds min_size_to_sample items (below that it gives nothing until inserts arrive).
  bool ready = true;
  // Its rate limiter lets inserts in now, so the clients' inserts will make it more permits.
  bool takes_inserts = true;
};

// How many of `batch` items a sharded Sample asks each of `shards` for, so that the whole set
// keeps the ratio each shard's limiter holds for its share and no shard is asked for what it
// cannot give. While the shards can give the batch now (their permits add up to it), in
// proportion to their sizes, so that items are drawn about uniformly over the union, but no
// shard more than its permits (the excess goes to the others, again by size). When they
// cannot, each shard its permits, and the rest in equal parts to the shards that are ready and
// take inserts: clients spread inserts over the shards that take them, so those are the
// shards where permits appear. A shard whose limiter holds inserts until it is sampled thus
// gives what it has and is not asked to wait for inserts that will not come.
// With `rng`, fractions of an item are rounded at random, so that each shard's expected part is
// exactly its share (a small shard is not always rounded away); without, largest remainder.
std::vector<int> SplitSampleBatch(int batch, const std::vector<ShardSampleState>& shards,
                                  absl::BitGen* rng = nullptr);

// Splits `total` over `weights` in proportion (equal parts when no weight is positive): each
// gets the whole part of its share, and the items left over go to the largest fractions, or
// with `rng` at random with probability equal to each fraction (systematic sampling).
std::vector<int> Apportion(int total, const std::vector<double>& weights,
                           absl::BitGen* rng = nullptr);

// Checks a rate limiter config and fills its defaults (see replay.proto). Errors:
// INVALID_ARGUMENT naming the field (under `field_prefix`), the value and what is allowed.
absl::Status ValidateRateLimiterConfig(const std::string& field_prefix,
                                       v1::RateLimiterConfig* config);

}  // namespace prl::replay

#endif  // PRL_REPLAY_RATE_LIMITER_H_
