#include "models/real_nvp.h"

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "ATen/CPUGeneratorImpl.h"
#include "ATen/Context.h"
#include "ATen/core/grad_mode.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/field_error.h"
#include "common/status_macros.h"
#include "common/tensor.h"
#include "common/torch_tensor.h"
#include "models/network_spec.h"
#include "models/prior_model_util.h"

namespace prl::models {
namespace {

constexpr double kHalfLog2Pi = 0.91893853320467274178;  // ½·log 2π

std::string Shape(const at::Tensor& t) {
  return ShapeString(absl::MakeConstSpan(t.sizes().data(), t.sizes().size()));
}

// PyTorch's nn.Linear initialisation: weight and bias U(-1/sqrt(in), 1/sqrt(in)).
ParameterBlock::Init LinearInit(int64_t fan_in) {
  return {ParameterBlock::Init::kUniform, 1.0 / std::sqrt(static_cast<double>(fan_in))};
}

absl::Status CheckDevice(at::Device device) {
  if (device.is_cpu()) return absl::OkStatus();
  if (!device.is_cuda()) return FieldError("options.device", device.str(), "cpu or cuda:N");
  const int index = device.has_index() ? device.index() : 0;
  if (!at::hasCUDA() || index >= static_cast<int>(at::getNumGPUs())) {
    return absl::FailedPreconditionError(
        absl::StrCat("options.device: ", device.str(), " is not available; this process sees ",
                     at::hasCUDA() ? at::getNumGPUs() : 0, " CUDA devices"));
  }
  return absl::OkStatus();
}

absl::Status CheckOptions(const RealNvpOptions& options, v1::NetworkSpec* resolved) {
  if (options.obs_dim < 1) return FieldError("options.obs_dim", options.obs_dim, ">= 1");
  if (options.act_dim < 1) return FieldError("options.act_dim", options.act_dim, ">= 1");
  if (options.num_coupling_layers < 2 || options.num_coupling_layers > kRealNvpMaxCouplingLayers) {
    return FieldRangeError("options.num_coupling_layers", options.num_coupling_layers, 2,
                           kRealNvpMaxCouplingLayers);
  }
  *resolved = options.network;
  PRL_RETURN_IF_ERROR(ResolveNetworkSpec("options.network", resolved));
  if (!std::isfinite(options.lr) || options.lr <= 0) {
    return FieldError("options.lr", options.lr, "finite and > 0");
  }
  return CheckDevice(options.device);
}

// The dims a coupling layer keeps (conditions on) and transforms: alternating parities, or
// (for one dim) nothing kept and the dim transformed.
void CouplingDims(int layer, int dims, std::vector<int64_t>* kept,
                  std::vector<int64_t>* transformed) {
  for (int d = 0; d < dims; ++d) {
    if (dims > 1 && d % 2 == layer % 2) {
      kept->push_back(d);
    } else {
      transformed->push_back(d);
    }
  }
}

absl::Status InternalError(absl::string_view what, const c10::Error& e) {
  return absl::InternalError(
      absl::StrCat("real NVP flow: ", what, ": ", e.what_without_backtrace()));
}

// A hyperparameter FromArtifact needs, in [min, max].
absl::StatusOr<int64_t> Hyperparameter(const ModelArtifact& artifact, const std::string& key,
                                       int64_t min, int64_t max) {
  const std::string field = absl::StrCat("hyperparameters[\"", key, "\"]");
  auto it = artifact.hyperparameters.find(key);
  if (it == artifact.hyperparameters.end()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": missing"));
  }
  if (it->second < min || it->second > max) return FieldRangeError(field, it->second, min, max);
  return it->second;
}

