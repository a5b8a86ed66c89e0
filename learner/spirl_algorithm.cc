#include "learner/spirl_algorithm.h"

#include <utility>

#include "ATen/Context.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "learner/flat_algorithm.h"
#include "learner/spirl_agent.h"
#include "models/skill_model.h"

namespace prl::learner {

absl::StatusOr<std::unique_ptr<Algorithm>> CreateSpirlAlgorithm(const AlgorithmOptions& options,
                                                                const SpirlContext& context) {
  const v1::ExperimentSpec& spec = options.spec;
  if (!spec.algorithm().has_spirl()) {
    return absl::InvalidArgumentError("algorithm: CreateSpirlAlgorithm needs algorithm.spirl");
  }
  if (context.models == nullptr) {
    return absl::FailedPreconditionError("spirl needs the learner's model store");
  }
  PRL_ASSIGN_OR_RETURN(models::ModelArtifact artifact,
                       context.models->Read(spec.prior().name(), spec.prior().version()));
  const v1::ModelInfo& info = artifact.info;
  if (info.kind() != v1::PRIOR_KIND_SKILL_VAE) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prior: '", info.name(), "' v", info.version(), " is a ", v1::PriorKind_Name(info.kind()),
        "; spirl needs a PRIOR_KIND_SKILL_VAE (a TRAIN_PRIOR run with kind SKILL_VAE)"));
  }
  if (info.obs_dim() != options.obs_dim || info.action_dim() != options.act_dim) {
    return absl::InvalidArgumentError(absl::StrCat("prior: '", info.name(), "' v", info.version(),
                                                   " has state ", info.obs_dim(), " and action ",
                                                   info.action_dim(), " dimensions; the env has ",
                                                   options.obs_dim, " and ", options.act_dim));
  }
  AgentOptions agent_options;
  agent_options.obs_dim = options.obs_dim;
  agent_options.act_dim = info.latent_dim();
  agent_options.algorithm = spec.algorithm();
  agent_options.device = options.device;
  agent_options.seed = static_cast<uint64_t>(spec.algorithm().seed());
  agent_options.num_threads = options.num_threads;
  // the prior computes where the agent does (CreateSpirlAgent refuses a device that is not
  // there before it would matter)
  at::Device device = at::kCPU;
  const std::string& name = options.device;
  if ((name.empty() || name == "auto") && at::hasCUDA()) {
    device = at::Device(at::kCUDA, 0);
  } else if (name == "cuda") {
    device = at::Device(at::kCUDA, 0);
  } else if (absl::StartsWith(name, "cuda:")) {
    int index = 0;
    if (!absl::SimpleAtoi(name.substr(5), &index) || index < 0) {
      return absl::InvalidArgumentError(absl::StrCat("device: \"", name, "\" is not a device"));
    }
    device = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  if (device.is_cuda() && (!at::hasCUDA() || device.index() >= at::getNumGPUs())) {
    return absl::FailedPreconditionError(
        absl::StrCat("device: \"", name, "\" is not available in this process"));
  }
  PRL_ASSIGN_OR_RETURN(std::unique_ptr<models::SkillModel> prior,
                       models::SkillModel::FromArtifact(artifact, device));
  PRL_ASSIGN_OR_RETURN(std::unique_ptr<Agent> agent,
                       CreateSpirlAgent(agent_options, std::move(prior)));
  AgentAlgorithmSpec acting;
  acting.name = "spirl";
  acting.obs_dim = options.obs_dim;
  acting.action_dim = info.latent_dim();
  acting.env_steps_column = true;
  acting.decision_horizon = info.horizon();
  acting.prior.set_name(info.name());
  acting.prior.set_version(info.version());
  acting.prior_address = context.prior_address;
  acting.alpha_name = "alpha";
  acting.alpha_loss_name = "alpha_loss";
  acting.entropy_name = "kl_to_prior";
  return MakeAgentAlgorithm(std::move(acting), std::move(agent));
}

}  // namespace prl::learner
