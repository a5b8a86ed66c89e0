#include "learner/direct_td3.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "ATen/ATen.h"
#include "absl/status/status.h"
#include "learner/direct_shards.h"
#include "models/gemm.h"

namespace prl::learner::internal {
namespace {

using direct::Concat;
using direct::Data;
using models::dense::DenseMlp;
using models::dense::Grow;

}  // namespace

std::unique_ptr<DirectTd3Update> DirectTd3Update::Create(const models::PolicyNetwork& actor,
                                                         const models::PolicyNetwork& actor_target,
                                                         const models::QEnsemble& critic,
                                                         const models::QEnsemble& critic_target,
                                                         const AgentConfig& config) {
  if (!config.device.is_cpu() || config.gemm != models::GemmBackend::kOneDnn ||
      !models::FastSgemmAvailable() ||
      actor.head() != models::PolicyNetwork::Head::kDeterministic ||
      critic.ensemble() != critic_target.ensemble()) {
    return nullptr;
  }
  std::optional<DenseMlp> a = actor.Dense(), a_target = actor_target.Dense();
  if (!a || !a_target) return nullptr;
  std::vector<DenseMlp> q, target;
  for (int k = 0; k < critic.ensemble(); ++k) {
    std::optional<DenseMlp> member = critic.DenseMember(k);
    std::optional<DenseMlp> target_member = critic_target.DenseMember(k);
    if (!member || !target_member) return nullptr;
    q.push_back(*std::move(member));
    target.push_back(*std::move(target_member));
  }
  Shard prototype{*std::move(a), *std::move(a_target), std::move(q), std::move(target)};
  return std::unique_ptr<DirectTd3Update>(new DirectTd3Update(std::move(prototype), config));
}

DirectTd3Update::DirectTd3Update(Shard prototype, const AgentConfig& config)
    : prototype_(std::move(prototype)),
      obs_dim_(config.obs_dim),
      act_dim_(config.act_dim),
      members_(static_cast<int>(prototype_.critic.size())),
      discount_(config.algorithm.discount()),
      reward_scale_(config.algorithm.reward_scale()),
      max_grad_norm_(config.algorithm.max_grad_norm()),
      policy_noise_(static_cast<float>(config.algorithm.td3().policy_noise())),
      noise_clip_(static_cast<float>(config.algorithm.td3().noise_clip())) {}

bool DirectTd3Update::CriticPhase(Shard& s, const DeviceBatch& b, const float* noise, int64_t begin,
                                  int64_t n, int64_t sil_begin, int64_t m,
                                  const float* actor_target, const float* critic,
                                  const float* target, float* critic_grad) {
  const int64_t o = obs_dim_, a = act_dim_, in = obs_dim_ + act_dim_, rows = b.size;
  const float* next_obs = Data(b.next_obs) + begin * o;
  const float* reward = Data(b.reward) + begin;
  const float* discount = Data(b.discount) + begin;
  const float* weight = b.weight.defined() ? Data(b.weight) + begin : nullptr;
  const float* eps = noise + begin * a;

  // the target action: clip(π'(s') + clip(σ·ε, −c, c), −1, 1)
  if (!s.actor_target.Forward(actor_target, next_obs, o, n)) return false;
  const float* u = s.actor_target.head(0);
  float* next_action = Grow(&s.next_action, n * a);
  for (int64_t i = 0; i < n * a; ++i) {
    const float smoothing = std::clamp(eps[i] * policy_noise_, -noise_clip_, noise_clip_);
    next_action[i] = std::clamp(std::tanh(u[i]) + smoothing, -1.0f, 1.0f);
  }
  // y = r·scale + γ·d·min_k Q'_k(s', a')
  float* y = Grow(&s.y, n);
  if (!direct::TargetMinimum(s.target, target, next_obs, o, next_action, a, n, &s.x_next, y)) {
    return false;
  }
  const float gamma = static_cast<float>(discount_), scale = static_cast<float>(reward_scale_);
  for (int64_t i = 0; i < n; ++i) y[i] = reward[i] * scale + discount[i] * y[i] * gamma;

  // the critics on the batch's (s, a) rows, then the self-imitation rows, in one pass
  float* x = Grow(&s.x, (n + m) * in);
  Concat(Data(b.obs) + begin * o, o, Data(b.action) + begin * a, a, n, x);
  if (m > 0) {
    Concat(Data(b.sil_obs) + sil_begin * o, o, Data(b.sil_action) + sil_begin * a, a, m,
           x + n * in);
  }
  const int64_t total = n + m;
  float* g_q = Grow(&s.g_q, members_ * total);
  float* td = Grow(&s.td_error_abs, n);
  std::fill_n(td, n, 0.0f);
  float* advantage = Grow(&s.sil_advantage, m);
  std::fill_n(advantage, m, 0.0f);
  s.critic_loss = 0;
  s.sil_loss = 0;
  s.q_sum = 0;
  const float inv_rows = 1.0f / static_cast<float>(rows);
  const int64_t sil_rows = b.sil_obs.defined() ? b.sil_obs.size(0) : 0;
  const float sil_scale =
      sil_rows > 0 ? static_cast<float>(b.sil_coef) / static_cast<float>(sil_rows) : 0.0f;
  const float* sil_return = m > 0 ? Data(b.sil_return) + sil_begin : nullptr;
  const float* sil_weight =
      m > 0 && b.sil_weight.defined() ? Data(b.sil_weight) + sil_begin : nullptr;
  for (int k = 0; k < members_; ++k) {
    if (!s.critic[k].Forward(critic, x, in, total)) return false;
    const float* q = s.critic[k].head(0);
    float* g = g_q + k * total;
    direct::RegressionRows(q, y, weight, n, inv_rows, &s.critic_loss, &s.q_sum, td, g);
    for (int64_t j = 0; j < m; ++j) {
      // coef·½·mean_S w_S·((R − Q_k)_+)²: −coef·w_S·(R − Q_k)_+/S
      const float gap = std::max(sil_return[j] - q[n + j], 0.0f);
      const float w = sil_weight != nullptr ? sil_weight[j] : 1.0f;
      s.sil_loss += static_cast<double>(gap) * gap * w;
      advantage[j] = std::max(advantage[j], gap);
      g[n + j] = -sil_scale * w * gap;
    }
  }
  for (int64_t i = 0; i < n; ++i) td[i] /= static_cast<float>(members_);
  for (int k = 0; k < members_; ++k) {
    if (!s.critic[k].Backward(critic, {g_q + k * total}, critic_grad, nullptr, 0)) return false;
  }
  return true;
}

bool DirectTd3Update::ActorPhase(Shard& s, const DeviceBatch& b, int64_t begin, int64_t n,
                                 const float* actor, const float* critic, float* actor_grad) {
  const int64_t o = obs_dim_, a = act_dim_, in = obs_dim_ + act_dim_, rows = b.size;
  const float* obs = Data(b.obs) + begin * o;
  // −mean Q_1(s, tanh(π(s))) through the updated first critic (no gradient for its parameters)
  if (!s.actor.Forward(actor, obs, o, n)) return false;
  const float* u = s.actor.head(0);
  float* action = Grow(&s.action, n * a);
  for (int64_t i = 0; i < n * a; ++i) action[i] = std::tanh(u[i]);
  float* x = Grow(&s.x, n * in);
  Concat(obs, o, action, a, n, x);
  DenseMlp& q1 = s.critic[0];
  if (!q1.Forward(critic, x, in, n)) return false;
  s.actor_loss = 0;
  float* g_q = Grow(&s.g_q, n);
  const float inv_rows = 1.0f / static_cast<float>(rows);
  for (int64_t i = 0; i < n; ++i) {
    s.actor_loss -= q1.head(0)[i];
    g_q[i] = -inv_rows;
  }
  float* g_x = Grow(&s.g_x, n * in);
  if (!q1.Backward(critic, {g_q}, nullptr, g_x, in)) return false;
  // through the tanh to the policy's output
  float* g_action = Grow(&s.g_action, n * a);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < a; ++j) {
      const float t = action[i * a + j];
      g_action[i * a + j] = g_x[i * in + o + j] * (1.0f - t * t);
    }
  }
  return s.actor.Backward(actor, {g_action}, actor_grad, nullptr, 0);
}

