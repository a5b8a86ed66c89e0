#include "models/task_pair_translator.h"

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "ATen/CPUGeneratorImpl.h"
#include "ATen/core/grad_mode.h"
#include "absl/strings/str_cat.h"
#include "c10/core/InferenceMode.h"
#include "common/field_error.h"
#include "common/status_macros.h"
#include "common/tensor.h"
#include "models/network_spec.h"
#include "models/prior_model_util.h"

namespace prl::models {
namespace {

using prior_util::kGemm;

constexpr int kMaxDim = 65536;
constexpr int kDefaultHiddenLayers = 2;
constexpr int kDefaultHiddenSize = 256;
constexpr char kModel[] = "action translator";

McatDims Dims(const TaskPairTranslatorOptions& o) {
  McatDims d;
  d.obs_dim = o.obs_dim;
  d.action_dim = o.act_dim;
  d.context_dim = 0;  // one fixed pair of tasks: no contexts
  return d;
}

}  // namespace

// A batch on the model's device: (s, a, s') of the source rows and of the target rows.
struct TaskPairTranslator::Split {
  at::Tensor source_obs, source_action, source_next;
  at::Tensor target_obs, target_action, target_next;
  int64_t source_rows = 0, target_rows = 0;
};

struct TaskPairTranslator::Terms {
  prior_util::LossTerms terms;  // "loss" first
};

TaskPairTranslator::TaskPairTranslator(const TaskPairTranslatorOptions& resolved)
    : options_(resolved),
      dims_(Dims(resolved)),
      forward_model_(&params_, "forward_model", dims_, resolved.network),
      translator_(&params_, "translator", dims_, resolved.network),
      generator_(at::make_generator<at::CPUGeneratorImpl>(resolved.seed)) {
  params_.Allocate(options_.device, /*requires_grad=*/true);
  params_.Initialize(generator_);
  adam_ = std::make_unique<prior_util::FlatAdam>(params_);
}

TaskPairTranslator::~TaskPairTranslator() = default;

absl::StatusOr<std::unique_ptr<TaskPairTranslator>> TaskPairTranslator::Create(
    const TaskPairTranslatorOptions& options) {
  TaskPairTranslatorOptions o = options;
  for (const auto& [field, value] :
       {std::pair{"options.obs_dim", o.obs_dim}, std::pair{"options.act_dim", o.act_dim}}) {
    if (value < 1 || value > kMaxDim) return FieldRangeError(field, value, 1, kMaxDim);
  }
  PRL_RETURN_IF_ERROR(prior_util::ResolveTrainingOptions(
      /*beta=*/0, o.lr, kDefaultHiddenLayers, kDefaultHiddenSize, o.device, &o.network));
  try {
    return std::unique_ptr<TaskPairTranslator>(new TaskPairTranslator(o));
  } catch (const c10::Error& e) {
    return prior_util::TorchError("cannot build the action translator", e);
  }
}

absl::StatusOr<TaskPairTranslator::Split> TaskPairTranslator::Prepare(
    const WindowBatch& batch) const {
  PRL_ASSIGN_OR_RETURN(WindowBatch b,
                       prior_util::PrepareWindows(batch, /*horizon=*/2, options_.obs_dim,
                                                  options_.act_dim, options_.device));
  const int64_t rows = b.obs.size(0);
  const at::Tensor& task = batch.task;
  const std::string allowed = absl::StrCat("an int64 [", rows, "] tensor of ", kSourceTask,
                                           " (source) and ", kTargetTask, " (target)");
  if (!task.defined() || task.scalar_type() != at::kLong || task.dim() != 1 ||
      task.size(0) != rows) {
    return FieldError("batch.task",
                      task.defined()
                          ? absl::StrCat("a ", std::string(c10::toString(task.scalar_type())), " ",
                                         ShapeString(task.sizes().vec()), " tensor")
                          : std::string("an undefined tensor"),
                      allowed);
  }
  const at::Tensor task_cpu = task.to(at::kCPU);
  const at::Tensor is_target = task_cpu == kTargetTask;
  if (!(is_target.logical_or(task_cpu == kSourceTask)).all().item<bool>()) {
    return FieldError("batch.task", "a tensor with other values", allowed);
  }
  Split split;
  const at::Tensor target_index = is_target.nonzero().squeeze(1).to(options_.device);
  const at::Tensor source_index = is_target.logical_not().nonzero().squeeze(1).to(options_.device);
  split.target_rows = target_index.size(0);
  split.source_rows = source_index.size(0);
  auto pick = [&](const at::Tensor& index, at::Tensor* s, at::Tensor* a, at::Tensor* next) {
    *s = b.obs.select(1, 0).index_select(0, index);
    *a = b.actions.select(1, 0).index_select(0, index);
    *next = b.obs.select(1, 1).index_select(0, index);
  };
  pick(source_index, &split.source_obs, &split.source_action, &split.source_next);
  pick(target_index, &split.target_obs, &split.target_action, &split.target_next);
  return split;
}

TaskPairTranslator::Terms TaskPairTranslator::Compute(const Split& split,
                                                      bool with_identity) const {
  const at::TensorOptions on = at::TensorOptions().dtype(at::kFloat).device(options_.device);
  auto context = [&](int64_t rows) { return at::empty({rows, 0}, on); };
  Terms out;
  at::Tensor loss;
  if (split.target_rows > 0) {
    const at::Tensor forward_loss =
        -forward_model_
             .LogProb(params_, split.target_obs, split.target_action, context(split.target_rows),
                      split.target_next, kGemm)
             .mean();
    out.terms.emplace_back("forward_loss", forward_loss);
    loss = forward_loss;
  }
  if (split.source_rows > 0) {
    const at::Tensor none = context(split.source_rows);
    const at::Tensor translated =
        translator_.Forward(params_, split.source_obs, split.source_action, none, none, kGemm);
    // F fixed: the gradient of this term reaches H only
    const at::Tensor translator_loss =
        -forward_model_
             .LogProb(params_, split.source_obs, translated, none, split.source_next, kGemm,
                      /*detach=*/true)
             .mean();
    out.terms.emplace_back("translator_loss", translator_loss);
    loss = loss.defined() ? loss + translator_loss : translator_loss;
    if (with_identity) {
      out.terms.emplace_back("identity_loss",
                             -forward_model_
                                  .LogProb(params_, split.source_obs, split.source_action, none,
                                           split.source_next, kGemm, true)
                                  .mean());
    }
  }
  out.terms.insert(out.terms.begin(), std::pair<std::string, at::Tensor>("loss", loss));
  return out;
}

absl::StatusOr<Losses> TaskPairTranslator::TrainStep(const WindowBatch& batch) {
  PRL_ASSIGN_OR_RETURN(Split split, Prepare(batch));
  try {
    params_.ZeroGrad();
    const Terms terms = Compute(split, /*with_identity=*/false);
    std::vector<at::Tensor> values;
    for (const auto& [name, value] : terms.terms) values.push_back(value.detach().reshape({1}));
    const at::Tensor host = at::cat(values).to(at::kCPU, at::kDouble);
    Losses losses;
    for (size_t i = 0; i < terms.terms.size(); ++i) {
      const double value = host[static_cast<int64_t>(i)].item<double>();
      if (!std::isfinite(value)) {
        return absl::InternalError(
            absl::StrCat("action translator training step: ", terms.terms[i].first, " is ", value,
                         "; the parameters were not updated"));
      }
      losses[terms.terms[i].first] = value;
    }
    terms.terms.front().second.backward();
    adam_->Step(&params_, options_.lr);
    return losses;
  } catch (const c10::Error& e) {
    return prior_util::TorchError("action translator training step", e);
  }
}

absl::StatusOr<Losses> TaskPairTranslator::Evaluate(const WindowBatch& batch) const {
  PRL_ASSIGN_OR_RETURN(Split split, Prepare(batch));
  try {
    at::NoGradGuard no_grad;
    Losses losses;
    for (const auto& [name, value] : Compute(split, /*with_identity=*/true).terms) {
      losses[name] = value.item<double>();
    }
    return losses;
  } catch (const c10::Error& e) {
    return prior_util::TorchError("action translator evaluation", e);
  }
}

at::Tensor TaskPairTranslator::Translate(const at::Tensor& obs,
                                         const at::Tensor& source_action) const {
  c10::InferenceMode inference;
  const at::Tensor s = obs.to(options_.device, at::kFloat);
  const at::Tensor none = at::empty({s.size(0), 0}, s.options());
  return translator_.Forward(params_, s, source_action.to(options_.device, at::kFloat), none, none,
                             kGemm, /*detach=*/true);
}

absl::StatusOr<ModelArtifact> TaskPairTranslator::ToArtifact(v1::ModelInfo info) const {
  ModelArtifact artifact = prior_util::TranslatorArtifactBase(
      std::move(info), options_.obs_dim, options_.act_dim, /*context_dim=*/0, options_.network);
  ModelArtifact all;
  try {
    PRL_RETURN_IF_ERROR(prior_util::StoreParameters(params_, &all));
  } catch (const c10::Error& e) {
    return prior_util::TorchError("exporting the action translator", e);
  }
  // the server's TranslatorModel holds H alone
  for (auto& [name, tensor] : all.tensors) {
    if (name.rfind("translator.", 0) == 0) artifact.tensors.emplace_back(name, std::move(tensor));
  }
  return artifact;
}

absl::StatusOr<ModelArtifact> TaskPairTranslator::TrainingState(v1::ModelInfo info) const {
  PRL_ASSIGN_OR_RETURN(ModelArtifact state, ToArtifact(std::move(info)));
  ModelArtifact all;
  try {
    PRL_RETURN_IF_ERROR(prior_util::StoreParameters(params_, &all));
  } catch (const c10::Error& e) {
    return prior_util::TorchError("saving the action translator's state", e);
  }
  for (auto& [name, tensor] : all.tensors) {
    if (name.rfind("translator.", 0) != 0) state.tensors.emplace_back(name, std::move(tensor));
  }
  // no generator: training draws no noise
  PRL_RETURN_IF_ERROR(prior_util::AppendTrainingState(*adam_, nullptr, &state));
  return state;
}

absl::Status TaskPairTranslator::RestoreTrainingState(const ModelArtifact& state) {
  return prior_util::RestoreTrainingState(state, kModel, &params_, adam_.get(), nullptr);
}

}  // namespace prl::models
