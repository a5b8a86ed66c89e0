#include "models/skill_model.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
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
#include "models/dense_mlp.h"
#include "models/network_spec.h"
#include "models/networks.h"
#include "models/prior_model_util.h"

namespace prl::models {
namespace {

using prior_util::CheckInput;
using prior_util::GaussianNet;
using prior_util::MeanNet;
using prior_util::TorchError;

constexpr double kBetaScale = 1e9;  // the "beta_x1e9" hyperparameter

constexpr prior_util::DimLimits kLimits{kSkillMaxDim, kSkillMaxHorizon, kSkillMaxLatentDim};

// Checks every option and fills the network's defaults.
absl::Status ResolveOptions(SkillModelOptions* o) {
  PRL_RETURN_IF_ERROR(prior_util::CheckDims("options.", "act_dim", o->obs_dim, o->act_dim,
                                            o->horizon, o->latent_dim, kLimits));
  return prior_util::ResolveTrainingOptions(o->beta, o->lr, kSkillDefaultHiddenLayers,
                                            kSkillDefaultHiddenSize, o->device, &o->network);
}

}  // namespace

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

  // The networks with `params` (block or one of its GradientShard copies).
  // q(z | a): actions [B, H, A].
  DiagonalGaussian Encode(const ParameterBlock& params, const at::Tensor& actions) const {
    return encoder.Forward(params, actions.reshape({actions.size(0), -1}));
  }
  // p(z | s): obs [B, O].
  DiagonalGaussian Prior(const ParameterBlock& params, const at::Tensor& obs) const {
    return prior.Forward(params, obs);
  }
  // Action means [N, A] at obs [N, O] for skills z [N, L].
  at::Tensor Decode(const ParameterBlock& params, const at::Tensor& obs,
                    const at::Tensor& z) const {
    return decoder.Forward(params, at::cat({obs, z}, -1));
  }
  // The loss terms of windows obs [B, H, O], actions [B, H, A] with ε `noise` [B, L].
  SkillLossTerms Loss(const ParameterBlock& params, const at::Tensor& obs,
                      const at::Tensor& actions, const at::Tensor& noise) const;

  // The autograd-free CPU step (SkillModelOptions::direct_cpu_step): one shard's networks and
  // buffers (see DirectGradient).
  struct DirectShard {
    dense::DenseMlp encoder, decoder, prior;
    std::vector<float> z, decoder_in, g_reconstruction, g_decoder_in;
    std::vector<float> g_q_mean, g_q_log_std, g_p_mean, g_p_log_std;
  };
  // Whether TrainStep takes the direct path; then `direct` holds a shard per training shard.
  bool UseDirect() const { return direct_prototype.has_value(); }
  // Rows [0, count) of windows obs [count, H, O], actions [count, H, A] with ε [count, L]:
  // `scale` times the gradient of their mean loss into `grad` (the block's layout) and the terms.
  absl::StatusOr<prior_util::TermValues> DirectGradient(DirectShard& shard, const float* obs,
                                                        const float* actions, const float* eps,
                                                        int64_t count, float scale,
                                                        float* grad) const;
  // TrainStep (with `step`) or Gradient (the gradient left in block.flat_grad()).
  absl::StatusOr<Losses> Step(const WindowBatch& batch, bool step);

  SkillModelOptions options;
  ParameterBlock block;
  GaussianNet encoder;
  MeanNet decoder;
  GaussianNet prior;
  at::Generator generator;  // initialisation, then TrainStep's ε (CPU, so any device agrees)
  std::unique_ptr<prior_util::FlatAdam> adam;
  std::optional<DirectShard> direct_prototype;  // set when the direct path applies
  std::vector<DirectShard> direct;
  std::vector<std::vector<float>> direct_shard_grads;
};

SkillModel::Impl::Impl(const SkillModelOptions& resolved)
    : options(resolved),
      encoder(&block, "encoder", int64_t{resolved.horizon} * resolved.act_dim, resolved.latent_dim,
              resolved.network),
      decoder(&block, "decoder", int64_t{resolved.obs_dim} + resolved.latent_dim, resolved.act_dim,
              resolved.network),
      prior(&block, "prior", resolved.obs_dim, resolved.latent_dim, resolved.network),
      generator(at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(resolved.seed))) {
  block.Allocate(options.device, /*requires_grad=*/true);
  block.Initialize(generator);
  adam = std::make_unique<prior_util::FlatAdam>(block);
  if (options.direct_cpu_step && prior_util::DirectStepAvailable(options.device)) {
    std::optional<dense::DenseMlp> e = encoder.Dense(block), d = decoder.Dense(block),
                                   p = prior.Dense(block);
    if (e && d && p) direct_prototype = DirectShard{*std::move(e), *std::move(d), *std::move(p)};
  }
}

