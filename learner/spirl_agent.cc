#include "learner/spirl_agent.h"

#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "ATen/Parallel.h"
#include "ATen/core/grad_mode.h"
#include "absl/strings/str_cat.h"
#include "common/field_error.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "learner/agent_internal.h"
#include "models/artifact.h"

namespace prl::learner {

at::Tensor SpirlDivergence(const at::Tensor& mean, const at::Tensor& log_std,
                           const models::DiagonalGaussian& prior, int kl_samples,
                           const at::Tensor& mc_noise) {
  const models::DiagonalGaussian pi{mean, log_std};
  at::Tensor divergence;
  if (kl_samples == 0) {
    divergence = models::DiagonalGaussianKl(pi, prior).mean(-1);
  } else {
    // u_n = μ + σ·ε_n; log N(u; μ, σ) - log N(u; μ_p, σ_p) per dimension, the 2π terms cancel
    const at::Tensor u = mean.unsqueeze(0) + log_std.exp().unsqueeze(0) * mc_noise;
    const at::Tensor log_q = -0.5 * mc_noise.square() - log_std.unsqueeze(0);
    const at::Tensor log_p =
        -0.5 * ((u - prior.mean.unsqueeze(0)) * at::exp(-prior.log_std.unsqueeze(0))).square() -
        prior.log_std.unsqueeze(0);
    divergence = (log_q - log_p).mean(-1).mean(0);
  }
  return divergence.clamp(-internal::kSpirlMaxDivergence, internal::kSpirlMaxDivergence);
}

namespace internal {
namespace {

RegularizedSacAgent::Options SpirlOptions(const v1::SpirlConfig& spirl) {
  RegularizedSacAgent::Options options;
  options.initial_alpha = spirl.initial_alpha();
  options.alpha_lr = spirl.alpha_lr();
  options.fixed_alpha = spirl.fixed_alpha();
  options.bound = spirl.latent_bound();
  return options;
}

// SAC over skill latents with R = D(π(·|s) ‖ p(·|s)) in the entropy's slot (RegularizedSacAgent).
class SpirlAgent final : public RegularizedSacAgent {
 public:
  SpirlAgent(const AgentConfig& config, std::shared_ptr<const models::LatentPriorModel> prior)
      : RegularizedSacAgent(config, SpirlOptions(config.algorithm.spirl())),
        spirl_(config.algorithm.spirl()),
        prior_(std::move(prior)) {
    // on the CPU: the update without autograd where it applies (learner/direct_sac.h); the
    // Monte-Carlo divergence stays on the autograd path
    if (spirl_.kl_samples() == 0) EnableDirectUpdate(SacRegularizer::kPriorKl);
  }

  // Copies the prior network's weights into the policy (same architecture by construction).
  absl::Status InitialisePolicyFromPrior() {
    v1::ModelInfo info;
    info.set_name("prior");
    info.set_version(1);
    PRL_ASSIGN_OR_RETURN(models::ModelArtifact artifact, prior_->ToArtifact(info));
    at::NoGradGuard no_grad;
    for (auto& [name, param] : actor_->NamedParameters()) {
      const std::string source = absl::StrCat("prior.", name);
      const HostTensor* t = artifact.Find(source);
      if (t == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat("the prior has no tensor '", source,
                                                       "' for the policy's '", name,
                                                       "': the architectures differ"));
      }
      const at::Tensor value =
          at::from_blob(const_cast<float*>(t->data<float>().data()), t->shape(), at::kFloat);
      if (value.sizes() != param.sizes()) {
        return absl::InvalidArgumentError(
            absl::StrCat("the prior's '", source, "' does not fit the policy's '", name, "'"));
      }
      param.copy_(value.to(param.device()));
    }
    return absl::OkStatus();
  }

 protected:
  // draws 0 and 1: the policy's samples; then k Monte-Carlo draws for D(s), k for D(s')
  int64_t NoiseDraws() const override { return 2 + 2 * int64_t{spirl_.kl_samples()}; }
  // On a GPU the update is captured as a CUDA graph, the prior's forward passes with it: the
  // prior lives on the agent's device (CreateSpirlAgent's caller loads it there) and its Prior()
  // is device operations only (its input check reads shapes, never values); the Monte-Carlo
  // draws come with the noise, the temperature's step through FlatAdam.
  bool GraphSafe() const override { return true; }

