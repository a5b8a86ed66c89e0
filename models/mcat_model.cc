#include "models/mcat_model.h"

#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "ATen/CPUGeneratorImpl.h"
#include "ATen/Parallel.h"
#include "ATen/core/grad_mode.h"
#include "absl/strings/str_cat.h"
#include "c10/core/InferenceMode.h"
#include "common/field_error.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/tensor.h"
#include "common/torch_tensor.h"
#include "models/dense_mlp.h"
#include "models/network_spec.h"
#include "models/prior_model_util.h"

namespace prl::models {

// ---- McatModel ----

namespace {

using prior_util::CheckInput;
using prior_util::FlatAdam;
using prior_util::kGemm;
using prior_util::TorchError;

constexpr int64_t kMaxDim = 65536;        // obs_dim, action_dim, num_tasks
constexpr int64_t kMaxContextDim = 4096;  // context_dim
constexpr int64_t kMaxSteps = 1000;       // K, M

// SaveState's bytes are a ModelArtifact (models/artifact.h) under this name, marked by the
// hyperparameter kStateFormat = 1, with the networks' parameters under their names and the
// rest under "training.*".
constexpr char kStateName[] = "mcat_training_state";
constexpr char kStateFormat[] = "mcat_state.format";
constexpr char kStateContextHistory[] = "dims.context_history";
constexpr char kStateNumTasks[] = "num_tasks";
constexpr char kModelAdam[] = "training.model_adam";
constexpr char kTranslatorAdam[] = "training.translator_adam";
constexpr char kTaskFeatures[] = "training.task_features";
constexpr char kTaskSeen[] = "training.task_seen";
constexpr char kGenerator[] = "training.generator";

using Scalars = std::map<std::string, double>;

// A device name ("cpu", "cuda", "cuda:1") this build and machine can use.
absl::StatusOr<at::Device> ParseDevice(absl::string_view field, const std::string& name) {
  try {
    const at::Device device(name);
    PRL_RETURN_IF_ERROR(prior_util::CheckDevice(field, device));
    return device;
  } catch (const c10::Error&) {
    return FieldError(field, absl::StrCat("\"", name, "\""), "cpu, cuda or cuda:N");
  }
}

absl::Status CheckRange(const std::string& field, int64_t value, int64_t min, int64_t max) {
  if (value < min || value > max) return FieldRangeError(field, value, min, max);
  return absl::OkStatus();
}

// Checks every option and fills the network's defaults.
absl::Status ResolveOptions(McatModelOptions* o) {
  const McatDims& d = o->dims;
  PRL_RETURN_IF_ERROR(CheckRange("options.dims.obs_dim", d.obs_dim, 1, kMaxDim));
  PRL_RETURN_IF_ERROR(CheckRange("options.dims.action_dim", d.action_dim, 1, kMaxDim));
  PRL_RETURN_IF_ERROR(CheckRange("options.dims.context_dim", d.context_dim, 1, kMaxContextDim));
  PRL_RETURN_IF_ERROR(CheckRange("options.dims.context_history", d.context_history, 1, kMaxSteps));
  PRL_RETURN_IF_ERROR(
      CheckRange("options.prediction_horizon", o->prediction_horizon, 1, kMaxSteps));
  PRL_RETURN_IF_ERROR(CheckRange("options.num_tasks", o->num_tasks, 1, kMaxDim));
  PRL_RETURN_IF_ERROR(ResolveNetworkSpec("options.network", &o->network));
  const std::pair<const char*, double> non_negative[] = {
      {"options.contrastive_margin", o->contrastive_margin},
      {"options.contrastive_weight", o->contrastive_weight}};
  for (const auto& [field, value] : non_negative) {
    if (!std::isfinite(value) || value < 0) return FieldError(field, value, "finite and >= 0");
  }
  const std::pair<const char*, double> rates[] = {{"options.model_lr", o->model_lr},
                                                  {"options.translator_lr", o->translator_lr}};
  for (const auto& [field, value] : rates) {
    if (!std::isfinite(value) || value <= 0) return FieldError(field, value, "finite and > 0");
  }
  if (!(o->task_feature_rate > 0 && o->task_feature_rate <= 1)) {
    return FieldError("options.task_feature_rate", o->task_feature_rate, "in (0, 1]");
  }
  return ParseDevice("options.device", o->device).status();
}

// A checked McatWindowBatch on the model's device, with the task indices also on the CPU.
struct Windows {
  at::Tensor observations, actions, mask, task;
  at::Tensor task_cpu;
  int64_t rows() const { return observations.size(0); }
};

// The losses' values, copied to the host at once; INTERNAL naming a non-finite one.
absl::StatusOr<Scalars> FiniteScalars(
    absl::string_view what, const std::vector<std::pair<std::string, at::Tensor>>& terms) {
  std::vector<at::Tensor> values;
  for (const auto& term : terms) values.push_back(term.second.detach().reshape({1}));
  const at::Tensor host = at::cat(values).to(at::kCPU, at::kDouble);
  Scalars scalars;
  for (size_t i = 0; i < terms.size(); ++i) {
    const double value = host[static_cast<int64_t>(i)].item<double>();
    if (!std::isfinite(value)) {
      return absl::InternalError(absl::StrCat(what, ": ", terms[i].first, " is ", value,
                                              "; the parameters were not updated"));
    }
    scalars[terms[i].first] = value;
  }
  return scalars;
}

// A copy of `artifact`'s tensors whose names start with one of `prefixes`.
ModelArtifact TensorsUnder(const ModelArtifact& artifact,
                           const std::vector<std::string>& prefixes) {
  ModelArtifact part;
  for (const auto& [name, tensor] : artifact.tensors) {
    for (const std::string& prefix : prefixes) {
      if (name.rfind(prefix, 0) == 0) {
        part.tensors.emplace_back(name, tensor);
        break;
      }
    }
  }
  return part;
}

// The tensor `name` of a state with shape `shape`, as a CPU torch tensor.
absl::StatusOr<at::Tensor> StateTensor(const ModelArtifact& state, const std::string& name,
                                       const std::vector<int64_t>& shape) {
  const HostTensor* tensor = state.Find(name);
  const std::string field = absl::StrCat("tensors[\"", name, "\"]");
  if (tensor == nullptr) return absl::InvalidArgumentError(absl::StrCat(field, ": missing"));
  if (tensor->shape() != shape) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": shape ", ShapeString(tensor->shape()),
                                                   " does not fit this model's ",
                                                   ShapeString(shape)));
  }
  return ToTorch(tensor->view()).clone();
}

