// Where the training loop's batches come from: replay (learner/replay_feed.h) for RL, a
// dataset reader for prior training, a fake in tests. A feed produces in the background so an
// update never waits on the network while data is available.
//
// Thread-safe: the loop calls Next and UpdatePriorities from its thread; size and Stop may be
// called from any thread.
#ifndef PRL_LEARNER_BATCH_FEED_H_
#define PRL_LEARNER_BATCH_FEED_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "learner/algorithm.h"

namespace prl::learner {

class BatchFeed {
 public:
  virtual ~BatchFeed() = default;

  // Prepares the source (creates replay tables, opens a dataset) and starts producing.
  // Errors: what makes the source unusable (the run fails with it).
  virtual absl::Status Start() = 0;

  // The next batch, waiting at most `timeout` for one; nullopt when none arrived in time (not
  // enough data yet, a rate limiter holding samples, a source restarting) or after Stop.
  // Errors: a failure the feed cannot recover from.
  virtual absl::StatusOr<std::optional<Batch>> Next(absl::Duration timeout) = 0;

  // New priorities for keys of earlier batches (same order). Best effort: a failure is logged.
  virtual void UpdatePriorities(const std::vector<uint64_t>& keys,
                                const std::vector<double>& priorities) = 0;

  // The same for the keys of a batch's extra[index] (Batch::extra). The default ignores them
  // (feeds without further sampled tables).
  virtual void UpdateExtraPriorities(int index, const std::vector<uint64_t>& keys,
                                     const std::vector<double>& priorities) {
    (void)index;
    (void)keys;
    (void)priorities;
  }

  // Items the source held at the latest batch.
  virtual int64_t size() const = 0;

  // Stops producing and joins background work; Next returns nullopt from then on.
  // Idempotent.
  virtual void Stop() = 0;

  // Stops, and frees what the feed holds at its source for good (a replay feed deletes its
  // tables): called when the run has ended and will not resume. Best effort: errors are
  // returned for logging.
  virtual absl::Status Release() = 0;
};

}  // namespace prl::learner

#endif  // PRL_LEARNER_BATCH_FEED_H_
