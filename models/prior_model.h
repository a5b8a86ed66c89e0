// A trainable behavioral prior: the SPiRL skill model (models/skill_model.h), the EAP /
// latent-SAC CVAE and PARROT's conditional real NVP flow (models/real_nvp.h). The learner's
// TRAIN_PRIOR runs train one on H-step windows of a dataset and store it as a ModelArtifact
// (models/artifact.h); the learner (for the KL to the prior) and the prior server load it back
// with the same class.
//
// Thread-compatible: one thread trains a model; const methods may run concurrently.
#ifndef PRL_MODELS_PRIOR_MODEL_H_
#define PRL_MODELS_PRIOR_MODEL_H_

#include <map>
#include <string>

#include "ATen/core/Tensor.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "models/artifact.h"
#include "proto/experiment.pb.h"
#include "proto/prior.pb.h"

namespace prl::models {

// B windows of H consecutive steps of one episode each, float32 on the model's device.
struct WindowBatch {
  at::Tensor obs;      // [B, H, obs_dim]: the state before each action
  at::Tensor actions;  // [B, H, act_dim], in [-1, 1]
  // [B] int64 on the CPU: which dataset each window comes from, for the models trained on
  // several (an ACTION_TRANSLATOR: 0 the source task, 1 the target task); undefined otherwise.
  at::Tensor task;
};

// A diagonal Gaussian per row: N(mean, exp(log_std)²), both [B, latent_dim].
struct DiagonalGaussian {
  at::Tensor mean;
  at::Tensor log_std;
};

// KL(q ‖ p) of diagonal Gaussians per dimension (no sum): log σ_p - log σ_q
// + (σ_q² + (μ_q - μ_p)²) / (2·σ_p²) - ½. Differentiable; broadcasts like elementwise ops.
at::Tensor DiagonalGaussianKl(const DiagonalGaussian& q, const DiagonalGaussian& p);

// Named scalars of a training step or an evaluation: "loss" (what is minimised) and its terms
// ("reconstruction_loss", "kl_loss", "prior_loss", "nll", ...).
using Losses = std::map<std::string, double>;

class PriorModel {
 public:
  virtual ~PriorModel() = default;

  virtual v1::PriorKind kind() const = 0;
  // Actions per latent (the window length H the model trains on).
  virtual int horizon() const = 0;

  // One Adam step on `batch`. Errors: INVALID_ARGUMENT for a batch of the wrong shape;
  // INTERNAL for a LibTorch failure (including a non-finite loss).
  virtual absl::StatusOr<Losses> TrainStep(const WindowBatch& batch) = 0;
  // The same losses without a gradient step (validation).
  virtual absl::StatusOr<Losses> Evaluate(const WindowBatch& batch) const = 0;

  // The trained model as an artifact: `info` (name, version, dataset, training summary) with
  // the model's kind, dimensions, horizon and methods filled in, its hyperparameters and its
  // weights (CPU float32).
  virtual absl::StatusOr<ModelArtifact> ToArtifact(v1::ModelInfo info) const = 0;

  // Everything training needs to go on exactly where it is — ToArtifact(info) plus Adam's
  // moments and step count and the noise generator's state ("training.*" tensors and
  // hyperparameters) — for the checkpoints of TRAIN_PRIOR runs. Errors: INTERNAL.
  virtual absl::StatusOr<ModelArtifact> TrainingState(v1::ModelInfo info) const = 0;
  // Puts back a TrainingState of a model created with the same options: training then continues
  // bit-identically. Errors: INVALID_ARGUMENT naming what does not fit (the model may be partly
  // restored then: start over from a fresh one).
  virtual absl::Status RestoreTrainingState(const ModelArtifact& state) = 0;
};

// A prior over latents z with a state-conditioned distribution p(z | s): SPiRL's skill prior
// (SkillModel) and EAP's state prior π_state (CvaeModel with a learned prior). The learner's
// KL-regularised agents (spirl, eap) train against Prior(); a policy network of
// prior_network()'s shape can start as a copy of the prior's weights, stored in ToArtifact()
// as "prior.trunk.<i>.*", "prior.mean.*" and "prior.log_std.*".
class LatentPriorModel : public PriorModel {
 public:
  virtual int obs_dim() const = 0;
  virtual int latent_dim() const = 0;
  // True when p(z | s) is a learned network (false: the fixed N(0, I) of a latent-SAC CVAE,
  // which has no "prior.*" weights).
  virtual bool learned_prior() const = 0;
  // The prior network's hidden layers (resolved).
  virtual const v1::NetworkSpec& prior_network() const = 0;
  // p(z | s) for states `obs` [B, obs_dim], without autograd, on the model's device. Errors:
  // INVALID_ARGUMENT naming obs; INTERNAL for a LibTorch failure.
  virtual absl::StatusOr<DiagonalGaussian> Prior(const at::Tensor& obs) const = 0;
};

}  // namespace prl::models

#endif  // PRL_MODELS_PRIOR_MODEL_H_
