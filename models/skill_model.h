// The SPiRL skill model (Pertsch et al., "Accelerating Reinforcement Learning with Learned
// Skill Priors", 2020; its closed-loop variant): a skill VAE over H-step action sequences with
// a learned, state-conditioned skill prior, all three networks MLPs:
//
//   encoder  q(z | a_{1:H})   the flattened window [B, H·A] → diagonal Gaussian over z
//   decoder  p(a_t | s_t, z)  [s_t, z] → the action mean; closed loop: one step per call, the
//                             same z for H consecutive states
//   prior    p(z | s_1)       the window's first state → diagonal Gaussian over z
//
// Training minimises, per batch of B windows (every mean below is over all its elements),
//
//   reconstruction_loss = mean_{b,t,i} (decoder(s_t, z)_i - a_{t,i})²,  z = μ_q + σ_q·ε
//   kl_loss             = mean_{b,j} KL_j(q(z | a) ‖ N(0, I))
//   prior_loss          = mean_{b,j} KL_j(stop_grad(q(z | a)) ‖ p(z | s_1))
//   loss                = reconstruction_loss + β·kl_loss + prior_loss
//
// where KL_j is the KL divergence of latent dimension j. The prior loss reaches only the
// prior's weights and the ELBO only the encoder's and decoder's (SPiRL, Section 3.1). SPiRL
// reduces its terms the same way (element means); its reconstruction term is the NLL of a
// unit-variance Gaussian, ½·MSE, so a β here weighs the KL half as much as the same β there.
//
// Parameters ("encoder.trunk.<i>.weight", "encoder.mean.bias", "decoder.mean.weight",
// "prior.log_std.weight", ...; PyTorch shapes, nn.Sequential indices as in models/networks.h)
// live in one flat ParameterBlock updated by Adam (torch.optim.Adam's arithmetic).
//
// Thread-compatible: one thread trains; Evaluate, Prior, Decode, Encode and ToArtifact are
// const and may run concurrently with each other, not with TrainStep.
#ifndef PRL_MODELS_SKILL_MODEL_H_
#define PRL_MODELS_SKILL_MODEL_H_

#include <cstdint>
#include <memory>

#include "ATen/core/Tensor.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "c10/core/Device.h"
#include "models/artifact.h"
#include "models/prior_model.h"
#include "proto/experiment.pb.h"
#include "proto/prior.pb.h"

namespace prl::models {

// SPiRL's defaults (and proto/experiment.proto PriorTrainingSpec's for SKILL_VAE).
inline constexpr int kSkillDefaultHorizon = 10;
inline constexpr int kSkillDefaultLatentDim = 10;
inline constexpr double kSkillDefaultBeta = 1e-2;
inline constexpr double kSkillDefaultLr = 1e-3;
inline constexpr int kSkillDefaultBatchSize = 128;  // for the caller that draws the windows
inline constexpr int kSkillDefaultHiddenLayers = 5;
inline constexpr int kSkillDefaultHiddenSize = 128;
// Limits Create enforces.
inline constexpr int kSkillMaxDim = 65536;  // obs_dim, act_dim
inline constexpr int kSkillMaxHorizon = 1000;
inline constexpr int kSkillMaxLatentDim = 4096;
// log σ of the encoder and the prior is clamped to [-10, 2] (SPiRL; models/prior_model_util.h).

// What SkillModel::Create builds: dimensions, SPiRL's hyperparameters, seed and device.
struct SkillModelOptions {
  int obs_dim = 0;                          // required, 1..65536
  int act_dim = 0;                          // required, 1..65536
  int horizon = kSkillDefaultHorizon;       // H, 1..1000
  int latent_dim = kSkillDefaultLatentDim;  // 1..4096
  double beta = kSkillDefaultBeta;          // finite, >= 0
  // The encoder's, decoder's and prior's hidden layers (each net gets the same shape). Empty
  // hidden_sizes means 5 layers of 128 units; otherwise as ResolveNetworkSpec allows.
  v1::NetworkSpec network;
  double lr = kSkillDefaultLr;     // Adam learning rate, finite, > 0
  int64_t seed = 0;                // initialisation and the ε of training; any value
  c10::Device device = c10::kCPU;  // CPU, or a CUDA device that exists
  // On the CPU with ReLU networks without LayerNorm and oneDNN's sgemm, TrainStep computes the
  // gradient without autograd (models/dense_mlp.h; the same values up to float rounding, about
  // a third faster). False: always LibTorch's autograd (the reference tests compare against).
  bool direct_cpu_step = true;
};

// The skill model's loss terms (see the file comment) as scalar tensors, from the networks'
// outputs: `reconstruction` [B, H, A] decoded from a sample of `posterior`, the `actions` it
// reconstructs, and the learned `prior` at the windows' first states. The posterior is detached
// inside prior_loss only.
struct SkillLossTerms {
  at::Tensor reconstruction_loss, kl_loss, prior_loss, elbo_loss, loss;
};
SkillLossTerms ComputeSkillLoss(const at::Tensor& reconstruction, const at::Tensor& actions,
                                const DiagonalGaussian& posterior, const DiagonalGaussian& prior,
                                double beta);

class SkillModel final : public LatentPriorModel {
 public:
  // A freshly initialised model (PyTorch's nn.Linear initialisation, drawn from `seed`).
  // Errors: INVALID_ARGUMENT naming the field ("options.horizon: 0 is not allowed; it must be
  // in 1..1000"); INTERNAL for a LibTorch failure.
  static absl::StatusOr<std::unique_ptr<SkillModel>> Create(const SkillModelOptions& options);

