// A TRAIN_PRIOR experiment: reads a D4RL-layout HDF5 dataset (a file path, or a name in the
// learner's DatasetStore, whose file must still have the hash its record holds), cuts it into
// H-step windows inside episodes (learner/window_dataset.h) with held-out validation episodes,
// trains the
// prior the spec names (a models::PriorModel from a PriorModelFactory) for the spec's epochs or
// steps, evaluates it on the validation windows after every epoch, and stores the result as the
// next version of the output model in the learner's ModelStore — a self-describing artifact
// with the dataset's path and SHA-256 and the filled training spec. Progress shows the epoch,
// the train and validation losses and samples/s; the learner's metrics count updates and losses.
//
// A stop ends the run STOPPED without storing a model. With a checkpoint path, the run writes
// its whole training state (weights, Adam's moments, the noise generator, the step; models/
// prior_model.h TrainingState) there every checkpoint_period and when a learner shutdown stops
// it (leaving it RUNNING); the next run of the experiment resumes from it and trains on
// exactly as it would have (batches are drawn from a generator seeded by the step), so a killed
// learner loses at most checkpoint_period of training. A checkpoint for another dataset (its
// hash differs) or one that cannot be read is set aside, named in the log, and training starts
// over. The checkpoint is removed when the run ends.
//
// Thread-safety: Run on one thread; RequestStop from any.
#ifndef PRL_LEARNER_PRIOR_TRAINING_RUN_H_
#define PRL_LEARNER_PRIOR_TRAINING_RUN_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "learner/dataset_store.h"
#include "learner/experiment_run.h"
#include "learner/learner_metrics.h"
#include "learner/model_store.h"
#include "models/prior_model.h"
#include "proto/experiment.pb.h"

namespace prl::learner {

// What a prior is built from: the filled training spec, the dataset's dimensions, the device.
struct PriorModelRequest {
  v1::PriorTrainingSpec spec;
  int obs_dim = 0;
  int act_dim = 0;
  // "cpu", "cuda", "cuda:N" (resolved: never "auto").
  std::string device = "cpu";
};
using PriorModelFactory = std::function<absl::StatusOr<std::unique_ptr<models::PriorModel>>(
    const PriorModelRequest& request)>;

struct PriorTrainingRunOptions {
  // Not owned; must outlive the run.
  ModelStore* models = nullptr;
  // Where dataset names (prior_training.dataset without a .hdf5/.h5 suffix) are found; not
  // owned. Unset: only paths are accepted.
  DatasetStore* datasets = nullptr;
  // Builds the model (learner/prior_models.h in the binary; fakes in tests).
  PriorModelFactory factory;
  // Optional: the learner's metrics.
  LearnerMetrics* metrics = nullptr;
  // --learner_device: auto, cpu, cuda, cuda:N; the spec's resources.learner_device wins.
  std::string device = "auto";
  // Torch intra-op threads (0 leaves Torch's setting).
  int torch_threads = 0;
  absl::Duration progress_period = absl::Seconds(1);
  // Validation windows evaluated after each epoch (the first ones of the held-out episodes).
  int64_t max_validation_windows = 4096;
  // Fraction of the dataset's episodes held out.
  double validation_fraction = 0.1;
  // Where the run keeps its checkpoint (MakeRunFactory: <state_dir>/experiments/<id>/
  // prior_checkpoint.prl); empty: none.
  std::string checkpoint_path;
  absl::Duration checkpoint_period = absl::Minutes(1);
  // prior_training.publish: makes the prior server serve the stored model (name, version, its
  // file), blocking until it does or fails. Unset: nothing to publish to (the run says so).
  std::function<absl::Status(const std::string& name, int64_t version, const std::string& path)>
      publish;
};

// Builds the run for a validated TRAIN_PRIOR experiment. Errors: INVALID_ARGUMENT for options
// without models or factory or a spec of another kind.
absl::StatusOr<std::unique_ptr<ExperimentRun>> CreatePriorTrainingRun(
    const v1::Experiment& experiment, RunContext* context, const PriorTrainingRunOptions& options);

}  // namespace prl::learner

#endif  // PRL_LEARNER_PRIOR_TRAINING_RUN_H_
