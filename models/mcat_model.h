// MCAT's models (Guo, Wu & Lee, "Learning Action Translator for Meta RL on Sparse-Reward
// Tasks", §3.2-3.3): a context encoder C, a forward dynamics model F and an action translator
// H, shared by the learner (which trains them), actors (which act with C and H) and the prior
// server (which serves H through PriorService.Translate).
//
//   C(s_{t-K}, a_{t-K}, ..., s_{t-1}, a_{t-1}) → z_t      the K transitions before t, each as
//                                                        [s, a, s' - s], zeroed where the mask
//                                                        is 0 (before the episode began),
//                                                        flattened → MLP → Linear → z
//   F(s' | s, a, z) = N(s + μ(s, a, z), σ(s, a, z)²)     diagonal Gaussian over s' - s; log σ
//                                                        soft-bounded to [-20, 2] (softplus)
//   H(s, a_src, z_src, z_tgt) = tanh(MLP([s, a_src, z_src, z_tgt]))   an action in [-1, 1]^A
//
// Losses (means over the rows of a batch):
//
//   L_forw  = -Σ_{m=1..M} log F(s_{t+m} | s_{t+m-1}, a_{t+m-1}, z_t)   (eq. 1; masked steps
//             that are not in the episode are left out)
//   L_cont  = mean over ordered pairs (b, b') of the batch with b ≠ b' of
//             1[task_b = task_b'] ‖z_b - z_b'‖² + 1[task_b ≠ task_b'] max(0, m - ‖z_b - z_b'‖)
//             (eq. 2)
//   L_trans = -log F(s'_src | s_src, H(s_src, a_src, z^(j), z^(i)), z^(i))   (eq. 3), with C and F
//             fixed, z^(j) the source task's feature and z^(i) a different task's
//
// Task features z^(i) (§3.2) are the mean of C over a large sample of history windows of task
// i; McatModel keeps them as an exponential moving average of the batch means per task.
//
// Parameter names (PyTorch shapes, Linear weight [out, in]), part of the actor API
// (prl.v1.Policy.weights carries the encoder and translator under these names):
//   "context_encoder.trunk.<i>.*", "context_encoder.out.weight", "context_encoder.out.bias"
//   "forward_model.trunk.<i>.*", "forward_model.mean.*", "forward_model.log_std.*"
//   "translator.trunk.<i>.*", "translator.out.weight", "translator.out.bias"
//
// Thread-compatible: one thread trains; const methods may run concurrently with each other.
#ifndef PRL_MODELS_MCAT_MODEL_H_
#define PRL_MODELS_MCAT_MODEL_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ATen/core/Tensor.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "models/artifact.h"
#include "models/mcat_networks.h"
#include "models/networks.h"
#include "proto/experiment.pb.h"
#include "proto/prior.pb.h"

namespace prl::models {

// History windows of B rows (float32 on the model's device), W = K + M transitions each, the
// last one the row's own transition:
struct McatWindowBatch {
  at::Tensor observations;  // [B, W + 1, obs]: s_{t-W+1} .. s_{t+1}
  at::Tensor actions;       // [B, W, act]:     a_{t-W+1} .. a_t
  at::Tensor mask;          // [B, W]: 1 where the transition belongs to the row's episode
  at::Tensor task;          // [B] int64 task index
};

struct McatModelOptions {
  McatDims dims;
  int64_t prediction_horizon = 10;  // M
  int64_t num_tasks = 0;            // training tasks (task features kept for 0 .. num_tasks-1)
  v1::NetworkSpec network;          // resolved; the hidden layers of all three networks
  double contrastive_margin = 1.0;
  double contrastive_weight = 1.0;
  double model_lr = 1e-3;
  double translator_lr = 3e-4;
  // Weight of a batch's mean in the task features' moving average.
  double task_feature_rate = 0.05;
  std::string device = "cpu";
  uint64_t seed = 0;
  // On a CPU with oneDNN's sgemm and plain ReLU networks, TrainContext and TrainTranslator
  // compute their forward and backward passes themselves (models/dense_mlp.h) instead of through
  // autograd: the same losses, gradients and Adam steps (mcat_model_test compares them), at
  // a fraction of the per-operator cost. false keeps the autograd path, the reference.
  bool direct_cpu_step = true;
};

// Trains C and F (L_forw + w·L_cont, one Adam) and H (L_trans, another Adam) and keeps the
// task features.
class McatModel {
 public:
  // Errors: INVALID_ARGUMENT naming an option that is out of range.
  static absl::StatusOr<std::unique_ptr<McatModel>> Create(const McatModelOptions& options);

