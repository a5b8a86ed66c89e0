// The policy an actor acts with: a batched map from observations to env actions, built from one
// published version of an experiment's policy (ActorService.GetPolicy). The actor loop acts only
// through this interface, so it never includes LibTorch: prl_actor wires the LibTorch network
// (models/torch_acting_policy.h) and tests use fakes.
#ifndef PRL_MODELS_ACTING_POLICY_H_
#define PRL_MODELS_ACTING_POLICY_H_

#include <cstdint>
#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "proto/actor.pb.h"

namespace prl::models {

// One immutable policy version. Not thread-safe: one acting thread calls Act (sampling advances
// the policy's own random stream).
class ActingPolicy {
 public:
  virtual ~ActingPolicy() = default;

  // Writes actions (n x action_dim, row-major; row i for observation row i) for observations
  // (n x obs_dim). deterministic: the mean action (evaluation); otherwise the training action
  // (a sample, or the mean plus exploration noise, as the architecture's head says). Spans hold
  // exactly n rows of obs_dim() and action_dim().
  virtual void Act(absl::Span<const float> obs, int n, bool deterministic,
                   absl::Span<float> actions) = 0;

  // MCAT's context-conditioned policies (PolicyArchitecture.context_dim > 0): K, the past
  // transitions of an env the policy's context encoder reads; 0 for every other policy, which
  // ignores ActInContext's context.
  virtual int context_history() const { return 0; }

  // The env-side inputs of a context-conditioned policy for n envs, row i for env i:
  struct Context {
    // n x (K + 1) x obs_dim: s_{t-K} .. s_t, the last one the current observation.
    absl::Span<const float> observations;
    // n x K x action_dim: a_{t-K} .. a_{t-1}.
    absl::Span<const float> actions;
    // n x K: 1 for a transition of the current episode, 0 (and zero rows above) before it.
    absl::Span<const float> mask;
    // n: the env's task index (Assignment.tasks), or empty when the assignment has no tasks
    // (every row then acts with the learned policy, no transfer).
    absl::Span<const int> task_index;
  };
  // Act for a context-conditioned policy: z_t = C(history), then π(s, z_t), or, for a task the
  // policy's TransferPlan sends to source task j, H(s, π(s, z^(j)), z^(j), z^(i)) from the task
  // features. `transferred` (n) is set to 1 for rows that acted with a translated policy, 0
  // otherwise. The default ignores the context: Act, and transferred all 0.
  virtual void ActInContext(absl::Span<const float> obs, int n, bool deterministic,
                            const Context& context, absl::Span<float> actions,
                            absl::Span<uint8_t> transferred) {
    (void)context;
    Act(obs, n, deterministic, actions);
    for (uint8_t& t : transferred) t = 0;
  }

  // The published version the weights come from (>= 1).
  virtual int64_t version() const = 0;
  // Sizes of one observation and one action row (the loop refuses a policy whose sizes differ
  // from the env's).
  virtual int obs_dim() const = 0;
  virtual int action_dim() const = 0;
};

// Builds an ActingPolicy from a policy a GetPolicy response carried (architecture and weights).
// Errors: INVALID_ARGUMENT for weights that do not match the architecture (missing, extra or
// mis-shaped names), UNIMPLEMENTED for an architecture the implementation cannot run.
using ActingPolicyFactory =
    std::function<absl::StatusOr<std::unique_ptr<ActingPolicy>>(const v1::Policy& policy)>;

}  // namespace prl::models

#endif  // PRL_MODELS_ACTING_POLICY_H_
