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
#include "models/cvae_model.h"
#include "models/skill_model.h"

namespace prl::learner {

namespace {

constexpr char kStateMagic[] = "PRL-PRIOR-GUIDED-STATE 1 prior-version ";

// The device a prior computes on for the learner's KL term: where the agent computes
// (CreateSpirlAgent refuses a device that is not there before it would matter).
absl::StatusOr<at::Device> PriorDevice(const std::string& name) {
  at::Device device = at::kCPU;
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
  return device;
}

// EAP runs the spirl agent: its settings as a SpirlConfig (the same fields; no Monte-Carlo KL).
v1::AlgorithmSpec AsSpirl(const v1::AlgorithmSpec& algorithm) {
  v1::AlgorithmSpec out = algorithm;
  const v1::EapConfig eap = algorithm.eap();
  v1::SpirlConfig* spirl = out.mutable_spirl();
  spirl->set_target_divergence(eap.target_divergence());
  spirl->set_initial_alpha(eap.initial_alpha());
  spirl->set_fixed_alpha(eap.fixed_alpha());
  spirl->set_alpha_lr(eap.alpha_lr());
  spirl->set_horizon(eap.horizon());
  spirl->set_random_policy_init(eap.random_policy_init());
  spirl->set_latent_bound(eap.latent_bound());
  return out;
}

// The prior kinds a method accepts, for its error message.
std::string WantedPrior(absl::string_view method) {
  if (method == "parrot") {
    return "a PRIOR_KIND_REAL_NVP_FLOW (PARROT) or a PRIOR_KIND_CVAE of horizon 1 (latent SAC)";
  }
  if (method == "eap") return "a PRIOR_KIND_CVAE with a learned state prior (horizon > 1)";
  return "a PRIOR_KIND_SKILL_VAE";
}

// The agent-backed algorithm for the prior version `version` (0: the newest stored).
absl::StatusOr<std::unique_ptr<Algorithm>> BuildForVersion(const AlgorithmOptions& options,
                                                           const SpirlContext& context,
                                                           int64_t version,
                                                           v1::PriorRef* resolved) {
  const v1::ExperimentSpec& spec = options.spec;
  const v1::AlgorithmSpec& algorithm = spec.algorithm();
  std::string method;
  if (algorithm.has_spirl()) method = "spirl";
  if (algorithm.has_eap()) method = "eap";
  if (algorithm.has_parrot()) method = "parrot";
  if (method.empty()) {
    return absl::InvalidArgumentError(
        "algorithm: the prior-guided algorithms here are spirl, eap and parrot");
  }
  if (context.models == nullptr) {
    return absl::FailedPreconditionError(method + " needs the learner's model store");
  }
  PRL_ASSIGN_OR_RETURN(models::ModelArtifact artifact,
                       context.models->Read(spec.prior().name(), version));
  const v1::ModelInfo& info = artifact.info;
  const bool cvae = info.kind() == v1::PRIOR_KIND_CVAE;
  bool fits = false;
  if (method == "spirl") fits = info.kind() == v1::PRIOR_KIND_SKILL_VAE;
  if (method == "eap") fits = cvae && info.horizon() > 1;
  if (method == "parrot") {
    fits = info.kind() == v1::PRIOR_KIND_REAL_NVP_FLOW || (cvae && info.horizon() == 1);
  }
  if (!fits) {
    return absl::InvalidArgumentError(
        absl::StrCat("prior: '", info.name(), "' v", info.version(), " is a ",
                     v1::PriorKind_Name(info.kind()), " of horizon ", info.horizon(), "; ", method,
                     " needs ", WantedPrior(method), " (a TRAIN_PRIOR run of that kind)"));
  }
  if (info.obs_dim() != options.obs_dim || info.action_dim() != options.act_dim) {
    return absl::InvalidArgumentError(absl::StrCat("prior: '", info.name(), "' v", info.version(),
                                                   " has state ", info.obs_dim(), " and action ",
                                                   info.action_dim(), " dimensions; the env has ",
                                                   options.obs_dim, " and ", options.act_dim));
  }
  AgentAlgorithmSpec acting;
  acting.name = method;
  acting.obs_dim = options.obs_dim;
  acting.prior.set_name(info.name());
  acting.prior.set_version(info.version());
  acting.prior_address = context.prior_address;
  acting.alpha_name = "alpha";
  acting.alpha_loss_name = "alpha_loss";
  AgentOptions agent_options;
  agent_options.obs_dim = options.obs_dim;
  agent_options.algorithm = algorithm;
  agent_options.device = options.device;
  agent_options.seed = static_cast<uint64_t>(algorithm.seed());
  agent_options.num_threads = options.num_threads;
  agent_options.updates_per_graph = options.updates_per_graph;
  *resolved = acting.prior;
  if (method == "parrot") {
    // PARROT (and latent SAC) need no prior on the learner: SAC over the prior's latent, which
    // actors map to actions every step — a = f(z; s) through a flow, a = g(s, z) through a CVAE
    agent_options.act_dim = cvae ? info.latent_dim() : options.act_dim;
    PRL_ASSIGN_OR_RETURN(std::unique_ptr<Agent> agent, Agent::Create(agent_options));
    acting.action_dim = agent_options.act_dim;
    acting.decision_horizon = 1;
    acting.entropy_name =
        algorithm.parrot().regularizer() == v1::ParrotConfig::REGULARIZER_KL_TO_BASE ? "kl_to_base"
                                                                                     : "entropy";
    if (cvae) acting.output = v1::PolicyArchitecture::OUTPUT_DECODED_LATENT;
    return MakeAgentAlgorithm(std::move(acting), std::move(agent));
  }
  PRL_ASSIGN_OR_RETURN(at::Device device, PriorDevice(options.device));
  std::shared_ptr<const models::LatentPriorModel> prior;
  if (cvae) {
    PRL_ASSIGN_OR_RETURN(prior, models::CvaeModel::FromArtifact(artifact, device));
    agent_options.algorithm = AsSpirl(algorithm);
  } else {
    PRL_ASSIGN_OR_RETURN(prior, models::SkillModel::FromArtifact(artifact, device));
  }
  agent_options.act_dim = info.latent_dim();
  PRL_ASSIGN_OR_RETURN(std::unique_ptr<Agent> agent,
                       CreateSpirlAgent(agent_options, std::move(prior)));
  acting.action_dim = info.latent_dim();
  acting.env_steps_column = true;
  acting.decision_horizon = info.horizon();
  acting.entropy_name = "kl_to_prior";
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
      return absl::DataLossError(
          absl::StrCat("the checkpoint does not hold a ", inner_->name(), " state"));
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

absl::StatusOr<std::unique_ptr<Algorithm>> CreateEapAlgorithm(const AlgorithmOptions& options,
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