namespace {

using dense::Grow;
using prior_util::ClampLogStd;
constexpr auto ClampPasses = prior_util::LogStdClampPasses;

}  // namespace

absl::StatusOr<prior_util::TermValues> SkillModel::Impl::DirectGradient(
    DirectShard& sh, const float* obs, const float* actions, const float* eps, int64_t count,
    float scale, float* grad) const {
  const int64_t h = options.horizon, o = options.obs_dim, a = options.act_dim,
                l = options.latent_dim;
  const int64_t steps = count * h;
  const float* params = block.flat().data_ptr<float>();
  const absl::Status sgemm_failed =
      absl::InternalError("skill model training step: oneDNN sgemm failed");
  // q(z | a) over the flattened windows, and its reparameterised sample
  if (!sh.encoder.Forward(params, actions, h * a, count)) return sgemm_failed;
  const float* q_mean = sh.encoder.head(0);
  const float* q_raw = sh.encoder.head(1);
  float* z = Grow(&sh.z, count * l);
  for (int64_t i = 0; i < count * l; ++i)
    z[i] = q_mean[i] + std::exp(ClampLogStd(q_raw[i])) * eps[i];
  // the closed-loop decoder on [s_t, z] for every step of every window
  const int64_t in = o + l;
  float* x = Grow(&sh.decoder_in, steps * in);
  for (int64_t b = 0; b < count; ++b) {
    for (int64_t t = 0; t < h; ++t) {
      float* row = x + (b * h + t) * in;
      std::copy_n(obs + (b * h + t) * o, o, row);
      std::copy_n(z + b * l, l, row + o);
    }
  }
  if (!sh.decoder.Forward(params, x, in, steps)) return sgemm_failed;
  // p(z | s_0): each window's first state (row stride H·O)
  if (!sh.prior.Forward(params, obs, h * o, count)) return sgemm_failed;
  const float* p_mean = sh.prior.head(0);
  const float* p_raw = sh.prior.head(1);

  // reconstruction: mean squared error over [count, H, A]
  const float* reconstruction = sh.decoder.head(0);
  float* g_rec = Grow(&sh.g_reconstruction, steps * a);
  const double rec_sum =
      dense::SquaredErrorWithGradient(reconstruction, actions, steps * a, scale, g_rec);
  float* g_x = Grow(&sh.g_decoder_in, steps * in);
  if (!sh.decoder.Backward(params, {g_rec}, grad, g_x, in)) return sgemm_failed;

  // KL(q ‖ N(0, I)) (β-weighted, into q) and KL(sg(q) ‖ p) (into p), means over [count, L]
  float* g_qm = Grow(&sh.g_q_mean, count * l);
  float* g_ql = Grow(&sh.g_q_log_std, count * l);
  float* g_pm = Grow(&sh.g_p_mean, count * l);
  float* g_pl = Grow(&sh.g_p_log_std, count * l);
  const float kl_scale = scale * static_cast<float>(options.beta) / static_cast<float>(count * l);
  const float prior_scale = scale / static_cast<float>(count * l);
  double kl_sum = 0, prior_sum = 0;
  for (int64_t b = 0; b < count; ++b) {
    for (int64_t j = 0; j < l; ++j) {
      const int64_t i = b * l + j;
      const float mq = q_mean[i], lq = ClampLogStd(q_raw[i]);
      const dense::GaussianKl to_unit = dense::GaussianKlWithGradient(mq, lq, 0.0f, 0.0f);
      const dense::GaussianKl to_prior =
          dense::GaussianKlWithGradient(mq, lq, p_mean[i], ClampLogStd(p_raw[i]));
      kl_sum += to_unit.kl;
      prior_sum += to_prior.kl;
      // z = μ + σ·ε: the decoder's gradient at z sums over the window's steps
      float g_z = 0.0f;
      for (int64_t t = 0; t < h; ++t) g_z += g_x[(b * h + t) * in + o + j];
      g_qm[i] = g_z + kl_scale * to_unit.d_mean_q;
      const float g_lq = g_z * std::exp(lq) * eps[i] + kl_scale * to_unit.d_log_std_q;
      g_ql[i] = ClampPasses(q_raw[i]) ? g_lq : 0.0f;
      // the prior follows the detached posterior: its terms reach p only
      g_pm[i] = prior_scale * to_prior.d_mean_p;
      g_pl[i] = ClampPasses(p_raw[i]) ? prior_scale * to_prior.d_log_std_p : 0.0f;
    }
  }
  if (!sh.encoder.Backward(params, {g_qm, g_ql}, grad, nullptr, 0)) return sgemm_failed;
  if (!sh.prior.Backward(params, {g_pm, g_pl}, grad, nullptr, 0)) return sgemm_failed;

  const double reconstruction_loss = rec_sum / static_cast<double>(steps * a);
  const double kl_loss = kl_sum / static_cast<double>(count * l);
  const double prior_loss = prior_sum / static_cast<double>(count * l);
  const double elbo_loss = reconstruction_loss + kl_loss * options.beta;
  return prior_util::TermValues{{"loss", elbo_loss + prior_loss},
                                {"elbo_loss", elbo_loss},
                                {"reconstruction_loss", reconstruction_loss},
                                {"kl_loss", kl_loss},
                                {"prior_loss", prior_loss}};
}

