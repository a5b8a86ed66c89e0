// SAC's critic and actor steps on the CPU without autograd: the networks' forward and backward
// passes through models/dense_mlp.h (oneDNN products, fused epilogues, buffers kept from update
// to update), the squashed-Gaussian sample through models/cpu_kernels.h, and the batch split into
// one row range per intra-op thread, each computing its rows' part of the gradients on its own
// core (summed in range order before each Adam step). The same arithmetic as
// RegularizedSacAgent::DoUpdate (sac_agent.cc), which stays the reference (agent_test and
// spirl_agent_test compare the two); used by SAC, PARROT, SPiRL and EAP (with the analytic
// divergence, kl_samples 0) on the CPU when their networks are ReLU MLPs without LayerNorm and
// oneDNN's sgemm is available (AgentOptions::direct_cpu_update).
#ifndef PRL_LEARNER_DIRECT_SAC_H_
#define PRL_LEARNER_DIRECT_SAC_H_

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

class DirectSacUpdate {
 public:
  // The policy's output and regulariser, as the agents define them: z = b·tanh(u / s) with
  // u ~ N(μ, σ) from the network, and
  //   kLogProb   R = log π(z|s) = log π(tanh(u/s)) − A·log b (SacAgent),
  //   kKlToBase  that plus ‖z‖²/2 + A·½·log 2π (PARROT's REGULARIZER_KL_TO_BASE),
  //   kPriorKl   R = clip(mean_j KL(N(μ_j/s, σ_j/s) ‖ p_j(z|s)), ±100), SPiRL's analytic
  //              divergence (SpirlDivergence with kl_samples 0), from Run's PriorRows.
  struct Output {
    double bound = 1.0;  // b
    double scale = 1.0;  // s
    SacRegularizer regularizer = SacRegularizer::kLogProb;
  };
  // The update for these networks (the critic and its target: the same ensemble shape), or null
  // when the direct path does not apply: not the CPU, no oneDNN sgemm, a trunk other than
  // Linear + ReLU, a deterministic policy head.
  static std::unique_ptr<DirectSacUpdate> Create(const models::PolicyNetwork& actor,
                                                 const models::QEnsemble& critic,
                                                 const models::QEnsemble& critic_target,
                                                 const AgentConfig& config, const Output& output);

  struct Result {
    double critic_loss = 0, actor_loss = 0, q_mean = 0;
    double mean_regularizer = 0;      // mean R(s) of the actor's sample (before its step)
    std::vector<float> td_error_abs;  // per row: mean over the critics of |Q_k − y|
  };
  // With temperature `alpha` and noise [2, B, A] (draw 0: the sample at s; draw 1: at s'):
  // y = r·reward_scale + γ·discount·(min_k Q'_k(s', z') − α·R(s')); the critics' step on
  // ½·Σ_k mean(w·(Q_k − y)²); then through the updated critics, the actor's step on
  // mean(α·R(s) − min_k Q_k(s, z)). Each step clips the gradient to max_grad_norm when set
  // and steps its Adam. The temperature and target networks are the caller's. `prior` holds
  // p(z|s) at the batch's s and s' (CPU float) for kPriorKl and is ignored otherwise. INTERNAL
  // when a product fails (the networks may then be partly updated); INVALID_ARGUMENT when
  // kPriorKl's rows are missing or of the wrong shape.
  absl::StatusOr<Result> Run(const DeviceBatch& batch, const at::Tensor& noise, double alpha,
                             models::ParameterBlock* actor, FlatAdam* actor_adam,
                             models::ParameterBlock* critic, FlatAdam* critic_adam,
                             const models::ParameterBlock& critic_target,
                             const PriorRows& prior = {});

 private:
  // One row range's networks and buffers.
  struct Shard {
    models::dense::DenseMlp actor, actor_next;
    std::vector<models::dense::DenseMlp> critic, critic_pi, target;
    std::vector<float> mean, log_std, log_std_raw, action, log_prob;  // the sample at s; R
    std::vector<float> divergence_raw;  // kPriorKl: D(s) before the clip
    std::vector<float> next_mean, next_log_std, next_action, next_log_prob;
    std::vector<float> z;                // b·action, the critics' input
    std::vector<float> x, x_next, x_pi;  // critic inputs [n, O + A]
    std::vector<float> y, g_q, g_x, g_action, g_mean, g_log_std, g_head;
    std::vector<float> critic_grad, actor_grad;  // shards >= 1: their own gradient buffers
    std::vector<float> td_error_abs;
    double critic_loss = 0, actor_loss = 0, q_sum = 0, regularizer_sum = 0;
  };

  DirectSacUpdate(Shard prototype, const AgentConfig& config, const Output& output);
  // The prior's rows as float arrays (kPriorKl), offset to a shard by the phases.
  struct PriorData {
    const float *mean = nullptr, *log_std = nullptr, *next_mean = nullptr, *next_log_std = nullptr;
  };
  // The policy's Gaussian of u / s from the head's [n, 2A] output, its sample z / b = tanh(u / s)
  // with noise `eps`, and R per row; kPriorKl takes p(z|s) of the rows from prior_mean and
  // prior_log_std and, when divergence_raw is set, writes D before the clip there.
  void Sample(const float* head, const float* eps, int64_t n, float* mean, float* log_std,
              float* log_std_raw, float* action, float* regularizer, const float* prior_mean,
              const float* prior_log_std, float* divergence_raw) const;
  // The phases of Run for rows [begin, begin + n) on shard `s`.
  bool CriticPhase(Shard& s, const DeviceBatch& b, const float* noise, const PriorData& prior,
                   int64_t begin, int64_t n, double alpha, const float* actor, const float* critic,
                   const float* target, float* critic_grad);
  bool ActorPhase(Shard& s, const DeviceBatch& b, const float* noise, const PriorData& prior,
                  int64_t begin, int64_t n, double alpha, const float* actor, const float* critic,
                  float* actor_grad);
  Shard prototype_;
  std::vector<Shard> shards_;
  int64_t obs_dim_, act_dim_;
  int members_;
  double discount_, reward_scale_, max_grad_norm_;
  Output output_;
  float log_scale_;   // log s
  float r_constant_;  // −A·log b (+ A·½·log 2π with the KL to the base); 0 for kPriorKl
};

}  // namespace prl::learner::internal

#endif  // PRL_LEARNER_DIRECT_SAC_H_