absl::Status AppendTensor(const std::string& name, const at::Tensor& t, ModelArtifact* artifact) {
  PRL_ASSIGN_OR_RETURN(HostTensor host,
                       FromTorch(t.detach().to(at::kCPU, at::kFloat).contiguous()));
  artifact->tensors.emplace_back(name, std::move(host));
  return absl::OkStatus();
}

}  // namespace

struct McatModel::Impl {
  Impl(const McatModelOptions& resolved, at::Device on)
      : options(resolved),
        device(on),
        encoder(&model_block, "context_encoder", resolved.dims, resolved.network),
        forward_model(&model_block, "forward_model", resolved.dims, resolved.network),
        translator(&translator_block, "translator", resolved.dims, resolved.network),
        generator(at::make_generator<at::CPUGeneratorImpl>(resolved.seed)),
        seen(static_cast<size_t>(resolved.num_tasks), false) {
    model_block.Allocate(device, /*requires_grad=*/true);
    translator_block.Allocate(device, /*requires_grad=*/true);
    model_block.Initialize(generator);
    translator_block.Initialize(generator);
    model_adam = std::make_unique<FlatAdam>(model_block);
    translator_adam = std::make_unique<FlatAdam>(translator_block);
    features = at::zeros({resolved.num_tasks, resolved.dims.context_dim},
                         at::TensorOptions().dtype(at::kFloat).device(device));
    if (resolved.direct_cpu_step && prior_util::DirectStepAvailable(device)) {
      std::optional<dense::DenseMlp> c = encoder.Dense(model_block),
                                     f = forward_model.Dense(model_block),
                                     h = translator.Dense(translator_block);
      if (c && f && h) {
        direct.emplace(Direct{*std::move(c), *std::move(h), {}, {}, {}, {}, {}});
        direct->forward.push_back(Direct::ForwardShard{*std::move(f), {}, {}, {}, {}, {}});
      }
    }
  }

  // The autograd-free CPU steps (McatModelOptions::direct_cpu_step): the three networks on
  // the blocks' flat buffers and the step's buffers, kept from step to step.
  struct Direct {
    // F over one shard of a context step's windows (one per thread), or the translator step's
    // rows (shard 0); `grad` is a shard's own flat gradient (shards after the first).
    struct ForwardShard {
      dense::DenseMlp net;
      std::vector<float> in, g_mean, g_raw, g_in, grad, targets, used;
      double nll_sum = 0;
      bool ok = true;
    };
    dense::DenseMlp encoder, translator;
    std::vector<ForwardShard> forward;  // at least one
    std::vector<float> encoder_in, g_z, translator_in, g_translator_out;
  };

  absl::StatusOr<Windows> Prepare(const McatWindowBatch& batch) const;
  absl::StatusOr<Scalars> TrainContext(const Windows& b);
  absl::StatusOr<Scalars> DirectTrainContext(const Windows& b);
  // The direct encoder's forward pass on transitions first .. first + K - 1 of each window of
  // observations [rows, W + 1, O], actions [rows, W, A] and mask [rows, W] (each transition as
  // [s, a, s' - s] times its mask); z is then direct->encoder.head(0). False when a product
  // failed.
  bool EncodeDirect(const float* obs, const float* act, const float* mask, int64_t w, int64_t first,
                    int64_t rows);
  // UpdateTaskFeatures on the direct path (the same z_{t+1}, per-task means and moving average,
  // written into `features` in place).
  bool DirectUpdateTaskFeatures(const float* obs, const float* act, const float* mask,
                                const int64_t* task, int64_t rows);
  void UpdateTaskFeatures(const Windows& b);
  absl::StatusOr<Scalars> TrainTranslator(const Windows& b);
  // TrainTranslator's step once the targets are drawn: H's loss on the rows' own transitions
  // with source_z and target_z per row, over the rows where `valid` (CPU bool [B]), its
  // gradient into translator_block's flat gradient, and the Adam step.
  absl::StatusOr<Scalars> DirectTranslatorStep(const Windows& b, const at::Tensor& target_z,
                                               const at::Tensor& source_z, const at::Tensor& valid,
                                               int64_t valid_rows);
  absl::Status Restore(const ModelArtifact& state);

  int64_t window() const { return options.dims.context_history + options.prediction_horizon; }

  McatModelOptions options;
  at::Device device;
  // C and F, trained together by model_adam; H alone in its own block, by translator_adam.
  ParameterBlock model_block;
  ContextEncoder encoder;
  ForwardModel forward_model;
  ParameterBlock translator_block;
  ActionTranslator translator;
  at::Generator generator;  // initialisation, then TrainTranslator's target tasks (CPU)
  std::unique_ptr<FlatAdam> model_adam, translator_adam;
  at::Tensor features;     // [num_tasks, context_dim] on `device`
  std::vector<bool> seen;  // per task: has a feature
  std::optional<Direct> direct;
};

absl::StatusOr<Windows> McatModel::Impl::Prepare(const McatWindowBatch& batch) const {
  const McatDims& d = options.dims;
  const int64_t w = window();
  PRL_RETURN_IF_ERROR(
      CheckInput("batch.observations", batch.observations, {-1, w + 1, d.obs_dim}, true));
  const int64_t rows = batch.observations.size(0);
  PRL_RETURN_IF_ERROR(CheckInput("batch.actions", batch.actions, {rows, w, d.action_dim}, true));
  PRL_RETURN_IF_ERROR(CheckInput("batch.mask", batch.mask, {rows, w}, true));
  const at::Tensor& task = batch.task;
  if (!task.defined() || task.scalar_type() != at::kLong || task.dim() != 1 ||
      task.size(0) != rows) {
    return FieldError("batch.task",
                      task.defined()
                          ? absl::StrCat("a ", std::string(c10::toString(task.scalar_type())), " ",
                                         ShapeString(task.sizes().vec()), " tensor")
                          : std::string("an undefined tensor"),
                      absl::StrCat("an int64 [", rows, "] tensor"));
  }
  Windows b;
  b.task_cpu = task.to(at::kCPU).contiguous();
  const int64_t lowest = b.task_cpu.min().item<int64_t>();
  const int64_t highest = b.task_cpu.max().item<int64_t>();
  for (int64_t value : {lowest, highest}) {
    PRL_RETURN_IF_ERROR(CheckRange("batch.task", value, 0, options.num_tasks - 1));
  }
  b.observations = batch.observations.to(device);
  b.actions = batch.actions.to(device);
  b.mask = batch.mask.to(device);
  b.task = task.to(device);
  return b;
}

