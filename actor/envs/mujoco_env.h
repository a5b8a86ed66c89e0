// Base class of the MuJoCo domains: one shared read-only mjModel, one mjData per env, frame
// skip, action clipping, the time limit, warning accounting and qpos/qvel infos. Subclasses say
// how an episode starts, what the agent observes and what a step is worth.
//
// Not thread-safe (one thread steps an env at a time); the model is shared read-only.
#ifndef PRL_ACTOR_ENVS_MUJOCO_ENV_H_
#define PRL_ACTOR_ENVS_MUJOCO_ENV_H_

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "actor/envs/env.h"
#include "actor/envs/mujoco_model.h"
#include "env_desc/env_spec.h"

namespace prl::actor {

class MujocoEnv : public Env {
 public:
  const std::string& name() const override { return name_; }
  int obs_dim() const override { return obs_dim_; }
  int act_dim() const override { return model_->nu; }
  int max_episode_steps() const override { return max_episode_steps_; }
  double dt() const override { return model_->opt.timestep * frame_skip_; }

  void Seed(uint64_t seed) override { rng_.seed(seed); }
  void Reset(absl::Span<float> obs) override;
  StepResult Step(absl::Span<const float> action, absl::Span<float> obs) override;
  int elapsed_steps() const override { return steps_; }

  std::vector<InfoField> info_fields() const override;
  void GetInfo(absl::Span<float> info) const override;
  int64_t warnings() const override { return warnings_; }

  // Sets the simulation state (nq positions, nv velocities) mid-episode, for tests, replays and
  // evaluation from given states. INVALID_ARGUMENT on wrong sizes or non-finite values.
  absl::Status SetState(absl::Span<const double> qpos, absl::Span<const double> qvel);

  const mjModel& model() const { return *model_; }
  const mjData& data() const { return *data_; }

 protected:
  MujocoEnv(std::shared_ptr<const mjModel> model, const env_desc::EnvConfig& config);

  // Sets data().qpos / qvel for a new episode (after mj_resetData; mj_forward follows).
  virtual void ResetState() = 0;
  // Writes the observation of the current state.
  virtual void Observe(absl::Span<float> obs) const = 0;
  // Applies `ctrl` (clipped, act_dim values) by calling Simulate, and returns the reward,
  // termination and success of the step. The time limit is the base class's.
  virtual StepResult Transition(absl::Span<const double> ctrl) = 0;

  // Runs frame_skip physics steps with `ctrl`.
  void Simulate(absl::Span<const double> ctrl);

  mjData* mutable_data() { return data_.get(); }
  std::mt19937_64& rng() { return rng_; }
  double Uniform(double low, double high) {
    return std::uniform_real_distribution<double>(low, high)(rng_);
  }
  double Normal(double stddev) { return std::normal_distribution<double>(0.0, stddev)(rng_); }

 private:
  // Total of data().warning counters.
  int64_t WarningCounters() const;

  std::shared_ptr<const mjModel> model_;
  MjDataPtr data_;
  std::string name_;
  int obs_dim_;
  int frame_skip_;
  int max_episode_steps_;
  std::mt19937_64 rng_;
  std::vector<double> ctrl_;
  int steps_ = 0;
  bool done_ = true;
  int64_t warnings_ = 0;
};

// Sum of squares of `ctrl`.
double SquaredNorm(absl::Span<const double> ctrl);

}  // namespace prl::actor

#endif  // PRL_ACTOR_ENVS_MUJOCO_ENV_H_
