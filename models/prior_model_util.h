// Building blocks the trainable priors (models/skill_model.h, models/cvae_model.h) share:
// linear layers in a ParameterBlock, Gaussian heads, input and device checks with field-naming
// errors, Adam on a flat parameter block, and the artifact plumbing (network hyperparameters,
// weights in and out). Internal to models/: the model classes are the public surface.
#ifndef PRL_MODELS_PRIOR_MODEL_UTIL_H_
#define PRL_MODELS_PRIOR_MODEL_UTIL_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ATen/core/Generator.h"
#include "ATen/core/Tensor.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "c10/core/Device.h"
#include "c10/util/Exception.h"
#include "models/artifact.h"
#include "models/dense_mlp.h"
#include "models/networks.h"
#include "models/prior_model.h"
#include "proto/experiment.pb.h"

namespace prl::models::prior_util {

// How the priors multiply (oneDNN's sgemm on CPU when available).
inline constexpr GemmBackend kGemm = GemmBackend::kOneDnn;
// log σ of every Gaussian head is clamped to [kLogStdMin, kLogStdMax] (SPiRL's range).
inline constexpr double kLogStdMin = -10.0;
inline constexpr double kLogStdMax = 2.0;
// That clamp on one value, and whether it passes the gradient there (at::clamp's backward: inside
// the range, ends included), for the direct CPU steps.
inline float ClampLogStd(float raw) {
  return dense::Clamp(raw, static_cast<float>(kLogStdMin), static_cast<float>(kLogStdMax));
}
inline bool LogStdClampPasses(float raw) {
  return dense::ClampPasses(raw, static_cast<float>(kLogStdMin), static_cast<float>(kLogStdMax));
}

// A linear layer's parameter indices in a block.
struct LinearParams {
  int weight, bias;
};
// Declares "<prefix>.weight" [out, in] and "<prefix>.bias" [out] with PyTorch's nn.Linear
// initialisation, U(-1/sqrt(in), 1/sqrt(in)).
LinearParams DeclareLinear(ParameterBlock* block, const std::string& prefix, int64_t in,
                           int64_t out);
at::Tensor ApplyLinear(const ParameterBlock& block, const LinearParams& p, const at::Tensor& x);

// An MLP trunk with a Gaussian head: "<prefix>.trunk.<i>.*", "<prefix>.mean.*" and
// "<prefix>.log_std.*" (the names the learner's policy copies from a prior).
struct GaussianNet {
  GaussianNet(ParameterBlock* block, const std::string& prefix, int64_t input_dim,
              int64_t latent_dim, const v1::NetworkSpec& resolved);
  DiagonalGaussian Forward(const ParameterBlock& block, const at::Tensor& x) const;
  // The same network as a DenseMlp over the block's flat buffers, heads {mean, log_std (before
  // the clamp)}; nullopt unless the trunk is PlainRelu.
  std::optional<dense::DenseMlp> Dense(const ParameterBlock& block) const;

  MlpTrunk trunk;
  LinearParams mean, log_std;
};

// An MLP trunk with a linear output: "<prefix>.trunk.<i>.*" and "<prefix>.mean.*".
struct MeanNet {
  MeanNet(ParameterBlock* block, const std::string& prefix, int64_t input_dim, int64_t output_dim,
          const v1::NetworkSpec& resolved);
  at::Tensor Forward(const ParameterBlock& block, const at::Tensor& x) const;
  // As GaussianNet::Dense, with the one head {mean}.
  std::optional<dense::DenseMlp> Dense(const ParameterBlock& block) const;

