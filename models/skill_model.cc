#include "models/skill_model.h"

#include <cmath>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "ATen/CPUGeneratorImpl.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "c10/core/InferenceMode.h"
#include "common/field_error.h"
#include "common/status_macros.h"
#include "common/tensor.h"
#include "common/torch_tensor.h"
#include "models/network_spec.h"
#include "models/networks.h"

namespace prl::models {
namespace {

constexpr GemmBackend kGemm = GemmBackend::kOneDnn;
// Evaluate draws its ε from a generator seeded with seed + this, afresh on every call.
constexpr uint64_t kEvaluateSeedOffset = 0x9E3779B97F4A7C15ull;
constexpr double kBetaScale = 1e9;  // the "beta_x1e9" hyperparameter
// torch.optim.Adam's defaults
constexpr double kAdamBeta1 = 0.9;
constexpr double kAdamBeta2 = 0.999;
constexpr double kAdamEps = 1e-8;

// PyTorch's nn.Linear initialisation: weight and bias U(-1/sqrt(in), 1/sqrt(in)).
ParameterBlock::Init LinearInit(int64_t fan_in) {
  return {ParameterBlock::Init::kUniform, 1.0 / std::sqrt(static_cast<double>(fan_in))};
}

// A linear layer's parameter indices in a block.
struct LinearParams {
  int weight, bias;
};

LinearParams DeclareLinear(ParameterBlock* block, const std::string& prefix, int64_t in,
                           int64_t out) {
  return {block->Declare(prefix + ".weight", {out, in}, LinearInit(in)),
          block->Declare(prefix + ".bias", {out}, LinearInit(in))};
}

at::Tensor ApplyLinear(const ParameterBlock& block, const LinearParams& p, const at::Tensor& x) {
  return Linear(x, block.param(p.weight), block.param(p.bias), kGemm);
}

absl::Status CheckDevice(absl::string_view field, c10::Device device) {
  if (device.is_cpu()) return absl::OkStatus();
  if (device.is_cuda() && at::hasCUDA() &&
      (!device.has_index() || device.index() < static_cast<int>(at::getNumGPUs()))) {
    return absl::OkStatus();
  }
  return FieldError(field, device.str(), "cpu or a CUDA device of this build and machine");
}

// The dimensions every skill model needs, named as the caller's fields.
absl::Status CheckDims(const std::string& prefix, absl::string_view act_name, int obs_dim,
                       int act_dim, int horizon, int latent_dim) {
  if (obs_dim < 1 || obs_dim > kSkillMaxDim) {
    return FieldRangeError(prefix + "obs_dim", obs_dim, 1, kSkillMaxDim);
  }
  if (act_dim < 1 || act_dim > kSkillMaxDim) {
    return FieldRangeError(absl::StrCat(prefix, act_name), act_dim, 1, kSkillMaxDim);
  }
  if (horizon < 1 || horizon > kSkillMaxHorizon) {
    return FieldRangeError(prefix + "horizon", horizon, 1, kSkillMaxHorizon);
  }
  if (latent_dim < 1 || latent_dim > kSkillMaxLatentDim) {
    return FieldRangeError(prefix + "latent_dim", latent_dim, 1, kSkillMaxLatentDim);
  }
  return absl::OkStatus();
}

// Checks every option and fills the network's defaults.
absl::Status ResolveOptions(SkillModelOptions* o) {
  PRL_RETURN_IF_ERROR(
      CheckDims("options.", "act_dim", o->obs_dim, o->act_dim, o->horizon, o->latent_dim));
  if (!std::isfinite(o->beta) || o->beta < 0) {
    return FieldError("options.beta", o->beta, "finite and >= 0");
  }
  if (!std::isfinite(o->lr) || o->lr <= 0) {
    return FieldError("options.lr", o->lr, "finite and > 0");
  }
  if (o->network.hidden_sizes().empty()) {
    for (int i = 0; i < kSkillDefaultHiddenLayers; ++i) {
      o->network.add_hidden_sizes(kSkillDefaultHiddenSize);
    }
  }
  PRL_RETURN_IF_ERROR(ResolveNetworkSpec("options.network", &o->network));
  return CheckDevice("options.device", o->device);
}

// "[B, 10, 3]" with -1 printed as B.
std::string WantedShape(const std::vector<int64_t>& want) {
  std::vector<std::string> dims;
  dims.reserve(want.size());
  for (int64_t d : want) dims.push_back(d < 0 ? "B" : absl::StrCat(d));
  return absl::StrCat("[", absl::StrJoin(dims, ", "), "]");
}

// Checks an input tensor: float32, shape `want` (-1: any size >= 1), finite on request.
absl::Status CheckInput(absl::string_view field, const at::Tensor& t,
                        const std::vector<int64_t>& want, bool require_finite) {
  const std::string allowed = absl::StrCat("a float32 ", WantedShape(want), " tensor, B >= 1");
  if (!t.defined()) return FieldError(field, "an undefined tensor", allowed);
  bool fits = t.scalar_type() == at::kFloat && t.dim() == static_cast<int64_t>(want.size());
  for (size_t i = 0; fits && i < want.size(); ++i) {
    fits = want[i] < 0 ? t.size(i) >= 1 : t.size(i) == want[i];
  }
  if (!fits) {
    return FieldError(field,
                      absl::StrCat("a ", std::string(c10::toString(t.scalar_type())), " ",
                                   ShapeString(t.sizes().vec()), " tensor"),
                      allowed);
  }
  if (require_finite && !at::isfinite(t).all().item<bool>()) {
    return FieldError(field, "a tensor with NaN or infinite values", "finite");
  }
  return absl::OkStatus();
}

absl::Status TorchError(absl::string_view what, const c10::Error& e) {
  return absl::InternalError(absl::StrCat(what, ": ", e.what_without_backtrace()));
}

// An integer hyperparameter of an artifact, required, in [min, max].
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

}  // namespace

at::Tensor DiagonalGaussianKl(const DiagonalGaussian& q, const DiagonalGaussian& p) {
  // ½·(σ_q/σ_p)² + ½·((μ_q - μ_p)/σ_p)² - log(σ_q/σ_p) - ½, with the ratios taken in log space
  at::Tensor log_ratio = q.log_std - p.log_std;
  at::Tensor scaled_diff_sq = (q.mean - p.mean).square() * at::exp(p.log_std * -2.0);
  return (at::exp(log_ratio * 2.0) + scaled_diff_sq) * 0.5 - log_ratio - 0.5;
}

SkillLossTerms ComputeSkillLoss(const at::Tensor& reconstruction, const at::Tensor& actions,
                                const DiagonalGaussian& posterior, const DiagonalGaussian& prior,
                                double beta) {
  SkillLossTerms t;
  t.reconstruction_loss = (reconstruction - actions).square().mean();
  // the ELBO's regulariser, towards the fixed N(0, I)
  const DiagonalGaussian unit{at::zeros_like(posterior.mean), at::zeros_like(posterior.log_std)};
  t.kl_loss = DiagonalGaussianKl(posterior, unit).mean();
  // the learned prior follows the posterior; no gradient reaches the encoder from it
  const DiagonalGaussian target{posterior.mean.detach(), posterior.log_std.detach()};
  t.prior_loss = DiagonalGaussianKl(target, prior).mean();
  t.elbo_loss = t.reconstruction_loss + t.kl_loss * beta;
  t.loss = t.elbo_loss + t.prior_loss;
  return t;
}

// ---- the networks ----

struct SkillModel::Impl {
  explicit Impl(const SkillModelOptions& resolved);