// The options of the flow `artifact` describes: its info and hyperparameters (see ToArtifact).
absl::StatusOr<RealNvpOptions> ArtifactOptions(const ModelArtifact& artifact, at::Device device) {
  const v1::ModelInfo& info = artifact.info;
  if (info.kind() != v1::PRIOR_KIND_REAL_NVP_FLOW) {
    return FieldError("info.kind", v1::PriorKind_Name(info.kind()), "PRIOR_KIND_REAL_NVP_FLOW");
  }
  if (info.horizon() != 1) return FieldError("info.horizon", info.horizon(), "1");
  if (info.obs_dim() < 1) return FieldError("info.obs_dim", info.obs_dim(), ">= 1");
  if (info.action_dim() < 1) return FieldError("info.action_dim", info.action_dim(), ">= 1");
  if (info.latent_dim() != info.action_dim()) {
    return FieldError("info.latent_dim", info.latent_dim(),
                      absl::StrCat("info.action_dim (", info.action_dim(), ")"));
  }
  RealNvpOptions options;
  options.obs_dim = info.obs_dim();
  options.act_dim = info.action_dim();
  options.device = device;
  PRL_ASSIGN_OR_RETURN(options.num_coupling_layers, Hyperparameter(artifact, "num_coupling_layers",
                                                                   2, kRealNvpMaxCouplingLayers));
  PRL_ASSIGN_OR_RETURN(const int64_t layers,
                       Hyperparameter(artifact, "network.hidden_layers", 1, kMaxHiddenLayers));
  for (int64_t i = 0; i < layers; ++i) {
    PRL_ASSIGN_OR_RETURN(
        const int64_t size,
        Hyperparameter(artifact, absl::StrCat("network.hidden_sizes.", i), 1, kMaxHiddenSize));
    options.network.add_hidden_sizes(static_cast<int32_t>(size));
  }
  PRL_ASSIGN_OR_RETURN(const int64_t activation, Hyperparameter(artifact, "network.activation", 0,
                                                                v1::NetworkSpec::Activation_MAX));
  options.network.set_activation(static_cast<v1::NetworkSpec::Activation>(activation));
  PRL_ASSIGN_OR_RETURN(const int64_t layer_norm,
                       Hyperparameter(artifact, "network.layer_norm", 0, 1));
  options.network.set_layer_norm(layer_norm == 1);
  const int64_t bound = static_cast<int64_t>(kRealNvpLogScaleBound);
  PRL_RETURN_IF_ERROR(Hyperparameter(artifact, "log_scale_bound", bound, bound).status());
  return options;
}

// Copies the artifact's tensors into `params`: every parameter, and nothing else, must be there
// as float32 with its shape.
absl::Status LoadParameters(const ModelArtifact& artifact, ParameterBlock* params) {
  if (artifact.tensors.size() != static_cast<size_t>(params->size())) {
    for (const auto& [name, tensor] : artifact.tensors) {
      bool known = false;
      for (int i = 0; i < params->size() && !known; ++i) known = params->name(i) == name;
      if (!known) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensors[\"", name, "\"]: not a parameter of this flow"));
      }
    }
  }
  try {
    at::NoGradGuard no_grad;
    for (int i = 0; i < params->size(); ++i) {
      const std::string field = absl::StrCat("tensors[\"", params->name(i), "\"]");
      const HostTensor* tensor = artifact.Find(params->name(i));
      if (tensor == nullptr) return absl::InvalidArgumentError(absl::StrCat(field, ": missing"));
      const at::Tensor& param = params->param(i);
      if (tensor->dtype() != DType::kFloat32 ||
          tensor->shape() != std::vector<int64_t>(param.sizes().begin(), param.sizes().end())) {
        return FieldError(
            field, absl::StrCat(DTypeName(tensor->dtype()), " ", ShapeString(tensor->shape())),
            absl::StrCat("float32 ", Shape(param)));
      }
      param.detach().copy_(ToTorch(tensor->view()));
    }
  } catch (const c10::Error& e) {
    return InternalError("loading the parameters", e);
  }
  return absl::OkStatus();
}

}  // namespace

// One affine coupling layer: which dims it keeps and transforms, its MLP and its two heads.
struct RealNvpFlow::Coupling {
  at::Tensor kept, transformed;  // int64 dim indices on the flow's device
  MlpTrunk trunk;
  int log_scale_weight, log_scale_bias, shift_weight, shift_bias;
};

// torch.optim.Adam over the flat parameter tensor (models/prior_model_util.h).
struct RealNvpFlow::Adam : prior_util::FlatAdam {
  using FlatAdam::FlatAdam;
};

// Checked inputs on the flow's device: x is z, the actions, or a batch's actions.
struct RealNvpFlow::Prepared {
  at::Tensor x, state;
};

