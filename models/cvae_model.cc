#include "models/cvae_model.h"

#include <cmath>
#include <optional>
#include <string>
#include <utility>

#include "ATen/ATen.h"
#include "ATen/CPUGeneratorImpl.h"
#include "absl/strings/str_cat.h"
#include "c10/core/InferenceMode.h"
#include "common/field_error.h"
#include "common/status_macros.h"
#include "models/networks.h"
#include "models/prior_model_util.h"

namespace prl::models {
namespace {

using prior_util::CheckInput;
using prior_util::GaussianNet;
using prior_util::MeanNet;
using prior_util::TorchError;

constexpr double kBetaScale = 1e9;  // the "beta_x1e9" hyperparameter
constexpr prior_util::DimLimits kLimits{kCvaeMaxDim, kCvaeMaxHorizon, kCvaeMaxLatentDim};

absl::Status ResolveOptions(CvaeModelOptions* o) {
  PRL_RETURN_IF_ERROR(prior_util::CheckDims("options.", "act_dim", o->obs_dim, o->act_dim,
                                            o->horizon, o->latent_dim, kLimits));
  return prior_util::ResolveTrainingOptions(o->beta, o->lr, kCvaeDefaultHiddenLayers,
                                            kCvaeDefaultHiddenSize, o->device, &o->network);
}

struct CvaeLossTerms {
  at::Tensor reconstruction_loss, kl_loss, loss;
};

}  // namespace

struct CvaeModel::Impl {
  explicit Impl(const CvaeModelOptions& resolved)
      : options(resolved),
        encoder(&block, "encoder",
                int64_t{resolved.obs_dim} + int64_t{resolved.horizon} * resolved.act_dim,
                resolved.latent_dim, resolved.network),
        decoder(&block, "decoder", int64_t{resolved.obs_dim} + resolved.latent_dim,
                int64_t{resolved.horizon} * resolved.act_dim, resolved.network),
        generator(at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(resolved.seed))) {
    if (resolved.learned_prior) {
      prior.emplace(&block, "prior", resolved.obs_dim, resolved.latent_dim, resolved.network);
    }
    block.Allocate(options.device, /*requires_grad=*/true);
    block.Initialize(generator);
    adam = std::make_unique<prior_util::FlatAdam>(block);
  }

  // The networks with `params` (block or one of its GradientShard copies).
  // q(z | s_1, a): obs [B, O], actions [B, k, A].
  DiagonalGaussian Encode(const ParameterBlock& params, const at::Tensor& obs,
                          const at::Tensor& actions) const {
    return encoder.Forward(params, at::cat({obs, actions.reshape({actions.size(0), -1})}, -1));
  }
  // π_state(z | s) or N(0, I): obs [B, O].
  DiagonalGaussian Prior(const ParameterBlock& params, const at::Tensor& obs) const {
    if (prior) return prior->Forward(params, obs);
    at::Tensor zeros = at::zeros({obs.size(0), options.latent_dim}, obs.options());
    return {zeros, zeros.clone()};
  }
  // The k action means [B, k, A] for obs [B, O] and z [B, L].
  at::Tensor Decode(const ParameterBlock& params, const at::Tensor& obs,
                    const at::Tensor& z) const {
    return decoder.Forward(params, at::cat({obs, z}, -1))
        .view({obs.size(0), options.horizon, options.act_dim});
  }
  // The loss terms of windows obs [B, k, O], actions [B, k, A] with ε `noise` [B, L].
  CvaeLossTerms Loss(const ParameterBlock& params, const at::Tensor& obs, const at::Tensor& actions,
                     const at::Tensor& noise) const {
    at::Tensor first = obs.select(1, 0);
    DiagonalGaussian q = Encode(params, first, actions);
    at::Tensor z = at::addcmul(q.mean, q.log_std.exp(), noise);
    CvaeLossTerms t;
    t.reconstruction_loss = (Decode(params, first, z) - actions).square().mean();
    t.kl_loss = DiagonalGaussianKl(q, Prior(params, first)).mean();
    t.loss = t.reconstruction_loss + t.kl_loss * options.beta;
    return t;
  }

