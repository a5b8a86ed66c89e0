// The learner's networks, built from a prl.v1.NetworkSpec: the policy (a squashed-Gaussian or a
// deterministic tanh head on an MLP trunk) and an ensemble of Q networks Q_k(s, a) evaluated as
// one batched forward (the twin critics of SAC and TD3).
//
// Parameters live in a ParameterBlock: one flat float32 tensor per network, of which every
// parameter is a view, with gradients in a second flat tensor. Optimizers, Polyak averaging,
// gradient clipping and checkpoints then each touch one tensor, not one per layer.
//
// Policy parameter names are part of the actor API (prl.v1.Policy.weights) and mirror the
// PyTorch module
//
//   trunk = nn.Sequential(Linear(obs, h0), [LayerNorm(h0)], Act(), Linear(h0, h1), ...)
//   mean = Linear(h_last, out); log_std = Linear(h_last, out)   # log_std: Gaussian head only
//
// i.e. "trunk.0.weight", "trunk.0.bias", ("trunk.1.weight", "trunk.1.bias" for LayerNorm), ...,
// "mean.weight", "mean.bias", "log_std.weight", "log_std.bias". Shapes are PyTorch's: a Linear
// weight is [out, in].
//
// Thread-compatible: Forward may run concurrently with other Forward calls; changing parameters
// needs external synchronisation.
#ifndef PRL_MODELS_NETWORKS_H_
#define PRL_MODELS_NETWORKS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ATen/core/Generator.h"
#include "ATen/core/Tensor.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "models/dense_mlp.h"
#include "models/network_spec.h"  // ResolveNetworkSpec
#include "proto/experiment.pb.h"

namespace prl::models {

// The squashed-Gaussian policy head clamps log σ to [kPolicyLogStdMin, kPolicyLogStdMax].
inline constexpr double kPolicyLogStdMin = -20.0;
inline constexpr double kPolicyLogStdMax = 2.0;

// How linear layers multiply on CPU. kOneDnn uses oneDNN's sgemm (models/gemm.h) when it is
// available and the tensors are CPU float32, ATen otherwise; kAten always uses ATen.
enum class GemmBackend { kAten, kOneDnn };

// y = x · Wᵀ + b, differentiable in x, W and b. One layer: x [B, in], W [out, in], b [out],
// y [B, out]. An ensemble of E layers: W [E, out, in], b [E, out], x [B, in] (shared by all
// members) or [E, B, in], y [E, B, out].
at::Tensor Linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                  GemmBackend backend);

// relu(Linear(x, W, b)): the same values and gradients; on the oneDNN path one fused operation
// (the bias and ReLU applied in the product's epilogue, one autograd node, the backward mask and
// bias gradient in one pass).
at::Tensor LinearRelu(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                      GemmBackend backend);

namespace internal {
// relu(Linear(x, W, b)) as LinearRelu computes it on a GPU whose kernels passed their check (one
// autograd node: the bias and ReLU in the product's epilogue, the mask and the bias gradient in
// one pass; models/networks.cc), on any device: for tests, which check it on the CPU. Float32,
// Linear's shapes with a [B, in] input for a plain layer.
at::Tensor EpilogueLinearRelu(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b);
}  // namespace internal

// One step of torch.optim.Adam (no weight decay, no AMSGrad) on flat tensors, in place: `step`
// is the 1-based step count. Float32 contiguous tensors take one fused pass: on the CPU
// models/cpu_kernels.h's, split across the intra-op threads; on a GPU (CUDA builds) one kernel
// of models/cuda_kernels.h, bit for bit the CPU's step. Others take the ATen operations.
void AdamStepInPlace(const at::Tensor& param, const at::Tensor& exp_avg,
                     const at::Tensor& exp_avg_sq, const at::Tensor& grad, double lr, double beta1,
                     double beta2, double eps, int64_t step);

// The two scalars of AdamStepInPlace that change with the step count, as its fused passes use
// them: out[0] = −lr / (1 − β1^step), out[1] = √(1 − β2^step), in float.
constexpr int kAdamStepScalars = 2;
void AdamStepScalars(double lr, double beta1, double beta2, int64_t step, float* out);

