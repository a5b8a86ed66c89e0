// Jittered exponential backoff for retrying calls: each delay is drawn uniformly from
// [d/2, d], and d doubles after each failure up to a cap. Not thread-safe: one per retry loop.
#ifndef PRL_ACTOR_BACKOFF_H_
#define PRL_ACTOR_BACKOFF_H_

#include <algorithm>

#include "absl/random/distributions.h"
#include "absl/random/random.h"
#include "absl/time/time.h"

namespace prl::actor {

class Backoff {
 public:
  Backoff(absl::Duration initial, absl::Duration max)
      : initial_(initial), max_(std::max(initial, max)), next_(initial) {}

  // The delay before the next attempt; doubles the one after.
  absl::Duration Next() {
    const absl::Duration delay = next_ * absl::Uniform(rng_, 0.5, 1.0);
    next_ = std::min(next_ * 2, max_);
    return delay;
  }
  // Back to the initial delay (after a success).
  void Reset() { next_ = initial_; }
  // True when the previous call was a success (no failure since Reset).
  bool fresh() const { return next_ == initial_; }

 private:
  const absl::Duration initial_;
  const absl::Duration max_;
  absl::Duration next_;
  absl::BitGen rng_;
};

}  // namespace prl::actor

#endif  // PRL_ACTOR_BACKOFF_H_