  MlpTrunk trunk;
  LinearParams mean;
};

// Dimension limits of a latent-variable prior, as fields "<prefix>obs_dim", "<prefix><act_name>",
// "<prefix>horizon" and "<prefix>latent_dim".
struct DimLimits {
  int max_dim, max_horizon, max_latent_dim;
};
absl::Status CheckDims(const std::string& prefix, absl::string_view act_name, int obs_dim,
                       int act_dim, int horizon, int latent_dim, const DimLimits& limits);

// The training options every VAE-style prior has: β (finite, >= 0), the learning rate (finite,
// > 0), the network (empty hidden_sizes: `default_layers` of `default_size`; then resolved) and
// the device.
absl::Status ResolveTrainingOptions(double beta, double lr, int default_layers, int default_size,
                                    c10::Device device, v1::NetworkSpec* network);

// OK for the CPU or a CUDA device of this build and machine; else INVALID_ARGUMENT on `field`.
absl::Status CheckDevice(absl::string_view field, c10::Device device);

// Checks an input tensor: float32 with shape `want` (-1: any size >= 1, shown as B), finite on
// request. INVALID_ARGUMENT naming `field`, what it got and what is allowed.
absl::Status CheckInput(absl::string_view field, const at::Tensor& t,
                        const std::vector<int64_t>& want, bool require_finite);

// INTERNAL: "<what>: <LibTorch's message>".
absl::Status TorchError(absl::string_view what, const c10::Error& e);

// An integer hyperparameter of an artifact, required, in [min, max].
absl::StatusOr<int64_t> Hyperparameter(const ModelArtifact& artifact, const std::string& key,
                                       int64_t min, int64_t max);

// "network.hidden_layers", "network.hidden_sizes.<i>", "network.activation" (the enum value) and
// "network.layer_norm" (0/1), written and read back.
void WriteNetwork(const v1::NetworkSpec& network, std::map<std::string, int64_t>* hyperparameters);
absl::StatusOr<v1::NetworkSpec> ReadNetwork(const ModelArtifact& artifact);

// An ACTION_TRANSLATOR artifact without its weights: `info` with the kind, dimensions, horizon 1,
// methods ["Translate"], and the network's hyperparameters (what TranslatorModel::FromArtifact
// reads; MCAT's context translator and the translator between two tasks share it).
ModelArtifact TranslatorArtifactBase(v1::ModelInfo info, int64_t obs_dim, int64_t action_dim,
                                     int64_t context_dim, const v1::NetworkSpec& network);
// The block's parameters as CPU float32 tensors under their names, appended to the artifact.
absl::Status StoreParameters(const ParameterBlock& block, ModelArtifact* artifact);
// Copies the artifact's tensors into `block`: every parameter exactly once, with its shape,
// finite. INVALID_ARGUMENT naming the tensor (unknown ones list what `model` has).
absl::Status LoadParameters(const ModelArtifact& artifact, absl::string_view model,
                            ParameterBlock* block);

// torch.optim.Adam's arithmetic (β = 0.9, 0.999, ε = 1e-8, no weight decay) on a block's flat
// parameters with its flat gradient.
class FlatAdam {
 public:
  explicit FlatAdam(const ParameterBlock& block);
  void Step(ParameterBlock* block, double lr);
  // Step on any flat parameter tensor and its gradient (same shape as the block's).
  void Step(const at::Tensor& param, const at::Tensor& grad, double lr);

  const at::Tensor& exp_avg() const { return m_; }
  const at::Tensor& exp_avg_sq() const { return v_; }
  int64_t steps() const { return steps_; }
  // Overwrites the moments (shapes must match; copied to the moments' device) and the count.
  void Restore(const at::Tensor& exp_avg, const at::Tensor& exp_avg_sq, int64_t steps);