// AdamStepInPlace with those two scalars read from `step_scalars` (float32 [kAdamStepScalars] on
// param's device, as AdamStepScalars wrote them) when the step runs, not computed on the host:
// the step a captured CUDA graph replays with each launch's values. The same fused passes (the
// same results as AdamStepInPlace at that step), else the ATen operations.
void AdamStepInPlaceWithStepScalars(const at::Tensor& param, const at::Tensor& exp_avg,
                                    const at::Tensor& exp_avg_sq, const at::Tensor& grad,
                                    double beta1, double beta2, double eps,
                                    const at::Tensor& step_scalars);

// log(1 - tanh(u)²) elementwise, as 2·(log 2 - u - softplus(-2u)): exact and finite for any u.
at::Tensor TanhLogDetJacobian(const at::Tensor& u);

// A reparameterised sample of the tanh-squashed Gaussian: u = mean + exp(log_std) · noise,
// action = tanh(u), and log π(action) summed over the last dimension, including the change of
// variables term. `noise` is standard normal with mean's shape. Differentiable in mean and
// log_std.
struct SquashedSample {
  at::Tensor action;    // [..., A] in (-1, 1)
  at::Tensor log_prob;  // [...]
};
SquashedSample SampleSquashedGaussian(const at::Tensor& mean, const at::Tensor& log_std,
                                      const at::Tensor& noise);
// The same as LibTorch operations on any device (SampleSquashedGaussian's path on a GPU; on the
// CPU it runs one fused kernel forward and one backward, equal to this up to rounding).
SquashedSample SampleSquashedGaussianComposite(const at::Tensor& mean, const at::Tensor& log_std,
                                               const at::Tensor& noise);

// Twin critics' regression onto a target: loss = 0.5 · mean_b Σ_k w_b·(q[k, b] − y_b)² for q
// [K, B] (differentiable) against y [B] and weight [B] (both constants; weight undefined: 1),
// with what the learner reports alongside it: td_error_abs [B] = mean_k |q[k, b] − y_b| and
// q_mean = the mean of q (neither differentiable). On a GPU whose kernels passed their check one
// kernel forward and one backward (models/cuda_kernels.h; the gradient bit for bit the CPU's,
// the loss and q_mean summed in another order); elsewhere LibTorch's operations
// (TwinTdLossComposite).
struct TdLoss {
  at::Tensor loss;          // [] with gradient
  at::Tensor td_error_abs;  // [B]
  at::Tensor q_mean;        // []
};
TdLoss TwinTdLoss(const at::Tensor& q, const at::Tensor& target, const at::Tensor& weight);
// The same as LibTorch operations on any device.
TdLoss TwinTdLossComposite(const at::Tensor& q, const at::Tensor& target, const at::Tensor& weight);
// SAC's actor loss through the critics, mean_b (α·R_b − min_k q[k, b]) for α [] and R [B]
// (differentiable in R; α a constant) and q [K, B] (differentiable). On a GPU whose kernels
// passed their check one kernel forward and one backward (the gradients bit for bit the CPU's
// for finite q, ties at the minimum shared as LibTorch's amin shares them); elsewhere LibTorch's
// operations (SacActorLossComposite).
at::Tensor SacActorLoss(const at::Tensor& alpha, const at::Tensor& regularizer,
                        const at::Tensor& q);
at::Tensor SacActorLossComposite(const at::Tensor& alpha, const at::Tensor& regularizer,
                                 const at::Tensor& q);
// The critics' regression target, without gradient: y = r·reward_scale + γ·d·(min_k q[k] − α·R)
// for q [K, B] (the target critics at the next state), α [] or [1] and R [B] (both undefined:
// no α·R term, TD3's target), r and d [B]. On a GPU whose kernels passed their check one kernel
// (bit for bit the CPU's pass of internal::FusedTwinTdTarget); elsewhere LibTorch's operations
// (TwinTdTargetComposite: four to five kernels on a GPU, whose addcmul rounds in another order
// than the CPU's: the last bits may differ).
at::Tensor TwinTdTarget(const at::Tensor& q, const at::Tensor& alpha, const at::Tensor& regularizer,
                        const at::Tensor& reward, const at::Tensor& discount, double reward_scale,
                        double gamma);
