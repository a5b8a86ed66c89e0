// The actor side of a published policy: builds the policy network of a prl.v1.PolicyArchitecture,
// loads its weights by name (prl.v1.Policy.weights, as Agent::ExportPolicy names them) and turns
// batches of observations into outputs (env actions or latents) on the CPU, without autograd.
//
// MCAT's context-conditioned policies (architecture.context_dim > 0, paper §3.4) also carry a
// context encoder C and an action translator H (models/mcat_model.h), and a TransferPlan: a row
// of task i acts with π([s, z]), z = C(the env's last K transitions), or, when the plan sends
// task i to source task j, with H(s, π([s, z^(j)]), z^(j), z^(i)), z^(j) and z^(i) rows of the
// plan's task_contexts.
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
#include "models/acting_policy.h"
#include "proto/actor.pb.h"

namespace prl::models {

// Sets LibTorch's intra-op threads for the process (n >= 1).
void SetPolicyThreads(int n);

class PolicyRunner {
 public:
  // Builds the network of `architecture` and loads `weights`. A context-conditioned policy
  // (context_dim > 0: context_history >= 1, OUTPUT_ACTION, action_dim == output_dim) has a
  // policy network over [observation, z] (obs_dim + context_dim wide) and weights
  // "context_encoder.*" and "translator.*" as well, both networks with architecture.network's
  // hidden layers; `transfer` is its TransferPlan (empty: every task acts with its own policy).
  // Errors: INVALID_ARGUMENT naming the architecture field that is unset or out of range, the
  // weight that is missing, extra, duplicated, not float32, mis-shaped or not finite, or the
  // transfer field that does not fit (task_contexts not float32 [T, context_dim] or not
  // finite, source_task not T values in [-1, T), any plan for a policy without context);
  // UNIMPLEMENTED for latent outputs with a context.
  static absl::StatusOr<std::unique_ptr<PolicyRunner>> Create(
      const v1::PolicyArchitecture& architecture,
      absl::Span<const std::pair<std::string, HostTensor>> weights,
      const v1::TransferPlan& transfer = v1::TransferPlan::default_instance());
  // The same from a received prl.v1.Policy (its architecture, weights and transfer plan).
  static absl::StatusOr<std::unique_ptr<PolicyRunner>> FromProto(const v1::Policy& policy);
  ~PolicyRunner();

  // Outputs for `n` observations (`obs`: n × obs_dim, row-major) into `actions`
  // (n × output_dim). HEAD_SQUASHED_GAUSSIAN: output_bound · tanh((μ + σ·ε) / squash_scale),
  // or output_bound · tanh(μ / squash_scale) when `deterministic` (squash_scale 0 counts as
  // 1). HEAD_DETERMINISTIC: output_bound · tanh(μ), plus N(0, exploration_noise²) noise clipped to
  // [-output_bound, output_bound] unless `deterministic`. Noise comes from `rng`. CHECK-fails on
  // sizes that do not match. A context-conditioned policy acts with its own policy on the context
  // of an empty history (every transition masked), z = C(nothing), whatever the plan says:
  // ActInContext is how an actor runs it.
  void Act(absl::Span<const float> obs, int n, bool deterministic, absl::Span<float> actions,
           std::mt19937_64& rng) const;

  // Act for a context-conditioned policy (see ActingPolicy::ActInContext for `context`): rows
  // of a task the plan leaves to its own policy (source -1, or a task index >= the plan's
  // tasks) act π([s, C(history)]) with the head as in Act; rows of a task i the plan sends to
  // source j act H(s, a_j, z^(j), z^(i)) clipped to the bound, where a_j is the head's output
  // on π([s, z^(j)]) (a sample for the Gaussian head unless `deterministic`, output_bound ·
  // tanh(μ) for the deterministic head, which adds its exploration noise to the translated
  // action instead), and get transferred[i] = 1; the others get 0. One batched forward per
  // group. Without a context (context_dim 0) the context is ignored: Act, transferred all 0.
  // CHECK-fails on sizes that do not match and on a negative task index.
  void ActInContext(absl::Span<const float> obs, int n, bool deterministic,
                    const ActingPolicy::Context& context, absl::Span<float> actions,
                    absl::Span<uint8_t> transferred, std::mt19937_64& rng) const;

  const v1::PolicyArchitecture& architecture() const;
  int obs_dim() const;
  int output_dim() const;
  // K (architecture.context_history) of a context-conditioned policy; 0 without a context.
  int context_history() const;

 private:
  struct Impl;
  explicit PolicyRunner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace prl::models

#endif  // PRL_MODELS_POLICY_RUNNER_H_