absl::StatusOr<Scalars> McatModel::Impl::TrainContext(const Windows& b) {
  if (direct) return DirectTrainContext(b);
  const int64_t k = options.dims.context_history;
  const int64_t m = options.prediction_horizon;
  const int64_t rows = b.rows();
  model_block.ZeroGrad();
  // z_t from the first K transitions
  const at::Tensor z = encoder.Forward(model_block, b.observations.narrow(1, 0, k + 1),
                                       b.actions.narrow(1, 0, k), b.mask.narrow(1, 0, k), kGemm);
  // F predicts the next M transitions from z_t, all rows and steps in one pass
  auto steps = [&](const at::Tensor& t) { return t.reshape({rows * m, t.size(-1)}); };
  const at::Tensor z_steps = z.unsqueeze(1).expand({rows, m, z.size(-1)});
  const at::Tensor log_prob = forward_model
                                  .LogProb(model_block, steps(b.observations.narrow(1, k, m)),
                                           steps(b.actions.narrow(1, k, m)), steps(z_steps),
                                           steps(b.observations.narrow(1, k + 1, m)), kGemm)
                                  .view({rows, m});
  const at::Tensor in_episode = b.mask.narrow(1, k, m) > 0;
  const at::Tensor forward_loss =
      -at::where(in_episode, log_prob, at::zeros_like(log_prob)).sum() / static_cast<double>(rows);
  const at::Tensor contrastive_loss = ContrastiveLoss(z, b.task, options.contrastive_margin);
  const at::Tensor loss = forward_loss + contrastive_loss * options.contrastive_weight;
  PRL_ASSIGN_OR_RETURN(Scalars scalars, FiniteScalars("MCAT context training step",
                                                      {{"forward_loss", forward_loss},
                                                       {"contrastive_loss", contrastive_loss},
                                                       {"model_loss", loss}}));
  loss.backward();
  model_adam->Step(&model_block, options.model_lr);
  UpdateTaskFeatures(b);
  return scalars;
}

void McatModel::Impl::UpdateTaskFeatures(const Windows& b) {
  at::NoGradGuard no_grad;
  const int64_t k = options.dims.context_history;
  const int64_t w = window();
  const int64_t tasks = options.num_tasks;
  // z_{t+1}: the K transitions ending with the row's own
  const at::Tensor z = encoder.Forward(model_block, b.observations.narrow(1, w - k, k + 1),
                                       b.actions.narrow(1, w - k, k), b.mask.narrow(1, w - k, k),
                                       kGemm, /*detach=*/true);
  // per-task sums and counts, then means
  const at::Tensor sums = at::zeros_like(features).index_add_(0, b.task, z);
  const at::Tensor counts =
      at::zeros({tasks}, z.options()).index_add_(0, b.task, at::ones({b.rows()}, z.options()));
  const at::Tensor means = sums / counts.clamp_min(1.0).unsqueeze(1);
  // each task's weight: the rate, 1 for a task seen for the first time, 0 for one not in the batch
  const at::Tensor counts_cpu = counts.to(at::kCPU);
  at::Tensor weight = at::zeros({tasks, 1}, at::kFloat);
  auto c = counts_cpu.accessor<float, 1>();
  auto wt = weight.accessor<float, 2>();
  for (int64_t i = 0; i < tasks; ++i) {
    if (c[i] <= 0) continue;
    wt[i][0] = seen[i] ? static_cast<float>(options.task_feature_rate) : 1.0f;
    seen[i] = true;
  }
  // lerp gives the mean exactly at weight 1 and leaves a feature exactly at weight 0
  features = at::lerp(features, means, weight.to(device));
}

absl::StatusOr<Scalars> McatModel::Impl::TrainTranslator(const Windows& b) {
  const int64_t w = window();
  const int64_t rows = b.rows();
  // the seen tasks, and each task's position among them
  std::vector<int64_t> seen_list;
  at::Tensor position = at::zeros({options.num_tasks}, at::kLong);
  at::Tensor has_feature = at::zeros({options.num_tasks}, at::kBool);
  auto pos = position.accessor<int64_t, 1>();
  auto has = has_feature.accessor<bool, 1>();
  for (int64_t i = 0; i < options.num_tasks; ++i) {
    if (!seen[i]) continue;
    pos[i] = static_cast<int64_t>(seen_list.size());
    has[i] = true;
    seen_list.push_back(i);
  }
  const int64_t n = static_cast<int64_t>(seen_list.size());
  if (n < 2) return Scalars();
  // each row's target: uniform over the n - 1 seen tasks other than its own (a draw r in
  // [0, n - 2] skips the source's position)
  const at::Tensor r = at::randint(n - 1, {rows}, generator, at::TensorOptions().dtype(at::kLong));
  const at::Tensor skip = (r >= position.index_select(0, b.task_cpu)).to(at::kLong);
  const at::Tensor target_cpu =
      at::tensor(seen_list, at::TensorOptions().dtype(at::kLong)).index_select(0, r + skip);
  // rows whose own task has no feature yet (or whose own transition is masked) sit out
  const at::Tensor valid_cpu =
      has_feature.index_select(0, b.task_cpu).logical_and(b.mask.select(1, w - 1).to(at::kCPU) > 0);
  const int64_t valid_rows = valid_cpu.sum().item<int64_t>();
  if (valid_rows == 0) return Scalars();

  const at::Tensor target = target_cpu.to(device);
  const at::Tensor source_z = features.index_select(0, b.task);
  const at::Tensor target_z = features.index_select(0, target);
  if (direct) return DirectTranslatorStep(b, target_z, source_z, valid_cpu, valid_rows);
  const at::Tensor s = b.observations.select(1, w - 1);
  const at::Tensor next_s = b.observations.select(1, w);
  translator_block.ZeroGrad();
  const at::Tensor translated = translator.Forward(translator_block, s, b.actions.select(1, w - 1),
                                                   source_z, target_z, kGemm);
  // -log F(s'_src | s_src, H(...), z_tgt) with F fixed: the gradient reaches H only
  const at::Tensor log_prob =
      forward_model.LogProb(model_block, s, translated, target_z, next_s, kGemm, /*detach=*/true);
  const at::Tensor loss =
      -at::where(valid_cpu.to(device), log_prob, at::zeros_like(log_prob)).sum() /
      static_cast<double>(valid_rows);
  PRL_ASSIGN_OR_RETURN(Scalars scalars,
                       FiniteScalars("MCAT translator training step", {{"translator_loss", loss}}));
  loss.backward();
  translator_adam->Step(&translator_block, options.translator_lr);
  return scalars;
}