at::Tensor TwinTdTargetComposite(const at::Tensor& q, const at::Tensor& alpha,
                                 const at::Tensor& regularizer, const at::Tensor& reward,
                                 const at::Tensor& discount, double reward_scale, double gamma);
// TD3's target action with target-policy smoothing, without gradient:
// clamp(tanh(mean) + clamp(σ·noise, −c, c), −1, 1) for the target actor's mean [B, A] and
// standard-normal noise [B, A] (σ = policy_noise, c = noise_clip). On a GPU whose kernels passed
// their check one kernel where the composite is five; elsewhere LibTorch's operations
// (Td3TargetActionComposite, equal to the kernel but for the last bit of tanh).
at::Tensor Td3TargetAction(const at::Tensor& mean, const at::Tensor& noise, double policy_noise,
                           double noise_clip);
at::Tensor Td3TargetActionComposite(const at::Tensor& mean, const at::Tensor& noise,
                                    double policy_noise, double noise_clip);
// SAC's temperature terms from its regulariser R [B] (its gradient ignored) and log α [1]:
// R's batch mean m, the temperature loss −log α·(m + target) [], its gradient with respect to
// log α, −(m + target) [1] (for Adam), and the entropy the learner reports (−m, or m where
// `negate_entropy` is false). On a GPU whose kernels passed their check one kernel, the mean
// summed in double (about six operations otherwise); elsewhere LibTorch's operations
// (SacTemperatureTermsComposite).
struct TemperatureTerms {
  at::Tensor mean, loss, grad, entropy;
};
TemperatureTerms SacTemperatureTerms(const at::Tensor& regularizer, const at::Tensor& log_alpha,
                                     double target, bool negate_entropy);
TemperatureTerms SacTemperatureTermsComposite(const at::Tensor& regularizer,
                                              const at::Tensor& log_alpha, double target,
                                              bool negate_entropy);
namespace internal {
// SacTemperatureTerms's kernel on any device (kernels::TemperatureTerms on the CPU), for tests.
// Float32; throws c10::Error on other shapes.
TemperatureTerms FusedSacTemperatureTerms(const at::Tensor& regularizer,
                                          const at::Tensor& log_alpha, double target,
                                          bool negate_entropy);
// TwinTdTarget's kernel on any device (kernels::TdTarget on the CPU), for tests. Float32, no
// gradients; throws c10::Error on other shapes.
at::Tensor FusedTwinTdTarget(const at::Tensor& q, const at::Tensor& alpha,
                             const at::Tensor& regularizer, const at::Tensor& reward,
                             const at::Tensor& discount, double reward_scale, double gamma);
// TwinTdLoss and SacActorLoss as one autograd node each on any device (the CPU's passes in place
// of the kernels), for tests. Float32; CHECK-fails on other shapes.
TdLoss FusedTwinTdLoss(const at::Tensor& q, const at::Tensor& target, const at::Tensor& weight);
at::Tensor FusedSacActorLoss(const at::Tensor& alpha, const at::Tensor& regularizer,
                             const at::Tensor& q);
}  // namespace internal

// Flat storage for the parameters of one network (see the file comment). Declare every
// parameter, then Allocate; views and offsets are fixed from then on.
class ParameterBlock {
 public:
  // How Initialize fills a parameter.
  struct Init {
    enum Kind { kUniform, kConstant } kind = kConstant;
    double value = 0;  // kUniform: U(-value, value); kConstant: value
  };

  // Adds a parameter; returns its index. CHECK-fails after Allocate.
  int Declare(std::string name, std::vector<int64_t> shape, Init init);
  // Allocates zeroed storage on `device`. With `requires_grad` every parameter is an autograd
  // leaf whose .grad is a view of flat_grad(), so backward accumulates into flat_grad().
  void Allocate(at::Device device, bool requires_grad);
  // Fills every parameter per its Init, drawing from `generator` (a CPU generator; values are
  // drawn on the CPU and copied, so a seed gives the same weights on every device).
  void Initialize(at::Generator& generator);

