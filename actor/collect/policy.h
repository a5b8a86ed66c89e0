// The interface collectors and actors act through: a batched map from observations to
// actions. Scripted controllers, random policies and (later) trained networks implement it.
#ifndef PRL_ACTOR_COLLECT_POLICY_H_
#define PRL_ACTOR_COLLECT_POLICY_H_

#include <cstdint>
#include <random>
#include <string>

#include "absl/types/span.h"
#include "actor/envs/env.h"

namespace prl::actor {

// Not thread-safe: one collector drives a policy.
class Policy {
 public:
  virtual ~Policy() = default;

  // Called when env `index` of the batch starts an episode (after its Reset), so a policy can
  // read the task (a maze's goal, say) or clear per-episode state.
  virtual void OnEpisodeStart(int index, const Env& env) {}
  // Writes actions (n x act_dim) for observations (n x obs_dim), row i for env i.
  virtual void Act(absl::Span<const float> obs, absl::Span<float> actions) = 0;
  // A short description stored in dataset metadata, e.g. "random".
  virtual std::string Describe() const = 0;
};

// Uniform random actions in [-1, 1].
class RandomPolicy final : public Policy {
 public:
  explicit RandomPolicy(uint64_t seed) : rng_(seed) {}
  void Act(absl::Span<const float> obs, absl::Span<float> actions) override {
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    for (float& a : actions) a = uniform(rng_);
  }
  std::string Describe() const override { return "random"; }

 private:
  std::mt19937_64 rng_;
};

}  // namespace prl::actor

#endif  // PRL_ACTOR_COLLECT_POLICY_H_
