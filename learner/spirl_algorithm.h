// The spirl method behind the Algorithm interface: the experiment's skill prior (spec.prior,
// version 0 resolved to the newest in the learner's model store when the run is built) is loaded
// on the learner for the KL term, the agent is learner/spirl_agent.h, and actors are told to act
// every H env steps with z decoded by that prior (served by the prior server at prior_address),
// storing (s, z, reward summed over the decision, discount, s', env steps taken). The resolved
// prior version is pinned: SaveState records it and RestoreState rebuilds the agent on it when
// another version would be loaded now, so a resumed run keeps the prior it started with.
#ifndef PRL_LEARNER_SPIRL_ALGORITHM_H_
#define PRL_LEARNER_SPIRL_ALGORITHM_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "learner/algorithm.h"
#include "learner/model_store.h"

namespace prl::learner {

// Where a spirl run finds its prior.
struct SpirlContext {
  // The learner's model store (not owned).
  const ModelStore* models = nullptr;
  // host:port of the prior server actors decode with ("" when there is none).
  std::string prior_address;
};

// Errors: INVALID_ARGUMENT naming spec.prior for a prior that is not a SKILL_VAE, or whose
// state and action dimensions are not the env's; NOT_FOUND for a prior the store lacks;
// CreateSpirlAgent's. (Every Create* here accepts any of the three methods; the names say
// which one the caller registers.)
absl::StatusOr<std::unique_ptr<Algorithm>> CreateSpirlAlgorithm(const AlgorithmOptions& options,
                                                                const SpirlContext& context);

// PARROT (Singh et al. 2020) the same way: SAC over the latent z of a REAL_NVP_FLOW prior
// (latent = action dimension; the policy starts as the flow's base N(0, I) and its output is
// squashed to ±parrot.latent_bound); actors map z to the action with a = f(z; s) every step
// through the prior, and store (s, z, r, discount, s'). The learner does not load the flow.
// Errors: as CreateSpirlAlgorithm's, for a REAL_NVP_FLOW.
//
// With a CVAE prior of horizon 1 instead this is the latent SAC of the half-cheetah transfer
// report: SAC over the CVAE's latent (its latent_dim), actors decode a = g(s, z) every step
// (the exported policy says OUTPUT_DECODED_LATENT, decision horizon 1).
absl::StatusOr<std::unique_ptr<Algorithm>> CreateParrotAlgorithm(const AlgorithmOptions& options,
                                                                 const SpirlContext& context);

// EAP (Ajay & Agrawal): the spirl agent regularised towards a CVAE's learned state prior
// π_state(z | s) (a CVAE of horizon k > 1), the policy starting as a copy of it; actors decode
// the k actions of each decision open loop, with one Decode call at the decision's state, and
// store one row per decision like spirl's. Errors: as CreateSpirlAlgorithm's, for such a CVAE.
absl::StatusOr<std::unique_ptr<Algorithm>> CreateEapAlgorithm(const AlgorithmOptions& options,
                                                              const SpirlContext& context);

}  // namespace prl::learner

#endif  // PRL_LEARNER_SPIRL_ALGORITHM_H_
