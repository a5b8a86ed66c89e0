// The NetworkSpec of an experiment (proto/experiment.proto): its defaults and limits, written
// here only. No LibTorch: spec validation and the networks (models/networks.h) both read it.
#ifndef PRL_MODELS_NETWORK_SPEC_H_
#define PRL_MODELS_NETWORK_SPEC_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "proto/experiment.pb.h"

namespace prl::models {

// Limits of a network: hidden layers and units per layer.
inline constexpr int kMaxHiddenLayers = 8;
inline constexpr int kMaxHiddenSize = 4096;

// Fills the defaults of `spec` ([256, 256], RELU, no LayerNorm) and checks it: 1..8 hidden
// layers of 1..4096 units, a known activation. Errors: INVALID_ARGUMENT naming `field`
// ("algorithm.network.hidden_sizes[1]: 0 is not allowed; it must be in 1..4096").
absl::Status ResolveNetworkSpec(absl::string_view field, v1::NetworkSpec* spec);

}  // namespace prl::models

#endif  // PRL_MODELS_NETWORK_SPEC_H_
