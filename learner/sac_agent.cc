// Soft actor-critic (Haarnoja et al. 2018, with the automatic temperature of the "SAC:
// algorithms and applications" follow-up), in the update order of stable-baselines3, as the
// entropy case of RegularizedSacAgent (agent_internal.h), whose update SPiRL's agent shares.
#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "ATen/core/grad_mode.h"
#include "learner/agent_internal.h"
#include "learner/direct_sac.h"

namespace prl::learner::internal {

// ---- RegularizedSacAgent ----

RegularizedSacAgent::RegularizedSacAgent(const AgentConfig& config, const Options& options)
    : TwinCriticAgent(config, models::PolicyNetwork::Head::kSquashedGaussian),
      log_alpha_(at::full({1}, std::log(options.initial_alpha),
                          at::TensorOptions().dtype(at::kFloat).device(config.device))),
      alpha_adam_(log_alpha_, FlatAdam::Options{options.alpha_lr}),
      fixed_alpha_(options.fixed_alpha),
      bound_(options.bound),
      scale_(options.scale) {}

RegularizedSacAgent::~RegularizedSacAgent() = default;

void RegularizedSacAgent::EnableDirectUpdate(SacRegularizer regularizer) {
  direct_ = config_.direct_cpu_update
                ? DirectSacUpdate::Create(*actor_, *critic_, *critic_target_, config_,
                                          {bound_, scale_, regularizer})
                : nullptr;
}

bool RegularizedSacAgent::DirectUpdate(const DeviceBatch& b, const at::Tensor& noise,
                                       UpdateStats* stats) {
  if (direct_ == nullptr || b.sil_obs.defined() || !noise.is_cpu()) return false;
  // α of this update, before the temperature step (as DoUpdate)
  const at::Tensor alpha = log_alpha_.exp().squeeze(0);
  const double alpha_value = alpha.item<double>();
  absl::StatusOr<DirectSacUpdate::Result> r =
      direct_->Run(b, noise, alpha_value, &actor_->params(), actor_adam_.get(), &critic_->params(),
                   critic_adam_.get(), critic_target_->params(), PriorAtBatch(b));
  if (!r.ok()) throw std::runtime_error(std::string(r.status().message()));
  const at::Tensor mean_regularizer = at::scalar_tensor(r->mean_regularizer, at::kFloat);
  if (!fixed_alpha_) stats->alpha_loss = TemperatureStep(alpha, mean_regularizer).item<double>();
  ++updates_;
  if (updates_ % config_.algorithm.target_update_period() == 0) {
    Polyak(critic_->params(), critic_target_->params());
  }
  stats->critic_loss = r->critic_loss;
  stats->actor_loss = r->actor_loss;
  stats->alpha = alpha_value;
  stats->q_mean = r->q_mean;
  stats->entropy = ReportedEntropy(mean_regularizer).item<double>();
  stats->actor_updated = true;
  stats->td_error_abs = std::move(r->td_error_abs);
  return true;
}

UpdateStats RegularizedSacAgent::DoUpdate(const DeviceBatch& b, const at::Tensor& noise) {
  UpdateStats stats;
  if (DirectUpdate(b, noise, &stats)) return stats;
  // α of this update: taken before the temperature step, as stable-baselines3 does
  const at::Tensor alpha = log_alpha_.exp().squeeze(0);

  // the policy on s, with gradients: one sample for the temperature and actor losses
  const models::PolicyNetwork::Output pi_out = Scaled(actor_->Forward(b.obs));
  const models::SquashedSample pi = models::SampleSquashedGaussian(pi_out, noise[0]);
  const at::Tensor z = Bounded(pi.action);
  const at::Tensor regularizer = Regularizer(pi_out, pi, b.obs, noise, /*next_state=*/false);
  const TemperatureResult temperature = Temperature(alpha, regularizer);

  // critics: y = r·scale + γ·d·(min_k Q'_k(s', z') − α·R(s')), z' ~ π(s')
  at::Tensor target;
  {
    at::NoGradGuard no_grad;
    const models::PolicyNetwork::Output next = Scaled(actor_->Forward(b.next_obs));
    const models::SquashedSample next_pi = models::SampleSquashedGaussian(next, noise[1]);
    const at::Tensor next_q = critic_target_->Forward(b.next_obs, Bounded(next_pi.action));
    const at::Tensor next_regularizer =
        Regularizer(next, next_pi, b.next_obs, noise, /*next_state=*/true);
    target = TdTarget(b, next_q, alpha, next_regularizer);  // (on a GPU one kernel)
  }
  const CriticStepResult critic = CriticStep(b, target);

  // actor: mean(α·R(s) − min_k Q_k(s, z)) through the updated critics, whose parameters get no
  // gradient
  // (on a GPU one kernel each way)
  const at::Tensor actor_loss =
      models::SacActorLoss(alpha, regularizer, critic_->Forward(b.obs, z, /*detach=*/true));
  GradientStep(actor_loss, actor_->params(), *actor_adam_);
  stats.actor_updated = true;

  ++updates_;
  if (updates_ % config_.algorithm.target_update_period() == 0) {
    Polyak(critic_->params(), critic_target_->params());
  }
  FetchStats({critic.loss, actor_loss.detach(), alpha, temperature.loss, critic.q_mean,
              temperature.entropy},
             critic.td_error_abs, &stats);
  return stats;
}

RegularizedSacAgent::TemperatureResult RegularizedSacAgent::Temperature(
    const at::Tensor& alpha, const at::Tensor& regularizer) {
  const at::Tensor mean = regularizer.detach().mean();
  return {fixed_alpha_ ? at::Tensor() : TemperatureStep(alpha, mean), ReportedEntropy(mean)};
}

at::Tensor RegularizedSacAgent::Policy(const at::Tensor& obs, bool deterministic,
                                       const at::Tensor& noise) const {
  const models::PolicyNetwork::Output out = Scaled(actor_->Forward(obs));
  if (deterministic) return Bounded(at::tanh(out.mean));
  return Bounded(at::tanh(at::addcmul(out.mean, out.log_std.exp(), noise)));
}

std::vector<StateEntry> RegularizedSacAgent::StateEntries() {
  std::vector<StateEntry> entries = TwinCriticAgent::StateEntries();
  entries.push_back({"log_alpha", log_alpha_, nullptr, nullptr, /*learned=*/true});
  entries.push_back({"alpha.adam.exp_avg", alpha_adam_.exp_avg()});
  entries.push_back({"alpha.adam.exp_avg_sq", alpha_adam_.exp_avg_sq()});
  entries.push_back({"alpha.adam.steps", {}, alpha_adam_.mutable_steps()});
  return entries;
}

std::vector<FlatAdam*> RegularizedSacAgent::Optimizers() {
  std::vector<FlatAdam*> optimizers = TwinCriticAgent::Optimizers();
  optimizers.push_back(&alpha_adam_);
  return optimizers;
}

int64_t RegularizedSacAgent::GraphBranch() const {
  return (updates_ + 1) % config_.algorithm.target_update_period() == 0 ? 1 : 0;
}

at::Tensor RegularizedSacAgent::Bounded(const at::Tensor& squashed) const {
  return bound_ != 1.0 ? squashed * bound_ : squashed;  // no kernel for a product by one
}

models::PolicyNetwork::Output RegularizedSacAgent::Scaled(models::PolicyNetwork::Output out) const {
  if (scale_ != 1.0) {
    out.mean = out.mean / scale_;
    out.log_std = out.log_std - std::log(scale_);
    out.head = at::Tensor();  // no longer what mean and log_std are views of
  }
  return out;
}

// ---- SAC, and PARROT's SAC over the flow's latent ----

namespace {

const v1::SacConfig& SacOf(const AgentConfig& config) {
  return config.algorithm.has_parrot() ? config.algorithm.parrot().sac() : config.algorithm.sac();
}

RegularizedSacAgent::Options SacOptions(const AgentConfig& config) {
  const v1::SacConfig& sac = SacOf(config);
  RegularizedSacAgent::Options options;
  options.initial_alpha = sac.initial_alpha();
  options.alpha_lr = sac.alpha_lr();
  options.fixed_alpha = sac.fixed_alpha();
  if (config.algorithm.has_parrot()) {
    const v1::ParrotConfig& parrot = config.algorithm.parrot();
    options.bound = parrot.latent_bound();
    if (parrot.latent_squash() != v1::ParrotConfig::LATENT_SQUASH_UNSCALED) {
      options.scale = options.bound;
    }
  }
  return options;
}

bool KlToBase(const AgentConfig& config) {
  return config.algorithm.has_parrot() &&
         config.algorithm.parrot().regularizer() == v1::ParrotConfig::REGULARIZER_KL_TO_BASE;
}

class SacAgent final : public RegularizedSacAgent {
 public:
  explicit SacAgent(const AgentConfig& config)
      : RegularizedSacAgent(config, SacOptions(config)),
        kl_to_base_(KlToBase(config)),
        // the temperature's gap is mean R + target: −δ for the divergence
        target_(kl_to_base_ ? -config.algorithm.parrot().target_divergence()
                            : SacOf(config).target_entropy()),
        log_bound_(std::log(bound()) * static_cast<double>(config.act_dim)),
        log_base_normalizer_(0.5 * std::log(2.0 * M_PI) * static_cast<double>(config.act_dim)) {
    // on the CPU: the update without autograd where it applies (learner/direct_sac.h)
    EnableDirectUpdate(kl_to_base_ ? SacRegularizer::kKlToBase : SacRegularizer::kLogProb);
    // PARROT: π(z|s) starts as the flow's base N(0, I) (before the squashing): the head's
    // weights and biases are zero, so the mean is 0 and log σ is 0 everywhere
    if (config.algorithm.has_parrot() && !config.algorithm.parrot().random_policy_init()) {
      at::NoGradGuard no_grad;
      for (auto& [name, param] : actor_->NamedParameters()) {
        if (name.rfind("mean.", 0) == 0 || name.rfind("log_std.", 0) == 0) param.zero_();
      }
    }
  }