  // Gaussian heads: [mean, log σ] from a trunk's features.
  struct GaussianHead {
    LinearParams mean, log_std;
  };
  GaussianHead DeclareHead(const std::string& prefix, int64_t in) {
    const int64_t out = options.latent_dim;
    return {DeclareLinear(&block, prefix + ".mean", in, out),
            DeclareLinear(&block, prefix + ".log_std", in, out)};
  }
  DiagonalGaussian RunGaussian(const MlpTrunk& trunk, const GaussianHead& head,
                               const at::Tensor& x) const {
    at::Tensor h = trunk.Forward(block, x, kGemm);
    return {ApplyLinear(block, head.mean, h),
            ApplyLinear(block, head.log_std, h).clamp(kSkillLogStdMin, kSkillLogStdMax)};
  }

  // q(z | a): actions [B, H, A].
  DiagonalGaussian Encode(const at::Tensor& actions) const {
    return RunGaussian(encoder, encoder_head, actions.reshape({actions.size(0), -1}));
  }
  // p(z | s): obs [B, O].
  DiagonalGaussian Prior(const at::Tensor& obs) const {
    return RunGaussian(prior, prior_head, obs);
  }
  // Action means [N, A] at obs [N, O] for skills z [N, L].
  at::Tensor Decode(const at::Tensor& obs, const at::Tensor& z) const {
    return ApplyLinear(block, decoder_head, decoder.Forward(block, at::cat({obs, z}, -1), kGemm));
  }
  // The loss terms of windows obs [B, H, O], actions [B, H, A] with ε `noise` [B, L].
  SkillLossTerms Loss(const at::Tensor& obs, const at::Tensor& actions,
                      const at::Tensor& noise) const;
  // One Adam step with flat_grad().
  void AdamStep();