namespace {

const absl::Status& SgemmFailed() {
  static const absl::Status* failed =
      new absl::Status(absl::InternalError("MCAT training step: oneDNN sgemm failed"));
  return *failed;
}

// A non-finite loss refused before any weight moves, as FiniteScalars does.
absl::StatusOr<Scalars> FiniteValues(absl::string_view what,
                                     const std::vector<std::pair<std::string, double>>& terms) {
  Scalars scalars;
  for (const auto& [name, value] : terms) {
    if (!std::isfinite(value)) {
      return absl::InternalError(
          absl::StrCat(what, ": ", name, " is ", value, "; the parameters were not updated"));
    }
    scalars[name] = value;
  }
  return scalars;
}

// -log F summed over the `rows` rows of [mean | raw] heads (row stride obs_dim) against the
// targets delta_i = next_i - obs_i read by `delta(row, i)`, for the rows where `use(row)`:
// writes scale · the derivatives into g_mean and g_raw (zeros for rows not used) and returns
// the sum of the used rows' -log F. `targets` and `used` are scratch buffers.
template <typename Delta, typename Use>
double ForwardNllRows(const float* mean, const float* raw, int64_t rows, int64_t obs_dim,
                      float scale, const Delta& delta, const Use& use, std::vector<float>* targets,
                      std::vector<float>* used, float* g_mean, float* g_raw) {
  float* d = dense::Grow(targets, rows * obs_dim);
  float* u = dense::Grow(used, rows);
  for (int64_t r = 0; r < rows; ++r) {
    u[r] = use(r) ? 1.0f : 0.0f;
    for (int64_t i = 0; i < obs_dim; ++i) d[r * obs_dim + i] = delta(r, i);
  }
  return ForwardNllWithGradient(d, mean, raw, u, rows, obs_dim, scale, g_mean, g_raw);
}

}  // namespace

bool McatModel::Impl::EncodeDirect(const float* obs, const float* act, const float* mask, int64_t w,
                                   int64_t first, int64_t rows) {
  const int64_t k = options.dims.context_history;
  const int64_t o = options.dims.obs_dim, a = options.dims.action_dim;
  const int64_t per = 2 * o + a, enc_in = k * per;
  Direct& d = *direct;
  float* x = dense::Grow(&d.encoder_in, rows * enc_in);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < k; ++j) {
      const int64_t at = first + j;
      const float mk = mask[r * w + at];
      const float* s = obs + (r * (w + 1) + at) * o;
      const float* s1 = s + o;
      const float* ac = act + (r * w + at) * a;
      float* dst = x + r * enc_in + j * per;
      for (int64_t i = 0; i < o; ++i) dst[i] = s[i] * mk;
      for (int64_t i = 0; i < a; ++i) dst[o + i] = ac[i] * mk;
      for (int64_t i = 0; i < o; ++i) dst[o + a + i] = (s1[i] - s[i]) * mk;
    }
  }
  return d.encoder.Forward(model_block.flat().data_ptr<float>(), x, enc_in, rows);
}

bool McatModel::Impl::DirectUpdateTaskFeatures(const float* obs, const float* act,
                                               const float* mask, const int64_t* task,
                                               int64_t rows) {
  const int64_t k = options.dims.context_history, c = options.dims.context_dim;
  const int64_t w = window(), tasks = options.num_tasks;
  // z_{t+1}: the K transitions ending with the row's own
  if (!EncodeDirect(obs, act, mask, w, w - k, rows)) return false;
  const float* z = direct->encoder.head(0);
  std::vector<float> sums(static_cast<size_t>(tasks * c), 0.0f);
  std::vector<float> counts(static_cast<size_t>(tasks), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < c; ++i) sums[task[r] * c + i] += z[r * c + i];
    counts[task[r]] += 1.0f;
  }
  float* f = features.data_ptr<float>();
  for (int64_t t = 0; t < tasks; ++t) {
    if (counts[t] <= 0) continue;
    // at::lerp: exact at weight 1 (a task seen for the first time takes the batch's mean)
    const float weight = seen[t] ? static_cast<float>(options.task_feature_rate) : 1.0f;
    seen[t] = true;
    for (int64_t i = 0; i < c; ++i) {
      const float mean = sums[t * c + i] / counts[t];
      float& v = f[t * c + i];
      v = weight < 0.5f ? v + weight * (mean - v) : mean - (mean - v) * (1.0f - weight);
    }
  }
  return true;
}

