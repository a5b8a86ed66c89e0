// The actor side of a published policy: builds the policy network of a prl.v1.PolicyArchitecture,
// loads its weights by name (prl.v1.Policy.weights, as Agent::ExportPolicy names them) and turns
// batches of observations into outputs (env actions or latents) on the CPU, without autograd.
//
// This header includes no LibTorch header (the network lives behind a pointer), so actor code
// that uses it does not compile LibTorch. LibTorch's intra-op thread count is process-wide: an
// actor sets it once with SetPolicyThreads (DESIGN.md §11: an actor's policy needs one).
//
// Thread-safe: Act is const and may run concurrently, each caller with its own random engine.
// A PolicyRunner is immutable once built; share it as std::shared_ptr<const PolicyRunner>.
#ifndef PRL_MODELS_POLICY_RUNNER_H_
#define PRL_MODELS_POLICY_RUNNER_H_

#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/tensor.h"
#include "proto/actor.pb.h"

namespace prl::models {

// Sets LibTorch's intra-op threads for the process (n >= 1).
void SetPolicyThreads(int n);

class PolicyRunner {
 public:
  // Builds the network of `architecture` and loads `weights`. Errors: INVALID_ARGUMENT naming
  // the architecture field that is unset or out of range, or the weight that is missing, extra,
  // duplicated, not float32, mis-shaped or not finite; UNIMPLEMENTED for context-conditioned
  // (MCAT) policies.
  static absl::StatusOr<std::unique_ptr<PolicyRunner>> Create(
      const v1::PolicyArchitecture& architecture,
      absl::Span<const std::pair<std::string, HostTensor>> weights);
  // The same from a received prl.v1.Policy (its architecture and weights).
  static absl::StatusOr<std::unique_ptr<PolicyRunner>> FromProto(const v1::Policy& policy);
  ~PolicyRunner();

  // Outputs for `n` observations (`obs`: n × obs_dim, row-major) into `actions`
  // (n × output_dim). HEAD_SQUASHED_GAUSSIAN: output_bound · tanh(μ + σ·ε), or
  // output_bound · tanh(μ) when `deterministic`. HEAD_DETERMINISTIC: output_bound · tanh(μ),
  // plus N(0, exploration_noise²) noise clipped to [-output_bound, output_bound] unless
  // `deterministic`. Noise comes from `rng`. CHECK-fails on sizes that do not match.
  void Act(absl::Span<const float> obs, int n, bool deterministic, absl::Span<float> actions,
           std::mt19937_64& rng) const;

  const v1::PolicyArchitecture& architecture() const;
  int obs_dim() const;
  int output_dim() const;

 private:
  struct Impl;
  explicit PolicyRunner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace prl::models

#endif  // PRL_MODELS_POLICY_RUNNER_H_
