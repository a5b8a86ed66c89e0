#include "models/policy_runner.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <utility>

#include "ATen/ATen.h"
#include "ATen/Parallel.h"
#include "ATen/core/grad_mode.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "c10/core/InferenceMode.h"
#include "common/field_error.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/torch_tensor.h"
#include "models/networks.h"

namespace prl::models {
namespace {

// Checks the fields PolicyRunner uses and resolves the network's defaults.
absl::Status CheckArchitecture(v1::PolicyArchitecture* a) {
  using Arch = v1::PolicyArchitecture;
  if (a->head() != Arch::HEAD_SQUASHED_GAUSSIAN && a->head() != Arch::HEAD_DETERMINISTIC) {
    return FieldError("architecture.head", Arch::Head_Name(a->head()),
                      "HEAD_SQUASHED_GAUSSIAN or HEAD_DETERMINISTIC");
  }
  if (a->output() == Arch::OUTPUT_UNSPECIFIED || !Arch::Output_IsValid(a->output())) {
    return FieldError("architecture.output", a->output(),
                      "OUTPUT_ACTION, OUTPUT_DECODED_LATENT or OUTPUT_FLOW_LATENT");
  }
  if (a->obs_dim() <= 0) return FieldError("architecture.obs_dim", a->obs_dim(), "> 0");
  if (a->output_dim() <= 0) return FieldError("architecture.output_dim", a->output_dim(), "> 0");
  if (!std::isfinite(a->output_bound()) || a->output_bound() <= 0) {
    return FieldError("architecture.output_bound", a->output_bound(), "> 0");
  }
  if (!std::isfinite(a->exploration_noise()) || a->exploration_noise() < 0) {
    return FieldError("architecture.exploration_noise", a->exploration_noise(), ">= 0");
  }
  if (a->context_dim() != 0) {
    return absl::UnimplementedError(
        "architecture.context_dim: context-conditioned (MCAT) policies are not supported by "
        "PolicyRunner yet");
  }
  return ResolveNetworkSpec("architecture.network", a->mutable_network());
}

}  // namespace

struct PolicyRunner::Impl {
  v1::PolicyArchitecture architecture;
  std::unique_ptr<PolicyNetwork> network;
};

void SetPolicyThreads(int n) { at::set_num_threads(std::max(n, 1)); }

PolicyRunner::PolicyRunner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PolicyRunner::~PolicyRunner() = default;

absl::StatusOr<std::unique_ptr<PolicyRunner>> PolicyRunner::Create(
    const v1::PolicyArchitecture& architecture,
    absl::Span<const std::pair<std::string, HostTensor>> weights) {
  auto impl = std::make_unique<Impl>();
  impl->architecture = architecture;
  PRL_RETURN_IF_ERROR(CheckArchitecture(&impl->architecture));
  const v1::PolicyArchitecture& a = impl->architecture;
  try {
    impl->network = std::make_unique<PolicyNetwork>(
        a.obs_dim(), a.output_dim(), a.network(),
        a.head() == v1::PolicyArchitecture::HEAD_SQUASHED_GAUSSIAN
            ? PolicyNetwork::Head::kSquashedGaussian
            : PolicyNetwork::Head::kDeterministic,
        NetworkOptions{at::kCPU, /*trainable=*/false, GemmBackend::kOneDnn});
    std::map<std::string, at::Tensor> expected;
    for (auto& [name, tensor] : impl->network->NamedParameters()) expected[name] = tensor;
    std::set<std::string> loaded;
    at::NoGradGuard no_grad;
    for (const auto& [name, host] : weights) {
      auto it = expected.find(name);
      if (it == expected.end()) {
        std::vector<std::string> names;
        for (const auto& e : expected) names.push_back(e.first);
        return absl::InvalidArgumentError(absl::StrCat("weights: unexpected name \"", name,
                                                       "\" (this architecture has ",
                                                       absl::StrJoin(names, ", "), ")"));
      }
      if (!loaded.insert(name).second) {
        return absl::InvalidArgumentError(absl::StrCat("weights: \"", name, "\" appears twice"));
      }
      TensorSpec spec;
      spec.name = absl::StrCat("weights[\"", name, "\"]");
      spec.dtype = DType::kFloat32;
      spec.shape = it->second.sizes().vec();
      spec.require_finite = true;
      PRL_RETURN_IF_ERROR(CheckTensor(host.view(), spec));
      it->second.copy_(ToTorch(host.view()));
    }
    for (const auto& e : expected) {
      if (loaded.count(e.first) == 0) {
        return absl::InvalidArgumentError(absl::StrCat("weights: missing \"", e.first, "\""));
      }
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("cannot build the policy network: ", e.what_without_backtrace()));
  }
  return std::unique_ptr<PolicyRunner>(new PolicyRunner(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<PolicyRunner>> PolicyRunner::FromProto(const v1::Policy& policy) {
  std::vector<std::pair<std::string, HostTensor>> weights;
  weights.reserve(policy.weights_size());
  for (int i = 0; i < policy.weights_size(); ++i) {
    const v1::NamedTensor& named = policy.weights(i);
    PRL_ASSIGN_OR_RETURN(TensorView view,
                         ViewTensorProto(named.tensor(), absl::StrCat("policy.weights[", i, "]")));
    weights.emplace_back(named.name(), HostTensor::Copy(view));
  }
  return Create(policy.architecture(), weights);
}

void PolicyRunner::Act(absl::Span<const float> obs, int n, bool deterministic,
                       absl::Span<float> actions, std::mt19937_64& rng) const {
  const int64_t obs_dim = impl_->architecture.obs_dim();
  const int64_t out_dim = impl_->architecture.output_dim();
  PRL_CHECK(n >= 0 && obs.size() == static_cast<size_t>(n * obs_dim) &&
            actions.size() == static_cast<size_t>(n * out_dim))
      << "PolicyRunner::Act: " << n << " rows, obs " << obs.size() << " floats, actions "
      << actions.size() << " floats";
  if (n == 0) return;
  at::Tensor mean, log_std;
  try {
    c10::InferenceMode inference;
    // the network only reads its input
    const at::Tensor x = at::from_blob(const_cast<float*>(obs.data()), {n, obs_dim}, at::kFloat);
    PolicyNetwork::Output out = impl_->network->Forward(x);
    mean = out.mean.contiguous();
    if (out.log_std.defined()) log_std = out.log_std.contiguous();
  } catch (const c10::Error& e) {
    PRL_LOG(FATAL) << "policy forward failed: " << e.what_without_backtrace();
  }
  const float* mu = mean.data_ptr<float>();
  const float bound = static_cast<float>(impl_->architecture.output_bound());
  std::normal_distribution<float> normal;
  if (log_std.defined()) {
    const float* ls = log_std.data_ptr<float>();
    for (int64_t i = 0; i < n * out_dim; ++i) {
      const float u = deterministic ? mu[i] : mu[i] + std::exp(ls[i]) * normal(rng);
      actions[i] = bound * std::tanh(u);
    }
    return;
  }
  const float noise = static_cast<float>(impl_->architecture.exploration_noise());
  for (int64_t i = 0; i < n * out_dim; ++i) {
    float a = bound * std::tanh(mu[i]);
    if (!deterministic) a = std::clamp(a + noise * normal(rng), -bound, bound);
    actions[i] = a;
  }
}

const v1::PolicyArchitecture& PolicyRunner::architecture() const { return impl_->architecture; }
int PolicyRunner::obs_dim() const { return impl_->architecture.obs_dim(); }
int PolicyRunner::output_dim() const { return impl_->architecture.output_dim(); }

}  // namespace prl::models