SkillLossTerms SkillModel::Impl::Loss(const ParameterBlock& params, const at::Tensor& obs,
                                      const at::Tensor& actions, const at::Tensor& noise) const {
  const int64_t b = obs.size(0), h = obs.size(1);
  // a reparameterised sample of the posterior, one z per window
  DiagonalGaussian q = Encode(params, actions);
  at::Tensor z = at::addcmul(q.mean, q.log_std.exp(), noise);
  // closed-loop reconstruction: the same z with each of the window's H states
  at::Tensor z_steps = z.unsqueeze(1).expand({b, h, options.latent_dim}).reshape({b * h, -1});
  at::Tensor reconstruction =
      Decode(params, obs.reshape({b * h, options.obs_dim}), z_steps).view({b, h, options.act_dim});
  // the skill prior from the window's first state
  DiagonalGaussian p = Prior(params, obs.select(1, 0));
  return ComputeSkillLoss(reconstruction, actions, q, p, options.beta);
}

// ---- SkillModel ----

namespace {

// The loss terms as TrainStep and Evaluate report them ("loss" first: it is minimised).
prior_util::LossTerms Terms(const SkillLossTerms& t) {
  return {{"loss", t.loss},
          {"elbo_loss", t.elbo_loss},
          {"reconstruction_loss", t.reconstruction_loss},
          {"kl_loss", t.kl_loss},
          {"prior_loss", t.prior_loss}};
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
  return impl_->Step(batch, /*step=*/true);
}

absl::StatusOr<Losses> SkillModel::Gradient(const WindowBatch& batch, at::Tensor* flat_grad) {
  PRL_ASSIGN_OR_RETURN(Losses losses, impl_->Step(batch, /*step=*/false));
  *flat_grad = impl_->block.flat_grad().detach().clone();
  return losses;
}

absl::StatusOr<Losses> SkillModel::Impl::Step(const WindowBatch& batch, bool step) {
  const SkillModelOptions& o = options;
  PRL_ASSIGN_OR_RETURN(
      WindowBatch b, prior_util::PrepareWindows(batch, o.horizon, o.obs_dim, o.act_dim, o.device));
  Impl& m = *this;
  // the closed-loop decoder runs on each of a window's H steps
  const prior_util::VaeTraining training{
      &m.block, step ? m.adam.get() : nullptr, &m.generator, o.lr, o.latent_dim, o.device,
      o.horizon};
  const int64_t rows = b.obs.size(0);
  if (m.UseDirect()) {
    const int shards = prior_util::TrainingShards(rows, o.horizon, o.device);
    while (static_cast<int>(m.direct.size()) < shards) m.direct.push_back(*m.direct_prototype);
    return prior_util::DirectVaeTrainStep(
        "skill model", training, b,
        [&](int shard, const float* obs, const float* actions, const float* noise, int64_t count,
            float scale, float* grad) {
          return m.DirectGradient(m.direct[shard], obs, actions, noise, count, scale, grad);
        },
        &m.direct_shard_grads);
  }
  return prior_util::VaeTrainStep(
      "skill model", training, rows,
      [&](const ParameterBlock& params, const at::Tensor& noise, int64_t begin, int64_t count) {
        return Terms(m.Loss(params, b.obs.narrow(0, begin, count),
                            b.actions.narrow(0, begin, count), noise));
      });
}

absl::StatusOr<Losses> SkillModel::Evaluate(const WindowBatch& batch) const {
  const SkillModelOptions& o = impl_->options;
  PRL_ASSIGN_OR_RETURN(
      WindowBatch b, prior_util::PrepareWindows(batch, o.horizon, o.obs_dim, o.act_dim, o.device));
  return prior_util::VaeEvaluate("skill model", o.latent_dim, o.device, o.seed, b.obs.size(0),
                                 [&](const at::Tensor& noise) {
                                   return Terms(impl_->Loss(impl_->block, b.obs, b.actions, noise));
                                 });
}

absl::StatusOr<DiagonalGaussian> SkillModel::Prior(const at::Tensor& obs) const {
  PRL_RETURN_IF_ERROR(CheckInput("obs", obs, {-1, impl_->options.obs_dim}, false));
  try {
    c10::InferenceMode inference;
    return impl_->Prior(impl_->block, obs.to(impl_->options.device));
  } catch (const c10::Error& e) {
    return TorchError("skill prior", e);
  }
}

absl::StatusOr<at::Tensor> SkillModel::Decode(const at::Tensor& obs, const at::Tensor& z) const {
  PRL_RETURN_IF_ERROR(CheckInput("obs", obs, {-1, impl_->options.obs_dim}, false));
  PRL_RETURN_IF_ERROR(CheckInput("z", z, {obs.size(0), impl_->options.latent_dim}, false));
  try {
    c10::InferenceMode inference;
    return impl_->Decode(impl_->block, obs.to(impl_->options.device), z.to(impl_->options.device));
  } catch (const c10::Error& e) {
    return TorchError("skill decoder", e);
  }
}

absl::StatusOr<DiagonalGaussian> SkillModel::Encode(const at::Tensor& actions) const {
  const SkillModelOptions& o = impl_->options;
  PRL_RETURN_IF_ERROR(CheckInput("actions", actions, {-1, o.horizon, o.act_dim}, false));
  try {
    c10::InferenceMode inference;
    return impl_->Encode(impl_->block, actions.to(o.device));
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
  prior_util::WriteNetwork(o.network, &hp);
  hp["beta_x1e9"] = std::llround(o.beta * kBetaScale);
  hp["seed"] = o.seed;
  PRL_RETURN_IF_ERROR(prior_util::StoreParameters(impl_->block, &artifact));
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
  PRL_RETURN_IF_ERROR(prior_util::CheckDims("info.", "action_dim", info.obs_dim(),
                                            info.action_dim(), info.horizon(), info.latent_dim(),
                                            kLimits));
  SkillModelOptions options;
  options.obs_dim = info.obs_dim();
  options.act_dim = info.action_dim();
  options.horizon = info.horizon();
  options.latent_dim = info.latent_dim();
  PRL_ASSIGN_OR_RETURN(options.network, prior_util::ReadNetwork(artifact));
  // optional: β (training only) and the seed (Evaluate's ε; training's, if resumed)
  auto beta = artifact.hyperparameters.find("beta_x1e9");
  if (beta != artifact.hyperparameters.end() && beta->second >= 0) {
    options.beta = static_cast<double>(beta->second) / kBetaScale;
  }
  auto seed = artifact.hyperparameters.find("seed");
  if (seed != artifact.hyperparameters.end()) options.seed = seed->second;
  return options;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SkillModel>> SkillModel::FromArtifact(const ModelArtifact& artifact,
                                                                     c10::Device device) {
  PRL_ASSIGN_OR_RETURN(SkillModelOptions options, OptionsFromArtifact(artifact));
  options.device = device;
  PRL_ASSIGN_OR_RETURN(std::unique_ptr<SkillModel> model, Create(options));
  PRL_RETURN_IF_ERROR(prior_util::LoadParameters(artifact, "skill model", &model->impl_->block));
  return model;
}

absl::StatusOr<ModelArtifact> SkillModel::TrainingState(v1::ModelInfo info) const {
  PRL_ASSIGN_OR_RETURN(ModelArtifact state, ToArtifact(std::move(info)));
  PRL_RETURN_IF_ERROR(prior_util::AppendTrainingState(*impl_->adam, &impl_->generator, &state));
  return state;
}

absl::Status SkillModel::RestoreTrainingState(const ModelArtifact& state) {
  return prior_util::RestoreTrainingState(state, "skill model", &impl_->block, impl_->adam.get(),
                                          &impl_->generator);
}

}  // namespace prl::models