absl::StatusOr<Scalars> McatModel::Impl::DirectTrainContext(const Windows& b) {
  const int64_t k = options.dims.context_history, m = options.prediction_horizon;
  const int64_t o = options.dims.obs_dim, a = options.dims.action_dim, c = options.dims.context_dim;
  const int64_t w = window(), rows = b.rows();
  const at::Tensor obs_t = b.observations.contiguous(), act_t = b.actions.contiguous(),
                   mask_t = b.mask.contiguous();
  const float* obs = obs_t.data_ptr<float>();    // [B, W + 1, O]
  const float* act = act_t.data_ptr<float>();    // [B, W, A]
  const float* mask = mask_t.data_ptr<float>();  // [B, W]
  const int64_t* task = b.task_cpu.data_ptr<int64_t>();
  auto state = [&](int64_t row, int64_t j) { return obs + (row * (w + 1) + j) * o; };
  auto action = [&](int64_t row, int64_t j) { return act + (row * w + j) * a; };
  Direct& d = *direct;
  const float* params = model_block.flat().data_ptr<float>();

  // z_t = C(the first K transitions)
  if (!EncodeDirect(obs, act, mask, w, 0, rows)) return SgemmFailed();
  const float* z = d.encoder.head(0);

  // F on [s_{K+t}, a_{K+t}, z_t] for the M prediction steps of every row (row r·M + t), the
  // windows split into one shard per thread: each computes its rows' -log F, F's gradient into
  // its own buffer and its windows' gradient in z
  const int64_t fin = o + a + c;
  float* g_z = dense::Grow(&d.g_z, rows * c);
  float* grad = model_block.flat_grad().data_ptr<float>();
  const int64_t flat_size = model_block.flat_grad().numel();
  const int shards = prior_util::TrainingShards(rows, m, at::kCPU);
  while (static_cast<int>(d.forward.size()) < shards) d.forward.push_back(d.forward.front());
  const float inv_rows = 1.0f / static_cast<float>(rows);
  auto shard_step = [&](int s) {
    Direct::ForwardShard& sh = d.forward[static_cast<size_t>(s)];
    const int64_t begin = rows * s / shards, count = rows * (s + 1) / shards - begin;
    const int64_t frows = count * m;
    float* xf = dense::Grow(&sh.in, frows * fin);
    for (int64_t r = 0; r < count; ++r) {
      for (int64_t t = 0; t < m; ++t) {
        float* dst = xf + (r * m + t) * fin;
        std::copy_n(state(begin + r, k + t), o, dst);
        std::copy_n(action(begin + r, k + t), a, dst + o);
        std::copy_n(z + (begin + r) * c, c, dst + o + a);
      }
    }
    sh.ok = sh.net.Forward(params, xf, fin, frows);
    if (!sh.ok) return;
    float* g_mean = dense::Grow(&sh.g_mean, frows * o);
    float* g_raw = dense::Grow(&sh.g_raw, frows * o);
    sh.nll_sum = ForwardNllRows(
        sh.net.head(0), sh.net.head(1), frows, o, inv_rows,
        [&](int64_t fr, int64_t i) {
          const int64_t r = begin + fr / m, j = k + fr % m;
          return state(r, j + 1)[i] - state(r, j)[i];
        },
        [&](int64_t fr) { return mask[(begin + fr / m) * w + k + fr % m] > 0; }, &sh.targets,
        &sh.used, g_mean, g_raw);
    // the shard's own gradient buffer: F's entries are overwritten, C's stay 0
    float* own = grad;
    if (s > 0) {
      if (static_cast<int64_t>(sh.grad.size()) != flat_size) sh.grad.assign(flat_size, 0.0f);
      own = sh.grad.data();
    }
    float* g_xf = dense::Grow(&sh.g_in, frows * fin);
    sh.ok = sh.net.Backward(params, {g_mean, g_raw}, own, g_xf, fin);
    if (!sh.ok) return;
    for (int64_t r = 0; r < count; ++r) {
      float* gz = g_z + (begin + r) * c;
      std::fill_n(gz, c, 0.0f);
      for (int64_t t = 0; t < m; ++t) {
        const float* g = g_xf + (r * m + t) * fin + o + a;
        for (int64_t i = 0; i < c; ++i) gz[i] += g[i];
      }
    }
  };
  if (shards == 1) {
    shard_step(0);
  } else {
    // one shard per thread; inside at::parallel_for oneDNN's products run single-threaded
    at::parallel_for(0, shards, 1, [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s) shard_step(static_cast<int>(s));
    });
  }
  double forward_sum = 0;
  for (int s = 0; s < shards; ++s) {
    if (!d.forward[static_cast<size_t>(s)].ok) return SgemmFailed();
    forward_sum += d.forward[static_cast<size_t>(s)].nll_sum;
  }
  const double forward_loss = forward_sum / static_cast<double>(rows);
  std::vector<float>& contrastive_grad = d.g_translator_out;  // free until the translator step
  float* g_cont = dense::Grow(&contrastive_grad, rows * c);
  const double contrastive =
      ContrastiveLossWithGradient(z, task, rows, c, options.contrastive_margin,
                                  static_cast<float>(options.contrastive_weight), g_cont);
  // checked before any weight moves (the gradients written so far are not used)
  PRL_ASSIGN_OR_RETURN(
      Scalars scalars,
      FiniteValues("MCAT context training step",
                   {{"forward_loss", forward_loss},
                    {"contrastive_loss", contrastive},
                    {"model_loss", forward_loss + contrastive * options.contrastive_weight}}));
  // F's gradient summed over the shards in order; C's from the sum of both terms' z gradients
  for (int s = 1; s < shards; ++s) {
    const float* part = d.forward[static_cast<size_t>(s)].grad.data();
    for (int64_t i = 0; i < flat_size; ++i) grad[i] += part[i];
  }
  for (int64_t i = 0; i < rows * c; ++i) g_z[i] += g_cont[i];
  if (!d.encoder.Backward(params, {g_z}, grad, nullptr, 0)) return SgemmFailed();
  model_adam->Step(&model_block, options.model_lr);
  if (!DirectUpdateTaskFeatures(obs, act, mask, task, rows)) return SgemmFailed();
  return scalars;
}