  // D(π(·|s) ‖ p(·|s)) on the pre-squash Gaussians, analytic or from k samples.
  at::Tensor Regularizer(const models::PolicyNetwork::Output& out,
                         const models::SquashedSample& /*sample*/, const at::Tensor& obs,
                         const at::Tensor& noise, bool next_state) const override {
    const int k = spirl_.kl_samples();
    const at::Tensor mc = k == 0 ? at::Tensor() : noise.narrow(0, next_state ? 2 + k : 2, k);
    return SpirlDivergence(out.mean, out.log_std, PriorAt(obs), k, mc);
  }

  // α: J = α·(δ − D); dJ/d log α = α·(δ − D)
  at::Tensor TemperatureStep(const at::Tensor& alpha, const at::Tensor& mean_divergence) override {
    const at::Tensor gap = spirl_.target_divergence() - mean_divergence;
    alpha_adam_.Step((alpha * gap).reshape({1}));
    return alpha * gap;
  }

  // "entropy" carries the divergence: SPiRL's regulariser in SAC's slot
  at::Tensor ReportedEntropy(const at::Tensor& mean_divergence) const override {
    return mean_divergence;
  }

  // p(z|s) at the batch's s and s', for the direct update, which only reads them: the prior's
  // inference-mode outputs as they are, without PriorAt's copies for autograd
  PriorRows PriorAtBatch(const DeviceBatch& batch) const override {
    absl::StatusOr<models::DiagonalGaussian> p = prior_->Prior(batch.obs);
    PRL_CHECK(p.ok()) << "prior: " << p.status();
    absl::StatusOr<models::DiagonalGaussian> next = prior_->Prior(batch.next_obs);
    PRL_CHECK(next.ok()) << "prior: " << next.status();
    return {p->mean, p->log_std, next->mean, next->log_std};
  }

  void DescribePolicy(v1::PolicyArchitecture* architecture) const override {
    architecture->set_head(v1::PolicyArchitecture::HEAD_SQUASHED_GAUSSIAN);
    architecture->set_output(v1::PolicyArchitecture::OUTPUT_DECODED_LATENT);
    architecture->set_output_bound(bound());
  }

 private:
  // p(z|s) as ordinary tensors (the prior computes in inference mode; its outputs must be
  // usable next to tensors that autograd records).
  models::DiagonalGaussian PriorAt(const at::Tensor& obs) const {
    absl::StatusOr<models::DiagonalGaussian> p = prior_->Prior(obs);
    PRL_CHECK(p.ok()) << "prior: " << p.status();
    return {p->mean.clone(), p->log_std.clone()};
  }

  const v1::SpirlConfig spirl_;
  const std::shared_ptr<const models::LatentPriorModel> prior_;
};

}  // namespace
}  // namespace internal

absl::StatusOr<std::unique_ptr<Agent>> CreateSpirlAgent(
    const AgentOptions& options, std::shared_ptr<const models::LatentPriorModel> prior) {
  if (!options.algorithm.has_spirl()) {
    return absl::InvalidArgumentError("algorithm: CreateSpirlAgent needs algorithm.spirl");
  }
  if (prior == nullptr) return absl::InvalidArgumentError("prior: not set");
  if (!prior->learned_prior()) {
    return absl::InvalidArgumentError(
        "prior: its p(z|s) is the fixed N(0, I), not a learned state-conditioned prior to "
        "regularise towards (train a SKILL_VAE, or a CVAE with horizon > 1)");
  }
  PRL_ASSIGN_OR_RETURN(internal::AgentConfig config, internal::ResolveAgentOptions(options));
  if (config.act_dim != prior->latent_dim()) {
    return FieldError("act_dim", config.act_dim,
                      absl::StrCat("the prior's latent_dim (", prior->latent_dim(), ")"));
  }
  if (config.obs_dim != prior->obs_dim()) {
    return FieldError("obs_dim", config.obs_dim,
                      absl::StrCat("the prior's obs_dim (", prior->obs_dim(), ")"));
  }
  const int horizon = config.algorithm.spirl().horizon();
  if (horizon != 0 && horizon != prior->horizon()) {
    return FieldError("algorithm.spirl.horizon", horizon,
                      absl::StrCat("0 or the prior's horizon (", prior->horizon(), ")"));
  }
  config.algorithm.mutable_spirl()->set_horizon(prior->horizon());
  const bool from_prior = !config.algorithm.spirl().random_policy_init();
  if (from_prior) config.actor_network = prior->prior_network();
  try {
    if (config.num_threads > 0) at::set_num_threads(config.num_threads);
    auto agent = std::make_unique<internal::SpirlAgent>(config, std::move(prior));
    if (from_prior) PRL_RETURN_IF_ERROR(agent->InitialisePolicyFromPrior());
    return std::unique_ptr<Agent>(std::move(agent));
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("cannot build the spirl agent: ", internal::ErrorText(e)));
  }
}

}  // namespace prl::learner
