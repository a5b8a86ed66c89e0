#include "actor/envs/reward_delay.h"

#include "common/logging.h"

namespace prl::actor {

RewardDelayEnv::RewardDelayEnv(std::unique_ptr<Env> env, int delay)
    : env_(std::move(env)), delay_(delay) {
  PRL_CHECK(delay_ > 0 || delay_ == -1) << "delay " << delay_;
}

void RewardDelayEnv::Reset(absl::Span<float> obs) {
  owed_ = 0;
  env_->Reset(obs);
}

StepResult RewardDelayEnv::Step(absl::Span<const float> action, absl::Span<float> obs) {
  StepResult result = env_->Step(action, obs);
  owed_ += result.reward;
  const bool pay = result.done() || (delay_ > 0 && env_->elapsed_steps() % delay_ == 0);
  if (pay) {
    result.reward = static_cast<float>(owed_);
    owed_ = 0;
  } else {
    result.reward = 0;
  }
  return result;
}

}  // namespace prl::actor
