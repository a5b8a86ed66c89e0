#include "actor/envs/mujoco_env.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace prl::actor {

MujocoEnv::MujocoEnv(std::shared_ptr<const mjModel> model, const env_desc::EnvConfig& config)
    : model_(std::move(model)),
      data_(mj_makeData(model_.get())),
      name_(config.domain->name),
      obs_dim_(config.domain->obs_dim),
      frame_skip_(config.domain->frame_skip),
      max_episode_steps_(config.episode_length),
      rng_(static_cast<uint64_t>(config.seed)),
      ctrl_(model_->nu, 0.0) {
  InstallMujocoHandlers();
  PRL_CHECK(model_->nu == config.domain->act_dim);
}

int64_t MujocoEnv::WarningCounters() const {
  int64_t total = 0;
  for (int i = 0; i < mjNWARNING; ++i) total += data_->warning[i].number;
  return total;
}

void MujocoEnv::Reset(absl::Span<float> obs) {
  PRL_CHECK(static_cast<int>(obs.size()) == obs_dim_);
  mj_resetData(model_.get(), data_.get());
  ResetState();
  mj_forward(model_.get(), data_.get());
  steps_ = 0;
  done_ = false;
  Observe(obs);
}

void MujocoEnv::Simulate(absl::Span<const double> ctrl) {
  std::copy(ctrl.begin(), ctrl.end(), data_->ctrl);
  for (int i = 0; i < frame_skip_; ++i) mj_step(model_.get(), data_.get());
}

StepResult MujocoEnv::Step(absl::Span<const float> action, absl::Span<float> obs) {
  PRL_CHECK(!done_) << name_ << ": Step after the episode ended; call Reset";
  PRL_CHECK(static_cast<int>(action.size()) == model_->nu);
  PRL_CHECK(static_cast<int>(obs.size()) == obs_dim_);
  // clip actions; NaN reads as 0
  for (int i = 0; i < model_->nu; ++i) {
    const float a = action[i];
    ctrl_[i] = std::isnan(a) ? 0.0 : std::clamp(static_cast<double>(a), -1.0, 1.0);
  }
  const int64_t warnings_before = WarningCounters();
  StepResult result = Transition(ctrl_);
  ++steps_;
  // a simulation that warned (unstable, reset by MuJoCo) ends the episode
  const int64_t new_warnings = WarningCounters() - warnings_before;
  if (new_warnings > 0) {
    warnings_ += new_warnings;
    result.terminated = true;
    result.reward = 0;
  }
  if (!result.terminated && steps_ >= max_episode_steps_) result.truncated = true;
  done_ = result.done();
  Observe(obs);
  return result;
}

absl::Status MujocoEnv::SetState(absl::Span<const double> qpos, absl::Span<const double> qvel) {
  if (static_cast<int>(qpos.size()) != model_->nq || static_cast<int>(qvel.size()) != model_->nv) {
    return absl::InvalidArgumentError(absl::StrCat(name_, ": state needs ", model_->nq,
                                                   " qpos and ", model_->nv, " qvel values, got ",
                                                   qpos.size(), " and ", qvel.size()));
  }
  for (double v : qpos) {
    if (!std::isfinite(v)) return absl::InvalidArgumentError(name_ + ": qpos is not finite");
  }
  for (double v : qvel) {
    if (!std::isfinite(v)) return absl::InvalidArgumentError(name_ + ": qvel is not finite");
  }
  std::copy(qpos.begin(), qpos.end(), data_->qpos);
  std::copy(qvel.begin(), qvel.end(), data_->qvel);
  mj_forward(model_.get(), data_.get());
  return absl::OkStatus();
}

std::vector<InfoField> MujocoEnv::info_fields() const {
  return {{"qpos", model_->nq}, {"qvel", model_->nv}};
}

void MujocoEnv::GetInfo(absl::Span<float> info) const {
  PRL_CHECK(static_cast<int>(info.size()) >= model_->nq + model_->nv);
  for (int i = 0; i < model_->nq; ++i) info[i] = static_cast<float>(data_->qpos[i]);
  for (int i = 0; i < model_->nv; ++i) info[model_->nq + i] = static_cast<float>(data_->qvel[i]);
}

double SquaredNorm(absl::Span<const double> ctrl) {
  double sum = 0;
  for (double c : ctrl) sum += c * c;
  return sum;
}

}  // namespace prl::actor