absl::StatusOr<Scalars> McatModel::Impl::DirectTranslatorStep(const Windows& b,
                                                              const at::Tensor& target_z,
                                                              const at::Tensor& source_z,
                                                              const at::Tensor& valid,
                                                              int64_t valid_rows) {
  const int64_t o = options.dims.obs_dim, a = options.dims.action_dim, c = options.dims.context_dim;
  const int64_t w = window(), rows = b.rows();
  const at::Tensor obs_t = b.observations.contiguous(), act_t = b.actions.contiguous();
  const at::Tensor zs_t = source_z.contiguous(), zt_t = target_z.contiguous();
  const at::Tensor valid_t = valid.contiguous();
  const float* obs = obs_t.data_ptr<float>();
  const float* act = act_t.data_ptr<float>();
  const float* zs = zs_t.data_ptr<float>();
  const float* zt = zt_t.data_ptr<float>();
  const bool* use = valid_t.data_ptr<bool>();
  auto state = [&](int64_t row, int64_t j) { return obs + (row * (w + 1) + j) * o; };
  Direct& d = *direct;
  const float* h_params = translator_block.flat().data_ptr<float>();
  const float* f_params = model_block.flat().data_ptr<float>();

  // ã = tanh(H([s, a, z_src, z_tgt])) on each row's own transition
  const int64_t hin = o + a + 2 * c;
  float* xh = dense::Grow(&d.translator_in, rows * hin);
  for (int64_t r = 0; r < rows; ++r) {
    float* dst = xh + r * hin;
    std::copy_n(state(r, w - 1), o, dst);
    std::copy_n(act + (r * w + w - 1) * a, a, dst + o);
    std::copy_n(zs + r * c, c, dst + o + a);
    std::copy_n(zt + r * c, c, dst + o + a + c);
  }
  if (!d.translator.Forward(h_params, xh, hin, rows)) return SgemmFailed();
  const float* out = d.translator.head(0);
  // F (fixed) on [s, ã, z_tgt]
  Direct::ForwardShard& f = d.forward.front();
  const int64_t fin = o + a + c;
  float* xf = dense::Grow(&f.in, rows * fin);
  for (int64_t r = 0; r < rows; ++r) {
    float* dst = xf + r * fin;
    std::copy_n(state(r, w - 1), o, dst);
    for (int64_t i = 0; i < a; ++i) dst[o + i] = std::tanh(out[r * a + i]);
    std::copy_n(zt + r * c, c, dst + o + a);
  }
  if (!f.net.Forward(f_params, xf, fin, rows)) return SgemmFailed();
  float* g_mean = dense::Grow(&f.g_mean, rows * o);
  float* g_raw = dense::Grow(&f.g_raw, rows * o);
  const double sum = ForwardNllRows(
      f.net.head(0), f.net.head(1), rows, o, 1.0f / static_cast<float>(valid_rows),
      [&](int64_t r, int64_t i) { return state(r, w)[i] - state(r, w - 1)[i]; },
      [&](int64_t r) { return use[r]; }, &f.targets, &f.used, g_mean, g_raw);
  PRL_ASSIGN_OR_RETURN(Scalars scalars,
                       FiniteValues("MCAT translator training step",
                                    {{"translator_loss", sum / static_cast<double>(valid_rows)}}));
  // the gradient reaches H only: F's input gradient at ã, through the tanh
  float* g_xf = dense::Grow(&f.g_in, rows * fin);
  if (!f.net.Backward(f_params, {g_mean, g_raw}, nullptr, g_xf, fin)) return SgemmFailed();
  float* g_out = dense::Grow(&d.g_translator_out, rows * a);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < a; ++i) {
      const float t = xf[r * fin + o + i];
      g_out[r * a + i] = g_xf[r * fin + o + i] * (1.0f - t * t);
    }
  }
  if (!d.translator.Backward(h_params, {g_out}, translator_block.flat_grad().data_ptr<float>(),
                             nullptr, 0)) {
    return SgemmFailed();
  }
  translator_adam->Step(&translator_block, options.translator_lr);
  return scalars;
}

McatModel::McatModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
McatModel::~McatModel() = default;

absl::StatusOr<std::unique_ptr<McatModel>> McatModel::Create(const McatModelOptions& options) {
  McatModelOptions resolved = options;
  PRL_RETURN_IF_ERROR(ResolveOptions(&resolved));
  PRL_ASSIGN_OR_RETURN(at::Device device, ParseDevice("options.device", resolved.device));
  try {
    return std::unique_ptr<McatModel>(new McatModel(std::make_unique<Impl>(resolved, device)));
  } catch (const c10::Error& e) {
    return TorchError("cannot build the MCAT model", e);
  }
}

const McatModelOptions& McatModel::options() const { return impl_->options; }

bool McatModel::direct_step() const { return impl_->direct.has_value(); }

std::pair<at::Tensor, at::Tensor> McatModel::last_gradients() const {
  return {impl_->model_block.flat_grad().detach().clone(),
          impl_->translator_block.flat_grad().detach().clone()};
}

absl::StatusOr<Scalars> McatModel::TrainContext(const McatWindowBatch& batch) {
  PRL_ASSIGN_OR_RETURN(Windows b, impl_->Prepare(batch));
  try {
    return impl_->TrainContext(b);
  } catch (const c10::Error& e) {
    return TorchError("MCAT context training step", e);
  }
}

absl::StatusOr<Scalars> McatModel::TrainTranslator(const McatWindowBatch& batch) {
  int64_t seen = 0;
  for (bool s : impl_->seen) seen += s ? 1 : 0;
  if (seen < 2) return Scalars();
  PRL_ASSIGN_OR_RETURN(Windows b, impl_->Prepare(batch));
  try {
    return impl_->TrainTranslator(b);
  } catch (const c10::Error& e) {
    return TorchError("MCAT translator training step", e);
  }
}

at::Tensor McatModel::Encode(const at::Tensor& observations, const at::Tensor& actions,
                             const at::Tensor& mask) const {
  c10::InferenceMode inference;
  const at::Device device = impl_->device;
  return impl_->encoder.Forward(impl_->model_block, observations.to(device), actions.to(device),
                                mask.to(device), kGemm, /*detach=*/true);
}

std::pair<at::Tensor, at::Tensor> McatModel::EncodeRows(const McatWindowBatch& batch) const {
  const int64_t k = impl_->options.dims.context_history;
  const int64_t w = batch.actions.size(1);
  PRL_CHECK(w >= k + 1) << "McatModel::EncodeRows: windows of " << w
                        << " transitions; z_t needs at least K + 1 = " << k + 1;
  const int64_t rows = batch.observations.size(0);
  // z_t from transitions W-1-K .. W-2 and z_{t+1} from W-K .. W-1, in one pass of 2B rows
  auto both = [&](const at::Tensor& t, int64_t length) {
    return at::cat({t.narrow(1, w - 1 - k, length), t.narrow(1, w - k, length)});
  };
  at::Tensor z =
      Encode(both(batch.observations, k + 1), both(batch.actions, k), both(batch.mask, k));
  return {z.narrow(0, 0, rows), z.narrow(0, rows, rows)};
}

