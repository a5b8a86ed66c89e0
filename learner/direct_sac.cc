#include "learner/direct_sac.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "ATen/ATen.h"
#include "absl/status/status.h"
#include "learner/direct_shards.h"
#include "models/cpu_kernels.h"
#include "models/gemm.h"

namespace prl::learner::internal {
namespace {

using models::dense::DenseMlp;

constexpr float kMinLogStd = static_cast<float>(models::kPolicyLogStdMin);
constexpr float kMaxLogStd = static_cast<float>(models::kPolicyLogStdMax);
constexpr float kMaxDivergence = static_cast<float>(kSpirlMaxDivergence);

using direct::Concat;
using direct::Data;
using models::dense::Grow;

}  // namespace

std::unique_ptr<DirectSacUpdate> DirectSacUpdate::Create(const models::PolicyNetwork& actor,
                                                         const models::QEnsemble& critic,
                                                         const models::QEnsemble& critic_target,
                                                         const AgentConfig& config,
                                                         const Output& output) {
  if (!config.device.is_cpu() || config.gemm != models::GemmBackend::kOneDnn ||
      !models::FastSgemmAvailable() ||
      actor.head() != models::PolicyNetwork::Head::kSquashedGaussian ||
      critic.ensemble() != critic_target.ensemble()) {
    return nullptr;
  }
  std::optional<DenseMlp> a = actor.Dense();
  if (!a) return nullptr;
  std::vector<DenseMlp> q, target;
  for (int k = 0; k < critic.ensemble(); ++k) {
    std::optional<DenseMlp> member = critic.DenseMember(k);
    std::optional<DenseMlp> target_member = critic_target.DenseMember(k);
    if (!member || !target_member) return nullptr;
    q.push_back(*std::move(member));
    target.push_back(*std::move(target_member));
  }
  Shard prototype{*a, *a, q, q, std::move(target)};
  return std::unique_ptr<DirectSacUpdate>(
      new DirectSacUpdate(std::move(prototype), config, output));
}

DirectSacUpdate::DirectSacUpdate(Shard prototype, const AgentConfig& config, const Output& output)
    : prototype_(std::move(prototype)),
      obs_dim_(config.obs_dim),
      act_dim_(config.act_dim),
      members_(static_cast<int>(prototype_.critic.size())),
      discount_(config.algorithm.discount()),
      reward_scale_(config.algorithm.reward_scale()),
      max_grad_norm_(config.algorithm.max_grad_norm()),
      output_(output),
      log_scale_(static_cast<float>(std::log(output.scale))),
      r_constant_(output.regularizer == SacRegularizer::kPriorKl
                      ? 0.0f
                      : static_cast<float>(
                            -std::log(output.bound) * static_cast<double>(config.act_dim) +
                            (output.regularizer == SacRegularizer::kKlToBase
                                 ? 0.5 * std::log(2.0 * M_PI) * static_cast<double>(config.act_dim)
                                 : 0.0))) {}

void DirectSacUpdate::Sample(const float* head, const float* eps, int64_t n, float* mean,
                             float* log_std, float* log_std_raw, float* action, float* regularizer,
                             const float* prior_mean, const float* prior_log_std,
                             float* divergence_raw) const {
  const int64_t a = act_dim_;
  const float inv_scale = static_cast<float>(1.0 / output_.scale);
  const bool scaled = output_.scale != 1.0;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < a; ++j) {
      const float raw = head[i * 2 * a + a + j];
      if (log_std_raw != nullptr) log_std_raw[i * a + j] = raw;
      // the head's clamp, then the scale (RegularizedSacAgent::Scaled)
      const float clamped = models::dense::Clamp(raw, kMinLogStd, kMaxLogStd);
      mean[i * a + j] = scaled ? head[i * 2 * a + j] * inv_scale : head[i * 2 * a + j];
      log_std[i * a + j] = scaled ? clamped - log_scale_ : clamped;
    }
  }
  models::kernels::SquashedGaussianForward(mean, log_std, eps, action, regularizer, n, a);
  if (output_.regularizer == SacRegularizer::kPriorKl) {
    // mean_j KL(N(μ_j, σ_j) ‖ N(μ_pj, σ_pj)), then the clip
    const float inv_dims = 1.0f / static_cast<float>(a);
    for (int64_t i = 0; i < n; ++i) {
      float sum = 0;
      for (int64_t j = 0; j < a; ++j) {
        const int64_t k = i * a + j;
        sum += models::dense::GaussianKlWithGradient(mean[k], log_std[k], prior_mean[k],
                                                     prior_log_std[k])
                   .kl;
      }
      const float divergence = sum * inv_dims;
      if (divergence_raw != nullptr) divergence_raw[i] = divergence;
      regularizer[i] = models::dense::Clamp(divergence, -kMaxDivergence, kMaxDivergence);
    }
    return;
  }
  const float b = static_cast<float>(output_.bound);
  for (int64_t i = 0; i < n; ++i) {
    float r = regularizer[i] + r_constant_;
    if (output_.regularizer == SacRegularizer::kKlToBase) {
      for (int64_t j = 0; j < a; ++j) r += action[i * a + j] * b * action[i * a + j] * b * 0.5f;
    }
    regularizer[i] = r;
  }
}