 protected:
  int64_t NoiseDraws() const override { return 2; }
  bool GraphSafe() const override { return true; }

  // R = log π(z|s). z = b·tanh(u / s) is sampled as tanh of u/s ~ N(μ/s, (σ/s)²), so
  // log π(z) = log π(tanh(u/s)) − A·log b (b = s = 1 for flat SAC). With the KL to the base,
  // R = log π(z|s) − log N(z; 0, I) = log π(z|s) + ‖z‖²/2 + A·½·log 2π.
  at::Tensor Regularizer(const models::PolicyNetwork::Output& /*out*/,
                         const models::SquashedSample& sample, const at::Tensor& /*obs*/,
                         const at::Tensor& /*noise*/, bool /*next_state*/) const override {
    // (no subtraction of a zero: on a GPU each operation is a kernel of its own)
    at::Tensor log_prob = log_bound_ != 0 ? sample.log_prob - log_bound_ : sample.log_prob;
    if (!kl_to_base_) return log_prob;
    const at::Tensor z = sample.action * bound();
    return log_prob + z.square().sum(-1) * 0.5 + log_base_normalizer_;
  }

  // J(log α) = −log α · (mean R + target): the target entropy for R = log π, −δ for the
  // divergence; its gradient is exact
  at::Tensor TemperatureStep(const at::Tensor& /*alpha*/,
                             const at::Tensor& mean_log_prob) override {
    const at::Tensor gap = mean_log_prob + target_;
    at::Tensor loss = -(log_alpha_.squeeze(0) * gap);  // before the step changes log α
    alpha_adam_.Step(-gap.reshape({1}));
    return loss;
  }