  int size() const { return static_cast<int>(entries_.size()); }
  const std::string& name(int i) const { return entries_[i].name; }
  const at::Tensor& param(int i) const { return entries_[i].view; }
  const at::Tensor& flat() const { return flat_; }
  const at::Tensor& flat_grad() const { return flat_grad_; }
  int64_t numel() const { return numel_; }
  // Zeroes flat_grad().
  void ZeroGrad();
  // Writes the gradient of the scalar `loss` with respect to every parameter into flat_grad()
  // (replacing what it held; zeros for parameters `loss` does not depend on) without touching the
  // parameters' .grad: one concatenation of the gradients autograd computed, where ZeroGrad then
  // backward cost a fill plus one accumulation per parameter (on a GPU, a kernel each). Frees
  // the graph as backward does. CHECK-fails without gradients (Allocate's requires_grad).
  void GradientInto(const at::Tensor& loss);

  // The parameters as seen by shard `shard` (>= 1) of a data-parallel training step: the same
  // storage as flat() (an update through this block is seen by every shard), but autograd leaves
  // of their own whose .grad is a view of the shard's own flat_grad(), so shards run backward
  // concurrently without touching each other's gradients. Created on first use and kept (not
  // thread-safe: create them before the shards run). CHECK-fails unless allocated with
  // requires_grad.
  ParameterBlock& GradientShard(int shard);

 private:
  // Sets every entry's view into flat_ (leaves with .grad in flat_grad_ when it is defined).
  void MakeViews();

  struct Entry {
    std::string name;
    std::vector<int64_t> shape;
    Init init;
    int64_t offset = 0;
    at::Tensor view;
  };
  std::vector<Entry> entries_;
  int64_t numel_ = 0;
  at::Tensor flat_;
  at::Tensor flat_grad_;
  std::vector<std::unique_ptr<ParameterBlock>> shards_;  // GradientShard(1), (2), ...
};

// Where a network lives and how it computes.
struct NetworkOptions {
  at::Device device = at::kCPU;
  // False for target networks and actors' copies: parameters need no gradients.
  bool trainable = true;
  GemmBackend gemm = GemmBackend::kOneDnn;
};

// The hidden layers of an MLP (Linear, optional LayerNorm, activation; repeated), possibly an
// ensemble of E independent members, with parameters declared in a caller's ParameterBlock.
class MlpTrunk {
 public:
  // Declares the parameters as "<prefix>.<i>.weight" / ".bias" (nn.Sequential indices).
  MlpTrunk(ParameterBlock* block, const std::string& prefix, int64_t input_dim,
           const v1::NetworkSpec& resolved, int ensemble);
  // x [B, in] → [B, H] (ensemble 1) or [E, B, H]. `member` >= 0 runs that member alone
  // ([B, H]). With `detach` no gradient flows to the parameters.
  at::Tensor Forward(const ParameterBlock& block, const at::Tensor& x, GemmBackend gemm,
                     bool detach = false, int member = -1) const;
  int64_t output_dim() const { return output_dim_; }

  // The (weight, bias) parameter indices of each Linear layer, first to last.
  struct LinearIndices {
    int weight, bias;
  };
  std::vector<LinearIndices> linear_layers() const;
  // True when every layer is Linear then ReLU, one member, no LayerNorm: the networks
  // models/dense_mlp.h computes.
  bool PlainRelu() const;
  // The trunk's layers (member `member` of an ensemble) as DenseMlp slots over `block`'s flat
  // buffer; nullopt unless every layer is Linear then ReLU without LayerNorm and the block is CPU
  // float32.
  std::optional<std::vector<dense::LinearSlot>> DenseSlots(const ParameterBlock& block,
                                                           int member) const;
  // The trunk with linear heads (a weight and a bias index each, in `block`, one member) as a
  // DenseMlp; nullopt when DenseSlots(block, 0) is.
  std::optional<dense::DenseMlp> DenseWithHeads(const ParameterBlock& block,
                                                const std::vector<LinearIndices>& heads) const;

