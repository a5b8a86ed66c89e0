// Flat SAC and TD3 behind the Algorithm interface: an Agent (learner/agent.h) trained on
// (observation, action, reward, discount, next_observation) rows of one replay table, acting
// every env step.
//
// Thread-compatible, like Agent.
#ifndef PRL_LEARNER_FLAT_ALGORITHM_H_
#define PRL_LEARNER_FLAT_ALGORITHM_H_

#include <memory>

#include "absl/status/statusor.h"
#include "learner/algorithm.h"

namespace prl::learner {

// Builds the sac or td3 algorithm of options.spec. Errors: those of Agent::Create
// (INVALID_ARGUMENT naming a field; FAILED_PRECONDITION for a CUDA device without one).
absl::StatusOr<std::unique_ptr<Algorithm>> CreateFlatAlgorithm(const AlgorithmOptions& options);

}  // namespace prl::learner

#endif  // PRL_LEARNER_FLAT_ALGORITHM_H_
