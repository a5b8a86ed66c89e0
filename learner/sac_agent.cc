// Soft actor-critic (Haarnoja et al. 2018, with the automatic temperature of the "SAC:
// algorithms and applications" follow-up), in the update order of stable-baselines3: one policy
// sample on s serves the temperature and actor losses; the critics regress on the entropy-
// regularised twin-minimum target; the actor then maximises the updated critics.
#include <cmath>
#include <memory>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "ATen/core/grad_mode.h"
#include "learner/agent_internal.h"

namespace prl::learner::internal {
namespace {

class SacAgent final : public TwinCriticAgent {
 public:
  explicit SacAgent(const AgentConfig& config)
      : TwinCriticAgent(config, models::PolicyNetwork::Head::kSquashedGaussian),
        sac_(config.algorithm.has_parrot() ? config.algorithm.parrot().sac()
                                           : config.algorithm.sac()),
        bound_(config.algorithm.has_parrot() ? config.algorithm.parrot().latent_bound() : 1.0),
        scale_(config.algorithm.has_parrot() && config.algorithm.parrot().latent_squash() !=
                                                    v1::ParrotConfig::LATENT_SQUASH_UNSCALED
                   ? bound_
                   : 1.0),
        log_alpha_(at::full({1}, std::log(sac_.initial_alpha()),
                            at::TensorOptions().dtype(at::kFloat).device(config.device))),
        alpha_adam_(log_alpha_, FlatAdam::Options{sac_.alpha_lr()}) {
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

  UpdateStats DoUpdate(const DeviceBatch& b, const at::Tensor& noise) override {
    UpdateStats stats;
    // α of this update: taken before the temperature step, as stable-baselines3 does
    const at::Tensor alpha = log_alpha_.exp().squeeze(0);

    // the policy on s, with gradients: one sample for the temperature and actor losses
    const models::PolicyNetwork::Output pi_out = Scaled(actor_->Forward(b.obs));
    const models::SquashedSample pi =
        models::SampleSquashedGaussian(pi_out.mean, pi_out.log_std, noise[0]);
    // z = b·tanh(u / s), sampled as tanh of u/s ~ N(μ/s, (σ/s)²):
    // log π(z) = log π(tanh(u/s)) − A·log b (b = s = 1 for flat SAC)
    const double log_bound = std::log(bound_) * static_cast<double>(config_.act_dim);
    const at::Tensor pi_log_prob = pi.log_prob - log_bound;
    const at::Tensor pi_action = pi.action * bound_;
    const at::Tensor log_prob = pi_log_prob.detach();

    // temperature: J(log α) = -log α · (mean log π + target entropy); its gradient is exact
    at::Tensor alpha_loss;
    if (!sac_.fixed_alpha()) {
      const at::Tensor gap = log_prob.mean() + sac_.target_entropy();
      alpha_loss = -(log_alpha_.squeeze(0) * gap);
      alpha_adam_.Step(-gap.reshape({1}));
    }

    // critics: y = r·scale + γ·d·(min_k Q'_k(s', a') - α log π(a'|s')), a' ~ π(s')
    at::Tensor target;
    {
      at::NoGradGuard no_grad;
      const models::PolicyNetwork::Output next = Scaled(actor_->Forward(b.next_obs));
      const models::SquashedSample next_pi =
          models::SampleSquashedGaussian(next.mean, next.log_std, noise[1]);
      const at::Tensor next_q =
          critic_target_->Forward(b.next_obs, next_pi.action * bound_).amin(0);
      target = TdTarget(b, next_q - alpha * (next_pi.log_prob - log_bound));
    }
    const CriticStepResult critic = CriticStep(b, target);

    // actor: mean(α log π(a|s) - min_k Q_k(s, a)) through the updated critics, whose
    // parameters get no gradient
    const at::Tensor q_pi = critic_->Forward(b.obs, pi_action, /*detach=*/true).amin(0);
    const at::Tensor actor_loss = (alpha * pi_log_prob - q_pi).mean();
    GradientStep(actor_loss, actor_->params(), *actor_adam_);
    stats.actor_updated = true;

    ++updates_;
    if (updates_ % config_.algorithm.target_update_period() == 0) {
      Polyak(critic_->params(), critic_target_->params());
    }
    FetchStats(
        {critic.loss, actor_loss.detach(), alpha, alpha_loss, critic.q_mean, -log_prob.mean()},
        critic.td_error_abs, &stats);
    return stats;
  }

  at::Tensor Policy(const at::Tensor& obs, bool deterministic,
                    const at::Tensor& noise) const override {
    const models::PolicyNetwork::Output out = Scaled(actor_->Forward(obs));
    if (deterministic) return at::tanh(out.mean) * bound_;
    return at::tanh(at::addcmul(out.mean, out.log_std.exp(), noise)) * bound_;
  }

  void DescribePolicy(v1::PolicyArchitecture* architecture) const override {
    architecture->set_head(v1::PolicyArchitecture::HEAD_SQUASHED_GAUSSIAN);
    if (config_.algorithm.has_parrot()) {
      // a latent the flow maps to the action: a = f(z; s)
      architecture->set_output(v1::PolicyArchitecture::OUTPUT_FLOW_LATENT);
      architecture->set_output_bound(bound_);
      if (scale_ != 1.0) architecture->set_squash_scale(scale_);
    }
  }

  std::vector<StateEntry> StateEntries() override {
    std::vector<StateEntry> entries = TwinCriticAgent::StateEntries();
    entries.push_back({"log_alpha", log_alpha_, nullptr, nullptr, /*learned=*/true});
    entries.push_back({"alpha.adam.exp_avg", alpha_adam_.exp_avg()});
    entries.push_back({"alpha.adam.exp_avg_sq", alpha_adam_.exp_avg_sq()});
    entries.push_back({"alpha.adam.steps", {}, alpha_adam_.mutable_steps()});
    return entries;
  }

 private:
  // The Gaussian of u / s, whose tanh times b is the output.
  models::PolicyNetwork::Output Scaled(models::PolicyNetwork::Output out) const {
    if (scale_ != 1.0) {
      out.mean = out.mean / scale_;
      out.log_std = out.log_std - std::log(scale_);
    }
    return out;
  }

  const v1::SacConfig sac_;
  const double bound_;    // b of z = b·tanh(u / s): 1 for SAC, parrot.latent_bound for PARROT
  const double scale_;    // s: b for PARROT's scaled squash, 1 otherwise
  at::Tensor log_alpha_;  // [1]; its gradient is computed in closed form
  FlatAdam alpha_adam_;
};

}  // namespace

std::unique_ptr<TwinCriticAgent> NewSacAgent(const AgentConfig& config) {
  return std::make_unique<SacAgent>(config);
}

}  // namespace prl::learner::internal
