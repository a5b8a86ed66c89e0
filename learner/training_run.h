// A TRAIN experiment as a small driver over four parts:
//  - an Algorithm (learner/algorithm.h) chosen by the AlgorithmRegistry from the spec;
//  - a BatchFeed (learner/batch_feed.h): the sharded replay in production (the run creates the
//    algorithm's tables on the shards), a fake in tests;
//  - an EvaluationSchedule (learner/evaluation_schedule.h): evaluation rounds and curve points;
//  - the checkpoint: algorithm state, counters and curve position in one checksummed file,
//    written early, periodically, at the end and when the learner shuts down, and restored on
//    start; the curve is cut back to it. Policy versions are reserved on disk ahead of use, so
//    they continue upwards even after a crash between checkpoints.
// Peers that are away (replay shards restarting or draining) are waited for, never a failure;
// a stop or shutdown during setup or sampling ends the run STOPPED or RUNNING, not FAILED.
// The loop takes a batch when one is ready, updates, publishes the policy every
// `publish_every_updates` updates, reports progress and metrics, and ends on the spec's stop
// condition or a stop request.
//
// Thread-safety: Run on one thread; RequestStop and the ActorEventSink methods from any.
#ifndef PRL_LEARNER_TRAINING_RUN_H_
#define PRL_LEARNER_TRAINING_RUN_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/client.h"
#include "learner/actor_registry.h"
#include "learner/algorithm_registry.h"
#include "learner/batch_feed.h"
#include "learner/experiment_run.h"
#include "learner/learner_metrics.h"
#include "learner/policy_store.h"
#include "proto/experiment.pb.h"
#include "proto/replay.pb.h"

namespace prl::learner {

// What a run asks its feed for.
struct FeedRequest {
  // Tables to create (names final); the first is sampled.
  std::vector<v1::TableConfig> tables;
  int batch_size = 256;
  bool prioritized = false;
  double importance_sampling_exponent = 0;
  // Device batches go to.
  std::string device = "cpu";
  // Batches to keep ready (the loop takes up to TrainingRunOptions::updates_per_call at once).
  int prefetch = 2;
  // Further tables sampled with every batch (Batch::extra, in this order).
  struct ExtraTable {
    std::string table;  // a name in `tables`
    int batch_size = 256;
    bool prioritized = false;
    double importance_sampling_exponent = 0;
  };
  std::vector<ExtraTable> extra;
};
using FeedFactory =
    std::function<absl::StatusOr<std::unique_ptr<BatchFeed>>(const FeedRequest& request)>;

inline constexpr int kMaxUpdatesPerCall = 64;

struct TrainingRunOptions {
  // Replay shards (host:port) and how to reach them; used when `feed_factory` is unset.
  std::vector<std::string> replay_addresses;
  ChannelOptions channel;
  CallOptions call;
  // Builds the run's feed instead of the sharded replay (tests).
  FeedFactory feed_factory;
  // Not owned; must outlive the run.
  ActorRegistry* registry = nullptr;
  PolicyStore* policies = nullptr;
  const AlgorithmRegistry* algorithms = nullptr;
  // Optional: the learner's metrics.
  LearnerMetrics* metrics = nullptr;
  // Where the run's checkpoint lives (ExperimentStore::CheckpointPath).
  std::string checkpoint_path;
  // The agent state (Algorithm::SaveState bytes) AlgorithmSpec.init_from names; errors name
  // the field. Unset: a spec with init_from fails to start.
  std::function<absl::StatusOr<std::string>(const v1::PolicyRef&)> initial_state;
  // --learner_device: auto, cpu, cuda, cuda:N; the spec's resources.learner_device wins.
  std::string device = "auto";
  // Torch intra-op threads for updates (0 leaves Torch's default).
  int torch_threads = 0;
  // Most updates per Algorithm::UpdateMany call: after waiting for one batch the loop takes the
  // ones the feed already holds, up to this many (and never past the run's budget), so a GPU
  // learner queues their steps back to back. 0: 4 on a CUDA device, 1 elsewhere (on a CPU the
  // steps run one after another anyway). At most kMaxUpdatesPerCall.
  int updates_per_call = 0;
  // On a GPU with CUDA graphs: the updates of one call in graph launches of this many
  // (AgentOptions::updates_per_graph; 1: one launch per update). 1 to kMaxUpdatesPerGraph.
  int updates_per_graph = 1;
  int64_t publish_every_updates = 100;
  // Checkpoints: the first after `first_checkpoint_period` (so a learner killed early loses
  // little), then every `checkpoint_period`, and also every `checkpoint_every_updates` updates
  // when > 0 — whichever comes first; always at the end and on shutdown.
  absl::Duration first_checkpoint_period = absl::Seconds(10);
  absl::Duration checkpoint_period = absl::Minutes(2);
  int64_t checkpoint_every_updates = 0;
  // Policy versions are reserved on disk in blocks of this many (<checkpoint_path>.versions),
  // so a learner killed between checkpoints never publishes a version again.
  int64_t policy_version_block = 1000;
  absl::Duration progress_period = absl::Seconds(1);
  // How long the loop waits for a batch before checking stops, curve and progress.
  absl::Duration batch_wait = absl::Milliseconds(100);
  // An evaluation round that has not finished after this long is abandoned.
  absl::Duration evaluation_timeout = absl::Minutes(5);
};

// Builds the run for a validated TRAIN experiment. Errors: UNIMPLEMENTED for another kind or an
// algorithm the registry lacks; INVALID_ARGUMENT for options missing the registry, policies or
// algorithms.
absl::StatusOr<std::unique_ptr<ExperimentRun>> CreateTrainingRun(const v1::Experiment& experiment,
                                                                 RunContext* context,
                                                                 const TrainingRunOptions& options);

}  // namespace prl::learner

#endif  // PRL_LEARNER_TRAINING_RUN_H_
