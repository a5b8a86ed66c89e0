// TD3's critic and actor steps on the CPU without autograd, as learner/direct_sac.h does for SAC:
// the networks through models/dense_mlp.h, the batch split into one row range per intra-op
// thread (learner/direct_shards.h). The same arithmetic as Td3Agent::DoUpdate (td3_agent.cc) and
// TwinCriticAgent::CriticStep, self-imitation rows included (MCAT's lower-bound Q-learning),
// which stay the reference (agent_test compares the two). Used by TD3 on the CPU when its
// networks are ReLU MLPs without LayerNorm and oneDNN's sgemm is available
// (AgentOptions::direct_cpu_update).
#ifndef PRL_LEARNER_DIRECT_TD3_H_
#define PRL_LEARNER_DIRECT_TD3_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "ATen/core/Tensor.h"
#include "absl/status/statusor.h"
#include "learner/agent_internal.h"
#include "learner/flat_adam.h"
#include "models/dense_mlp.h"
#include "models/networks.h"

namespace prl::learner::internal {

class DirectTd3Update {
 public:
  // The update for these networks (deterministic policy and its target; the critics and their
  // target: the same ensemble shape), or null where the direct path does not apply: not the
  // CPU, no oneDNN sgemm, a trunk other than Linear + ReLU.
  static std::unique_ptr<DirectTd3Update> Create(const models::PolicyNetwork& actor,
                                                 const models::PolicyNetwork& actor_target,
                                                 const models::QEnsemble& critic,
                                                 const models::QEnsemble& critic_target,
                                                 const AgentConfig& config);

  struct Result {
    double critic_loss = 0;  // with the self-imitation term, as CriticStep reports it
    double actor_loss = 0;   // when the actor stepped
    double q_mean = 0;
    std::vector<float> td_error_abs;  // per row: mean over the critics of |Q_k − y|
    bool has_sil = false;
    double sil_loss = 0;
    std::vector<float> sil_advantage;  // per self-imitation row: (R − min_k Q_k)_+
  };
  // With noise [1, B, A]: y = r·reward_scale + γ·discount·min_k Q'_k(s', clip(π'(s') +
  // clip(σ·ε, −c, c), −1, 1)); the critics' step on ½·Σ_k mean(w·(Q_k − y)²) plus, with
  // self-imitation rows, coef·½·Σ_k mean_S(w_S·((R − Q_k)_+)²); then, when `actor_step`, through
  // the updated critics the actor's step on −mean Q_1(s, π(s)). Each step clips the gradient to
  // max_grad_norm when set. The target networks are the caller's. INTERNAL when a product fails
  // (the networks may then be partly updated).
  absl::StatusOr<Result> Run(const DeviceBatch& batch, const at::Tensor& noise, bool actor_step,
                             models::ParameterBlock* actor, FlatAdam* actor_adam,
                             const models::ParameterBlock& actor_target,
                             models::ParameterBlock* critic, FlatAdam* critic_adam,
                             const models::ParameterBlock& critic_target);

 private:
  // One row range's networks and buffers.
  struct Shard {
    models::dense::DenseMlp actor, actor_target;
    std::vector<models::dense::DenseMlp> critic, target;
    std::vector<float> next_action, x, x_next, y, g_q, g_x, g_action, action;
    std::vector<float> critic_grad, actor_grad;  // shards >= 1: their own gradient buffers
    std::vector<float> td_error_abs, sil_advantage;
    double critic_loss = 0, sil_loss = 0, actor_loss = 0, q_sum = 0;
  };

  DirectTd3Update(Shard prototype, const AgentConfig& config);
  // The phases of Run on shard `s`: rows [begin, begin + n) of the batch and self-imitation rows
  // [sil_begin, sil_begin + m).
  bool CriticPhase(Shard& s, const DeviceBatch& b, const float* noise, int64_t begin, int64_t n,
                   int64_t sil_begin, int64_t m, const float* actor_target, const float* critic,
                   const float* target, float* critic_grad);
  bool ActorPhase(Shard& s, const DeviceBatch& b, int64_t begin, int64_t n, const float* actor,
                  const float* critic, float* actor_grad);

  Shard prototype_;
  std::vector<Shard> shards_;
  int64_t obs_dim_, act_dim_;
  int members_;
  double discount_, reward_scale_, max_grad_norm_;
  float policy_noise_, noise_clip_;
};

}  // namespace prl::learner::internal

#endif  // PRL_LEARNER_DIRECT_TD3_H_
