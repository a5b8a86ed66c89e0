// ActingPolicy over the learner's policy network (models/policy_runner.h): prl_actor acts
// with it on the CPU. This header includes no LibTorch header; the network lives behind
// PolicyRunner's pointer. Set LibTorch's threads once per process with
// models::SetPolicyThreads (an actor's policy needs one).
#ifndef PRL_MODELS_TORCH_ACTING_POLICY_H_
#define PRL_MODELS_TORCH_ACTING_POLICY_H_

#include <cstdint>

#include "models/acting_policy.h"

namespace prl::models {

// A factory building each published version with PolicyRunner::FromProto. Each policy draws
// its sampling and exploration noise from its own engine, seeded from `seed` and the version.
// Context-conditioned (MCAT) policies act with their context encoder and transfer plan in
// ActInContext; their plain Act uses the context of an empty history (every transition
// masked) and each row's own policy. Errors (from the factory): PolicyRunner's
// INVALID_ARGUMENT for an architecture, weights or transfer plan that do not fit,
// UNIMPLEMENTED for a latent output with a context.
ActingPolicyFactory TorchActingPolicyFactory(uint64_t seed);

}  // namespace prl::models

#endif  // PRL_MODELS_TORCH_ACTING_POLICY_H_