RealNvpFlow::RealNvpFlow(const RealNvpOptions& options, const v1::NetworkSpec& resolved)
    : options_(options) {
  options_.network = resolved;
  const auto index_options = at::TensorOptions().dtype(at::kLong).device(options.device);
  couplings_.reserve(options.num_coupling_layers);
  for (int k = 0; k < options.num_coupling_layers; ++k) {
    std::vector<int64_t> kept, transformed;
    CouplingDims(k, options.act_dim, &kept, &transformed);
    const std::string prefix = absl::StrCat("coupling.", k, ".");
    const int64_t in = static_cast<int64_t>(kept.size()) + options.obs_dim;
    const int64_t out = static_cast<int64_t>(transformed.size());
    MlpTrunk trunk(&params_, prefix + "trunk", in, resolved, /*ensemble=*/1);
    const int64_t hidden = trunk.output_dim();
    const int log_scale_weight =
        params_.Declare(prefix + "log_scale.weight", {out, hidden}, LinearInit(hidden));
    const int log_scale_bias =
        params_.Declare(prefix + "log_scale.bias", {out}, LinearInit(hidden));
    const int shift_weight =
        params_.Declare(prefix + "shift.weight", {out, hidden}, LinearInit(hidden));
    const int shift_bias = params_.Declare(prefix + "shift.bias", {out}, LinearInit(hidden));
    couplings_.push_back({at::tensor(kept, index_options), at::tensor(transformed, index_options),
                          std::move(trunk), log_scale_weight, log_scale_bias, shift_weight,
                          shift_bias});
  }
  params_.Allocate(options.device, /*requires_grad=*/true);
  at::Generator generator =
      at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(options.seed));
  params_.Initialize(generator);
  adam_ = std::make_unique<Adam>(params_);
}

RealNvpFlow::~RealNvpFlow() = default;

absl::StatusOr<std::unique_ptr<RealNvpFlow>> RealNvpFlow::Create(const RealNvpOptions& options) {
  v1::NetworkSpec resolved;
  PRL_RETURN_IF_ERROR(CheckOptions(options, &resolved));
  try {
    return std::unique_ptr<RealNvpFlow>(new RealNvpFlow(options, resolved));
  } catch (const c10::Error& e) {
    return InternalError("allocating the parameters", e);
  }
}

absl::StatusOr<std::unique_ptr<RealNvpFlow>> RealNvpFlow::FromArtifact(
    const ModelArtifact& artifact, at::Device device) {
  PRL_ASSIGN_OR_RETURN(const RealNvpOptions options, ArtifactOptions(artifact, device));
  PRL_ASSIGN_OR_RETURN(std::unique_ptr<RealNvpFlow> flow, Create(options));
  PRL_RETURN_IF_ERROR(LoadParameters(artifact, &flow->params_));
  return flow;
}

// ---- the flow ----

std::pair<at::Tensor, at::Tensor> RealNvpFlow::ScaleShift(const ParameterBlock& params,
                                                          const Coupling& c, const at::Tensor& x,
                                                          const at::Tensor& state) const {
  const GemmBackend gemm = options_.gemm;
  const at::Tensor in = at::cat({x.index_select(1, c.kept), state}, 1);
  const at::Tensor h = c.trunk.Forward(params, in, gemm);
  const at::Tensor raw =
      Linear(h, params.param(c.log_scale_weight), params.param(c.log_scale_bias), gemm);
  const at::Tensor log_scale = at::tanh(raw / kRealNvpLogScaleBound) * kRealNvpLogScaleBound;
  const at::Tensor shift =
      Linear(h, params.param(c.shift_weight), params.param(c.shift_bias), gemm);
  return {log_scale, shift};
}

RealNvpFlow::Result RealNvpFlow::ForwardImpl(const at::Tensor& z, const at::Tensor& state) const {
  // z → u through the coupling layers in order: y_T = x_T ⊙ exp(ℓ) + t
  at::Tensor x = z;
  at::Tensor log_det = at::zeros({z.size(0)}, z.options());
  for (const Coupling& c : couplings_) {
    auto [log_scale, shift] = ScaleShift(params_, c, x, state);
    const at::Tensor y = at::addcmul(shift, x.index_select(1, c.transformed), log_scale.exp());
    x = x.index_copy(1, c.transformed, y);
    log_det = log_det + log_scale.sum(1);
  }
  // a = tanh(u), whose log-determinant is Σ log(1 − tanh(u)²)
  return {at::tanh(x), log_det + TanhLogDetJacobian(x).sum(1)};
}

RealNvpFlow::Result RealNvpFlow::InverseImpl(const ParameterBlock& params,
                                             const at::Tensor& actions,
                                             const at::Tensor& state) const {
  // a → u = atanh(a), with log|det ∂u/∂a| = −Σ log((1 − a)(1 + a))
  const at::Tensor a = actions.clamp(-kRealNvpMaxAbsAction, kRealNvpMaxAbsAction);
  at::Tensor x = at::atanh(a);
  at::Tensor log_det = -(at::log1p(-a) + at::log1p(a)).sum(1);
  // u → z through the coupling layers in reverse: x_T = (y_T − t) ⊙ exp(−ℓ); ℓ and t read the
  // kept dims, which the layer left unchanged
  for (auto it = couplings_.rbegin(); it != couplings_.rend(); ++it) {
    auto [log_scale, shift] = ScaleShift(params, *it, x, state);
    const at::Tensor z = (x.index_select(1, it->transformed) - shift) * at::exp(-log_scale);
    x = x.index_copy(1, it->transformed, z);
    log_det = log_det - log_scale.sum(1);
  }
  return {x, log_det};
}