bool DirectSacUpdate::CriticPhase(Shard& s, const DeviceBatch& b, const float* noise,
                                  const PriorData& prior, int64_t begin, int64_t n, double alpha,
                                  const float* actor, const float* critic, const float* target,
                                  float* critic_grad) {
  const int64_t o = obs_dim_, a = act_dim_, in = obs_dim_ + act_dim_, rows = b.size;
  const float* obs = Data(b.obs) + begin * o;
  const float* next_obs = Data(b.next_obs) + begin * o;
  const float* action = Data(b.action) + begin * a;
  const float* reward = Data(b.reward) + begin;
  const float* discount = Data(b.discount) + begin;
  const float* weight = b.weight.defined() ? Data(b.weight) + begin : nullptr;
  const float* eps = noise + begin * a;
  const float* next_eps = noise + rows * a + begin * a;

  // the policy's sample at s (kept for the actor phase) and at s', with R
  const bool prior_kl = output_.regularizer == SacRegularizer::kPriorKl;
  const auto rows_of = [&](const float* p) { return prior_kl ? p + begin * a : nullptr; };
  if (!s.actor.Forward(actor, obs, o, n)) return false;
  Sample(s.actor.head(0), eps, n, Grow(&s.mean, n * a), Grow(&s.log_std, n * a),
         Grow(&s.log_std_raw, n * a), Grow(&s.action, n * a), Grow(&s.log_prob, n),
         rows_of(prior.mean), rows_of(prior.log_std),
         prior_kl ? Grow(&s.divergence_raw, n) : nullptr);
  if (!s.actor_next.Forward(actor, next_obs, o, n)) return false;
  Sample(s.actor_next.head(0), next_eps, n, Grow(&s.next_mean, n * a), Grow(&s.next_log_std, n * a),
         nullptr, Grow(&s.next_action, n * a), Grow(&s.next_log_prob, n), rows_of(prior.next_mean),
         rows_of(prior.next_log_std), nullptr);
  s.regularizer_sum = 0;
  for (int64_t i = 0; i < n; ++i) s.regularizer_sum += s.log_prob[i];
  const float bound = static_cast<float>(output_.bound);
  float* z = Grow(&s.z, n * a);
  for (int64_t i = 0; i < n * a; ++i) z[i] = s.next_action[i] * bound;

  // y = r·scale + γ·d·(min_k Q'_k(s', z') − α·R(s'))
  float* y = Grow(&s.y, n);
  if (!direct::TargetMinimum(s.target, target, next_obs, o, z, a, n, &s.x_next, y)) return false;
  const float gamma = static_cast<float>(discount_), scale = static_cast<float>(reward_scale_);
  const float alpha_f = static_cast<float>(alpha);
  for (int64_t i = 0; i < n; ++i) {
    y[i] = reward[i] * scale + discount[i] * (y[i] - alpha_f * s.next_log_prob[i]) * gamma;
  }

  // the critics on (s, a): ½·Σ_k mean_i w_i·(Q_k − y)², its gradient w_i·(Q_k − y)/B per row
  float* x = Grow(&s.x, n * in);
  Concat(obs, o, action, a, n, x);
  float* g_q = Grow(&s.g_q, members_ * n);
  float* td = Grow(&s.td_error_abs, n);
  std::fill_n(td, n, 0.0f);
  s.critic_loss = 0;
  s.q_sum = 0;
  const float inv_rows = 1.0f / static_cast<float>(rows);
  for (int k = 0; k < members_; ++k) {
    if (!s.critic[k].Forward(critic, x, in, n)) return false;
    direct::RegressionRows(s.critic[k].head(0), y, weight, n, inv_rows, &s.critic_loss, &s.q_sum,
                           td, g_q + k * n);
  }
  for (int64_t i = 0; i < n; ++i) td[i] /= static_cast<float>(members_);
  for (int k = 0; k < members_; ++k) {
    if (!s.critic[k].Backward(critic, {g_q + k * n}, critic_grad, nullptr, 0)) return false;
  }
  return true;
}