  // One Adam step of C and F on `batch`: z_t from the first K transitions of each window, F
  // predicting the next M. Also folds the batch's per-task mean of C (over the K transitions
  // ending at the row's own, i.e. z_{t+1}) into the task features. Scalars "forward_loss",
  // "contrastive_loss", "model_loss". Errors: INVALID_ARGUMENT for a wrong shape; INTERNAL for
  // a non-finite loss.
  absl::StatusOr<std::map<std::string, double>> TrainContext(const McatWindowBatch& batch);

  // One Adam step of H on the rows' own transitions (s_t, a_t, s_{t+1}) with C and F fixed:
  // each row's target task is drawn uniformly from the other tasks that have a feature.
  // Scalars "translator_loss". A no-op returning {} while fewer than two tasks have features;
  // rows whose own task has no feature yet (or whose own transition is masked) are left out.
  absl::StatusOr<std::map<std::string, double>> TrainTranslator(const McatWindowBatch& batch);

  // Encode, EncodeRows and Translate take inputs on any device and return outputs on the
  // model's; a wrong shape is a programmer error (CHECK or LibTorch's exception).
  //
  // C without gradient: observations [B, K + 1, obs], actions [B, K, act], mask [B, K].
  at::Tensor Encode(const at::Tensor& observations, const at::Tensor& actions,
                    const at::Tensor& mask) const;
  // z_t and z_{t+1} of each window of `batch` (the K transitions before the row's own, and the
  // K ending with it), without gradient: the context inputs of the RL update. Any window
  // length W >= K + 1 works (the last K + 1 transitions are read).
  std::pair<at::Tensor, at::Tensor> EncodeRows(const McatWindowBatch& batch) const;
  // H without gradient.
  at::Tensor Translate(const at::Tensor& obs, const at::Tensor& source_action,
                       const at::Tensor& source_context, const at::Tensor& target_context) const;

  // [num_tasks, context_dim] on the model's device (a copy; zeros for a task not seen yet) and
  // which tasks have been seen.
  at::Tensor task_features() const;
  std::vector<bool> task_seen() const;

  // The encoder's and the translator's parameters under their exported names (CPU float32
  // copies), for the policy actors get.
  std::vector<std::pair<std::string, at::Tensor>> ActingParameters() const;

  // The translator as a PRIOR_KIND_ACTION_TRANSLATOR artifact (info gets kind, dims,
  // context_dim, methods = Translate; the translator's weights under "translator.*"), and the
  // whole training state (all networks, both Adams, task features, random stream) as bytes
  // (a models/artifact.h payload without a checksum: store it in a checksummed file).
  absl::StatusOr<ModelArtifact> TranslatorArtifact(v1::ModelInfo info) const;
  absl::StatusOr<std::string> SaveState() const;
  // Errors: DATA_LOSS for bytes that are not an McatModel state; INVALID_ARGUMENT for one of
  // other dimensions (obs, action, context, K, num_tasks, network) or a damaged one, naming the
  // field. Nothing changes on error. The options (learning rates, M, ...) stay this model's.
  absl::Status RestoreState(const std::string& bytes);

  const McatModelOptions& options() const;
  // The flat gradients the last TrainContext (C and F) and TrainTranslator (H) stepped with
  // (copies; zeros before the first step), for checks of the two training paths.
  std::pair<at::Tensor, at::Tensor> last_gradients() const;
  // Whether the training steps take the autograd-free path (options().direct_cpu_step, a CPU
  // with oneDNN's sgemm, plain ReLU networks).
  bool direct_step() const;

  ~McatModel();

 private:
  struct Impl;
  explicit McatModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A translator loaded from a PRIOR_KIND_ACTION_TRANSLATOR artifact, for serving.
class TranslatorModel {
 public:
  // Errors: INVALID_ARGUMENT naming what in the artifact does not fit (kind, dims, missing or
  // mis-shaped weights).
  static absl::StatusOr<std::unique_ptr<TranslatorModel>> FromArtifact(
      const ModelArtifact& artifact, const std::string& device);
  const McatDims& dims() const;
  // Translate without gradient; inputs on any device, output on the model's.
  at::Tensor Translate(const at::Tensor& obs, const at::Tensor& source_action,
                       const at::Tensor& source_context, const at::Tensor& target_context) const;
  ~TranslatorModel();

 private:
  struct Impl;
  explicit TranslatorModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace prl::models

#endif  // PRL_MODELS_MCAT_MODEL_H_
