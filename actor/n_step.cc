#include "actor/n_step.h"

#include <algorithm>
#include <utility>

#include "common/logging.h"

namespace prl::actor {

NStepWindows::NStepWindows(int num_envs, int n, double discount, int obs_dim, int action_dim)
    : n_(n),
      discount_(discount),
      obs_dim_(obs_dim),
      action_dim_(action_dim),
      windows_(num_envs),
      spare_(num_envs) {
  PRL_CHECK(num_envs >= 1 && n >= 1 && n <= kMaxSteps && discount > 0 && discount <= 1 &&
            obs_dim >= 1 && action_dim >= 1)
      << "NStepWindows(" << num_envs << ", " << n << ", " << discount << ", " << obs_dim << ", "
      << action_dim << ")";
  powers_.resize(n + 1);
  powers_[0] = 1;
  for (int k = 1; k <= n; ++k) powers_[k] = powers_[k - 1] * discount;
  for (auto& w : windows_) w.reserve(n);
  for (auto& s : spare_) s.reserve(n);
}

void NStepWindows::Add(int env, const Transition& t, bool ended,
                       const std::function<void(const Transition&)>& emit) {
  PRL_CHECK(env >= 0 && env < static_cast<int>(windows_.size())) << "env " << env;
  PRL_CHECK(static_cast<int>(t.observation.size()) == obs_dim_ &&
            static_cast<int>(t.action.size()) == action_dim_ &&
            static_cast<int>(t.next_observation.size()) == obs_dim_)
      << "transition of " << t.observation.size() << "/" << t.action.size() << "/"
      << t.next_observation.size() << " floats, expected " << obs_dim_ << "/" << action_dim_;
  std::vector<Row>& window = windows_[env];
  std::vector<Row>& spare = spare_[env];
  Row row;
  if (!spare.empty()) {
    row = std::move(spare.back());
    spare.pop_back();
  }
  row.observation.assign(t.observation.begin(), t.observation.end());
  row.action.assign(t.action.begin(), t.action.end());
  row.reward = 0;
  row.steps = 0;
  row.task_index = t.task_index;
  row.episode = t.episode;
  row.step = t.step;
  window.push_back(std::move(row));
  for (Row& r : window) r.reward += powers_[r.steps++] * t.reward;

  const bool terminated = t.discount == 0.0f;
  if (terminated || ended) {
    while (!window.empty()) {
      const bool last = window.size() == 1;
      const float discount =
          terminated ? 0.0f : static_cast<float>(powers_[window.front().steps - 1]);
      EmitOldest(env, t.next_observation, discount, last ? t.timeout : 0.0f, emit);
    }
    return;
  }
  if (window.front().steps == n_) {
    EmitOldest(env, t.next_observation, static_cast<float>(powers_[n_ - 1]), 0.0f, emit);
  }
}

void NStepWindows::EmitOldest(int env, absl::Span<const float> next_observation, float discount,
                              float timeout, const std::function<void(const Transition&)>& emit) {
  std::vector<Row>& window = windows_[env];
  Row& r = window.front();
  Transition out;
  out.observation = r.observation;
  out.action = r.action;
  out.reward = static_cast<float>(r.reward);
  out.discount = discount;
  out.next_observation = next_observation;
  out.env_steps = r.steps;
  out.task_index = r.task_index;
  out.episode = r.episode;
  out.step = r.step;
  out.timeout = timeout;
  emit(out);
  spare_[env].push_back(std::move(r));
  window.erase(window.begin());
}

}  // namespace prl::actor