  // the entropy −mean log π, or the divergence itself
  at::Tensor ReportedEntropy(const at::Tensor& mean_regularizer) const override {
    return kl_to_base_ ? mean_regularizer : -mean_regularizer;
  }

  // TemperatureStep and ReportedEntropy from R itself: on a GPU one kernel for the mean, the
  // loss, the gradient and the entropy (models::SacTemperatureTerms), then Adam's
  TemperatureResult Temperature(const at::Tensor& /*alpha*/,
                                const at::Tensor& regularizer) override {
    const models::TemperatureTerms t =
        models::SacTemperatureTerms(regularizer, log_alpha_, target_, !kl_to_base_);
    if (fixed_alpha()) return {at::Tensor(), t.entropy};
    alpha_adam_.Step(t.grad);
    return {t.loss, t.entropy};
  }

  void DescribePolicy(v1::PolicyArchitecture* architecture) const override {
    architecture->set_head(v1::PolicyArchitecture::HEAD_SQUASHED_GAUSSIAN);
    if (config_.algorithm.has_parrot()) {
      // a latent the flow maps to the action: a = f(z; s)
      architecture->set_output(v1::PolicyArchitecture::OUTPUT_FLOW_LATENT);
      architecture->set_output_bound(bound());
      if (scale() != 1.0) architecture->set_squash_scale(scale());
    }
  }

 private:
  const bool kl_to_base_;
  const double target_;
  const double log_bound_;            // A·log b
  const double log_base_normalizer_;  // A·½·log 2π
};

}  // namespace

std::unique_ptr<TwinCriticAgent> NewSacAgent(const AgentConfig& config) {
  return std::make_unique<SacAgent>(config);
}

}  // namespace prl::learner::internal
