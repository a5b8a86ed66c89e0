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
