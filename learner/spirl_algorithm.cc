#include "learner/spirl_algorithm.h"

#include <utility>

#include "ATen/Context.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "learner/flat_algorithm.h"
#include "learner/spirl_agent.h"
#include "models/skill_model.h"

namespace prl::learner {

namespace {

constexpr char kStateMagic[] = "PRL-PRIOR-GUIDED-STATE 1 prior-version ";

// The agent-backed algorithm for the prior version `version` (0: the newest stored).
absl::StatusOr<std::unique_ptr<Algorithm>> BuildForVersion(const AlgorithmOptions& options,
                                                           const SpirlContext& context,
                                                           int64_t version,
                                                           v1::PriorRef* resolved) {
  const v1::ExperimentSpec& spec = options.spec;
  const bool parrot = spec.algorithm().has_parrot();
  if (!spec.algorithm().has_spirl() && !parrot) {
    return absl::InvalidArgumentError(
        "algorithm: the prior-guided algorithms here are spirl and parrot");
  }
  const std::string method = parrot ? "parrot" : "spirl";
  if (context.models == nullptr) {
    return absl::FailedPreconditionError(method + " needs the learner's model store");
  }
  PRL_ASSIGN_OR_RETURN(models::ModelArtifact artifact,
                       context.models->Read(spec.prior().name(), version));
  const v1::ModelInfo& info = artifact.info;
  const v1::PriorKind want = parrot ? v1::PRIOR_KIND_REAL_NVP_FLOW : v1::PRIOR_KIND_SKILL_VAE;
  if (info.kind() != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prior: '", info.name(), "' v", info.version(), " is a ", v1::PriorKind_Name(info.kind()),
        "; ", method, " needs a ", v1::PriorKind_Name(want), " (a TRAIN_PRIOR run of that kind)"));
  }
  if (info.obs_dim() != options.obs_dim || info.action_dim() != options.act_dim) {
    return absl::InvalidArgumentError(absl::StrCat("prior: '", info.name(), "' v", info.version(),
                                                   " has state ", info.obs_dim(), " and action ",
                                                   info.action_dim(), " dimensions; the env has ",
                                                   options.obs_dim, " and ", options.act_dim));
  }
  if (parrot) {
    // PARROT needs no prior on the learner: SAC over the flow's latent, which actors map to
    // actions with a = f(z; s)
    AgentOptions agent_options;
    agent_options.obs_dim = options.obs_dim;
    agent_options.act_dim = options.act_dim;
    agent_options.algorithm = spec.algorithm();
    agent_options.device = options.device;
    agent_options.seed = static_cast<uint64_t>(spec.algorithm().seed());
    agent_options.num_threads = options.num_threads;
    PRL_ASSIGN_OR_RETURN(std::unique_ptr<Agent> agent, Agent::Create(agent_options));
    AgentAlgorithmSpec acting;
    acting.name = "parrot";
    acting.obs_dim = options.obs_dim;
    acting.action_dim = options.act_dim;
    acting.decision_horizon = 1;
    acting.prior.set_name(info.name());
    acting.prior.set_version(info.version());
    acting.prior_address = context.prior_address;
    acting.alpha_name = "alpha";
    acting.alpha_loss_name = "alpha_loss";
    acting.entropy_name = "entropy";
    *resolved = acting.prior;
    return MakeAgentAlgorithm(std::move(acting), std::move(agent));
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
  *resolved = acting.prior;
  return MakeAgentAlgorithm(std::move(acting), std::move(agent));
}

// Pins the prior version a run trains against: the checkpoint records it, and a restore with
// another version loaded (the spec's version 0 now resolving to a newer prior) rebuilds the
// agent on the recorded one, so a resumed run never mixes priors.
class SpirlAlgorithm final : public Algorithm {
 public:
  SpirlAlgorithm(AlgorithmOptions options, SpirlContext context, std::unique_ptr<Algorithm> inner,
                 v1::PriorRef prior)
      : options_(std::move(options)),
        context_(std::move(context)),
        inner_(std::move(inner)),
        prior_(std::move(prior)) {}

  std::string name() const override { return inner_->name(); }
  std::vector<TableSpec> Tables() const override { return inner_->Tables(); }
  void DescribeActing(v1::Assignment* assignment) const override {
    inner_->DescribeActing(assignment);
  }
  absl::StatusOr<UpdateResult> Update(const Batch& batch) override { return inner_->Update(batch); }
  absl::Status ExportPolicy(
      v1::PolicyArchitecture* architecture,
      std::vector<std::pair<std::string, HostTensor>>* weights) const override {
    return inner_->ExportPolicy(architecture, weights);
  }
  absl::StatusOr<std::string> SaveState() const override {
    PRL_ASSIGN_OR_RETURN(std::string inner, inner_->SaveState());
    return absl::StrCat(kStateMagic, prior_.version(), "\n", inner);
  }
  absl::Status RestoreState(const std::string& bytes) override {
    absl::string_view rest = bytes;
    int64_t version = 0;
    const size_t newline = rest.find('\n');
    if (!absl::ConsumePrefix(&rest, kStateMagic) || newline == absl::string_view::npos ||
        !absl::SimpleAtoi(rest.substr(0, rest.find('\n')), &version) || version < 1) {
      return absl::DataLossError("the checkpoint does not hold a spirl state");
    }
    rest.remove_prefix(rest.find('\n') + 1);
    if (version != prior_.version()) {
      v1::PriorRef resolved;
      absl::StatusOr<std::unique_ptr<Algorithm>> rebuilt =
          BuildForVersion(options_, context_, version, &resolved);
      if (!rebuilt.ok()) {
        return absl::FailedPreconditionError(
            absl::StrCat("the checkpoint was trained with prior '", prior_.name(), "' v", version,
                         ", which cannot be loaded now: ", rebuilt.status().message()));
      }
      PRL_RETURN_IF_ERROR((*rebuilt)->RestoreState(std::string(rest)));
      inner_ = *std::move(rebuilt);
      prior_ = resolved;
      return absl::OkStatus();
    }
    return inner_->RestoreState(std::string(rest));
  }
  int64_t updates() const override { return inner_->updates(); }
  std::string device() const override { return inner_->device(); }

 private:
  const AlgorithmOptions options_;
  const SpirlContext context_;
  std::unique_ptr<Algorithm> inner_;
  v1::PriorRef prior_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Algorithm>> CreateParrotAlgorithm(const AlgorithmOptions& options,
                                                                 const SpirlContext& context) {
  return CreateSpirlAlgorithm(options, context);
}

absl::StatusOr<std::unique_ptr<Algorithm>> CreateSpirlAlgorithm(const AlgorithmOptions& options,
                                                                const SpirlContext& context) {
  v1::PriorRef prior;
  PRL_ASSIGN_OR_RETURN(std::unique_ptr<Algorithm> inner,
                       BuildForVersion(options, context, options.spec.prior().version(), &prior));
  return std::unique_ptr<Algorithm>(
      std::make_unique<SpirlAlgorithm>(options, context, std::move(inner), std::move(prior)));
}

}  // namespace prl::learner