  CvaeModelOptions options;
  ParameterBlock block;
  GaussianNet encoder;
  MeanNet decoder;
  std::optional<GaussianNet> prior;
  at::Generator generator;  // initialisation, then TrainStep's ε
  std::unique_ptr<prior_util::FlatAdam> adam;
};

namespace {

prior_util::LossTerms Terms(const CvaeLossTerms& t) {
  return {{"loss", t.loss}, {"reconstruction_loss", t.reconstruction_loss}, {"kl_loss", t.kl_loss}};
}

}  // namespace

CvaeModel::CvaeModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CvaeModel::~CvaeModel() = default;

absl::StatusOr<std::unique_ptr<CvaeModel>> CvaeModel::Create(const CvaeModelOptions& options) {
  CvaeModelOptions resolved = options;
  PRL_RETURN_IF_ERROR(ResolveOptions(&resolved));
  try {
    return std::unique_ptr<CvaeModel>(new CvaeModel(std::make_unique<Impl>(resolved)));
  } catch (const c10::Error& e) {
    return TorchError("cannot build the CVAE", e);
  }
}

int CvaeModel::horizon() const { return impl_->options.horizon; }
int CvaeModel::obs_dim() const { return impl_->options.obs_dim; }
int CvaeModel::latent_dim() const { return impl_->options.latent_dim; }
bool CvaeModel::learned_prior() const { return impl_->options.learned_prior; }
const v1::NetworkSpec& CvaeModel::prior_network() const { return impl_->options.network; }
const CvaeModelOptions& CvaeModel::options() const { return impl_->options; }

absl::StatusOr<Losses> CvaeModel::TrainStep(const WindowBatch& batch) {
  const CvaeModelOptions& o = impl_->options;
  PRL_ASSIGN_OR_RETURN(
      WindowBatch b, prior_util::PrepareWindows(batch, o.horizon, o.obs_dim, o.act_dim, o.device));
  Impl& m = *impl_;
  return prior_util::VaeTrainStep(
      "CVAE", {&m.block, m.adam.get(), &m.generator, o.lr, o.latent_dim, o.device}, b.obs.size(0),
      [&](const ParameterBlock& params, const at::Tensor& noise, int64_t begin, int64_t count) {
        return Terms(m.Loss(params, b.obs.narrow(0, begin, count),
                            b.actions.narrow(0, begin, count), noise));
      });
}

absl::StatusOr<Losses> CvaeModel::Evaluate(const WindowBatch& batch) const {
  const CvaeModelOptions& o = impl_->options;
  PRL_ASSIGN_OR_RETURN(
      WindowBatch b, prior_util::PrepareWindows(batch, o.horizon, o.obs_dim, o.act_dim, o.device));
  return prior_util::VaeEvaluate("CVAE", o.latent_dim, o.device, o.seed, b.obs.size(0),
                                 [&](const at::Tensor& noise) {
                                   return Terms(impl_->Loss(impl_->block, b.obs, b.actions, noise));
                                 });
}

absl::StatusOr<DiagonalGaussian> CvaeModel::Prior(const at::Tensor& obs) const {
  PRL_RETURN_IF_ERROR(CheckInput("obs", obs, {-1, impl_->options.obs_dim}, false));
  try {
    c10::InferenceMode inference;
    return impl_->Prior(impl_->block, obs.to(impl_->options.device));
  } catch (const c10::Error& e) {
    return TorchError("CVAE prior", e);
  }
}

absl::StatusOr<at::Tensor> CvaeModel::Decode(const at::Tensor& obs, const at::Tensor& z) const {
  PRL_RETURN_IF_ERROR(CheckInput("obs", obs, {-1, impl_->options.obs_dim}, false));
  PRL_RETURN_IF_ERROR(CheckInput("z", z, {obs.size(0), impl_->options.latent_dim}, false));
  try {
    c10::InferenceMode inference;
    return impl_->Decode(impl_->block, obs.to(impl_->options.device), z.to(impl_->options.device));
  } catch (const c10::Error& e) {
    return TorchError("CVAE decoder", e);
  }
}