at::Tensor McatModel::Translate(const at::Tensor& obs, const at::Tensor& source_action,
                                const at::Tensor& source_context,
                                const at::Tensor& target_context) const {
  c10::InferenceMode inference;
  const at::Device device = impl_->device;
  return impl_->translator.Forward(impl_->translator_block, obs.to(device),
                                   source_action.to(device), source_context.to(device),
                                   target_context.to(device), kGemm, /*detach=*/true);
}

at::Tensor McatModel::task_features() const { return impl_->features.clone(); }
std::vector<bool> McatModel::task_seen() const { return impl_->seen; }

std::vector<std::pair<std::string, at::Tensor>> McatModel::ActingParameters() const {
  std::vector<std::pair<std::string, at::Tensor>> named;
  auto add = [&](const ParameterBlock& block, absl::string_view prefix) {
    for (int i = 0; i < block.size(); ++i) {
      if (block.name(i).rfind(std::string(prefix), 0) != 0) continue;
      named.emplace_back(block.name(i), block.param(i).detach().to(at::kCPU, at::kFloat,
                                                                   /*non_blocking=*/false,
                                                                   /*copy=*/true));
    }
  };
  add(impl_->model_block, "context_encoder.");
  add(impl_->translator_block, "translator.");
  return named;
}

absl::StatusOr<ModelArtifact> McatModel::TranslatorArtifact(v1::ModelInfo info) const {
  const McatModelOptions& o = impl_->options;
  ModelArtifact artifact = prior_util::TranslatorArtifactBase(
      std::move(info), o.dims.obs_dim, o.dims.action_dim, o.dims.context_dim, o.network);
  PRL_RETURN_IF_ERROR(prior_util::StoreParameters(impl_->translator_block, &artifact));
  return artifact;
}

absl::StatusOr<std::string> McatModel::SaveState() const {
  const Impl& m = *impl_;
  const McatModelOptions& o = m.options;
  ModelArtifact state;
  state.info.set_name(kStateName);
  state.info.set_version(1);
  state.info.set_kind(v1::PRIOR_KIND_ACTION_TRANSLATOR);
  state.info.set_obs_dim(static_cast<int32_t>(o.dims.obs_dim));
  state.info.set_action_dim(static_cast<int32_t>(o.dims.action_dim));
  state.info.set_context_dim(static_cast<int32_t>(o.dims.context_dim));
  state.info.set_horizon(1);
  auto& hp = state.hyperparameters;
  hp[kStateFormat] = 1;
  hp[kStateContextHistory] = o.dims.context_history;
  hp[kStateNumTasks] = o.num_tasks;
  prior_util::WriteNetwork(o.network, &hp);
  hp[absl::StrCat(kModelAdam, ".steps")] = m.model_adam->steps();
  hp[absl::StrCat(kTranslatorAdam, ".steps")] = m.translator_adam->steps();
  try {
    PRL_RETURN_IF_ERROR(prior_util::StoreParameters(m.model_block, &state));
    PRL_RETURN_IF_ERROR(prior_util::StoreParameters(m.translator_block, &state));
    for (const auto& [prefix, adam] : {std::pair{kModelAdam, m.model_adam.get()},
                                       std::pair{kTranslatorAdam, m.translator_adam.get()}}) {
      PRL_RETURN_IF_ERROR(AppendTensor(absl::StrCat(prefix, ".exp_avg"), adam->exp_avg(), &state));
      PRL_RETURN_IF_ERROR(
          AppendTensor(absl::StrCat(prefix, ".exp_avg_sq"), adam->exp_avg_sq(), &state));
    }
    PRL_RETURN_IF_ERROR(AppendTensor(kTaskFeatures, m.features, &state));
    at::Tensor seen = at::zeros({o.num_tasks}, at::kFloat);
    for (int64_t i = 0; i < o.num_tasks; ++i) seen[i] = m.seen[i] ? 1.0f : 0.0f;
    PRL_RETURN_IF_ERROR(AppendTensor(kTaskSeen, seen, &state));
    at::Generator shared = m.generator;  // a handle to the same generator
    at::Tensor bytes;
    {
      std::lock_guard<std::mutex> lock(shared.mutex());
      bytes = shared.get_state();
    }
    PRL_RETURN_IF_ERROR(AppendTensor(kGenerator, bytes, &state));
  } catch (const c10::Error& e) {
    return TorchError("saving the MCAT model's state", e);
  }
  return SerializeModelArtifact(state);
}

absl::Status McatModel::Impl::Restore(const ModelArtifact& state) {
  const McatModelOptions& o = options;
  PRL_RETURN_IF_ERROR(prior_util::LoadParameters(
      TensorsUnder(state, {"context_encoder.", "forward_model."}), "MCAT model", &model_block));
  PRL_RETURN_IF_ERROR(prior_util::LoadParameters(TensorsUnder(state, {"translator."}),
                                                 "MCAT translator", &translator_block));
  for (const auto& [prefix, block, adam] :
       {std::tuple{kModelAdam, &model_block, model_adam.get()},
        std::tuple{kTranslatorAdam, &translator_block, translator_adam.get()}}) {
    PRL_ASSIGN_OR_RETURN(at::Tensor m,
                         StateTensor(state, absl::StrCat(prefix, ".exp_avg"), {block->numel()}));
    PRL_ASSIGN_OR_RETURN(at::Tensor v,
                         StateTensor(state, absl::StrCat(prefix, ".exp_avg_sq"), {block->numel()}));
    PRL_ASSIGN_OR_RETURN(int64_t steps, prior_util::Hyperparameter(
                                            state, absl::StrCat(prefix, ".steps"), 0, INT64_MAX));
    adam->Restore(m, v, steps);
  }
  PRL_ASSIGN_OR_RETURN(at::Tensor f,
                       StateTensor(state, kTaskFeatures, {o.num_tasks, o.dims.context_dim}));
  features.copy_(f);
  PRL_ASSIGN_OR_RETURN(at::Tensor s, StateTensor(state, kTaskSeen, {o.num_tasks}));
  for (int64_t i = 0; i < o.num_tasks; ++i) seen[i] = s[i].item<float>() > 0.5f;
  const HostTensor* g = state.Find(kGenerator);
  if (g == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("tensors[\"", kGenerator, "\"]: missing"));
  }
  const at::Tensor bytes = ToTorch(g->view()).to(at::kByte);
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(bytes);
  return absl::OkStatus();
}

