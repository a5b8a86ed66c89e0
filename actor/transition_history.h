// MCAT's view of the recent past (paper §3.4): per env, a ring of the states and actions of the
// last transitions of its current episode. The runner reads it twice per step: before acting,
// for the context a context-conditioned policy encodes (ActingPolicy::Context: K transitions
// ending at the current state), and after stepping, for a row's history columns
// ("history_observation", "history_action", "history_mask": W transitions ending at the row's
// own next state). A transition's next state is the following transition's state, so the ring
// keeps (state, action) pairs and the caller supplies the newest state.
//
// Thread-compatible: one acting thread owns it.
#ifndef PRL_ACTOR_TRANSITION_HISTORY_H_
#define PRL_ACTOR_TRANSITION_HISTORY_H_

#include <vector>

#include "absl/types/span.h"

namespace prl::actor {

class TransitionHistory {
 public:
  // An empty history for `num_envs` envs keeping up to `capacity` (>= 0) transitions each.
  TransitionHistory(int num_envs, int capacity, int obs_dim, int action_dim);

  // Transitions kept per env at most.
  int capacity() const { return capacity_; }
  // Transitions env holds now (min(steps into its episode, capacity)).
  int size(int env) const { return count_[env]; }

  // Keeps up to `capacity` transitions per env from now on, the ones held included (it never
  // shrinks).
  void Grow(int capacity);
  // Forgets env's transitions: its next episode begins.
  void Reset(int env);
  // Records that env took `action` (action_dim floats) in state `obs` (obs_dim floats); the
  // oldest transition drops out once capacity are held. A no-op with capacity 0.
  void Push(int env, absl::Span<const float> obs, absl::Span<const float> action);

  // Writes env's last k transitions (0 <= k <= capacity), oldest first:
  //   observations  (k + 1) x obs_dim: their states, then `last` (obs_dim floats, the state after
  //                 the newest: the current state, or a row's next state)
  //   actions       k x action_dim
  //   mask          k: 1 for a transition of the current episode; 0, with a zero state and
  //                 action, for each of the leading slots the episode is too young to fill.
  // Spans hold exactly those sizes (CHECK-fails otherwise).
  void Fill(int env, int k, absl::Span<const float> last, absl::Span<float> observations,
            absl::Span<float> actions, absl::Span<float> mask) const;

 private:
  // Slot of env's i-th oldest transition held (0 <= i < count_[env]).
  int Slot(int env, int i) const;

  const int obs_dim_;
  const int action_dim_;
  int capacity_;
  // per env: capacity_ slots of states and actions, a ring starting at start_[env].
  std::vector<std::vector<float>> states_;
  std::vector<std::vector<float>> actions_;
  std::vector<int> start_;
  std::vector<int> count_;
};

}  // namespace prl::actor

#endif  // PRL_ACTOR_TRANSITION_HISTORY_H_
