// The locomotion domains: cheetah (planar runner), hopper (planar one-legged hopper) and ant
// (quadruped). Each rewards forward velocity of its torso and charges for control; hopper and
// ant end the episode when they stop being healthy.
#ifndef PRL_ACTOR_ENVS_LOCOMOTION_H_
#define PRL_ACTOR_ENVS_LOCOMOTION_H_

#include <memory>

#include "actor/envs/mujoco_env.h"

namespace prl::actor {

// cheetah: obs = qpos[1:] (8) + qvel (9); reward = ±x-velocity − 0.1‖a‖² ("run_forward" +,
// "run_backward" −); no termination. Reset: qpos += U(−0.1, 0.1), qvel += 0.1·N(0, 1).
class CheetahEnv final : public MujocoEnv {
 public:
  CheetahEnv(std::shared_ptr<const mjModel> model, const env_desc::EnvConfig& config);

 protected:
  void ResetState() override;
  void Observe(absl::Span<float> obs) const override;
  StepResult Transition(absl::Span<const double> ctrl) override;

 private:
  double direction_;
};

// hopper: obs = qpos[1:] (5) + clip(qvel, ±10) (6); reward = x-velocity + 1 (alive) −
// 0.001‖a‖². Healthy while the torso is above 0.7·size_scale m, its pitch within ±0.2 rad and
// every other state value within ±100; the episode terminates when not. Reset noise U(±0.005).
class HopperEnv final : public MujocoEnv {
 public:
  HopperEnv(std::shared_ptr<const mjModel> model, const env_desc::EnvConfig& config);

 protected:
  void ResetState() override;
  void Observe(absl::Span<float> obs) const override;
  StepResult Transition(absl::Span<const double> ctrl) override;

 private:
  bool Healthy() const;
  double min_height_;
  int torso_;
};

// ant: obs = qpos[2:] (13) + qvel (14); reward = x-velocity + 1 (alive) − 0.5‖a‖². Terminates
// when the torso's height leaves [0.2, 1.0] m. A crippled leg's two actuators ignore their
// actions. Reset: qpos += U(±0.1), qvel += 0.1·N(0, 1).
class AntEnv final : public MujocoEnv {
 public:
  AntEnv(std::shared_ptr<const mjModel> model, const env_desc::EnvConfig& config);

 protected:
  void ResetState() override;
  void Observe(absl::Span<float> obs) const override;
  StepResult Transition(absl::Span<const double> ctrl) override;

 private:
  int crippled_leg_;
};

}  // namespace prl::actor

#endif  // PRL_ACTOR_ENVS_LOCOMOTION_H_