 private:
  at::Tensor m_, v_;
  int64_t steps_ = 0;
};

// A named loss term (a scalar tensor) of a training step; the first one is minimised.
using LossTerms = std::vector<std::pair<std::string, at::Tensor>>;

// `batch` checked against windows of `horizon` steps of `obs_dim` states and `act_dim` actions
// (float32, finite; INVALID_ARGUMENT naming batch.obs or batch.actions) and moved to `device`.
absl::StatusOr<WindowBatch> PrepareWindows(const WindowBatch& batch, int horizon, int obs_dim,
                                           int act_dim, c10::Device device);

// The loss terms of rows [begin, begin + count) of a batch, computed with `params` (a block, or
// one of its GradientShard copies). Every term must be a mean over the rows, so that the batch's
// terms are the count-weighted means of its slices', and the function must be safe to call from
// several threads at once.
using RowLoss =
    std::function<LossTerms(const ParameterBlock& params, int64_t begin, int64_t count)>;
// The fewest network rows (time steps through the widest net) a shard should compute: below
// that, the operators' fixed costs (dispatch, autograd) outweigh what a second core gains.
// Measured on the 2-core machine: the skill model's 128 windows of 10 steps gain from 2 shards,
// the flow's 128 single steps lose (docs/benchmarks.md).
inline constexpr int64_t kMinShardNetworkRows = 320;
// How many row shards ShardedGradient splits a batch of `rows` rows into on `device`, when
// each row is `network_rows_per_row` rows of the widest network (the skill model's closed-loop
// decoder runs once per step of a window: H; the flow and the CVAE: 1): on the CPU, one per
// intra-op thread (at::get_num_threads()) while each shard keeps kMinShardNetworkRows network
// rows; otherwise 1.
int TrainingShards(int64_t rows, int64_t network_rows_per_row, c10::Device device);
// The gradient of a batch's first loss term in block->flat_grad() (zeroed first), and the
// batch's terms; INTERNAL naming the term (`what` names the model) when one is not finite, in
// which case the caller must not step. Takes no optimizer step.
//
// With TrainingShards() > 1 the batch is split into that many row ranges, run concurrently, one
// per thread (each thread's operators single-threaded): a prior's small matrices gain little
// from splitting every operator across cores, a lot from splitting the batch. Each shard runs
// backward into its own gradient buffer (ParameterBlock::GradientShard), and the buffers are
// summed in shard order, so a step is deterministic for a given thread count; it equals the
// unsharded step up to float rounding. With one shard it is exactly the plain backward. Throws
// c10::Error where the operators do.
absl::StatusOr<Losses> ShardedGradient(absl::string_view what, ParameterBlock* block, int64_t rows,
                                       int64_t network_rows_per_row, c10::Device device,
                                       const RowLoss& loss);

// What a VAE-style prior trains with: its parameters, their Adam, the generator of its noise ε
// and where it computes.
struct VaeTraining {
  ParameterBlock* block;
  FlatAdam* adam;  // null: compute the gradient (block->flat_grad()) and the terms, no step
  at::Generator* generator;
  double lr;
  int latent_dim;
  c10::Device device;
  int64_t network_rows_per_row = 1;  // see TrainingShards
};
// A RowLoss that also takes the rows' slice of ε [count, latent_dim].
using VaeRowLoss = std::function<LossTerms(const ParameterBlock& params, const at::Tensor& noise,
                                           int64_t begin, int64_t count)>;
// One Adam step: ε ~ N(0, I) [rows, latent_dim] from the generator, the gradient of the batch's
// terms (ShardedGradient: split across threads, refused when a term is not finite, parameters
// untouched), an Adam step.
absl::StatusOr<Losses> VaeTrainStep(absl::string_view what, const VaeTraining& training,
                                    int64_t rows, const VaeRowLoss& loss);
// The autograd-free CPU step (models/dense_mlp.h): a model computes its own forward and backward
// passes on raw buffers. DirectRowGradient is called for `count` windows of the batch on shard
// `shard` (0 <= shard < TrainingShards; a shard's buffers are its own, shards run concurrently)
// with their obs [count, H, O], actions [count, H, A] and ε [count, latent_dim] (row-major),
// and must write `scale` · ∂(first term)/∂θ into `grad` (block->numel() floats, zeroed
// beforehand, the block's flat layout) and return the terms as means over its windows, the
// minimised one first.
using TermValues = std::vector<std::pair<std::string, double>>;
using DirectRowGradient = std::function<absl::StatusOr<TermValues>(
    int shard, const float* obs, const float* actions, const float* noise, int64_t count,
    float scale, float* grad)>;
// VaeTrainStep's step on `batch` (PrepareWindows' output, on the CPU) with a DirectRowGradient:
// the same ε from the generator, the same row shards (each shard's scale its share of the rows;
// gradients summed in shard order), the same refusal of non-finite terms, the same Adam step.
// `shard_grads` keeps the gradient buffers of shards >= 1 between steps.
absl::StatusOr<Losses> DirectVaeTrainStep(absl::string_view what, const VaeTraining& training,
                                          const WindowBatch& batch,
                                          const DirectRowGradient& gradient,
                                          std::vector<std::vector<float>>* shard_grads);
// Whether DirectVaeTrainStep can run on `device`: the CPU with oneDNN's sgemm.
bool DirectStepAvailable(c10::Device device);

// The same terms without a step, in inference mode, ε from a generator seeded with `seed` +
// a fixed offset afresh on each call (equal batches give equal losses).
absl::StatusOr<Losses> VaeEvaluate(absl::string_view what, int latent_dim, c10::Device device,
                                   int64_t seed, int64_t rows,
                                   const std::function<LossTerms(const at::Tensor&)>& loss);

// A prior's training state for checkpoints (PriorModel::TrainingState): `artifact` (its
// ToArtifact, the weights) plus the tensors "training.adam.exp_avg" and
// "training.adam.exp_avg_sq" (flat, float32), "training.generator" (the CPU noise generator's
// state, one float per byte; only when `generator` is set) and the hyperparameter
// "training.adam.steps".
absl::Status AppendTrainingState(const FlatAdam& adam, const at::Generator* generator,
                                 ModelArtifact* artifact);
// Puts such a state back: the weights into `block` (as LoadParameters), the moments and step
// count into `adam`, the generator's state. INVALID_ARGUMENT naming what is missing or
// misshapen; the model may then be partly restored (callers start from a fresh one).
absl::Status RestoreTrainingState(const ModelArtifact& state, absl::string_view model,
                                  ParameterBlock* block, FlatAdam* adam, at::Generator* generator);

}  // namespace prl::models::prior_util

#endif  // PRL_MODELS_PRIOR_MODEL_UTIL_H_