bool DirectSacUpdate::ActorPhase(Shard& s, const DeviceBatch& b, const float* noise,
                                 const PriorData& prior, int64_t begin, int64_t n, double alpha,
                                 const float* actor, const float* critic, float* actor_grad) {
  const int64_t o = obs_dim_, a = act_dim_, in = obs_dim_ + act_dim_, rows = b.size;
  const float* obs = Data(b.obs) + begin * o;
  const float* eps = noise + begin * a;
  // min_k Q_k(s, z) through the updated critics (no gradient for their parameters)
  const float bound = static_cast<float>(output_.bound);
  float* z = Grow(&s.z, n * a);
  for (int64_t i = 0; i < n * a; ++i) z[i] = s.action[i] * bound;
  float* x = Grow(&s.x_pi, n * in);
  Concat(obs, o, z, a, n, x);
  for (int k = 0; k < members_; ++k) {
    if (!s.critic_pi[k].Forward(critic, x, in, n)) return false;
  }
  // ∂/∂Q_k of −mean_i min_k Q_k: −1/B to the smallest (shared evenly among equal ones, as
  // at::amin's backward does)
  float* g_q = Grow(&s.g_q, members_ * n);
  const float inv_rows = 1.0f / static_cast<float>(rows);
  s.actor_loss = 0;
  for (int64_t i = 0; i < n; ++i) {
    float low = s.critic_pi[0].head(0)[i];
    for (int k = 1; k < members_; ++k) low = std::min(low, s.critic_pi[k].head(0)[i]);
    int ties = 0;
    for (int k = 0; k < members_; ++k) ties += s.critic_pi[k].head(0)[i] == low ? 1 : 0;
    for (int k = 0; k < members_; ++k) {
      g_q[k * n + i] = s.critic_pi[k].head(0)[i] == low ? -inv_rows / static_cast<float>(ties) : 0;
    }
    s.actor_loss += alpha * s.log_prob[i] - low;
  }
  // the gradient at tanh(u/s): the critics' input gradients' action columns summed over the
  // critics, times b (z = b·tanh), plus with the KL to the base α/B·∂(‖z‖²/2) = α/B·b·z
  float* g_x = Grow(&s.g_x, n * in);
  float* g_action = Grow(&s.g_action, n * a);
  std::fill_n(g_action, n * a, 0.0f);
  for (int k = 0; k < members_; ++k) {
    if (!s.critic_pi[k].Backward(critic, {g_q + k * n}, nullptr, g_x, in)) return false;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < a; ++j) g_action[i * a + j] += g_x[i * in + o + j];
    }
  }
  const float alpha_per_row = static_cast<float>(alpha) * inv_rows;
  for (int64_t i = 0; i < n * a; ++i) {
    g_action[i] *= bound;
    if (output_.regularizer == SacRegularizer::kKlToBase) {
      g_action[i] += alpha_per_row * bound * z[i];
    }
  }
  // through the sample (with R = log π, α·R's gradient α/B per row) to the Gaussian of u / s
  const bool prior_kl = output_.regularizer == SacRegularizer::kPriorKl;
  float* g_log_prob = nullptr;  // the divergence does not depend on the sample
  if (!prior_kl) {
    g_log_prob = Grow(&s.y, n);
    std::fill_n(g_log_prob, n, alpha_per_row);
  }
  float* g_mean = Grow(&s.g_mean, n * a);
  float* g_log_std = Grow(&s.g_log_std, n * a);
  models::kernels::SquashedGaussianBackward(g_action, g_log_prob, s.log_std.data(), eps,
                                            s.action.data(), g_mean, g_log_std, n, a);
  if (prior_kl) {
    // α/B·∂D/∂(μ, log σ) where D passed its clip: (1/A)·((μ − μ_p)/σ_p², (σ/σ_p)² − 1)·α/B
    const float coef = alpha_per_row / static_cast<float>(a);
    const float* prior_mean = prior.mean + begin * a;
    const float* prior_log_std = prior.log_std + begin * a;
    for (int64_t i = 0; i < n; ++i) {
      if (!models::dense::ClampPasses(s.divergence_raw[i], -kMaxDivergence, kMaxDivergence)) {
        continue;
      }
      for (int64_t j = 0; j < a; ++j) {
        const int64_t k = i * a + j;
        const models::dense::GaussianKl kl = models::dense::GaussianKlWithGradient(
            s.mean[k], s.log_std[k], prior_mean[k], prior_log_std[k]);
        g_mean[k] += coef * kl.d_mean_q;
        g_log_std[k] += coef * kl.d_log_std_q;
      }
    }
  }
  // then to the head's mean and clamped log σ
  const float inv_scale = static_cast<float>(1.0 / output_.scale);
  const bool scaled = output_.scale != 1.0;
  float* g_head = Grow(&s.g_head, n * 2 * a);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < a; ++j) {
      g_head[i * 2 * a + j] = scaled ? g_mean[i * a + j] * inv_scale : g_mean[i * a + j];
      const bool passes =
          models::dense::ClampPasses(s.log_std_raw[i * a + j], kMinLogStd, kMaxLogStd);
      g_head[i * 2 * a + a + j] = passes ? g_log_std[i * a + j] : 0.0f;
    }
  }
  return s.actor.Backward(actor, {g_head}, actor_grad, nullptr, 0);
}

