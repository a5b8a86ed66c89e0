#include "models/cvae_model.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "ATen/CPUGeneratorImpl.h"
#include "absl/strings/str_cat.h"
#include "c10/core/InferenceMode.h"
#include "common/field_error.h"
#include "common/status_macros.h"
#include "models/dense_mlp.h"
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
    if (options.direct_cpu_step && prior_util::DirectStepAvailable(options.device)) {
      std::optional<dense::DenseMlp> e = encoder.Dense(block), d = decoder.Dense(block), p;
      if (prior) p = prior->Dense(block);
      if (e && d && (!prior || p)) {
        direct_prototype = DirectShard{*std::move(e), *std::move(d), std::move(p)};
      }
    }
  }

  // The autograd-free CPU step (CvaeModelOptions::direct_cpu_step): one shard's networks and
  // buffers.
  struct DirectShard {
    dense::DenseMlp encoder, decoder;
    std::optional<dense::DenseMlp> prior;
    std::vector<float> encoder_in, decoder_in, g_reconstruction, g_decoder_in;
    std::vector<float> g_q_mean, g_q_log_std, g_p_mean, g_p_log_std;
  };
  // Windows obs [count, k, O], actions [count, k, A] with ε [count, L]: `scale` times the
  // gradient of their mean loss into `grad` (the block's layout) and the terms.
  absl::StatusOr<prior_util::TermValues> DirectGradient(DirectShard& shard, const float* obs,
                                                        const float* actions, const float* eps,
                                                        int64_t count, float scale,
                                                        float* grad) const;
  // TrainStep (with `step`) or Gradient (the gradient left in block.flat_grad()).
  absl::StatusOr<Losses> Step(const WindowBatch& batch, bool step);

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
  std::optional<DirectShard> direct_prototype;  // set when the direct path applies
  std::vector<DirectShard> direct;
  std::vector<std::vector<float>> direct_shard_grads;
};

namespace {

using dense::Grow;
using prior_util::ClampLogStd;
constexpr auto ClampPasses = prior_util::LogStdClampPasses;

}  // namespace