at::Tensor RealNvpFlow::LogProbImpl(const ParameterBlock& params, const at::Tensor& actions,
                                    const at::Tensor& state, at::Tensor* log_det) const {
  Result inverse = InverseImpl(params, actions, state);
  if (log_det != nullptr) *log_det = inverse.log_det;
  // log N(z; 0, I) + log|det ∂z/∂a|
  return inverse.value.square().sum(1) * -0.5 - options_.act_dim * kHalfLog2Pi + inverse.log_det;
}

// ---- checked entry points ----

absl::StatusOr<RealNvpFlow::Prepared> RealNvpFlow::PrepareInputs(const at::Tensor& x,
                                                                 const char* x_name,
                                                                 const at::Tensor& state) const {
  const auto check = [](const at::Tensor& t, absl::string_view name, int64_t rows,
                        int64_t dim) -> absl::Status {
    if (!t.defined()) return absl::InvalidArgumentError(absl::StrCat(name, ": not set"));
    if (t.scalar_type() != at::kFloat) {
      return FieldError(name, absl::StrCat("dtype ", std::string(c10::toString(t.scalar_type()))),
                        "float32");
    }
    if (t.dim() != 2 || t.size(1) != dim || t.size(0) < 1 || (rows >= 0 && t.size(0) != rows)) {
      return FieldError(
          name, absl::StrCat("shape ", Shape(t)),
          rows >= 0 ? absl::StrCat("[", rows, ", ", dim, "]") : absl::StrCat("[B, ", dim, "]"));
    }
    return absl::OkStatus();
  };
  PRL_RETURN_IF_ERROR(check(x, x_name, -1, options_.act_dim));
  PRL_RETURN_IF_ERROR(check(state, "state", x.size(0), options_.obs_dim));
  try {
    return Prepared{x.to(options_.device), state.to(options_.device)};
  } catch (const c10::Error& e) {
    return InternalError("moving the inputs to the device", e);
  }
}

absl::StatusOr<RealNvpFlow::Result> RealNvpFlow::Forward(const at::Tensor& z,
                                                         const at::Tensor& state) const {
  PRL_ASSIGN_OR_RETURN(Prepared in, PrepareInputs(z, "z", state));
  try {
    return ForwardImpl(in.x, in.state);
  } catch (const c10::Error& e) {
    return InternalError("Forward", e);
  }
}

absl::StatusOr<RealNvpFlow::Result> RealNvpFlow::Inverse(const at::Tensor& actions,
                                                         const at::Tensor& state) const {
  PRL_ASSIGN_OR_RETURN(Prepared in, PrepareInputs(actions, "actions", state));
  try {
    return InverseImpl(params_, in.x, in.state);
  } catch (const c10::Error& e) {
    return InternalError("Inverse", e);
  }
}

absl::StatusOr<at::Tensor> RealNvpFlow::LogProb(const at::Tensor& actions,
                                                const at::Tensor& state) const {
  PRL_ASSIGN_OR_RETURN(Prepared in, PrepareInputs(actions, "actions", state));
  try {
    return LogProbImpl(params_, in.x, in.state, nullptr);
  } catch (const c10::Error& e) {
    return InternalError("LogProb", e);
  }
}

// ---- PriorModel ----

absl::StatusOr<RealNvpFlow::Prepared> RealNvpFlow::PrepareBatch(const WindowBatch& batch) const {
  const auto check = [](const at::Tensor& t, absl::string_view name, int64_t rows,
                        int64_t dim) -> absl::Status {
    if (!t.defined()) return absl::InvalidArgumentError(absl::StrCat(name, ": not set"));
    if (t.scalar_type() != at::kFloat) {
      return FieldError(name, absl::StrCat("dtype ", std::string(c10::toString(t.scalar_type()))),
                        "float32");
    }
    const bool rows_ok = rows >= 0 ? t.dim() >= 1 && t.size(0) == rows : true;
    if (t.dim() != 3 || t.size(0) < 1 || t.size(1) != 1 || t.size(2) != dim || !rows_ok) {
      return FieldError(name, absl::StrCat("shape ", Shape(t)),
                        absl::StrCat("[", rows >= 0 ? absl::StrCat(rows) : "B", ", 1, ", dim,
                                     "] (a real NVP flow trains on horizon 1)"));
    }
    return absl::OkStatus();
  };
  PRL_RETURN_IF_ERROR(check(batch.obs, "batch.obs", -1, options_.obs_dim));
  PRL_RETURN_IF_ERROR(check(batch.actions, "batch.actions", batch.obs.size(0), options_.act_dim));
  try {
    Prepared in{batch.actions.select(1, 0).to(options_.device),
                batch.obs.select(1, 0).to(options_.device)};
    if (!at::isfinite(in.state).all().item<bool>()) {
      return FieldError("batch.obs", "a non-finite value", "finite");
    }
    const double max_abs = in.x.abs().max().item<double>();
    if (!(max_abs <= 1.0)) {
      return FieldError("batch.actions", absl::StrCat("a value of magnitude ", max_abs),
                        "in [-1, 1]");
    }
    return in;
  } catch (const c10::Error& e) {
    return InternalError("preparing the batch", e);
  }
}

