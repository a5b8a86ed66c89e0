#include "models/network_spec.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "common/field_error.h"

namespace prl::models {
namespace {

// the NetworkSpec defaults of proto/experiment.proto (the SAC and TD3 papers' networks)
constexpr int kDefaultHiddenLayers = 2;
constexpr int kDefaultHiddenSize = 256;
constexpr v1::NetworkSpec::Activation kDefaultActivation = v1::NetworkSpec::ACTIVATION_RELU;

}  // namespace

absl::Status ResolveNetworkSpec(absl::string_view field, v1::NetworkSpec* spec) {
  if (spec->hidden_sizes().empty()) {
    for (int i = 0; i < kDefaultHiddenLayers; ++i) spec->add_hidden_sizes(kDefaultHiddenSize);
  }
  if (spec->hidden_sizes_size() > kMaxHiddenLayers) {
    return FieldError(absl::StrCat(field, ".hidden_sizes"),
                      absl::StrCat(spec->hidden_sizes_size(), " layers"),
                      absl::StrCat("at most ", kMaxHiddenLayers));
  }
  for (int i = 0; i < spec->hidden_sizes_size(); ++i) {
    const int32_t size = spec->hidden_sizes(i);
    if (size < 1 || size > kMaxHiddenSize) {
      return FieldRangeError(absl::StrCat(field, ".hidden_sizes[", i, "]"), size, 1,
                             kMaxHiddenSize);
    }
  }
  if (spec->activation() == v1::NetworkSpec::ACTIVATION_UNSPECIFIED) {
    spec->set_activation(kDefaultActivation);
  }
  if (!v1::NetworkSpec::Activation_IsValid(spec->activation())) {
    return FieldError(absl::StrCat(field, ".activation"), spec->activation(),
                      "RELU, TANH, ELU, LEAKY_RELU or SILU");
  }
  return absl::OkStatus();
}

}  // namespace prl::models