absl::StatusOr<prior_util::TermValues> CvaeModel::Impl::DirectGradient(
    DirectShard& sh, const float* obs, const float* actions, const float* eps, int64_t count,
    float scale, float* grad) const {
  const int64_t k = options.horizon, o = options.obs_dim, a = options.act_dim,
                l = options.latent_dim;
  const float* params = block.flat().data_ptr<float>();
  const absl::Status sgemm_failed = absl::InternalError("CVAE training step: oneDNN sgemm failed");
  // q(z | s_1, a_1:k) on [s_1, a_1:k]; s_1 is each window's first state (row stride k·O)
  const int64_t enc_in = o + k * a;
  float* xe = Grow(&sh.encoder_in, count * enc_in);
  for (int64_t b = 0; b < count; ++b) {
    std::copy_n(obs + b * k * o, o, xe + b * enc_in);
    std::copy_n(actions + b * k * a, k * a, xe + b * enc_in + o);
  }
  if (!sh.encoder.Forward(params, xe, enc_in, count)) return sgemm_failed;
  const float* q_mean = sh.encoder.head(0);
  const float* q_raw = sh.encoder.head(1);
  // the decoder on [s_1, z], z = μ + σ·ε
  const int64_t dec_in = o + l;
  float* xd = Grow(&sh.decoder_in, count * dec_in);
  for (int64_t b = 0; b < count; ++b) {
    std::copy_n(obs + b * k * o, o, xd + b * dec_in);
    for (int64_t j = 0; j < l; ++j) {
      const int64_t i = b * l + j;
      xd[b * dec_in + o + j] = q_mean[i] + std::exp(ClampLogStd(q_raw[i])) * eps[i];
    }
  }
  if (!sh.decoder.Forward(params, xd, dec_in, count)) return sgemm_failed;
  const float* p_mean = nullptr;
  const float* p_raw = nullptr;
  if (sh.prior) {
    if (!sh.prior->Forward(params, obs, k * o, count)) return sgemm_failed;
    p_mean = sh.prior->head(0);
    p_raw = sh.prior->head(1);
  }

  // reconstruction: mean squared error over [count, k, A]
  const int64_t n_rec = count * k * a;
  const float* reconstruction = sh.decoder.head(0);
  float* g_rec = Grow(&sh.g_reconstruction, n_rec);
  const double rec_sum =
      dense::SquaredErrorWithGradient(reconstruction, actions, n_rec, scale, g_rec);
  float* g_x = Grow(&sh.g_decoder_in, count * dec_in);
  if (!sh.decoder.Backward(params, {g_rec}, grad, g_x, dec_in)) return sgemm_failed;

  // β·KL(q ‖ prior), mean over [count, L], into q and into a learned prior
  float* g_qm = Grow(&sh.g_q_mean, count * l);
  float* g_ql = Grow(&sh.g_q_log_std, count * l);
  float* g_pm = Grow(&sh.g_p_mean, count * l);
  float* g_pl = Grow(&sh.g_p_log_std, count * l);
  const float kl_scale = scale * static_cast<float>(options.beta) / static_cast<float>(count * l);
  double kl_sum = 0;
  for (int64_t b = 0; b < count; ++b) {
    for (int64_t j = 0; j < l; ++j) {
      const int64_t i = b * l + j;
      const float mq = q_mean[i], lq = ClampLogStd(q_raw[i]);
      const dense::GaussianKl kl =
          p_mean != nullptr
              ? dense::GaussianKlWithGradient(mq, lq, p_mean[i], ClampLogStd(p_raw[i]))
              : dense::GaussianKlWithGradient(mq, lq, 0.0f, 0.0f);
      kl_sum += kl.kl;
      const float g_z = g_x[b * dec_in + o + j];
      g_qm[i] = g_z + kl_scale * kl.d_mean_q;
      const float g_lq = g_z * std::exp(lq) * eps[i] + kl_scale * kl.d_log_std_q;
      g_ql[i] = ClampPasses(q_raw[i]) ? g_lq : 0.0f;
      if (p_mean != nullptr) {
        g_pm[i] = kl_scale * kl.d_mean_p;
        g_pl[i] = ClampPasses(p_raw[i]) ? kl_scale * kl.d_log_std_p : 0.0f;
      }
    }
  }
  if (!sh.encoder.Backward(params, {g_qm, g_ql}, grad, nullptr, 0)) return sgemm_failed;
  if (sh.prior && !sh.prior->Backward(params, {g_pm, g_pl}, grad, nullptr, 0)) {
    return sgemm_failed;
  }
  const double reconstruction_loss = rec_sum / static_cast<double>(n_rec);
  const double kl_loss = kl_sum / static_cast<double>(count * l);
  return prior_util::TermValues{{"loss", reconstruction_loss + kl_loss * options.beta},
                                {"reconstruction_loss", reconstruction_loss},
                                {"kl_loss", kl_loss}};
}

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
  return impl_->Step(batch, /*step=*/true);
}

absl::StatusOr<Losses> CvaeModel::Gradient(const WindowBatch& batch, at::Tensor* flat_grad) {
  PRL_ASSIGN_OR_RETURN(Losses losses, impl_->Step(batch, /*step=*/false));
  *flat_grad = impl_->block.flat_grad().detach().clone();
  return losses;
}

absl::StatusOr<Losses> CvaeModel::Impl::Step(const WindowBatch& batch, bool step) {
  const CvaeModelOptions& o = options;
  PRL_ASSIGN_OR_RETURN(
      WindowBatch b, prior_util::PrepareWindows(batch, o.horizon, o.obs_dim, o.act_dim, o.device));
  Impl& m = *this;
  const prior_util::VaeTraining training{
      &m.block, step ? m.adam.get() : nullptr, &m.generator, o.lr, o.latent_dim, o.device};
  const int64_t rows = b.obs.size(0);
  if (m.direct_prototype) {
    const int shards = prior_util::TrainingShards(rows, 1, o.device);
    while (static_cast<int>(m.direct.size()) < shards) m.direct.push_back(*m.direct_prototype);
    return prior_util::DirectVaeTrainStep(
        "CVAE", training, b,
        [&](int shard, const float* obs, const float* actions, const float* noise, int64_t count,
            float scale, float* grad) {
          return m.DirectGradient(m.direct[shard], obs, actions, noise, count, scale, grad);
        },
        &m.direct_shard_grads);
  }
  return prior_util::VaeTrainStep(
      "CVAE", training, rows,
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
