// Flat SAC and TD3 behind the Algorithm interface: an Agent (learner/agent.h) trained on
// (observation, action, reward, discount, next_observation) rows of one replay table, acting
// every env step.
//
// Thread-compatible, like Agent.
#ifndef PRL_LEARNER_FLAT_ALGORITHM_H_
#define PRL_LEARNER_FLAT_ALGORITHM_H_

#include <memory>

#include "absl/status/statusor.h"
#include "learner/agent.h"
#include "learner/algorithm.h"
#include "proto/actor.pb.h"
#include "proto/prior.pb.h"

namespace prl::learner {

// Builds the sac or td3 algorithm of options.spec. Errors: those of Agent::Create
// (INVALID_ARGUMENT naming a field; FAILED_PRECONDITION for a CUDA device without one).
absl::StatusOr<std::unique_ptr<Algorithm>> CreateFlatAlgorithm(const AlgorithmOptions& options);

// What an Agent-backed algorithm acts and stores with. The flat algorithms use the defaults;
// latent ones (spirl) store z as "action" and the env steps a decision covered.
struct AgentAlgorithmSpec {
  std::string name;  // "sac", "spirl", ...
  int obs_dim = 0;
  int action_dim = 0;             // the agent's action: the env action, or the latent z
  bool env_steps_column = false;  // an int64 "env_steps" column (decisions of several steps)
  int decision_horizon = 1;
  v1::PriorRef prior;  // set for prior-guided algorithms (version resolved)
  // When set, the exported policy's output kind (e.g. OUTPUT_DECODED_LATENT for SAC over a
  // horizon-1 CVAE's latent, whose agent would otherwise say OUTPUT_FLOW_LATENT).
  v1::PolicyArchitecture::Output output = v1::PolicyArchitecture::OUTPUT_UNSPECIFIED;
  std::string prior_address;
  // Update scalars: SAC's temperature scalars under these names ("alpha", "alpha_loss"; the
  // entropy slot as "entropy", or "kl_to_prior" for spirl); empty names leave them out.
  std::string alpha_name, alpha_loss_name, entropy_name;
};

// An Algorithm around `agent`, trained on the columns `spec` says.
std::unique_ptr<Algorithm> MakeAgentAlgorithm(AgentAlgorithmSpec spec,
                                              std::unique_ptr<Agent> agent);

}  // namespace prl::learner

#endif  // PRL_LEARNER_FLAT_ALGORITHM_H_
