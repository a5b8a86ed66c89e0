// Which ExperimentRun an experiment gets, by its kind: TRAIN experiments a training run
// (learner/training_run.h) with the algorithm the registry picks; TRAIN_PRIOR experiments a
// prior-training run (learner/prior_training_run.h). The experiment manager calls
// the factory; learner_main only fills the options.
#ifndef PRL_LEARNER_RUN_FACTORY_H_
#define PRL_LEARNER_RUN_FACTORY_H_

#include <string>

#include "learner/experiment_run.h"
#include "learner/prior_training_run.h"
#include "learner/training_run.h"

namespace prl::learner {

struct RunFactoryOptions {
  // Options of every training run; checkpoint_path is set per experiment.
  TrainingRunOptions training;
  // Options of TRAIN_PRIOR runs (their model store and model factory).
  PriorTrainingRunOptions prior_training;
  // The learner's state directory: experiment E checkpoints to
  // <state_dir>/experiments/E/checkpoint.bin.
  std::string state_dir;
};

// Errors of the runs it builds: UNIMPLEMENTED naming a kind this learner does not run yet.
RunFactory MakeRunFactory(RunFactoryOptions options);

}  // namespace prl::learner

#endif  // PRL_LEARNER_RUN_FACTORY_H_