  // The model stored by ToArtifact, on `device`, ready for inference (and for further training
  // with fresh Adam moments and the default lr; β and the seed as stored, when they are). Errors:
  // INVALID_ARGUMENT naming what does not fit — info.kind other than PRIOR_KIND_SKILL_VAE, a
  // dimension, a missing or bad hyperparameter, a missing, unexpected or misshapen tensor (with
  // both shapes).
  static absl::StatusOr<std::unique_ptr<SkillModel>> FromArtifact(const ModelArtifact& artifact,
                                                                  c10::Device device = c10::kCPU);

  ~SkillModel() override;

  v1::PriorKind kind() const override { return v1::PRIOR_KIND_SKILL_VAE; }
  int horizon() const override;
  int obs_dim() const override { return options().obs_dim; }
  int latent_dim() const override { return options().latent_dim; }
  bool learned_prior() const override { return true; }
  const v1::NetworkSpec& prior_network() const override { return options().network; }

  // One Adam step on the losses of the file comment; returns "loss", "elbo_loss",
  // "reconstruction_loss", "kl_loss" and "prior_loss" (before the step). `batch` may live on
  // any device; it is copied to the model's. Errors: INVALID_ARGUMENT naming batch.obs or
  // batch.actions (shape [B >= 1, H, dim], float32, finite); INTERNAL for a LibTorch failure
  // or a non-finite loss (the parameters are then left unchanged).
  absl::StatusOr<Losses> TrainStep(const WindowBatch& batch) override;
  // TrainStep without the step: the gradient of "loss" at the current weights (flat, in the
  // parameters' order: ToArtifact's tensors concatenated) into `flat_grad` and the terms, with ε
  // drawn as TrainStep draws it. For comparing the CPU's direct and autograd paths. Errors:
  // TrainStep's.
  absl::StatusOr<Losses> Gradient(const WindowBatch& batch, at::Tensor* flat_grad);
  // The same losses without a step, with ε drawn from a generator seeded afresh on each call
  // (so equal batches give equal losses). Errors: TrainStep's.
  absl::StatusOr<Losses> Evaluate(const WindowBatch& batch) const override;

  // `info` with kind SKILL_VAE, obs_dim, action_dim, latent_dim, horizon, methods ["Decode",
  // "Prior"] and state_conditioned_decoder set; hyperparameters "network.hidden_layers",
  // "network.hidden_sizes.<i>", "network.activation" (the NetworkSpec enum value),
  // "network.layer_norm" (0/1), "beta_x1e9" (β·10⁹, rounded) and "seed" (both optional for
  // FromArtifact); the parameters as CPU float32 tensors under the names of the file comment.
  // Errors: INTERNAL for a LibTorch failure.
  absl::StatusOr<ModelArtifact> ToArtifact(v1::ModelInfo info) const override;
  absl::StatusOr<ModelArtifact> TrainingState(v1::ModelInfo info) const override;
  absl::Status RestoreTrainingState(const ModelArtifact& state) override;

  // Inference, without autograd; inputs on any device, float32; outputs float32 on the model's
  // device. Errors: INVALID_ARGUMENT naming the input (wrong rank, width, row count or dtype);
  // INTERNAL for a LibTorch failure.
  //
  // The learned skill prior p(z | s) for states `obs` [B, obs_dim].
  absl::StatusOr<DiagonalGaussian> Prior(const at::Tensor& obs) const override;
  // One closed-loop decoder step: the action means [B, act_dim] at states `obs` [B, obs_dim]
  // for skills `z` [B, latent_dim]. Means are not clipped to [-1, 1] (SPiRL).
  absl::StatusOr<at::Tensor> Decode(const at::Tensor& obs, const at::Tensor& z) const;
  // The posterior q(z | a_{1:H}) of action windows `actions` [B, H, act_dim].
  absl::StatusOr<DiagonalGaussian> Encode(const at::Tensor& actions) const;

  // The options the model was built with (network resolved).
  const SkillModelOptions& options() const;

 private:
  struct Impl;
  explicit SkillModel(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
};

}  // namespace prl::models

#endif  // PRL_MODELS_SKILL_MODEL_H_