 private:
  struct Layer {
    int weight, bias;                  // Linear
    int ln_weight = -1, ln_bias = -1;  // LayerNorm, when enabled
  };
  std::vector<Layer> layers_;
  v1::NetworkSpec::Activation activation_;
  int ensemble_;
  int64_t output_dim_;
};

// The policy network π: trunk plus a head (see the file comment for names).
class PolicyNetwork {
 public:
  enum class Head { kSquashedGaussian, kDeterministic };

  // `resolved` must have passed ResolveNetworkSpec.
  PolicyNetwork(int64_t input_dim, int64_t output_dim, const v1::NetworkSpec& resolved, Head head,
                const NetworkOptions& options);

  struct Output {
    at::Tensor mean;     // [B, out], before tanh
    at::Tensor log_std;  // [B, out], clamped to [-20, 2]; undefined for kDeterministic
    // [B, 2·out]: the head's output that mean and log_std are views of (log σ before the clamp),
    // for SampleSquashedGaussian(Output, ...); undefined for kDeterministic, and to be reset
    // by whoever changes mean or log_std
    at::Tensor head;
  };
  Output Forward(const at::Tensor& obs) const;
  // The network as a DenseMlp over params()'s flat buffer with one head, [B, 2·out] for the
  // Gaussian (mean columns, then log σ before the clamp) or [B, out]; nullopt unless the trunk
  // is plain ReLU (MlpTrunk::DenseSlots).
  std::optional<dense::DenseMlp> Dense() const;

  // The parameters under their exported names and PyTorch shapes (views of the block).
  std::vector<std::pair<std::string, at::Tensor>> NamedParameters() const;

  Head head() const { return head_; }
  int64_t input_dim() const { return input_dim_; }
  int64_t output_dim() const { return output_dim_; }
  ParameterBlock& params() { return block_; }
  const ParameterBlock& params() const { return block_; }

 private:
  int64_t input_dim_, output_dim_;
  Head head_;
  GemmBackend gemm_;
  ParameterBlock block_;
  MlpTrunk trunk_;
  // Gaussian: one [2·out, H] weight and [2·out] bias, the mean rows first, then log_std.
  int head_weight_, head_bias_;
};

// SampleSquashedGaussian(out.mean, out.log_std, noise) for a Gaussian policy's output. On a GPU
// where out.head is defined, one node from the head itself: log σ clamped in the kernel, the
// head's gradient written by one kernel (no clamp, slice or accumulation nodes behind it: 8–10
// fewer kernels per actor step); elsewhere the two-tensor path.
SquashedSample SampleSquashedGaussian(const PolicyNetwork::Output& out, const at::Tensor& noise);

// E Q networks Q_k(s, a) = MLP_k([s, a]) → scalar, evaluated together.
class QEnsemble {
 public:
  QEnsemble(int64_t obs_dim, int64_t action_dim, const v1::NetworkSpec& resolved, int ensemble,
            const NetworkOptions& options);

  // [E, B]. With `detach` the parameters get no gradient (obs and action still may).
  at::Tensor Forward(const at::Tensor& obs, const at::Tensor& action, bool detach = false) const;
  // Member k alone: [B].
  at::Tensor ForwardMember(int k, const at::Tensor& obs, const at::Tensor& action,
                           bool detach = false) const;
  // Member k as a DenseMlp over params()'s flat buffer: input [obs, action], one head [B, 1];
  // nullopt unless the trunk is plain ReLU.
  std::optional<dense::DenseMlp> DenseMember(int k) const;

  int ensemble() const { return ensemble_; }
  ParameterBlock& params() { return block_; }
  const ParameterBlock& params() const { return block_; }

 private:
  at::Tensor Run(const at::Tensor& obs, const at::Tensor& action, bool detach, int member) const;

  int ensemble_;
  GemmBackend gemm_;
  ParameterBlock block_;
  MlpTrunk trunk_;
  int out_weight_, out_bias_;
};

}  // namespace prl::models

#endif  // PRL_MODELS_NETWORKS_H_
