// The conditional VAE priors: EAP's extended action prior (Ajay & Agrawal, "Learning Action
// Priors for Visuomotor Transfer") and the latent-SAC action generator (the half-cheetah
// transfer report), one model with two settings:
//
//   encoder  q(z | s_1, a_{1:k})  [s_1, the flattened window] → diagonal Gaussian over z
//   decoder  g(a_{1:k} | s_1, z)  [s_1, z] → the k action means, open loop (one call per
//                                 decision unrolls all k actions)
//   prior    learned_prior: π_state(z | s_1), EAP's state prior, a Gaussian MLP on the state;
//            otherwise the fixed N(0, I) of a conditional VAE (latent SAC, k = 1)
//
// Training minimises, per batch of B windows (means over all elements, as the skill model),
//
//   reconstruction_loss = mean_{b,t,i} (g(s_1, z)_{t,i} - a_{t,i})²,  z = μ_q + σ_q·ε
//   kl_loss             = mean_{b,j} KL_j(q(z | s_1, a) ‖ prior(z | s_1))
//   loss                = reconstruction_loss + β·kl_loss
//
// which is EAP's L = L_KL + λ·L_π with λ = 1/β (up to the overall scale; L_π as the NLL of a
// unit-variance Gaussian): its KL trains the encoder and the state prior together. With the
// fixed prior it is the CVAE evidence bound of the latent-SAC report.
//
// Parameters "encoder.trunk.<i>.*", "encoder.mean.*", "encoder.log_std.*", "decoder.trunk.<i>.*",
// "decoder.mean.*" and, with a learned prior, "prior.trunk.<i>.*", "prior.mean.*",
// "prior.log_std.*" (PyTorch shapes) live in one flat ParameterBlock updated by Adam.
//
// Thread-compatible: one thread trains; the const methods may run concurrently with each other.
#ifndef PRL_MODELS_CVAE_MODEL_H_
#define PRL_MODELS_CVAE_MODEL_H_

#include <cstdint>
#include <memory>

#include "ATen/core/Tensor.h"
#include "absl/status/statusor.h"
#include "c10/core/Device.h"
#include "models/artifact.h"
#include "models/prior_model.h"
#include "proto/experiment.pb.h"
#include "proto/prior.pb.h"

namespace prl::models {

// Defaults (proto/experiment.proto PriorTrainingSpec's for CVAE).
inline constexpr int kCvaeDefaultHorizon = 1;
inline constexpr int kCvaeDefaultLatentDim = 10;
inline constexpr double kCvaeDefaultBeta = 1e-2;
inline constexpr double kCvaeDefaultLr = 1e-3;
inline constexpr int kCvaeDefaultHiddenLayers = 5;
inline constexpr int kCvaeDefaultHiddenSize = 128;
inline constexpr int kCvaeMaxDim = 65536;  // obs_dim, act_dim
inline constexpr int kCvaeMaxHorizon = 1000;
inline constexpr int kCvaeMaxLatentDim = 4096;

struct CvaeModelOptions {
  int obs_dim = 0;                         // required, 1..65536
  int act_dim = 0;                         // required, 1..65536
  int horizon = kCvaeDefaultHorizon;       // k, 1..1000
  int latent_dim = kCvaeDefaultLatentDim;  // 1..4096
  // True: EAP's learned state prior π_state(z | s). False: N(0, I).
  bool learned_prior = false;
  double beta = kCvaeDefaultBeta;  // finite, >= 0
  // Hidden layers of the encoder, decoder and prior. Empty hidden_sizes means 5 layers of 128.
  v1::NetworkSpec network;
  double lr = kCvaeDefaultLr;  // Adam, finite, > 0
  int64_t seed = 0;
  c10::Device device = c10::kCPU;
  // As SkillModelOptions::direct_cpu_step: the autograd-free CPU step where it applies.
  bool direct_cpu_step = true;
};

class CvaeModel final : public LatentPriorModel {
 public:
  // A freshly initialised model (nn.Linear initialisation from `seed`). Errors:
  // INVALID_ARGUMENT naming the option; INTERNAL for a LibTorch failure.
  static absl::StatusOr<std::unique_ptr<CvaeModel>> Create(const CvaeModelOptions& options);
  // The model ToArtifact stored, on `device`. Errors: INVALID_ARGUMENT naming what does not fit
  // (kind, a dimension, a hyperparameter, a missing, unexpected or misshapen tensor).
  static absl::StatusOr<std::unique_ptr<CvaeModel>> FromArtifact(const ModelArtifact& artifact,
                                                                 c10::Device device = c10::kCPU);
  ~CvaeModel() override;

  v1::PriorKind kind() const override { return v1::PRIOR_KIND_CVAE; }
  int horizon() const override;
  int obs_dim() const override;
  int latent_dim() const override;
  bool learned_prior() const override;
  const v1::NetworkSpec& prior_network() const override;

  // One Adam step; returns "loss", "reconstruction_loss" and "kl_loss" (before the step).
  // Errors: INVALID_ARGUMENT naming batch.obs or batch.actions ([B, k, dim], float32, finite);
  // INTERNAL for a LibTorch failure or a non-finite loss (parameters then unchanged).
  absl::StatusOr<Losses> TrainStep(const WindowBatch& batch) override;
  // As SkillModel::Gradient: TrainStep's gradient and terms without the step.
  absl::StatusOr<Losses> Gradient(const WindowBatch& batch, at::Tensor* flat_grad);
  // The same losses without a step, ε from a generator seeded afresh on each call.
  absl::StatusOr<Losses> Evaluate(const WindowBatch& batch) const override;

  // `info` with kind CVAE, the dimensions, horizon k, state_conditioned_decoder, methods
  // ["Decode", "Prior"]; hyperparameters as the skill model's plus "learned_prior" (0/1).
  absl::StatusOr<ModelArtifact> ToArtifact(v1::ModelInfo info) const override;
  absl::StatusOr<ModelArtifact> TrainingState(v1::ModelInfo info) const override;
  absl::Status RestoreTrainingState(const ModelArtifact& state) override;

  // Inference without autograd, float32 inputs on any device, outputs on the model's device.
  // Errors: INVALID_ARGUMENT naming the input; INTERNAL for a LibTorch failure.
  //
  // π_state(z | s) (or N(0, I)) for states `obs` [B, obs_dim].
  absl::StatusOr<DiagonalGaussian> Prior(const at::Tensor& obs) const override;
  // The k action means [B, k, act_dim] for states `obs` [B, obs_dim] and latents `z`
  // [B, latent_dim] (not clipped).
  absl::StatusOr<at::Tensor> Decode(const at::Tensor& obs, const at::Tensor& z) const;
  // q(z | s_1, a_{1:k}) for states `obs` [B, obs_dim] and windows `actions` [B, k, act_dim].
  absl::StatusOr<DiagonalGaussian> Encode(const at::Tensor& obs, const at::Tensor& actions) const;

  const CvaeModelOptions& options() const;

 private:
  struct Impl;
  explicit CvaeModel(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
};

}  // namespace prl::models

#endif  // PRL_MODELS_CVAE_MODEL_H_
