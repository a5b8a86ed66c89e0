// The environment interface every PRL domain implements: Reset and Step on caller-owned float
// buffers, no I/O, deterministic for a seed. Actions are clipped to [-1, 1].
//
// An Env is not thread-safe; BatchedEnv steps many envs on a worker pool, one thread per env at
// a time.
#ifndef PRL_ACTOR_ENVS_ENV_H_
#define PRL_ACTOR_ENVS_ENV_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/types/span.h"

namespace prl::actor {

// What Step returns besides the observation.
struct StepResult {
  float reward = 0;
  // The episode reached a terminal state (fell over, reached the goal): no bootstrapping.
  bool terminated = false;
  // The episode hit its time limit: bootstrap from the final observation.
  bool truncated = false;
  // The task was achieved (point_maze: the goal was reached).
  bool success = false;
  bool done() const { return terminated || truncated; }
};

// A named float vector an env reports per step besides its observation (datasets store them
// as infos/<name>), e.g. qpos, qvel, goal.
struct InfoField {
  std::string name;
  int dim = 0;
};

class Env {
 public:
  virtual ~Env() = default;

  // Short domain name ("cheetah", ...).
  virtual const std::string& name() const = 0;
  virtual int obs_dim() const = 0;
  virtual int act_dim() const = 0;
  // Env steps per episode before truncation.
  virtual int max_episode_steps() const = 0;
  // Simulated seconds per env step.
  virtual double dt() const = 0;

  // Reseeds the env's random stream (reset noise, random starts). The same seed and actions
  // give the same observations.
  virtual void Seed(uint64_t seed) = 0;
  // Starts an episode and writes its first observation (obs_dim floats).
  virtual void Reset(absl::Span<float> obs) = 0;
  // Applies `action` (act_dim floats, clipped to [-1, 1]; NaN reads as 0) and writes the next
  // observation. Calling Step after a done step without Reset is a programmer error.
  virtual StepResult Step(absl::Span<const float> action, absl::Span<float> obs) = 0;
  // Steps taken in the current episode.
  virtual int elapsed_steps() const = 0;

  // Extra per-step data, in this order, written by GetInfo.
  virtual std::vector<InfoField> info_fields() const { return {}; }
  // Writes the info fields (sum of their dims) for the current state.
  virtual void GetInfo(absl::Span<float> info) const {}
  // Sum of info_fields() dims.
  int info_dim() const;
  // MuJoCo warnings this env's simulation raised so far (0 for a healthy model).
  virtual int64_t warnings() const { return 0; }
};

inline int Env::info_dim() const {
  int dim = 0;
  for (const InfoField& f : info_fields()) dim += f.dim;
  return dim;
}

}  // namespace prl::actor

#endif  // PRL_ACTOR_ENVS_ENV_H_