absl::StatusOr<Losses> RealNvpFlow::TrainStep(const WindowBatch& batch) {
  PRL_ASSIGN_OR_RETURN(Prepared in, PrepareBatch(batch));
  try {
    // the negative log-likelihood, split across threads by rows (prior_util::ShardedGradient)
    PRL_ASSIGN_OR_RETURN(
        Losses losses,
        prior_util::ShardedGradient(
            "real NVP flow", &params_, in.x.size(0), /*network_rows_per_row=*/1, options_.device,
            [&](const ParameterBlock& params, int64_t begin, int64_t count) {
              at::Tensor log_det;
              const at::Tensor nll = -LogProbImpl(params, in.x.narrow(0, begin, count),
                                                  in.state.narrow(0, begin, count), &log_det)
                                          .mean();
              return prior_util::LossTerms{
                  {"loss", nll}, {"nll", nll}, {"log_det", log_det.mean()}};
            }));
    adam_->Step(&params_, options_.lr);
    return losses;
  } catch (const c10::Error& e) {
    return InternalError("TrainStep", e);
  }
}

absl::StatusOr<Losses> RealNvpFlow::Evaluate(const WindowBatch& batch) const {
  PRL_ASSIGN_OR_RETURN(Prepared in, PrepareBatch(batch));
  try {
    at::NoGradGuard no_grad;
    at::Tensor log_det;
    const double nll = -LogProbImpl(params_, in.x, in.state, &log_det).mean().item<double>();
    return Losses{{"loss", nll}, {"nll", nll}, {"log_det", log_det.mean().item<double>()}};
  } catch (const c10::Error& e) {
    return InternalError("Evaluate", e);
  }
}

absl::StatusOr<ModelArtifact> RealNvpFlow::ToArtifact(v1::ModelInfo info) const {
  ModelArtifact artifact;
  info.set_kind(v1::PRIOR_KIND_REAL_NVP_FLOW);
  info.set_obs_dim(options_.obs_dim);
  info.set_action_dim(options_.act_dim);
  info.set_latent_dim(options_.act_dim);
  info.set_horizon(1);
  info.clear_methods();
  info.add_methods("Forward");
  info.add_methods("Inverse");
  artifact.info = std::move(info);

  auto& h = artifact.hyperparameters;
  const v1::NetworkSpec& network = options_.network;
  h["num_coupling_layers"] = options_.num_coupling_layers;
  h["network.hidden_layers"] = network.hidden_sizes_size();
  for (int i = 0; i < network.hidden_sizes_size(); ++i) {
    h[absl::StrCat("network.hidden_sizes.", i)] = network.hidden_sizes(i);
  }
  h["network.activation"] = network.activation();
  h["network.layer_norm"] = network.layer_norm() ? 1 : 0;
  h["log_scale_bound"] = static_cast<int64_t>(kRealNvpLogScaleBound);

  try {
    for (int i = 0; i < params_.size(); ++i) {
      PRL_ASSIGN_OR_RETURN(HostTensor tensor, FromTorch(params_.param(i).detach()));
      artifact.tensors.emplace_back(params_.name(i), std::move(tensor));
    }
  } catch (const c10::Error& e) {
    return InternalError("exporting the parameters", e);
  }
  return artifact;
}

absl::StatusOr<ModelArtifact> RealNvpFlow::TrainingState(v1::ModelInfo info) const {
  PRL_ASSIGN_OR_RETURN(ModelArtifact state, ToArtifact(std::move(info)));
  // no generator: a flow's training draws no noise
  PRL_RETURN_IF_ERROR(prior_util::AppendTrainingState(*adam_, nullptr, &state));
  return state;
}

absl::Status RealNvpFlow::RestoreTrainingState(const ModelArtifact& state) {
  return prior_util::RestoreTrainingState(state, "real NVP flow", &params_, adam_.get(), nullptr);
}

}  // namespace prl::models