  SkillModelOptions options;
  ParameterBlock block;
  MlpTrunk encoder;
  GaussianHead encoder_head;
  MlpTrunk decoder;
  LinearParams decoder_head;
  MlpTrunk prior;
  GaussianHead prior_head;
  at::Generator generator;  // initialisation, then TrainStep's ε (CPU, so any device agrees)
  at::Tensor adam_m, adam_v;
  int64_t adam_steps = 0;
};

SkillModel::Impl::Impl(const SkillModelOptions& resolved)
    : options(resolved),
      encoder(&block, "encoder.trunk", int64_t{resolved.horizon} * resolved.act_dim,
              resolved.network, /*ensemble=*/1),
      encoder_head(DeclareHead("encoder", encoder.output_dim())),
      decoder(&block, "decoder.trunk", int64_t{resolved.obs_dim} + resolved.latent_dim,
              resolved.network, /*ensemble=*/1),
      decoder_head(DeclareLinear(&block, "decoder.mean", decoder.output_dim(), resolved.act_dim)),
      prior(&block, "prior.trunk", resolved.obs_dim, resolved.network, /*ensemble=*/1),
      prior_head(DeclareHead("prior", prior.output_dim())),
      generator(at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(resolved.seed))) {
  block.Allocate(options.device, /*requires_grad=*/true);
  block.Initialize(generator);
  adam_m = at::zeros_like(block.flat());
  adam_v = at::zeros_like(block.flat());
}

SkillLossTerms SkillModel::Impl::Loss(const at::Tensor& obs, const at::Tensor& actions,
                                      const at::Tensor& noise) const {
  const int64_t b = obs.size(0), h = obs.size(1);
  // a reparameterised sample of the posterior, one z per window
  DiagonalGaussian q = Encode(actions);
  at::Tensor z = at::addcmul(q.mean, q.log_std.exp(), noise);
  // closed-loop reconstruction: the same z with each of the window's H states
  at::Tensor z_steps = z.unsqueeze(1).expand({b, h, options.latent_dim}).reshape({b * h, -1});
  at::Tensor reconstruction =
      Decode(obs.reshape({b * h, options.obs_dim}), z_steps).view({b, h, options.act_dim});
  // the skill prior from the window's first state
  DiagonalGaussian p = Prior(obs.select(1, 0));
  return ComputeSkillLoss(reconstruction, actions, q, p, options.beta);
}