absl::StatusOr<DirectSacUpdate::Result> DirectSacUpdate::Run(
    const DeviceBatch& batch, const at::Tensor& noise_in, double alpha,
    models::ParameterBlock* actor, FlatAdam* actor_adam, models::ParameterBlock* critic,
    FlatAdam* critic_adam, const models::ParameterBlock& critic_target,
    const PriorRows& prior_rows) {
  DeviceBatch b = batch;
  for (at::Tensor* t : {&b.obs, &b.action, &b.reward, &b.next_obs, &b.discount, &b.weight}) {
    if (t->defined()) *t = t->contiguous();
  }
  const at::Tensor noise = noise_in.contiguous();
  const int64_t rows = b.size;
  // p(z|s) at s and s' for the divergence
  PriorRows prior_tensors;
  PriorData prior;
  if (output_.regularizer == SacRegularizer::kPriorKl) {
    const std::pair<const at::Tensor*, at::Tensor*> parts[] = {
        {&prior_rows.mean, &prior_tensors.mean},
        {&prior_rows.log_std, &prior_tensors.log_std},
        {&prior_rows.next_mean, &prior_tensors.next_mean},
        {&prior_rows.next_log_std, &prior_tensors.next_log_std}};
    for (const auto& [in, out] : parts) {
      if (!in->defined() || in->dim() != 2 || in->size(0) != rows || in->size(1) != act_dim_ ||
          !in->is_cpu() || in->scalar_type() != at::kFloat) {
        return absl::InvalidArgumentError(
            "SAC update: the prior's rows must be four CPU float tensors [batch, latent]");
      }
      *out = in->contiguous();
    }
    prior = {prior_tensors.mean.data_ptr<float>(), prior_tensors.log_std.data_ptr<float>(),
             prior_tensors.next_mean.data_ptr<float>(),
             prior_tensors.next_log_std.data_ptr<float>()};
  }
  const int shards = direct::Shards(rows);
  while (static_cast<int>(shards_.size()) < shards) shards_.push_back(prototype_);
  const auto begin = [&](int64_t s) { return rows * s / shards; };
  const float* noise_data = noise.data_ptr<float>();
  const absl::Status failed = absl::InternalError("SAC update: oneDNN sgemm failed");

  // the critics' gradient, one row range per thread, then their step
  const float* critic_params = critic->flat().data_ptr<float>();
  if (!direct::ShardedStep(
          shards, critic, critic_adam, max_grad_norm_,
          [&](int s) { return &shards_[s].critic_grad; },
          [&](int s, float* grad) {
            return CriticPhase(shards_[s], b, noise_data, prior, begin(s), begin(s + 1) - begin(s),
                               alpha, actor->flat().data_ptr<float>(), critic_params,
                               critic_target.flat().data_ptr<float>(), grad);
          })) {
    return failed;
  }

  // the actor's gradient through the updated critics, then its step
  if (!direct::ShardedStep(
          shards, actor, actor_adam, max_grad_norm_, [&](int s) { return &shards_[s].actor_grad; },
          [&](int s, float* grad) {
            return ActorPhase(shards_[s], b, noise_data, prior, begin(s), begin(s + 1) - begin(s),
                              alpha, actor->flat().data_ptr<float>(), critic_params, grad);
          })) {
    return failed;
  }

  Result r;
  r.td_error_abs.reserve(static_cast<size_t>(rows));
  double critic_sum = 0, actor_sum = 0, q_sum = 0, regularizer_sum = 0;
  for (int s = 0; s < shards; ++s) {
    const Shard& sh = shards_[s];
    critic_sum += sh.critic_loss;
    actor_sum += sh.actor_loss;
    q_sum += sh.q_sum;
    regularizer_sum += sh.regularizer_sum;
    const int64_t n = begin(s + 1) - begin(s);
    r.td_error_abs.insert(r.td_error_abs.end(), sh.td_error_abs.begin(),
                          sh.td_error_abs.begin() + n);
  }
  r.critic_loss = 0.5 * critic_sum / static_cast<double>(rows);
  r.actor_loss = actor_sum / static_cast<double>(rows);
  r.q_mean = q_sum / static_cast<double>(rows * members_);
  r.mean_regularizer = regularizer_sum / static_cast<double>(rows);
  return r;
}

}  // namespace prl::learner::internal
