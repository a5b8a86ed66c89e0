#include "actor/envs/locomotion.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace prl::actor {
namespace {

// Adds U(-scale, scale) to qpos and `vel_noise` to qvel (uniform or normal), from qpos0.
template <typename PosNoise, typename VelNoise>
void PerturbInitialState(const mjModel& m, mjData* d, PosNoise pos_noise, VelNoise vel_noise) {
  for (int i = 0; i < m.nq; ++i) d->qpos[i] = m.qpos0[i] + pos_noise();
  for (int i = 0; i < m.nv; ++i) d->qvel[i] = vel_noise();
}

}  // namespace

// ---- cheetah ----

CheetahEnv::CheetahEnv(std::shared_ptr<const mjModel> model, const env_desc::EnvConfig& config)
    : MujocoEnv(std::move(model), config), direction_(config.task == "run_backward" ? -1.0 : 1.0) {}

void CheetahEnv::ResetState() {
  PerturbInitialState(
      model(), mutable_data(), [this] { return Uniform(-0.1, 0.1); },
      [this] { return Normal(0.1); });
}

void CheetahEnv::Observe(absl::Span<float> obs) const {
  const mjData& d = data();
  for (int i = 1; i < 9; ++i) obs[i - 1] = static_cast<float>(d.qpos[i]);
  for (int i = 0; i < 9; ++i) obs[8 + i] = static_cast<float>(d.qvel[i]);
}

StepResult CheetahEnv::Transition(absl::Span<const double> ctrl) {
  const double x_before = data().qpos[0];
  Simulate(ctrl);
  const double velocity = (data().qpos[0] - x_before) / dt();
  StepResult result;
  result.reward = static_cast<float>(direction_ * velocity - 0.1 * SquaredNorm(ctrl));
  return result;
}

// ---- hopper ----

HopperEnv::HopperEnv(std::shared_ptr<const mjModel> model, const env_desc::EnvConfig& config)
    : MujocoEnv(std::move(model), config),
      min_height_(0.7 * config.size_scale),
      torso_(mj_name2id(&this->model(), mjOBJ_BODY, "torso")) {}

void HopperEnv::ResetState() {
  PerturbInitialState(
      model(), mutable_data(), [this] { return Uniform(-0.005, 0.005); },
      [this] { return Uniform(-0.005, 0.005); });
}

void HopperEnv::Observe(absl::Span<float> obs) const {
  const mjData& d = data();
  for (int i = 1; i < 6; ++i) obs[i - 1] = static_cast<float>(d.qpos[i]);
  for (int i = 0; i < 6; ++i) obs[5 + i] = static_cast<float>(std::clamp(d.qvel[i], -10.0, 10.0));
}

bool HopperEnv::Healthy() const {
  const mjData& d = data();
  const double height = d.xpos[3 * torso_ + 2];
  const double pitch = d.qpos[2];
  if (!(height > min_height_) || !(std::abs(pitch) < 0.2)) return false;
  for (int i = 2; i < 6; ++i) {
    if (!(std::abs(d.qpos[i]) < 100)) return false;
  }
  for (int i = 0; i < 6; ++i) {
    if (!(std::abs(d.qvel[i]) < 100)) return false;
  }
  return true;
}

StepResult HopperEnv::Transition(absl::Span<const double> ctrl) {
  const double x_before = data().qpos[0];
  Simulate(ctrl);
  const double velocity = (data().qpos[0] - x_before) / dt();
  StepResult result;
  result.terminated = !Healthy();
  result.reward = static_cast<float>(velocity + 1.0 - 1e-3 * SquaredNorm(ctrl));
  return result;
}

// ---- ant ----

AntEnv::AntEnv(std::shared_ptr<const mjModel> model, const env_desc::EnvConfig& config)
    : MujocoEnv(std::move(model), config), crippled_leg_(config.crippled_leg) {}

void AntEnv::ResetState() {
  PerturbInitialState(
      model(), mutable_data(), [this] { return Uniform(-0.1, 0.1); },
      [this] { return Normal(0.1); });
}

void AntEnv::Observe(absl::Span<float> obs) const {
  const mjData& d = data();
  for (int i = 2; i < 15; ++i) obs[i - 2] = static_cast<float>(d.qpos[i]);
  for (int i = 0; i < 14; ++i) obs[13 + i] = static_cast<float>(d.qvel[i]);
}

StepResult AntEnv::Transition(absl::Span<const double> ctrl) {
  double applied[8];
  std::copy(ctrl.begin(), ctrl.end(), applied);
  if (crippled_leg_ >= 0) {
    applied[2 * crippled_leg_] = 0;
    applied[2 * crippled_leg_ + 1] = 0;
  }
  const double x_before = data().qpos[0];
  Simulate(absl::MakeConstSpan(applied, 8));
  const double velocity = (data().qpos[0] - x_before) / dt();
  const double height = data().qpos[2];
  StepResult result;
  result.terminated = !(height >= 0.2 && height <= 1.0);
  result.reward =
      static_cast<float>(velocity + 1.0 - 0.5 * SquaredNorm(absl::MakeConstSpan(applied, 8)));
  return result;
}

}  // namespace prl::actor
