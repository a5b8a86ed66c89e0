// MCAT's three networks (Guo, Wu & Lee, §3.2-3.3) and its contrastive loss, without the
// training machinery (models/mcat_model.h): the learner trains them, actors act with the encoder
// and the translator (models/policy_runner.h), the prior server serves the translator. See
// models/mcat_model.h for the losses and the parameter names.
//
// Thread-compatible: Forward may run concurrently with other Forward calls.
#ifndef PRL_MODELS_MCAT_NETWORKS_H_
#define PRL_MODELS_MCAT_NETWORKS_H_

#include <cstdint>
#include <optional>
#include <string>

#include "ATen/core/Tensor.h"
#include "models/networks.h"
#include "proto/experiment.pb.h"

namespace prl::models {

// Sizes shared by the three networks.
struct McatDims {
  int64_t obs_dim = 0;
  int64_t action_dim = 0;
  int64_t context_dim = 0;      // z
  int64_t context_history = 0;  // K
};

// The context encoder C. Parameters "<prefix>.trunk.<i>.*", "<prefix>.out.*" in the caller's
// block (prefix "context_encoder").
class ContextEncoder {
 public:
  ContextEncoder(ParameterBlock* block, const std::string& prefix, const McatDims& dims,
                 const v1::NetworkSpec& resolved);
  // observations [B, K + 1, obs] (s_{t-K} .. s_t), actions [B, K, act] (a_{t-K} .. a_{t-1}),
  // mask [B, K] (1 for a transition of the episode, 0 before it began) → z_t [B, context_dim].
  at::Tensor Forward(const ParameterBlock& block, const at::Tensor& observations,
                     const at::Tensor& actions, const at::Tensor& mask, GemmBackend gemm,
                     bool detach = false) const;
  // The network as a DenseMlp over `block`'s flat buffer, one head z; its input is Forward's x
  // (each transition as [s, a, s' - s], zeroed where the mask is 0, K of them per row). nullopt
  // unless the trunk is plain ReLU on a CPU float32 block.
  std::optional<dense::DenseMlp> Dense(const ParameterBlock& block) const;

 private:
  McatDims dims_;
  MlpTrunk trunk_;
  int out_weight_, out_bias_;
};

// The forward model F. Parameters "<prefix>.trunk.<i>.*", "<prefix>.mean.*",
// "<prefix>.log_std.*" (prefix "forward_model").
class ForwardModel {
 public:
  ForwardModel(ParameterBlock* block, const std::string& prefix, const McatDims& dims,
               const v1::NetworkSpec& resolved);
  // log F(next_obs | obs, action, z) per row [B] (summed over the state dimensions). log σ is
  // the log_std head's output u squashed smoothly into [-20, 2] (the policy's range):
  // l = 2 - softplus(2 - u), log σ = -20 + softplus(l + 20); unlike a clamp it keeps a gradient
  // at the bounds.
  at::Tensor LogProb(const ParameterBlock& block, const at::Tensor& obs, const at::Tensor& action,
                     const at::Tensor& z, const at::Tensor& next_obs, GemmBackend gemm,
                     bool detach = false) const;
  // As ContextEncoder::Dense on the input [obs, action, z], heads {mean, log_std before the
  // bounds}.
  std::optional<dense::DenseMlp> Dense(const ParameterBlock& block) const;

 private:
  McatDims dims_;
  MlpTrunk trunk_;
  int mean_weight_, mean_bias_, log_std_weight_, log_std_bias_;
};

// The action translator H. Parameters "<prefix>.trunk.<i>.*", "<prefix>.out.*" (prefix
// "translator"). context_dim 0 makes a context-free translator between two fixed tasks.
class ActionTranslator {
 public:
  ActionTranslator(ParameterBlock* block, const std::string& prefix, const McatDims& dims,
                   const v1::NetworkSpec& resolved);
  // obs [B, obs], source_action [B, act], source_context and target_context [B, context_dim]
  // → target action [B, act] in [-1, 1].
  at::Tensor Forward(const ParameterBlock& block, const at::Tensor& obs,
                     const at::Tensor& source_action, const at::Tensor& source_context,
                     const at::Tensor& target_context, GemmBackend gemm, bool detach = false) const;
  // As ContextEncoder::Dense on the input [obs, source_action, source_context, target_context],
  // one head: the action before the tanh.
  std::optional<dense::DenseMlp> Dense(const ParameterBlock& block) const;

 private:
  McatDims dims_;
  MlpTrunk trunk_;
  int out_weight_, out_bias_;
};

// L_cont of eq. 2 over a batch: z [B, C], task [B] (int64), margin m. Differentiable in z.
at::Tensor ContrastiveLoss(const at::Tensor& z, const at::Tensor& task, double margin);

// ---- the same terms on raw buffers, with their gradients (McatModel's autograd-free step) ----

// -log F and its derivatives for `rows` rows of F's heads at once, on raw buffers (row-major
// [rows, obs_dim]): delta = s' - s, the mean head and the log σ head before the soft bounds of
// ForwardModel::LogProb. Rows with use[r] == 0 count for nothing and get zero derivatives. Writes
// scale · ∂(-log F)/∂mean and ∂/∂raw into d_mean and d_raw and returns the sum over the used rows
// of -log F (accumulated in double). Computed with LibTorch's vectorised operators, as the
// autograd path computes the forward values and at::softplus's backward its derivative.
double ForwardNllWithGradient(const float* delta, const float* mean, const float* raw,
                              const float* use, int64_t rows, int64_t obs_dim, float scale,
                              float* d_mean, float* d_raw);

// ContrastiveLoss of z [rows, dim] (row-major) and task [rows]: returns the loss and writes
// scale · ∂loss/∂z into grad [rows, dim]. Distances are computed directly, not from the Gram
// matrix (the same value up to rounding).
double ContrastiveLossWithGradient(const float* z, const int64_t* task, int64_t rows, int64_t dim,
                                   double margin, float scale, float* grad);

}  // namespace prl::models

#endif  // PRL_MODELS_MCAT_NETWORKS_H_
