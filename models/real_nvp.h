// PARROT's behavioral prior (Singh et al., "Parrot: Data-Driven Behavioral Priors for RL",
// §3.1 and Appendix D): a state-conditioned real NVP flow (Dinh et al. 2017) that maps base
// noise z ~ N(0, I) to an action, a = f(z; s), trained by maximising the exact likelihood of the
// dataset's (s, a) pairs. The PARROT learner acts through Forward; Inverse gives the likelihood.
//
// The math, with D = act_dim (the latent is as wide as the action):
//
//   u = g_L ∘ … ∘ g_1(z; s)          L affine coupling layers on ℝ^D
//   a = f(z; s) = tanh(u)             one bijection ℝ^D → (-1, 1)^D
//
// Coupling layer k keeps the dims K_k and transforms the dims T_k (alternating binary masks:
// K = the even dims for even k and the odd dims for odd k; with D = 1 every layer transforms the
// single dim, conditioned on the state alone). On its input x:
//
//   [ℓ̃, t] = MLP_k([x_K, s])          the scale-and-translate net (PARROT's Figure 6b)
//   ℓ = B · tanh(ℓ̃ / B), B = 3        the log-scale, bounded for stability (|ℓ| < 3)
//   y_K = x_K,  y_T = x_T ⊙ exp(ℓ) + t, log|det ∂y/∂x| = Σ ℓ
//
// and its inverse is x_T = (y_T − t) ⊙ exp(−ℓ), since ℓ and t depend only on y_K = x_K. So
//
//   log|det ∂a/∂z| = Σ_k Σ ℓ_k + Σ_d log(1 − a_d²)
//   log p(a | s) = log N(z; 0, I) + log|det ∂z/∂a|,  z = f⁻¹(a; s)      (PARROT eq. 2)
//
// Why the final tanh: actions live in [-1, 1] and PARROT's f outputs actions in the env's range.
// An unbounded flow whose samples are clipped is a different distribution from the one its
// likelihood describes (the mass outside the box piles up on the boundary as point masses the
// training objective never sees), and it wastes likelihood on actions that cannot occur. With
// the tanh, f is a diffeomorphism onto the open box: the likelihood is exact, every sample is a
// valid action, and every action in the box has a latent (PARROT's "full control" argument).
// Training therefore fits the coupling layers to atanh(a), with the tanh's log-determinant in
// the likelihood. Actions on the boundary (clipped data) have no preimage; Inverse clamps |a|
// to 1 − 1e-6 first (u = ±7.25), so Inverse(Forward(z)) = z only while |u| < 7.25.
//
// The state is concatenated to the masked input of every coupling layer's MLP (PARROT
// conditions each layer on an image encoding ψ(s); for state vectors each layer's MLP learns its
// own encoding). Parameters live in one ParameterBlock (models/networks.h) named
//
//   coupling.<k>.trunk.<i>.weight / .bias      MLP hidden layers (nn.Sequential indices)
//   coupling.<k>.log_scale.weight / .bias      ℓ̃ for the dims T_k, in ascending order
//   coupling.<k>.shift.weight / .bias          t for the dims T_k
//
// with PyTorch shapes (a Linear weight is [out, in]; the MLP's input is [x_K, s], K ascending).
//
// Thread-compatible (see PriorModel): TrainStep needs exclusive access; Forward, Inverse,
// LogProb, Evaluate and ToArtifact are const and may run concurrently with each other.
#ifndef PRL_MODELS_REAL_NVP_H_
#define PRL_MODELS_REAL_NVP_H_

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "ATen/core/Tensor.h"
#include "ATen/core/grad_mode.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "c10/core/Device.h"
#include "models/artifact.h"
#include "models/networks.h"
#include "models/prior_model.h"
#include "proto/experiment.pb.h"
#include "proto/prior.pb.h"

namespace prl::models {

// PARROT's settings (Appendix D): four coupling layers, Adam at 1e-4; batches of 128 are the
// training driver's default (PriorTrainingSpec.batch_size).
inline constexpr int kRealNvpDefaultCouplingLayers = 4;
inline constexpr double kRealNvpDefaultLr = 1e-4;
inline constexpr int kRealNvpDefaultBatchSize = 128;
inline constexpr int kRealNvpMaxCouplingLayers = 32;
// The bound B of the log-scale: ℓ = B · tanh(ℓ̃ / B).
inline constexpr double kRealNvpLogScaleBound = 3.0;
// Inverse clamps actions to [-kRealNvpMaxAbsAction, kRealNvpMaxAbsAction] before atanh.
inline constexpr double kRealNvpMaxAbsAction = 1.0 - 1e-6;

struct RealNvpOptions {
  // State and action dimensions; both >= 1.
  int obs_dim = 0;
  int act_dim = 0;
  // Affine coupling layers, 2..32.
  int num_coupling_layers = kRealNvpDefaultCouplingLayers;
  // Each coupling layer's scale-and-translate MLP. Unset hidden_sizes means [256, 256]
  // (ResolveNetworkSpec's defaults and limits).
  v1::NetworkSpec network;
  // Adam learning rate, finite and > 0 (β = (0.9, 0.999), ε = 1e-8, torch.optim.Adam's).
  double lr = kRealNvpDefaultLr;
  // Seeds the initial weights (PyTorch's nn.Linear initialisation). Any value.
  int64_t seed = 0;
  // Where the parameters live and the flow computes (CPU, or an available CUDA device).
  at::Device device = at::kCPU;
  GemmBackend gemm = GemmBackend::kOneDnn;
};

// Owned by its creator (a prior-training run, the prior server's model slot, a learner).
class RealNvpFlow final : public PriorModel {
 public:
  // A freshly initialised flow. Errors: INVALID_ARGUMENT naming the field of `options` that is
  // out of range ("options.num_coupling_layers: 1 is not allowed; it must be in 2..32",
  // "options.network.hidden_sizes[0]: ..."); FAILED_PRECONDITION for a CUDA device this process
  // does not have.
  static absl::StatusOr<std::unique_ptr<RealNvpFlow>> Create(const RealNvpOptions& options);
  // The flow stored in `artifact` (from ToArtifact), on `device`, ready to serve or to train on
  // (with the default learning rate). Errors: INVALID_ARGUMENT naming what does not describe a
  // flow ("info.kind", "info.horizon", "info.latent_dim", a missing or out-of-range
  // hyperparameter as hyperparameters["num_coupling_layers"], a tensor that is missing, extra
  // or mis-shaped as tensors["coupling.0.shift.bias"]); Create's for the device.
  static absl::StatusOr<std::unique_ptr<RealNvpFlow>> FromArtifact(const ModelArtifact& artifact,
                                                                   at::Device device);
  ~RealNvpFlow() override;