absl::StatusOr<DiagonalGaussian> CvaeModel::Encode(const at::Tensor& obs,
                                                   const at::Tensor& actions) const {
  const CvaeModelOptions& o = impl_->options;
  PRL_RETURN_IF_ERROR(CheckInput("obs", obs, {-1, o.obs_dim}, false));
  PRL_RETURN_IF_ERROR(CheckInput("actions", actions, {obs.size(0), o.horizon, o.act_dim}, false));
  try {
    c10::InferenceMode inference;
    return impl_->Encode(impl_->block, obs.to(o.device), actions.to(o.device));
  } catch (const c10::Error& e) {
    return TorchError("CVAE encoder", e);
  }
}

absl::StatusOr<ModelArtifact> CvaeModel::ToArtifact(v1::ModelInfo info) const {
  const CvaeModelOptions& o = impl_->options;
  ModelArtifact artifact;
  info.set_kind(v1::PRIOR_KIND_CVAE);
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
  prior_util::WriteNetwork(o.network, &hp);
  hp["learned_prior"] = o.learned_prior ? 1 : 0;
  hp["beta_x1e9"] = std::llround(o.beta * kBetaScale);
  hp["seed"] = o.seed;
  PRL_RETURN_IF_ERROR(prior_util::StoreParameters(impl_->block, &artifact));
  return artifact;
}

absl::StatusOr<std::unique_ptr<CvaeModel>> CvaeModel::FromArtifact(const ModelArtifact& artifact,
                                                                   c10::Device device) {
  const v1::ModelInfo& info = artifact.info;
  if (info.kind() != v1::PRIOR_KIND_CVAE) {
    return FieldError("info.kind", v1::PriorKind_Name(info.kind()), "PRIOR_KIND_CVAE");
  }
  if (!info.state_conditioned_decoder()) {
    return FieldError("info.state_conditioned_decoder", "false",
                      "true (this CVAE's decoder reads the state)");
  }
  PRL_RETURN_IF_ERROR(prior_util::CheckDims("info.", "action_dim", info.obs_dim(),
                                            info.action_dim(), info.horizon(), info.latent_dim(),
                                            kLimits));
  CvaeModelOptions options;
  options.obs_dim = info.obs_dim();
  options.act_dim = info.action_dim();
  options.horizon = info.horizon();
  options.latent_dim = info.latent_dim();
  PRL_ASSIGN_OR_RETURN(options.network, prior_util::ReadNetwork(artifact));
  PRL_ASSIGN_OR_RETURN(int64_t learned,
                       prior_util::Hyperparameter(artifact, "learned_prior", 0, 1));
  options.learned_prior = learned == 1;
  auto beta = artifact.hyperparameters.find("beta_x1e9");
  if (beta != artifact.hyperparameters.end() && beta->second >= 0) {
    options.beta = static_cast<double>(beta->second) / kBetaScale;
  }
  auto seed = artifact.hyperparameters.find("seed");
  if (seed != artifact.hyperparameters.end()) options.seed = seed->second;
  options.device = device;
  PRL_ASSIGN_OR_RETURN(std::unique_ptr<CvaeModel> model, Create(options));
  PRL_RETURN_IF_ERROR(prior_util::LoadParameters(artifact, "CVAE", &model->impl_->block));
  return model;
}

absl::StatusOr<ModelArtifact> CvaeModel::TrainingState(v1::ModelInfo info) const {
  PRL_ASSIGN_OR_RETURN(ModelArtifact state, ToArtifact(std::move(info)));
  PRL_RETURN_IF_ERROR(prior_util::AppendTrainingState(*impl_->adam, &impl_->generator, &state));
  return state;
}

absl::Status CvaeModel::RestoreTrainingState(const ModelArtifact& state) {
  return prior_util::RestoreTrainingState(state, "CVAE", &impl_->block, impl_->adam.get(),
                                          &impl_->generator);
}

}  // namespace prl::models