void SkillModel::Impl::AdamStep() {
  at::NoGradGuard no_grad;
  const at::Tensor& g = block.flat_grad();
  ++adam_steps;
  const double t = static_cast<double>(adam_steps);
  const double bias_correction1 = 1.0 - std::pow(kAdamBeta1, t);
  const double bias_correction2 = 1.0 - std::pow(kAdamBeta2, t);
  // m ← β1·m + (1-β1)·g;  v ← β2·v + (1-β2)·g²;  p ← p - lr/bc1 · m / (sqrt(v/bc2) + eps)
  adam_m.mul_(kAdamBeta1).add_(g, 1.0 - kAdamBeta1);
  adam_v.mul_(kAdamBeta2).addcmul_(g, g, 1.0 - kAdamBeta2);
  at::Tensor denom = adam_v.sqrt().div_(std::sqrt(bias_correction2)).add_(kAdamEps);
  block.flat().addcdiv_(adam_m, denom, -options.lr / bias_correction1);
}

// ---- SkillModel ----

namespace {

// Checks a batch against the model's dimensions and brings it to `device`.
absl::StatusOr<WindowBatch> PrepareBatch(const WindowBatch& batch, const SkillModelOptions& o) {
  PRL_RETURN_IF_ERROR(CheckInput("batch.obs", batch.obs, {-1, o.horizon, o.obs_dim}, true));
  PRL_RETURN_IF_ERROR(
      CheckInput("batch.actions", batch.actions, {batch.obs.size(0), o.horizon, o.act_dim}, true));
  return WindowBatch{batch.obs.to(o.device), batch.actions.to(o.device)};
}

// The scalars of `terms`, copied to the host at once.
Losses ToLosses(const SkillLossTerms& t) {
  at::Tensor v = at::stack({t.loss, t.elbo_loss, t.reconstruction_loss, t.kl_loss, t.prior_loss})
                     .detach()
                     .to(at::kCPU, at::kDouble);
  const double* p = v.data_ptr<double>();
  return {{"loss", p[0]},
          {"elbo_loss", p[1]},
          {"reconstruction_loss", p[2]},
          {"kl_loss", p[3]},
          {"prior_loss", p[4]}};
}

}  // namespace

SkillModel::SkillModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SkillModel::~SkillModel() = default;

absl::StatusOr<std::unique_ptr<SkillModel>> SkillModel::Create(const SkillModelOptions& options) {
  SkillModelOptions resolved = options;
  PRL_RETURN_IF_ERROR(ResolveOptions(&resolved));
  try {
    return std::unique_ptr<SkillModel>(new SkillModel(std::make_unique<Impl>(resolved)));
  } catch (const c10::Error& e) {
    return TorchError("cannot build the skill model", e);
  }
}

int SkillModel::horizon() const { return impl_->options.horizon; }
const SkillModelOptions& SkillModel::options() const { return impl_->options; }

absl::StatusOr<Losses> SkillModel::TrainStep(const WindowBatch& batch) {
  try {
    PRL_ASSIGN_OR_RETURN(WindowBatch b, PrepareBatch(batch, impl_->options));
    at::Tensor noise = at::randn({b.obs.size(0), impl_->options.latent_dim}, impl_->generator,
                                 at::TensorOptions().dtype(at::kFloat))
                           .to(impl_->options.device);
    impl_->block.ZeroGrad();
    SkillLossTerms terms = impl_->Loss(b.obs, b.actions, noise);
    Losses losses = ToLosses(terms);
    for (const auto& [name, value] : losses) {
      if (!std::isfinite(value)) {
        return absl::InternalError(absl::StrCat("skill model training step: ", name, " is ", value,
                                                "; the parameters were not updated"));
      }
    }
    terms.loss.backward();
    impl_->AdamStep();
    return losses;
  } catch (const c10::Error& e) {
    return TorchError("skill model training step", e);
  }
}

absl::StatusOr<Losses> SkillModel::Evaluate(const WindowBatch& batch) const {
  try {
    c10::InferenceMode inference;
    PRL_ASSIGN_OR_RETURN(WindowBatch b, PrepareBatch(batch, impl_->options));
    at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(
        static_cast<uint64_t>(impl_->options.seed) + kEvaluateSeedOffset);
    at::Tensor noise = at::randn({b.obs.size(0), impl_->options.latent_dim}, generator,
                                 at::TensorOptions().dtype(at::kFloat))
                           .to(impl_->options.device);
    return ToLosses(impl_->Loss(b.obs, b.actions, noise));
  } catch (const c10::Error& e) {
    return TorchError("skill model evaluation", e);
  }
}

