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
// Errors (from the factory): PolicyRunner's INVALID_ARGUMENT for weights that do not match
// the architecture, UNIMPLEMENTED for context-conditioned (MCAT) policies; UNIMPLEMENTED for
// latent outputs (they are decoded by the prior server, which the actor does not call yet).
ActingPolicyFactory TorchActingPolicyFactory(uint64_t seed);

}  // namespace prl::models

#endif  // PRL_MODELS_TORCH_ACTING_POLICY_H_
