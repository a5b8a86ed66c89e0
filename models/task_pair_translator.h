// MCAT's action translator between one fixed pair of tasks, trained offline from a dataset of
// each (Guo, Wu & Lee, §3.3, the translator of Theorem 1 before it is made context-conditioned):
// a TRAIN_PRIOR experiment with kind PRIOR_KIND_ACTION_TRANSLATOR, `dataset` the source task's
// transitions and `target_dataset` the target task's.
//
//   F(s' | s, a) = N(s + μ(s, a), σ(s, a)²)   the target task's dynamics (the forward model of
//                                            models/mcat_networks.h without a context)
//   H(s, a_src) = tanh(MLP([s, a_src]))      the translator (ActionTranslator, context_dim 0)
//
// Losses (means over the rows of their task in a batch of 2-step windows (s, a, s')):
//
//   forward_loss    = -log F(s' | s, a)                 target rows; trains F
//   translator_loss = -log F(s' | s, H(s, a))            source rows, F fixed; trains H: the
//                                                       target-task action that reproduces the
//                                                       source task's transition (eq. 3)
//   identity_loss   = -log F(s' | s, a)                 source rows (Evaluate only): the same
//                                                       without translating, for comparison
//   loss            = forward_loss + translator_loss    what one Adam step minimises
//
// The stored artifact is what the prior server serves for Translate (TranslatorModel in
// models/mcat_model.h): context_dim 0, so Translate takes only states and source actions; the
// translator's weights under "translator.*". The forward model stays in the training state.
//
// Thread-compatible: one thread trains; const methods may run concurrently.
#ifndef PRL_MODELS_TASK_PAIR_TRANSLATOR_H_
#define PRL_MODELS_TASK_PAIR_TRANSLATOR_H_

#include <cstdint>
#include <memory>

#include "ATen/core/Generator.h"
#include "ATen/core/Tensor.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "models/artifact.h"
#include "models/mcat_networks.h"
#include "models/networks.h"
#include "models/prior_model.h"
#include "proto/experiment.pb.h"
#include "proto/prior.pb.h"

namespace prl::models {

namespace prior_util {
class FlatAdam;
}  // namespace prior_util

// The task index of a window (WindowBatch::task).
inline constexpr int64_t kSourceTask = 0;
inline constexpr int64_t kTargetTask = 1;

struct TaskPairTranslatorOptions {
  int obs_dim = 0;
  int act_dim = 0;
  // Hidden layers of both networks; empty hidden_sizes means [256, 256] (MCAT's code).
  v1::NetworkSpec network;
  double lr = 3e-4;
  uint64_t seed = 0;
  at::Device device = at::kCPU;
};

class TaskPairTranslator final : public PriorModel {
 public:
  // A freshly initialised translator and forward model. Errors: INVALID_ARGUMENT naming the
  // field of `options` that is out of range; FAILED_PRECONDITION for a CUDA device this
  // process does not have.
  static absl::StatusOr<std::unique_ptr<TaskPairTranslator>> Create(
      const TaskPairTranslatorOptions& options);
  ~TaskPairTranslator() override;

  // PriorModel. Batches are windows of 2 steps (obs [B, 2, obs_dim], actions [B, 2, act_dim];
  // the second action is not used) with `task` [B] int64 holding kSourceTask or kTargetTask;
  // anything else is INVALID_ARGUMENT naming "batch.obs", "batch.actions" or "batch.task". A
  // term whose task has no row in the batch is left out of the losses (a batch needs at least
  // one row). Losses: see the file comment.
  v1::PriorKind kind() const override { return v1::PRIOR_KIND_ACTION_TRANSLATOR; }
  int horizon() const override { return 1; }
  absl::StatusOr<Losses> TrainStep(const WindowBatch& batch) override;
  absl::StatusOr<Losses> Evaluate(const WindowBatch& batch) const override;
  // kind ACTION_TRANSLATOR, obs_dim, action_dim, context_dim 0, latent_dim 0, horizon 1,
  // methods ["Translate"]; the network hyperparameters; the "translator.*" weights.
  absl::StatusOr<ModelArtifact> ToArtifact(v1::ModelInfo info) const override;
  // ToArtifact plus the forward model's weights and Adam's state.
  absl::StatusOr<ModelArtifact> TrainingState(v1::ModelInfo info) const override;
  absl::Status RestoreTrainingState(const ModelArtifact& state) override;

  // H(s, a_src) without gradient: `obs` [B, obs_dim], `source_action` [B, act_dim] on any
  // device; the result on the model's. A wrong shape is a programmer error (LibTorch throws).
  at::Tensor Translate(const at::Tensor& obs, const at::Tensor& source_action) const;

  const TaskPairTranslatorOptions& options() const { return options_; }

 private:
  struct Terms;
  explicit TaskPairTranslator(const TaskPairTranslatorOptions& resolved);
  // The checked batch on the model's device, split by task; INVALID_ARGUMENT naming the field.
  struct Split;
  absl::StatusOr<Split> Prepare(const WindowBatch& batch) const;
  // The loss terms of a split batch (identity_loss only without gradient).
  Terms Compute(const Split& split, bool with_identity) const;

  TaskPairTranslatorOptions options_;
  McatDims dims_;
  ParameterBlock params_;
  ForwardModel forward_model_;
  ActionTranslator translator_;
  at::Generator generator_;
  std::unique_ptr<prior_util::FlatAdam> adam_;
};

}  // namespace prl::models

#endif  // PRL_MODELS_TASK_PAIR_TRANSLATOR_H_