absl::StatusOr<DiagonalGaussian> SkillModel::Prior(const at::Tensor& obs) const {
  PRL_RETURN_IF_ERROR(CheckInput("obs", obs, {-1, impl_->options.obs_dim}, false));
  try {
    c10::InferenceMode inference;
    return impl_->Prior(obs.to(impl_->options.device));
  } catch (const c10::Error& e) {
    return TorchError("skill prior", e);
  }
}

absl::StatusOr<at::Tensor> SkillModel::Decode(const at::Tensor& obs, const at::Tensor& z) const {
  PRL_RETURN_IF_ERROR(CheckInput("obs", obs, {-1, impl_->options.obs_dim}, false));
  PRL_RETURN_IF_ERROR(CheckInput("z", z, {obs.size(0), impl_->options.latent_dim}, false));
  try {
    c10::InferenceMode inference;
    return impl_->Decode(obs.to(impl_->options.device), z.to(impl_->options.device));
  } catch (const c10::Error& e) {
    return TorchError("skill decoder", e);
  }
}

absl::StatusOr<DiagonalGaussian> SkillModel::Encode(const at::Tensor& actions) const {
  const SkillModelOptions& o = impl_->options;
  PRL_RETURN_IF_ERROR(CheckInput("actions", actions, {-1, o.horizon, o.act_dim}, false));
  try {
    c10::InferenceMode inference;
    return impl_->Encode(actions.to(o.device));
  } catch (const c10::Error& e) {
    return TorchError("skill encoder", e);
  }
}

// ---- artifacts ----

absl::StatusOr<ModelArtifact> SkillModel::ToArtifact(v1::ModelInfo info) const {
  const SkillModelOptions& o = impl_->options;
  ModelArtifact artifact;
  info.set_kind(v1::PRIOR_KIND_SKILL_VAE);
  info.set_obs_dim(o.obs_dim);
  info.set_action_dim(o.act_dim);
  info.set_latent_dim(o.latent_dim);
  info.set_horizon(o.horizon);
  info.set_context_dim(0);
  info.set_state_conditioned_decoder(true);
  info.clear_methods();
  info.add_methods("Decode");
  info.add_methods("Prior");
  artifact.info = std::move(info);

  auto& hp = artifact.hyperparameters;
  hp["network.hidden_layers"] = o.network.hidden_sizes_size();
  for (int i = 0; i < o.network.hidden_sizes_size(); ++i) {
    hp[absl::StrCat("network.hidden_sizes.", i)] = o.network.hidden_sizes(i);
  }
  hp["network.activation"] = o.network.activation();
  hp["network.layer_norm"] = o.network.layer_norm() ? 1 : 0;
  hp["beta_x1e9"] = std::llround(o.beta * kBetaScale);
  hp["seed"] = o.seed;

  const ParameterBlock& block = impl_->block;
  for (int i = 0; i < block.size(); ++i) {
    PRL_ASSIGN_OR_RETURN(HostTensor host, FromTorch(block.param(i).detach()));
    artifact.tensors.emplace_back(block.name(i), std::move(host));
  }
  return artifact;
}

