// The algorithm defaults and checks of proto/experiment.proto (each paper's values), written
// here only: Agent::Create resolves its options with ResolveAlgorithmSpec and spec validation
// fills stored specs from AlgorithmDefaults. No LibTorch, so validation stays light.
#ifndef PRL_LEARNER_ALGORITHM_DEFAULTS_H_
#define PRL_LEARNER_ALGORITHM_DEFAULTS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "proto/experiment.pb.h"

namespace prl::learner {

// Checks `algorithm` and fills its defaults: the sac or td3 config (sac.target_entropy, when
// unset, is -act_dim), the network (models::ResolveNetworkSpec) and the shared fields.
// Errors: INVALID_ARGUMENT naming the first bad field, or "algorithm: not set"; UNIMPLEMENTED
// for an algorithm other than sac and td3.
absl::Status ResolveAlgorithmSpec(int64_t act_dim, v1::AlgorithmSpec* algorithm);

// An AlgorithmSpec with every default ResolveAlgorithmSpec fills: the network and shared fields
// always, and the sac or td3 config when `which` is one of them (other configs stay unset).
// CHECK-fails only if the defaults break their own checks (a programmer error).
v1::AlgorithmSpec AlgorithmDefaults(v1::AlgorithmSpec::AlgorithmCase which, int64_t act_dim);

}  // namespace prl::learner

#endif  // PRL_LEARNER_ALGORITHM_DEFAULTS_H_
