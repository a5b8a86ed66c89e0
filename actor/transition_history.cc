#include "actor/transition_history.h"

#include <algorithm>
#include <utility>

#include "common/logging.h"

namespace prl::actor {

TransitionHistory::TransitionHistory(int num_envs, int capacity, int obs_dim, int action_dim)
    : obs_dim_(obs_dim),
      action_dim_(action_dim),
      capacity_(std::max(0, capacity)),
      states_(num_envs, std::vector<float>(static_cast<size_t>(capacity_) * obs_dim)),
      actions_(num_envs, std::vector<float>(static_cast<size_t>(capacity_) * action_dim)),
      start_(num_envs, 0),
      count_(num_envs, 0) {}

int TransitionHistory::Slot(int env, int i) const { return (start_[env] + i) % capacity_; }

void TransitionHistory::Grow(int capacity) {
  if (capacity <= capacity_) return;
  // lay every env's ring out oldest first in the larger buffers
  for (size_t env = 0; env < states_.size(); ++env) {
    std::vector<float> states(static_cast<size_t>(capacity) * obs_dim_);
    std::vector<float> actions(static_cast<size_t>(capacity) * action_dim_);
    for (int i = 0; i < count_[env]; ++i) {
      const size_t slot = Slot(static_cast<int>(env), i);
      std::copy_n(states_[env].begin() + slot * obs_dim_, obs_dim_,
                  states.begin() + static_cast<size_t>(i) * obs_dim_);
      std::copy_n(actions_[env].begin() + slot * action_dim_, action_dim_,
                  actions.begin() + static_cast<size_t>(i) * action_dim_);
    }
    states_[env] = std::move(states);
    actions_[env] = std::move(actions);
    start_[env] = 0;
  }
  capacity_ = capacity;
}

void TransitionHistory::Reset(int env) {
  start_[env] = 0;
  count_[env] = 0;
}

void TransitionHistory::Push(int env, absl::Span<const float> obs, absl::Span<const float> action) {
  PRL_CHECK(static_cast<int>(obs.size()) == obs_dim_ &&
            static_cast<int>(action.size()) == action_dim_)
      << "pushing a transition of sizes " << obs.size() << "/" << action.size();
  if (capacity_ == 0) return;
  int slot;
  if (count_[env] < capacity_) {
    slot = Slot(env, count_[env]++);
  } else {
    // full: the oldest slot takes the new transition and the ring starts one later
    slot = start_[env];
    start_[env] = (start_[env] + 1) % capacity_;
  }
  std::copy(obs.begin(), obs.end(), states_[env].begin() + static_cast<size_t>(slot) * obs_dim_);
  std::copy(action.begin(), action.end(),
            actions_[env].begin() + static_cast<size_t>(slot) * action_dim_);
}

void TransitionHistory::Fill(int env, int k, absl::Span<const float> last,
                             absl::Span<float> observations, absl::Span<float> actions,
                             absl::Span<float> mask) const {
  PRL_CHECK(k >= 0 && k <= capacity_ &&
            observations.size() == static_cast<size_t>(k + 1) * obs_dim_ &&
            actions.size() == static_cast<size_t>(k) * action_dim_ &&
            mask.size() == static_cast<size_t>(k) && last.size() == static_cast<size_t>(obs_dim_))
      << "filling " << k << " transitions of capacity " << capacity_ << " into "
      << observations.size() << "/" << actions.size() << "/" << mask.size() << " floats";
  // the episode's transitions fill the last `held` of the k slots; zeros before them
  const int held = std::min(k, count_[env]);
  const int empty = k - held;
  std::fill_n(observations.begin(), static_cast<size_t>(empty) * obs_dim_, 0.0f);
  std::fill_n(actions.begin(), static_cast<size_t>(empty) * action_dim_, 0.0f);
  std::fill_n(mask.begin(), empty, 0.0f);
  for (int i = 0; i < held; ++i) {
    const size_t slot = Slot(env, count_[env] - held + i);
    const size_t out = static_cast<size_t>(empty + i);
    std::copy_n(states_[env].begin() + slot * obs_dim_, obs_dim_,
                observations.begin() + out * obs_dim_);
    std::copy_n(actions_[env].begin() + slot * action_dim_, action_dim_,
                actions.begin() + out * action_dim_);
    mask[out] = 1.0f;
  }
  std::copy(last.begin(), last.end(), observations.begin() + static_cast<size_t>(k) * obs_dim_);
}

}  // namespace prl::actor