absl::StatusOr<DirectTd3Update::Result> DirectTd3Update::Run(
    const DeviceBatch& batch, const at::Tensor& noise_in, bool actor_step,
    models::ParameterBlock* actor, FlatAdam* actor_adam, const models::ParameterBlock& actor_target,
    models::ParameterBlock* critic, FlatAdam* critic_adam,
    const models::ParameterBlock& critic_target) {
  DeviceBatch b = batch;
  for (at::Tensor* t : {&b.obs, &b.action, &b.reward, &b.next_obs, &b.discount, &b.weight,
                        &b.sil_obs, &b.sil_action, &b.sil_return, &b.sil_weight}) {
    if (t->defined()) *t = t->contiguous();
  }
  const at::Tensor noise = noise_in.contiguous();
  const int64_t rows = b.size;
  const int64_t sil_rows = b.sil_obs.defined() ? b.sil_obs.size(0) : 0;
  const int shards = direct::Shards(rows);
  while (static_cast<int>(shards_.size()) < shards) shards_.push_back(prototype_);
  const auto begin = [&](int64_t s) { return rows * s / shards; };
  const auto sil_begin = [&](int64_t s) { return sil_rows * s / shards; };
  const absl::Status failed = absl::InternalError("TD3 update: oneDNN sgemm failed");

  const float* critic_params = critic->flat().data_ptr<float>();
  if (!direct::ShardedStep(
          shards, critic, critic_adam, max_grad_norm_,
          [&](int s) { return &shards_[s].critic_grad; },
          [&](int s, float* grad) {
            return CriticPhase(shards_[s], b, noise.data_ptr<float>(), begin(s),
                               begin(s + 1) - begin(s), sil_begin(s),
                               sil_begin(s + 1) - sil_begin(s),
                               actor_target.flat().data_ptr<float>(), critic_params,
                               critic_target.flat().data_ptr<float>(), grad);
          })) {
    return failed;
  }
  if (actor_step &&
      !direct::ShardedStep(
          shards, actor, actor_adam, max_grad_norm_, [&](int s) { return &shards_[s].actor_grad; },
          [&](int s, float* grad) {
            return ActorPhase(shards_[s], b, begin(s), begin(s + 1) - begin(s),
                              actor->flat().data_ptr<float>(), critic_params, grad);
          })) {
    return failed;
  }

  Result r;
  r.td_error_abs.reserve(static_cast<size_t>(rows));
  r.has_sil = sil_rows > 0;
  double critic_sum = 0, sil_sum = 0, actor_sum = 0, q_sum = 0;
  for (int s = 0; s < shards; ++s) {
    const Shard& sh = shards_[s];
    critic_sum += sh.critic_loss;
    sil_sum += sh.sil_loss;
    actor_sum += sh.actor_loss;
    q_sum += sh.q_sum;
    const int64_t n = begin(s + 1) - begin(s), m = sil_begin(s + 1) - sil_begin(s);
    r.td_error_abs.insert(r.td_error_abs.end(), sh.td_error_abs.begin(),
                          sh.td_error_abs.begin() + n);
    r.sil_advantage.insert(r.sil_advantage.end(), sh.sil_advantage.begin(),
                           sh.sil_advantage.begin() + m);
  }
  r.sil_loss = r.has_sil ? 0.5 * sil_sum / static_cast<double>(sil_rows) : 0.0;
  r.critic_loss = 0.5 * critic_sum / static_cast<double>(rows) + r.sil_loss * b.sil_coef;
  r.actor_loss = actor_step ? actor_sum / static_cast<double>(rows) : 0.0;
  r.q_mean = q_sum / static_cast<double>(rows * members_);
  return r;
}

}  // namespace prl::learner::internal
