// n-step returns on the actor. A one-step TD target moves a reward back one transition per
// update sweep, which on a sparse-reward task with long episodes (a maze with 2,000-step
// episodes and one decision per step) is slower than the policy's entropy decays. With n > 1
// each stored row spans up to n env steps instead:
//
//   (s_t, a_t, R = Σ_{k<m} γ^k r_{t+k}, discount γ^{m-1}, s_{t+m}),   m = n,
//
// so the learner's unchanged target r + γ · discount · V(s') is R + γ^m V(s_{t+m}) — the n-step
// return of Acme's and D4PG's adders, with off-policy bias in the n-1 intermediate actions and
// no entropy bonus for them. At the end of an episode every pending row is written with the
// steps it has (m < n): with discount 0 when the episode terminated, and bootstrapping from the
// final state when it was truncated.
//
// Thread-compatible: one acting thread owns it.
#ifndef PRL_ACTOR_N_STEP_H_
#define PRL_ACTOR_N_STEP_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "actor/transition_buffer.h"

namespace prl::actor {

class NStepWindows {
 public:
  // Longest window accepted by the learner's spec validation, and here.
  static constexpr int kMaxSteps = 1000;

  // Windows of `n` (1..kMaxSteps) steps with per-step discount `discount` (in (0, 1]) for
  // `num_envs` envs, rows of obs_dim states and action_dim actions. CHECK-fails otherwise.
  NStepWindows(int num_envs, int n, double discount, int obs_dim, int action_dim);

  int n() const { return n_; }
  // Rows env holds that are not yet written (0..n-1 between calls).
  int pending(int env) const { return static_cast<int>(windows_[env].size()); }

  // Adds env's one-step transition `t` (t.discount 0 when the episode terminated there; its
  // spans are read during the call only). `ended`: the episode ended with it (terminated or
  // truncated). Calls `emit` with every row complete now, oldest first; the row's spans are
  // valid during that call only. A row keeps the first step's observation, action, task index,
  // episode and step; its env_steps is the number of steps it spans; its timeout is t's for the
  // row ending the episode by its time limit, else 0.
  void Add(int env, const Transition& t, bool ended,
           const std::function<void(const Transition&)>& emit);

  // Drops env's pending rows (its episode was abandoned).
  void Reset(int env) { windows_[env].clear(); }

 private:
  struct Row {
    std::vector<float> observation, action;
    double reward = 0;  // Σ γ^k r_{t+k} over the steps seen
    int steps = 0;      // m, steps seen
    int64_t task_index = 0, episode = 0, step = 0;
  };
  // Writes env's oldest row with `next_observation` and `discount`, then drops it.
  void EmitOldest(int env, absl::Span<const float> next_observation, float discount, float timeout,
                  const std::function<void(const Transition&)>& emit);

  int n_;
  double discount_;
  int obs_dim_, action_dim_;
  std::vector<double> powers_;             // γ^k for k = 0..n
  std::vector<std::vector<Row>> windows_;  // per env, oldest first (at most n)
  std::vector<std::vector<Row>> spare_;    // per env, rows to reuse (no allocation per step)
};

}  // namespace prl::actor

#endif  // PRL_ACTOR_N_STEP_H_