  // The output of Forward or Inverse, on the flow's device.
  struct Result {
    at::Tensor value;    // [B, D]: the actions a (Forward) or the latents z (Inverse)
    at::Tensor log_det;  // [B]: log|det ∂a/∂z| (Forward) or log|det ∂z/∂a| (Inverse)
  };
  // a = f(z; s). `z` [B, act_dim] and `state` [B, obs_dim], float32 on any device, B >= 1.
  // Differentiable under autograd's grad mode (wrap in at::NoGradGuard to serve).
  // Errors: INVALID_ARGUMENT naming "z" or "state" for a wrong dtype or shape; INTERNAL for a
  // LibTorch failure.
  absl::StatusOr<Result> Forward(const at::Tensor& z, const at::Tensor& state) const;
  // z = f⁻¹(a; s) for `actions` [B, act_dim] in [-1, 1] (clamped to ±kRealNvpMaxAbsAction).
  // Errors: as Forward's, naming "actions" or "state".
  absl::StatusOr<Result> Inverse(const at::Tensor& actions, const at::Tensor& state) const;
  // log p(a | s) [B] (PARROT eq. 2). Errors: Inverse's.
  absl::StatusOr<at::Tensor> LogProb(const at::Tensor& actions, const at::Tensor& state) const;

  // PriorModel. Batches must have horizon 1 (obs [B, 1, obs_dim], actions [B, 1, act_dim],
  // float32, any device, B >= 1, finite, actions in [-1, 1]); anything else is INVALID_ARGUMENT
  // naming "batch.obs" or "batch.actions". Losses: "loss" = "nll", the mean −log p(a | s), and
  // "log_det", the mean log|det ∂z/∂a|.
  v1::PriorKind kind() const override { return v1::PRIOR_KIND_REAL_NVP_FLOW; }
  int horizon() const override { return 1; }
  absl::StatusOr<Losses> TrainStep(const WindowBatch& batch) override;
  absl::StatusOr<Losses> Evaluate(const WindowBatch& batch) const override;
  // kind REAL_NVP_FLOW, obs_dim, action_dim, latent_dim = action_dim, horizon 1, methods
  // ["Forward", "Inverse"]; hyperparameters "num_coupling_layers", "network.hidden_layers",
  // "network.hidden_sizes.<i>", "network.activation" (the NetworkSpec enum value),
  // "network.layer_norm" (0 or 1) and "log_scale_bound"; the parameters by the names of the
  // file comment. Errors: INTERNAL for a LibTorch failure.
  absl::StatusOr<ModelArtifact> ToArtifact(v1::ModelInfo info) const override;
  absl::StatusOr<ModelArtifact> TrainingState(v1::ModelInfo info) const override;
  absl::Status RestoreTrainingState(const ModelArtifact& state) override;

  const RealNvpOptions& options() const { return options_; }
  // The parameters (tests perturb them; a trainer may checkpoint them).
  ParameterBlock& params() { return params_; }
  const ParameterBlock& params() const { return params_; }

 private:
  struct Coupling;
  struct Adam;
  struct Prepared;

  RealNvpFlow(const RealNvpOptions& options, const v1::NetworkSpec& resolved);

  // Checks a training batch and takes its horizon-1 slices to the device.
  absl::StatusOr<Prepared> PrepareBatch(const WindowBatch& batch) const;
  // Checks a [B, dim] input (and the state beside it) and moves both to the device.
  absl::StatusOr<Prepared> PrepareInputs(const at::Tensor& x, const char* x_name,
                                         const at::Tensor& state) const;
  // ℓ and t of coupling `c` for input `x` (whose kept dims it reads) and `state`, with the
  // parameters `params` (params_ or one of its GradientShard copies).
  std::pair<at::Tensor, at::Tensor> ScaleShift(const ParameterBlock& params, const Coupling& c,
                                               const at::Tensor& x, const at::Tensor& state) const;
  Result ForwardImpl(const at::Tensor& z, const at::Tensor& state) const;
  Result InverseImpl(const ParameterBlock& params, const at::Tensor& actions,
                     const at::Tensor& state) const;
  // log p(a | s) [B] and the log|det ∂z/∂a| term [B], for TrainStep and Evaluate.
  at::Tensor LogProbImpl(const ParameterBlock& params, const at::Tensor& actions,
                         const at::Tensor& state, at::Tensor* log_det) const;

  RealNvpOptions options_;
  ParameterBlock params_;
  std::vector<Coupling> couplings_;
  std::unique_ptr<Adam> adam_;
};

}  // namespace prl::models

#endif  // PRL_MODELS_REAL_NVP_H_