absl::Status McatModel::RestoreState(const std::string& bytes) {
  absl::StatusOr<ModelArtifact> parsed = ParseModelArtifact(bytes, "the McatModel state");
  if (!parsed.ok()) {
    return absl::DataLossError(absl::StrCat("not an McatModel state: ", parsed.status().message()));
  }
  const ModelArtifact& state = *parsed;
  auto format = state.hyperparameters.find(kStateFormat);
  if (state.info.name() != kStateName || format == state.hyperparameters.end() ||
      format->second != 1) {
    return absl::DataLossError(absl::StrCat("not an McatModel state: an artifact of model '",
                                            state.info.name(), "' without ", kStateFormat, " = 1"));
  }
  // the shapes a state must share with this model
  const McatModelOptions& o = impl_->options;
  const std::pair<std::string, std::pair<int64_t, int64_t>> dims[] = {
      {"info.obs_dim", {state.info.obs_dim(), o.dims.obs_dim}},
      {"info.action_dim", {state.info.action_dim(), o.dims.action_dim}},
      {"info.context_dim", {state.info.context_dim(), o.dims.context_dim}}};
  for (const auto& [field, values] : dims) {
    if (values.first != values.second) {
      return FieldError(field, values.first, absl::StrCat(values.second, " (this model's)"));
    }
  }
  for (const auto& [key, want] : {std::pair{kStateContextHistory, o.dims.context_history},
                                  std::pair{kStateNumTasks, o.num_tasks}}) {
    PRL_ASSIGN_OR_RETURN(int64_t have, prior_util::Hyperparameter(state, key, 0, INT64_MAX));
    if (have != want) {
      return FieldError(absl::StrCat("hyperparameters[\"", key, "\"]"), have,
                        absl::StrCat(want, " (this model's)"));
    }
  }
  PRL_ASSIGN_OR_RETURN(v1::NetworkSpec network, prior_util::ReadNetwork(state));
  if (network.SerializeAsString() != o.network.SerializeAsString()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "hyperparameters[\"network.*\"]: the state's network (", network.ShortDebugString(),
        ") is not this model's (", o.network.ShortDebugString(), ")"));
  }
  // restore into a fresh copy, so a damaged state leaves this model as it was
  try {
    auto fresh = std::make_unique<Impl>(o, impl_->device);
    PRL_RETURN_IF_ERROR(fresh->Restore(state));
    // swap the state in, keeping impl_ (and the options callers may hold a reference to)
    Impl& m = *impl_;
    std::swap(m.model_block, fresh->model_block);
    std::swap(m.translator_block, fresh->translator_block);
    std::swap(m.generator, fresh->generator);
    std::swap(m.model_adam, fresh->model_adam);
    std::swap(m.translator_adam, fresh->translator_adam);
    std::swap(m.features, fresh->features);
    std::swap(m.seen, fresh->seen);
  } catch (const c10::Error& e) {
    return TorchError("restoring the MCAT model's state", e);
  }
  return absl::OkStatus();
}

// ---- TranslatorModel ----

struct TranslatorModel::Impl {
  Impl(const McatDims& d, const v1::NetworkSpec& network, at::Device on)
      : dims(d), device(on), translator(&block, "translator", d, network) {
    block.Allocate(device, /*requires_grad=*/false);
  }

  McatDims dims;
  at::Device device;
  ParameterBlock block;
  ActionTranslator translator;
};

TranslatorModel::TranslatorModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TranslatorModel::~TranslatorModel() = default;

absl::StatusOr<std::unique_ptr<TranslatorModel>> TranslatorModel::FromArtifact(
    const ModelArtifact& artifact, const std::string& device) {
  const v1::ModelInfo& info = artifact.info;
  if (info.kind() != v1::PRIOR_KIND_ACTION_TRANSLATOR) {
    return FieldError("info.kind", v1::PriorKind_Name(info.kind()), "PRIOR_KIND_ACTION_TRANSLATOR");
  }
  PRL_RETURN_IF_ERROR(CheckRange("info.obs_dim", info.obs_dim(), 1, kMaxDim));
  PRL_RETURN_IF_ERROR(CheckRange("info.action_dim", info.action_dim(), 1, kMaxDim));
  PRL_RETURN_IF_ERROR(CheckRange("info.context_dim", info.context_dim(), 0, kMaxContextDim));
  PRL_RETURN_IF_ERROR(CheckRange("info.latent_dim", info.latent_dim(), 0, 0));
  PRL_RETURN_IF_ERROR(CheckRange("info.horizon", info.horizon(), 1, 1));
  PRL_ASSIGN_OR_RETURN(v1::NetworkSpec network, prior_util::ReadNetwork(artifact));
  PRL_ASSIGN_OR_RETURN(at::Device on, ParseDevice("device", device));
  McatDims dims;
  dims.obs_dim = info.obs_dim();
  dims.action_dim = info.action_dim();
  dims.context_dim = info.context_dim();
  try {
    auto impl = std::make_unique<Impl>(dims, network, on);
    PRL_RETURN_IF_ERROR(prior_util::LoadParameters(artifact, "action translator", &impl->block));
    return std::unique_ptr<TranslatorModel>(new TranslatorModel(std::move(impl)));
  } catch (const c10::Error& e) {
    return TorchError("cannot build the action translator", e);
  }
}

const McatDims& TranslatorModel::dims() const { return impl_->dims; }

at::Tensor TranslatorModel::Translate(const at::Tensor& obs, const at::Tensor& source_action,
                                      const at::Tensor& source_context,
                                      const at::Tensor& target_context) const {
  c10::InferenceMode inference;
  const at::Device device = impl_->device;
  return impl_->translator.Forward(impl_->block, obs.to(device), source_action.to(device),
                                   source_context.to(device), target_context.to(device), kGemm);
}

}  // namespace prl::models
