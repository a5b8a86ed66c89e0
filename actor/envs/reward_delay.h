// Wraps an env so its reward is paid late (MCAT's sparse variants): with delay n > 0 the
// rewards of n steps are summed and paid on every n-th step, with -1 only when the episode
// ends; an episode's end always pays what is owed, so returns are unchanged.
// Not thread-safe, like the env it owns.
#ifndef PRL_ACTOR_ENVS_REWARD_DELAY_H_
#define PRL_ACTOR_ENVS_REWARD_DELAY_H_

#include <memory>

#include "actor/envs/env.h"

namespace prl::actor {

class RewardDelayEnv final : public Env {
 public:
  // `delay` is n > 0 or -1.
  RewardDelayEnv(std::unique_ptr<Env> env, int delay);

  const std::string& name() const override { return env_->name(); }
  int obs_dim() const override { return env_->obs_dim(); }
  int act_dim() const override { return env_->act_dim(); }
  int max_episode_steps() const override { return env_->max_episode_steps(); }
  double dt() const override { return env_->dt(); }
  void Seed(uint64_t seed) override { env_->Seed(seed); }
  void Reset(absl::Span<float> obs) override;
  StepResult Step(absl::Span<const float> action, absl::Span<float> obs) override;
  int elapsed_steps() const override { return env_->elapsed_steps(); }
  std::vector<InfoField> info_fields() const override { return env_->info_fields(); }
  void GetInfo(absl::Span<float> info) const override { env_->GetInfo(info); }
  int64_t warnings() const override { return env_->warnings(); }

  const Env& wrapped() const { return *env_; }

 private:
  std::unique_ptr<Env> env_;
  int delay_;
  double owed_ = 0;
};

}  // namespace prl::actor

#endif  // PRL_ACTOR_ENVS_REWARD_DELAY_H_
