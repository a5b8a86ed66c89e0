// Runs a policy on a batch of envs and writes whole episodes to a dataset: the engine behind
// `prl_collect` (and, later, COLLECT experiments on actors).
//
// Each env's current episode is buffered until it ends, so `success_only` can drop failed
// episodes and a collection stopped by its episode limit holds only whole episodes. When the
// step limit stops a collection, the unfinished episodes are written cut off with `timeouts`
// set on their last transition (unless success_only).
#ifndef PRL_ACTOR_COLLECT_COLLECTOR_H_
#define PRL_ACTOR_COLLECT_COLLECTOR_H_

#include <cstdint>
#include <functional>

#include "absl/status/statusor.h"
#include "actor/collect/policy.h"
#include "actor/envs/batched_env.h"
#include "common/dataset_writer.h"

namespace prl::actor {

struct CollectProgress {
  int64_t episodes = 0;       // episodes finished (kept or not)
  int64_t steps = 0;          // env steps taken
  int64_t kept_episodes = 0;  // episodes written
  int64_t kept_steps = 0;     // transitions written
  int64_t successes = 0;      // finished episodes that succeeded
  double mean_return = 0;     // over finished episodes
};

struct CollectOptions {
  // Stop after this many kept episodes (0: no limit).
  int64_t num_episodes = 0;
  // Stop after this many env steps (0: no limit). One of the limits must be > 0.
  int64_t num_env_steps = 0;
  // Std of Gaussian noise added to each action before clipping to [-1, 1].
  double action_noise = 0;
  // Keep only episodes that succeeded.
  bool success_only = false;
  // Seed of the action noise.
  uint64_t seed = 0;
  // With success_only: give up (FAILED_PRECONDITION) after this many finished episodes without
  // reaching num_episodes; 0 means 100 x num_episodes + 100.
  int64_t max_attempted_episodes = 0;
  // Called after every batch step.
  std::function<void(const CollectProgress&)> on_progress;
};

// Collects into `writer` (may be null to only measure the policy). INVALID_ARGUMENT for bad
// options; errors from the writer are returned as they are.
absl::StatusOr<CollectProgress> Collect(BatchedEnv& envs, Policy& policy,
                                        const CollectOptions& options, DatasetWriter* writer);

}  // namespace prl::actor

#endif  // PRL_ACTOR_COLLECT_COLLECTOR_H_
