#include "learner/prior_models.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "models/cvae_model.h"
#include "models/real_nvp.h"
#include "models/skill_model.h"
#include "models/task_pair_translator.h"

namespace prl::learner {

absl::StatusOr<std::unique_ptr<models::PriorModel>> CreatePriorModel(
    const PriorModelRequest& request) {
  const v1::PriorTrainingSpec& spec = request.spec;
  const at::Device device(request.device);
  switch (spec.kind()) {
    case v1::PRIOR_KIND_SKILL_VAE: {
      models::SkillModelOptions options;
      options.obs_dim = request.obs_dim;
      options.act_dim = request.act_dim;
      options.horizon = spec.horizon();
      options.latent_dim = spec.latent_dim();
      options.beta = spec.beta();
      options.network = spec.network();
      options.lr = spec.lr();
      options.seed = spec.seed();
      options.device = device;
      PRL_ASSIGN_OR_RETURN(std::unique_ptr<models::SkillModel> model,
                           models::SkillModel::Create(options));
      return std::unique_ptr<models::PriorModel>(std::move(model));
    }
    case v1::PRIOR_KIND_CVAE: {
      models::CvaeModelOptions options;
      options.obs_dim = request.obs_dim;
      options.act_dim = request.act_dim;
      options.horizon = spec.horizon();
      options.latent_dim = spec.latent_dim();
      // k > 1: EAP's extended action prior with its learned state prior; k = 1: the latent-SAC
      // generator with N(0, I) (proto/prior.proto, PRIOR_KIND_CVAE)
      options.learned_prior = spec.horizon() > 1;
      options.beta = spec.beta();
      options.network = spec.network();
      options.lr = spec.lr();
      options.seed = spec.seed();
      options.device = device;
      PRL_ASSIGN_OR_RETURN(std::unique_ptr<models::CvaeModel> model,
                           models::CvaeModel::Create(options));
      return std::unique_ptr<models::PriorModel>(std::move(model));
    }
    case v1::PRIOR_KIND_REAL_NVP_FLOW: {
      models::RealNvpOptions options;
      options.obs_dim = request.obs_dim;
      options.act_dim = request.act_dim;
      options.num_coupling_layers = spec.num_coupling_layers();
      options.network = spec.network();
      options.lr = spec.lr();
      options.seed = static_cast<uint64_t>(spec.seed());
      options.device = device;
      PRL_ASSIGN_OR_RETURN(std::unique_ptr<models::RealNvpFlow> model,
                           models::RealNvpFlow::Create(options));
      return std::unique_ptr<models::PriorModel>(std::move(model));
    }
    case v1::PRIOR_KIND_ACTION_TRANSLATOR: {
      models::TaskPairTranslatorOptions options;
      options.obs_dim = request.obs_dim;
      options.act_dim = request.act_dim;
      options.network = spec.network();
      options.lr = spec.lr();
      options.seed = static_cast<uint64_t>(spec.seed());
      options.device = device;
      PRL_ASSIGN_OR_RETURN(std::unique_ptr<models::TaskPairTranslator> model,
                           models::TaskPairTranslator::Create(options));
      return std::unique_ptr<models::PriorModel>(std::move(model));
    }
    default:
      return absl::UnimplementedError(
          absl::StrCat("prior_training.kind: ", v1::PriorKind_Name(spec.kind()),
                       " is not trained by this learner yet"));
  }
}

}  // namespace prl::learner