namespace {

// The options a SKILL_VAE artifact was built with (lr at its default).
absl::StatusOr<SkillModelOptions> OptionsFromArtifact(const ModelArtifact& artifact) {
  const v1::ModelInfo& info = artifact.info;
  if (info.kind() != v1::PRIOR_KIND_SKILL_VAE) {
    return FieldError("info.kind", v1::PriorKind_Name(info.kind()), "PRIOR_KIND_SKILL_VAE");
  }
  if (!info.state_conditioned_decoder()) {
    return FieldError("info.state_conditioned_decoder", "false",
                      "true (this skill model's decoder is closed-loop)");
  }
  PRL_RETURN_IF_ERROR(CheckDims("info.", "action_dim", info.obs_dim(), info.action_dim(),
                                info.horizon(), info.latent_dim()));
  SkillModelOptions options;
  options.obs_dim = info.obs_dim();
  options.act_dim = info.action_dim();
  options.horizon = info.horizon();
  options.latent_dim = info.latent_dim();
  PRL_ASSIGN_OR_RETURN(int64_t layers,
                       Hyperparameter(artifact, "network.hidden_layers", 1, kMaxHiddenLayers));
  for (int64_t i = 0; i < layers; ++i) {
    PRL_ASSIGN_OR_RETURN(
        int64_t size,
        Hyperparameter(artifact, absl::StrCat("network.hidden_sizes.", i), 1, kMaxHiddenSize));
    options.network.add_hidden_sizes(static_cast<int32_t>(size));
  }
  PRL_ASSIGN_OR_RETURN(int64_t activation,
                       Hyperparameter(artifact, "network.activation", 1, INT32_MAX));
  if (!v1::NetworkSpec::Activation_IsValid(static_cast<int>(activation))) {
    return FieldError("hyperparameters[\"network.activation\"]", activation,
                      "a NetworkSpec.Activation value");
  }
  options.network.set_activation(static_cast<v1::NetworkSpec::Activation>(activation));
  PRL_ASSIGN_OR_RETURN(int64_t layer_norm, Hyperparameter(artifact, "network.layer_norm", 0, 1));
  options.network.set_layer_norm(layer_norm == 1);
  // optional: β (training only) and the seed (Evaluate's ε; training's, if resumed)
  auto beta = artifact.hyperparameters.find("beta_x1e9");
  if (beta != artifact.hyperparameters.end() && beta->second >= 0) {
    options.beta = static_cast<double>(beta->second) / kBetaScale;
  }
  auto seed = artifact.hyperparameters.find("seed");
  if (seed != artifact.hyperparameters.end()) options.seed = seed->second;
  return options;
}

// Copies the artifact's tensors into `block`: every parameter exactly once, with its shape.
absl::Status LoadParameters(const ModelArtifact& artifact, ParameterBlock* block) {
  std::map<std::string, at::Tensor> expected;
  for (int i = 0; i < block->size(); ++i) expected[block->name(i)] = block->param(i);
  std::set<std::string> loaded;
  try {
    at::NoGradGuard no_grad;
    for (const auto& [name, host] : artifact.tensors) {
      const std::string field = absl::StrCat("tensors[\"", name, "\"]");
      auto it = expected.find(name);
      if (it == expected.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            field, ": not a parameter of this skill model (it has ",
            absl::StrJoin(expected, ", ", [](std::string* out, const auto& e) { *out += e.first; }),
            ")"));
      }
      if (!loaded.insert(name).second) {
        return absl::InvalidArgumentError(absl::StrCat(field, ": appears twice"));
      }
      TensorSpec spec;
      spec.name = field;
      spec.dtype = DType::kFloat32;
      spec.shape = it->second.sizes().vec();
      spec.require_finite = true;
      PRL_RETURN_IF_ERROR(CheckTensor(host.view(), spec));
      it->second.copy_(ToTorch(host.view()));
    }
  } catch (const c10::Error& e) {
    return TorchError("cannot load the skill model's weights", e);
  }
  for (const auto& e : expected) {
    if (loaded.count(e.first) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("tensors[\"", e.first, "\"]: missing"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SkillModel>> SkillModel::FromArtifact(const ModelArtifact& artifact,
                                                                     c10::Device device) {
  PRL_ASSIGN_OR_RETURN(SkillModelOptions options, OptionsFromArtifact(artifact));
  options.device = device;
  PRL_ASSIGN_OR_RETURN(std::unique_ptr<SkillModel> model, Create(options));
  PRL_RETURN_IF_ERROR(LoadParameters(artifact, &model->impl_->block));
  return model;
}

}  // namespace prl::models
