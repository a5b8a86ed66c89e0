// The priors this learner trains, by PriorTrainingSpec.kind: the SPiRL skill model
// (models/skill_model.h), the EAP / latent-SAC CVAE (models/cvae_model.h), PARROT's real NVP
// flow (models/real_nvp.h) and MCAT's action translator between two tasks
// (models/task_pair_translator.h). The factory a TRAIN_PRIOR run builds its model with.
#ifndef PRL_LEARNER_PRIOR_MODELS_H_
#define PRL_LEARNER_PRIOR_MODELS_H_

#include "learner/prior_training_run.h"

namespace prl::learner {

// Builds the model `request.spec` names from its filled fields. Errors: UNIMPLEMENTED for a
// kind this learner does not train (naming it); the model's own option errors.
absl::StatusOr<std::unique_ptr<models::PriorModel>> CreatePriorModel(
    const PriorModelRequest& request);

}  // namespace prl::learner

#endif  // PRL_LEARNER_PRIOR_MODELS_H_
