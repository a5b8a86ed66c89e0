#include "models/torch_acting_policy.h"

#include <memory>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "models/policy_runner.h"

namespace prl::models {
namespace {

// One published version; the runner is immutable, the engine is this policy's own.
class TorchActingPolicy final : public ActingPolicy {
 public:
  TorchActingPolicy(std::unique_ptr<PolicyRunner> runner, int64_t version, uint64_t seed)
      : runner_(std::move(runner)), version_(version), rng_(seed) {}

  // A context-conditioned policy acts here on the context of an empty history (see
  // PolicyRunner::Act); actors run it with ActInContext.
  void Act(absl::Span<const float> obs, int n, bool deterministic,
           absl::Span<float> actions) override {
    runner_->Act(obs, n, deterministic, actions, rng_);
  }
  int context_history() const override { return runner_->context_history(); }
  void ActInContext(absl::Span<const float> obs, int n, bool deterministic, const Context& context,
                    absl::Span<float> actions, absl::Span<uint8_t> transferred) override {
    runner_->ActInContext(obs, n, deterministic, context, actions, transferred, rng_);
  }
  int64_t version() const override { return version_; }
  int obs_dim() const override { return runner_->obs_dim(); }
  int action_dim() const override { return runner_->output_dim(); }

 private:
  const std::unique_ptr<PolicyRunner> runner_;
  const int64_t version_;
  std::mt19937_64 rng_;
};

}  // namespace

ActingPolicyFactory TorchActingPolicyFactory(uint64_t seed) {
  return [seed](const v1::Policy& policy) -> absl::StatusOr<std::unique_ptr<ActingPolicy>> {
    // a latent (decoded or through a flow) is the policy's output like an action; the actor
    // maps it to actions with the prior
    PRL_ASSIGN_OR_RETURN(std::unique_ptr<PolicyRunner> runner, PolicyRunner::FromProto(policy));
    const uint64_t version_seed =
        seed ^ (static_cast<uint64_t>(policy.version()) * 0x9e3779b97f4a7c15ULL);
    return std::make_unique<TorchActingPolicy>(std::move(runner), policy.version(), version_seed);
  };
}

}  // namespace prl::models
