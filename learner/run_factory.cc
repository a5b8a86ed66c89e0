#include "learner/run_factory.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"

namespace prl::learner {

RunFactory MakeRunFactory(RunFactoryOptions options) {
  return [options = std::move(options)](
             const v1::Experiment& experiment,
             RunContext* context) -> absl::StatusOr<std::unique_ptr<ExperimentRun>> {
    switch (experiment.spec().kind()) {
      case v1::ExperimentSpec::KIND_TRAIN: {
        TrainingRunOptions training = options.training;
        training.checkpoint_path =
            absl::StrCat(options.state_dir, "/experiments/", experiment.id(), "/checkpoint.bin");
        return CreateTrainingRun(experiment, context, training);
      }
      case v1::ExperimentSpec::KIND_TRAIN_PRIOR:
        return CreatePriorTrainingRun(experiment, context, options.prior_training);
      default:
        return absl::UnimplementedError(
            absl::StrCat("kind: ", v1::ExperimentSpec::Kind_Name(experiment.spec().kind()),
                         " experiments are not run by this learner yet; it runs KIND_TRAIN and "
                         "KIND_TRAIN_PRIOR"));
    }
  };
}

}  // namespace prl::learner
