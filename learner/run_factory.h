// Which ExperimentRun an experiment gets, by its kind: TRAIN experiments a training run
// (learner/training_run.h) with the algorithm the registry picks; COLLECT experiments a
// collect run (learner/collect_run.h) that writes into the dataset store; TRAIN_PRIOR
// experiments a prior-training run (learner/prior_training_run.h); EVALUATE experiments an
// evaluate run (learner/evaluate_run.h) on the collect runs' registry and policy store. The
// experiment manager calls the factory; learner_main only fills the options.
#ifndef PRL_LEARNER_RUN_FACTORY_H_
#define PRL_LEARNER_RUN_FACTORY_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "learner/checkpoint.pb.h"
#include "learner/collect_run.h"
#include "learner/evaluate_run.h"
#include "learner/experiment_run.h"
#include "learner/prior_training_run.h"
#include "learner/training_run.h"

namespace prl::learner {

struct RunFactoryOptions {
  // Options of every training run; checkpoint_path is set per experiment, and initial_state,
  // when unset, to ReadTrainedCheckpoint's agent state under `state_dir`.
  TrainingRunOptions training;
  // Options of TRAIN_PRIOR runs (their model store, dataset store and model factory).
  PriorTrainingRunOptions prior_training;
  // Options of COLLECT runs (registry, dataset store, replay); work_dir is set per experiment,
  // and policy_loader, when unset, to LoadTrainedPolicy over `training` and `state_dir`.
  CollectRunOptions collect;
  // The learner's state directory: experiment E checkpoints to
  // <state_dir>/experiments/E/checkpoint.bin.
  std::string state_dir;
  // The prior server actors reach (host:port): EVALUATE runs send it with a translator.
  std::string prior_address;
};

// Errors of the runs it builds: UNIMPLEMENTED naming a kind this learner does not run yet.
RunFactory MakeRunFactory(RunFactoryOptions options);

// The checkpoint of a TRAIN experiment of this learner that `ref` names (ref.experiment_id, or
// the experiment whose checkpoint ref.checkpoint_path is) and that experiment's record. Errors
// name the spec field `path` ("collect.policy", "algorithm.init_from"): NOT_FOUND for an
// unknown experiment, a missing checkpoint or a version other than the checkpoint's; DATA_LOSS
// for an unreadable checkpoint or record; FAILED_PRECONDITION for an experiment that is not
// KIND_TRAIN.
struct TrainedCheckpoint {
  std::string path;
  TrainingCheckpoint checkpoint;
  v1::Experiment record;
};
absl::StatusOr<TrainedCheckpoint> ReadTrainedCheckpoint(const v1::PolicyRef& ref,
                                                        const std::string& state_dir,
                                                        absl::string_view path);

// COLLECTOR_POLICY's (and EVALUATE's) policy: the policy in the checkpoint of a TRAIN experiment of
// this learner (collect.policy.experiment_id, or the experiment whose checkpoint
// collect.policy.checkpoint_path is), rebuilt with the experiment's algorithm from
// `training.algorithms` on the CPU and exported as its TRAIN run publishes it. Errors, naming
// collect.policy's field: NOT_FOUND for an unknown experiment or a missing checkpoint, or a
// version other than the checkpoint's; DATA_LOSS for an unreadable checkpoint or record;
// FAILED_PRECONDITION for an experiment that is not KIND_TRAIN; the algorithm's errors. Errors
// name the fields under `path` ("collect.policy", "evaluate.policy").
absl::StatusOr<CollectPolicy> LoadTrainedPolicy(const v1::PolicyRef& ref,
                                                const TrainingRunOptions& training,
                                                const std::string& state_dir,
                                                absl::string_view path = "collect.policy");

}  // namespace prl::learner

#endif  // PRL_LEARNER_RUN_FACTORY_H_
