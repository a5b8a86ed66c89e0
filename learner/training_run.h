// A TRAIN experiment with a flat off-policy algorithm (SAC, TD3): creates the experiment's
// replay table on the shards, assigns actors through the ActorRegistry, trains an Agent on
// batches that a background thread prefetches from replay (so updates never wait on the
// network while data is available; the table's rate limiter sets the update-to-data ratio),
// publishes the policy every `publish_every_updates` updates, runs evaluation rounds on the
// spec's schedule, records the learning curve, and checkpoints (agent, optimisers, counters,
// curve position) periodically, at the end, and when the learner shuts down — from which a
// restarted learner resumes with the policy version continuing upwards.
//
// Thread-safety: Run on one thread; RequestStop and the ActorEventSink methods from any.
#ifndef PRL_LEARNER_TRAINING_RUN_H_
#define PRL_LEARNER_TRAINING_RUN_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/client.h"
#include "learner/actor_registry.h"
#include "learner/experiment_run.h"
#include "learner/policy_store.h"
#include "proto/experiment.pb.h"

namespace prl::learner {

struct TrainingRunOptions {
  // Replay shards (host:port) and how to reach them.
  std::vector<std::string> replay_addresses;
  ChannelOptions channel;
  CallOptions call;
  ActorRegistry* registry = nullptr;
  PolicyStore* policies = nullptr;
  // Where the run's checkpoint lives (ExperimentStore::CheckpointPath).
  std::string checkpoint_path;
  // --learner_device: auto, cpu, cuda, cuda:N; the spec's resources.learner_device wins.
  std::string device = "auto";
  // Torch intra-op threads for updates (0 leaves Torch's default).
  int torch_threads = 0;
  int64_t publish_every_updates = 100;
  absl::Duration checkpoint_period = absl::Minutes(2);
  absl::Duration progress_period = absl::Seconds(1);
  // An evaluation round that has not finished after this long is abandoned.
  absl::Duration evaluation_timeout = absl::Minutes(5);
};

// Builds the run for a validated TRAIN experiment with sac or td3.
absl::StatusOr<std::unique_ptr<ExperimentRun>> CreateTrainingRun(const v1::Experiment& experiment,
                                                                 RunContext* context,
                                                                 const TrainingRunOptions& options);

}  // namespace prl::learner

#endif  // PRL_LEARNER_TRAINING_RUN_H_
