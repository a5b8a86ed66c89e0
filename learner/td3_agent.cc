// TD3 (Fujimoto et al. 2018): twin critics regressing on the minimum of the target critics at a
// smoothed target action, a deterministic tanh policy that maximises Q_1, updated (with Polyak
// averaging of every target network) once per policy_delay critic updates. On the CPU the update
// runs without autograd where it applies (learner/direct_td3.h); this file's DoUpdate is the
// reference and the path for GPUs and other networks.
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "ATen/core/grad_mode.h"
#include "learner/agent_internal.h"
#include "learner/direct_td3.h"

namespace prl::learner::internal {
namespace {

class Td3Agent final : public TwinCriticAgent {
 public:
  explicit Td3Agent(const AgentConfig& config)
      : TwinCriticAgent(config, models::PolicyNetwork::Head::kDeterministic),
        td3_(config.algorithm.td3()),
        actor_target_(config.obs_dim, config.act_dim, config.algorithm.network(),
                      models::PolicyNetwork::Head::kDeterministic,
                      models::NetworkOptions{config.device, /*trainable=*/false, config.gemm}) {
    actor_target_.params().flat().copy_(actor_->params().flat());
    // on the CPU: the update without autograd where it applies (learner/direct_td3.h)
    if (config.direct_cpu_update) {
      direct_ = DirectTd3Update::Create(*actor_, actor_target_, *critic_, *critic_target_, config);
    }
  }

  models::PolicyNetwork* actor_target() override { return &actor_target_; }
  bool direct_update() const override { return direct_ != nullptr; }

 protected:
  int64_t NoiseDraws() const override { return 1; }
  bool GraphSafe() const override { return true; }
  // 0: critics only; 1: and the actor; 2: and the target networks
  int64_t GraphBranch() const override {
    if ((updates_ + 1) % td3_.policy_delay() != 0) return 0;
    return (actor_updates_ + 1) % config_.algorithm.target_update_period() == 0 ? 2 : 1;
  }

  UpdateStats DoUpdate(const DeviceBatch& b, const at::Tensor& noise) override {
    UpdateStats stats;
    if (direct_ != nullptr && noise.is_cpu()) return DirectUpdate(b, noise);
    // critics: y = r·scale + γ·d·min_k Q'_k(s', clip(π'(s') + clip(σ·ε, -c, c), -1, 1))
    at::Tensor target;
    {
      at::NoGradGuard no_grad;
      // (on a GPU one kernel)
      const at::Tensor next_action = models::Td3TargetAction(
          actor_target_.Forward(b.next_obs).mean, noise[0], td3_.policy_noise(), td3_.noise_clip());
      target = TdTarget(b, critic_target_->Forward(b.next_obs, next_action));
    }
    const CriticStepResult critic = CriticStep(b, target);
    ++updates_;

    // actor and targets, every policy_delay updates: maximise Q_1(s, π(s))
    at::Tensor actor_loss;
    if (updates_ % td3_.policy_delay() == 0) {
      const at::Tensor action = at::tanh(actor_->Forward(b.obs).mean);
      actor_loss = -critic_->ForwardMember(0, b.obs, action, /*detach=*/true).mean();
      GradientStep(actor_loss, actor_->params(), *actor_adam_);
      stats.actor_updated = true;
      ++actor_updates_;
      if (actor_updates_ % config_.algorithm.target_update_period() == 0) {
        Polyak(critic_->params(), critic_target_->params());
        Polyak(actor_->params(), actor_target_.params());
      }
      actor_loss = actor_loss.detach();
    }
    FetchStats({critic.loss, actor_loss, at::Tensor(), at::Tensor(), critic.q_mean, at::Tensor()},
               critic.td_error_abs, &stats);
    if (critic.sil_loss.defined()) {
      const at::Tensor host = at::cat({critic.sil_loss.reshape({1}), critic.sil_advantage})
                                  .to(at::kCPU, at::kFloat)
                                  .contiguous();
      const float* v = host.data_ptr<float>();
      stats.sil_loss = v[0];
      stats.sil_advantage.assign(v + 1, v + host.numel());
    }
    return stats;
  }

  // DoUpdate through the direct CPU update: the same counters, target updates and statistics.
  UpdateStats DirectUpdate(const DeviceBatch& b, const at::Tensor& noise) {
    UpdateStats stats;
    const bool actor_step = (updates_ + 1) % td3_.policy_delay() == 0;
    absl::StatusOr<DirectTd3Update::Result> r = direct_->Run(
        b, noise, actor_step, &actor_->params(), actor_adam_.get(), actor_target_.params(),
        &critic_->params(), critic_adam_.get(), critic_target_->params());
    if (!r.ok()) throw std::runtime_error(std::string(r.status().message()));
    ++updates_;
    if (actor_step) {
      stats.actor_updated = true;
      stats.actor_loss = r->actor_loss;
      ++actor_updates_;
      if (actor_updates_ % config_.algorithm.target_update_period() == 0) {
        Polyak(critic_->params(), critic_target_->params());
        Polyak(actor_->params(), actor_target_.params());
      }
    }
    stats.critic_loss = r->critic_loss;
    stats.q_mean = r->q_mean;
    stats.td_error_abs = std::move(r->td_error_abs);
    if (r->has_sil) {
      stats.sil_loss = r->sil_loss;
      stats.sil_advantage = std::move(r->sil_advantage);
    }
    return stats;
  }

  at::Tensor Policy(const at::Tensor& obs, bool deterministic,
                    const at::Tensor& noise) const override {
    at::Tensor action = at::tanh(actor_->Forward(obs).mean);
    if (deterministic) return action;
    return (action + noise * td3_.exploration_noise()).clamp_(-1.0, 1.0);
  }

  void DescribePolicy(v1::PolicyArchitecture* architecture) const override {
    architecture->set_head(v1::PolicyArchitecture::HEAD_DETERMINISTIC);
    architecture->set_exploration_noise(td3_.exploration_noise());
  }

  std::vector<StateEntry> StateEntries() override {
    std::vector<StateEntry> entries = TwinCriticAgent::StateEntries();
    entries.push_back(
        {"actor_target.params", actor_target_.params().flat(), nullptr, nullptr, /*learned=*/true});
    entries.push_back({"actor_updates", {}, &actor_updates_});
    return entries;
  }

 private:
  const v1::Td3Config td3_;
  models::PolicyNetwork actor_target_;
  int64_t actor_updates_ = 0;
  std::unique_ptr<DirectTd3Update> direct_;  // null: the autograd update
};

}  // namespace

std::unique_ptr<TwinCriticAgent> NewTd3Agent(const AgentConfig& config) {
  return std::make_unique<Td3Agent>(config);
}

}  // namespace prl::learner::internal
