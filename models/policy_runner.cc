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
#include "models/mcat_networks.h"
#include "models/networks.h"

namespace prl::models {
namespace {

// Limits of a context-conditioned policy's sizes (the learner's defaults are 10 and 10).
constexpr int kMaxContextDim = 4096;
constexpr int kMaxContextHistory = 1024;

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
  if (!std::isfinite(a->squash_scale()) || a->squash_scale() < 0) {
    return FieldError("architecture.squash_scale", a->squash_scale(), "> 0, or 0 for 1");
  }
  if (!std::isfinite(a->exploration_noise()) || a->exploration_noise() < 0) {
    return FieldError("architecture.exploration_noise", a->exploration_noise(), ">= 0");
  }
  if (a->context_dim() != 0) {
    if (a->context_dim() < 0 || a->context_dim() > kMaxContextDim) {
      return FieldRangeError("architecture.context_dim", a->context_dim(), 0, kMaxContextDim);
    }
    if (a->context_history() < 1 || a->context_history() > kMaxContextHistory) {
      return FieldRangeError("architecture.context_history", a->context_history(), 1,
                             kMaxContextHistory);
    }
    if (a->output() != Arch::OUTPUT_ACTION) {
      return absl::UnimplementedError(absl::StrCat(
          "architecture.output: ", Arch::Output_Name(a->output()),
          " with architecture.context_dim > 0 is not supported; context-conditioned (MCAT) "
          "policies output actions (OUTPUT_ACTION)"));
    }
    if (a->action_dim() != a->output_dim()) {
      return FieldError("architecture.action_dim", a->action_dim(),
                        absl::StrCat("architecture.output_dim (", a->output_dim(),
                                     ") for a context-conditioned policy"));
    }
  }
  return ResolveNetworkSpec("architecture.network", a->mutable_network());
}

// One group of rows acting with the same network path: their indices in the batch and, for
// translated rows, each row's source and target task.
struct RowGroup {
  std::vector<int64_t> rows;
  std::vector<int64_t> source_task, target_task;
};

// Rows `index` of `t` ([n, ...]); `t` itself when `index` is 0 .. n-1 (the whole batch in one
// group, the common case).
at::Tensor Rows(const at::Tensor& t, const std::vector<int64_t>& index) {
  bool identity = static_cast<int64_t>(index.size()) == t.size(0);
  for (size_t i = 0; identity && i < index.size(); ++i)
    identity = index[i] == static_cast<int64_t>(i);
  if (identity) return t;
  // index_select only reads the index
  return t.index_select(0, at::from_blob(const_cast<int64_t*>(index.data()),
                                         {static_cast<int64_t>(index.size())}, at::kLong));
}

// Runs LibTorch code that cannot fail on inputs the caller checked; a c10::Error is a bug.
template <typename F>
void RunTorch(const char* what, F&& f) {
  try {
    c10::InferenceMode inference;
    f();
  } catch (const c10::Error& e) {
    PRL_LOG(FATAL) << what << " failed: " << e.what_without_backtrace();
  }
}

}  // namespace

struct PolicyRunner::Impl {
  v1::PolicyArchitecture architecture;
  std::unique_ptr<PolicyNetwork> network;
  // context-conditioned policies only: C and H in one block, and the transfer plan
  ParameterBlock mcat_params;
  std::unique_ptr<ContextEncoder> encoder;
  std::unique_ptr<ActionTranslator> translator;
  at::Tensor task_contexts;      // [T, context_dim]; T = 0 without a plan
  std::vector<int> source_task;  // T entries in [-1, T)

  // Builds the networks of the (checked) architecture with zeroed parameters.
  void BuildNetworks();
  // Copies `weights` into the networks' parameters by name.
  absl::Status LoadWeights(absl::Span<const std::pair<std::string, HostTensor>> weights);
  // Checks `transfer` and keeps it.
  absl::Status LoadTransferPlan(const v1::TransferPlan& transfer);

  // The head's output for m rows of the policy network into dst (m × output_dim):
  // output_bound · tanh((μ + σ·ε) / squash_scale) for the Gaussian head (ε ~ N(0, 1); ε = 0
  // when `deterministic`), output_bound · tanh(μ / squash_scale) for the deterministic head.
  void Squash(const at::Tensor& mean, const at::Tensor& log_std, bool deterministic,
              std::mt19937_64& rng, float* dst) const;
  // The deterministic head's exploration: each value plus N(0, exploration_noise²), clipped to
  // the bound; nothing for the Gaussian head or when `deterministic`.
  void Explore(bool deterministic, std::mt19937_64& rng, absl::Span<float> values) const;

  // The two groups of ActInContext, writing their rows of `actions`. Inputs are [n, ...]
  // tensors over the caller's memory.
  void ActOwn(const RowGroup& group, const at::Tensor& obs, const at::Tensor& history_obs,
              const at::Tensor& history_actions, const at::Tensor& mask, bool deterministic,
              std::mt19937_64& rng, absl::Span<float> actions) const;
  void ActTranslated(const RowGroup& group, const at::Tensor& obs, bool deterministic,
                     std::mt19937_64& rng, absl::Span<float> actions) const;
  // ActInContext after the size checks; an empty `task_index` puts every row in its own
  // task's group.
  void ActWithContext(absl::Span<const float> obs, int n, bool deterministic,
                      const ActingPolicy::Context& context, absl::Span<float> actions,
                      absl::Span<uint8_t> transferred, std::mt19937_64& rng) const;
};

void PolicyRunner::Impl::BuildNetworks() {
  const v1::PolicyArchitecture& a = architecture;
  network = std::make_unique<PolicyNetwork>(
      a.obs_dim() + a.context_dim(), a.output_dim(), a.network(),
      a.head() == v1::PolicyArchitecture::HEAD_SQUASHED_GAUSSIAN
          ? PolicyNetwork::Head::kSquashedGaussian
          : PolicyNetwork::Head::kDeterministic,
      NetworkOptions{at::kCPU, /*trainable=*/false, GemmBackend::kOneDnn});
  if (a.context_dim() == 0) return;
  // the learner exports C and H with the policy's hidden layers (McatModelOptions.network)
  const McatDims dims{a.obs_dim(), a.action_dim(), a.context_dim(), a.context_history()};
  encoder = std::make_unique<ContextEncoder>(&mcat_params, "context_encoder", dims, a.network());
  translator = std::make_unique<ActionTranslator>(&mcat_params, "translator", dims, a.network());
  mcat_params.Allocate(at::kCPU, /*requires_grad=*/false);
}

absl::Status PolicyRunner::Impl::LoadWeights(
    absl::Span<const std::pair<std::string, HostTensor>> weights) {
  std::map<std::string, at::Tensor> expected;
  for (auto& [name, tensor] : network->NamedParameters()) expected[name] = tensor;
  for (int i = 0; i < mcat_params.size(); ++i) {
    expected[mcat_params.name(i)] = mcat_params.param(i);
  }
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
  return absl::OkStatus();
}

absl::Status PolicyRunner::Impl::LoadTransferPlan(const v1::TransferPlan& transfer) {
  const int context_dim = architecture.context_dim();
  task_contexts = at::zeros({0, std::max(context_dim, 1)}, at::kFloat);
  if (!transfer.has_task_contexts() && transfer.source_task_size() == 0) return absl::OkStatus();
  if (context_dim == 0) {
    return absl::InvalidArgumentError(
        "transfer: a transfer plan is only for context-conditioned (MCAT) policies, and "
        "architecture.context_dim is 0");
  }
  TensorSpec spec;
  spec.name = "transfer.task_contexts";
  spec.dtype = DType::kFloat32;
  spec.shape = std::vector<int64_t>{-1, context_dim};
  spec.require_finite = true;
  PRL_ASSIGN_OR_RETURN(TensorView contexts,
                       ViewAndCheckTensorProto(transfer.task_contexts(), spec));
  const int64_t num_tasks = contexts.shape[0];
  if (transfer.source_task_size() != num_tasks) {
    return FieldError("transfer.source_task", absl::StrCat(transfer.source_task_size(), " entries"),
                      absl::StrCat("one per row of transfer.task_contexts (", num_tasks, ")"));
  }
  for (int i = 0; i < transfer.source_task_size(); ++i) {
    const int source = transfer.source_task(i);
    if (source < -1 || source >= num_tasks) {
      return FieldRangeError(absl::StrCat("transfer.source_task[", i, "]"), source, -1,
                             num_tasks - 1);
    }
  }
  task_contexts = ToTorch(contexts);
  source_task.assign(transfer.source_task().begin(), transfer.source_task().end());
  return absl::OkStatus();
}

void SetPolicyThreads(int n) { at::set_num_threads(std::max(n, 1)); }

PolicyRunner::PolicyRunner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PolicyRunner::~PolicyRunner() = default;

absl::StatusOr<std::unique_ptr<PolicyRunner>> PolicyRunner::Create(
    const v1::PolicyArchitecture& architecture,
    absl::Span<const std::pair<std::string, HostTensor>> weights,
    const v1::TransferPlan& transfer) {
  auto impl = std::make_unique<Impl>();
  impl->architecture = architecture;
  PRL_RETURN_IF_ERROR(CheckArchitecture(&impl->architecture));
  try {
    impl->BuildNetworks();
    PRL_RETURN_IF_ERROR(impl->LoadWeights(weights));
    PRL_RETURN_IF_ERROR(impl->LoadTransferPlan(transfer));
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
  return Create(policy.architecture(), weights, policy.transfer());
}

void PolicyRunner::Impl::Squash(const at::Tensor& mean, const at::Tensor& log_std,
                                bool deterministic, std::mt19937_64& rng, float* dst) const {
  const int64_t count = mean.numel();
  const float* mu = mean.data_ptr<float>();
  const float bound = static_cast<float>(architecture.output_bound());
  const float inv_scale = architecture.squash_scale() > 0
                              ? static_cast<float>(1.0 / architecture.squash_scale())
                              : 1.0f;
  if (log_std.defined()) {
    std::normal_distribution<float> normal;
    const float* ls = log_std.data_ptr<float>();
    for (int64_t i = 0; i < count; ++i) {
      const float u = deterministic ? mu[i] : mu[i] + std::exp(ls[i]) * normal(rng);
      dst[i] = bound * std::tanh(u * inv_scale);
    }
    return;
  }
  for (int64_t i = 0; i < count; ++i) dst[i] = bound * std::tanh(mu[i] * inv_scale);
}

void PolicyRunner::Impl::Explore(bool deterministic, std::mt19937_64& rng,
                                 absl::Span<float> values) const {
  if (deterministic || architecture.head() != v1::PolicyArchitecture::HEAD_DETERMINISTIC) return;
  const float bound = static_cast<float>(architecture.output_bound());
  const float noise = static_cast<float>(architecture.exploration_noise());
  std::normal_distribution<float> normal;
  for (float& a : values) a = std::clamp(a + noise * normal(rng), -bound, bound);
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
  if (impl_->encoder != nullptr) {
    // the context of an empty history: zero states and actions, every transition masked (the
    // current observation last, as ActInContext has it)
    const int64_t k = impl_->architecture.context_history();
    std::vector<float> history_obs(n * (k + 1) * obs_dim, 0.0f);
    for (int64_t i = 0; i < n; ++i) {
      std::copy_n(obs.data() + i * obs_dim, obs_dim,
                  history_obs.data() + (i * (k + 1) + k) * obs_dim);
    }
    const std::vector<float> history_actions(n * k * out_dim, 0.0f), mask(n * k, 0.0f);
    std::vector<uint8_t> transferred(n);
    impl_->ActWithContext(obs, n, deterministic,
                          ActingPolicy::Context{history_obs, history_actions, mask, {}}, actions,
                          absl::MakeSpan(transferred), rng);
    return;
  }
  at::Tensor mean, log_std;
  RunTorch("policy forward", [&] {
    // the network only reads its input
    const at::Tensor x = at::from_blob(const_cast<float*>(obs.data()), {n, obs_dim}, at::kFloat);
    PolicyNetwork::Output out = impl_->network->Forward(x);
    mean = out.mean.contiguous();
    if (out.log_std.defined()) log_std = out.log_std.contiguous();
  });
  impl_->Squash(mean, log_std, deterministic, rng, actions.data());
  impl_->Explore(deterministic, rng, actions);
}

void PolicyRunner::ActInContext(absl::Span<const float> obs, int n, bool deterministic,
                                const ActingPolicy::Context& context, absl::Span<float> actions,
                                absl::Span<uint8_t> transferred, std::mt19937_64& rng) const {
  PRL_CHECK(n >= 0 && transferred.size() == static_cast<size_t>(n))
      << "PolicyRunner::ActInContext: " << n << " rows, transferred " << transferred.size();
  if (impl_->encoder == nullptr) {
    Act(obs, n, deterministic, actions, rng);
    std::fill(transferred.begin(), transferred.end(), 0);
    return;
  }
  const v1::PolicyArchitecture& a = impl_->architecture;
  const size_t k = a.context_history(), rows = n;
  PRL_CHECK(obs.size() == rows * a.obs_dim() && actions.size() == rows * a.output_dim() &&
            context.observations.size() == rows * (k + 1) * a.obs_dim() &&
            context.actions.size() == rows * k * a.action_dim() &&
            context.mask.size() == rows * k &&
            (context.task_index.empty() || context.task_index.size() == rows))
      << "PolicyRunner::ActInContext: " << n << " rows, K " << k << ", obs " << obs.size()
      << " floats, actions " << actions.size() << ", context observations "
      << context.observations.size() << ", context actions " << context.actions.size() << ", mask "
      << context.mask.size() << ", task_index " << context.task_index.size();
  if (n == 0) return;
  impl_->ActWithContext(obs, n, deterministic, context, actions, transferred, rng);
}

void PolicyRunner::Impl::ActWithContext(absl::Span<const float> obs, int n, bool deterministic,
                                        const ActingPolicy::Context& context,
                                        absl::Span<float> actions, absl::Span<uint8_t> transferred,
                                        std::mt19937_64& rng) const {
  // split the rows by the plan: own policy, or translated from a source task
  RowGroup own, translated;
  const int64_t num_tasks = static_cast<int64_t>(source_task.size());
  for (int64_t i = 0; i < n; ++i) {
    const int task = context.task_index.empty() ? -1 : context.task_index[i];
    PRL_CHECK(context.task_index.empty() || task >= 0)
        << "PolicyRunner::ActInContext: task_index[" << i << "] is " << task;
    const int source = task >= 0 && task < num_tasks ? source_task[task] : -1;
    transferred[i] = source >= 0 ? 1 : 0;
    if (source < 0) {
      own.rows.push_back(i);
      continue;
    }
    translated.rows.push_back(i);
    translated.source_task.push_back(source);
    translated.target_task.push_back(task);
  }
  // the networks only read their inputs
  const int64_t obs_dim = architecture.obs_dim(), k = architecture.context_history();
  const at::Tensor s = at::from_blob(const_cast<float*>(obs.data()), {n, obs_dim}, at::kFloat);
  if (!own.rows.empty()) {
    const at::Tensor history_obs = at::from_blob(const_cast<float*>(context.observations.data()),
                                                 {n, k + 1, obs_dim}, at::kFloat);
    const at::Tensor history_actions =
        at::from_blob(const_cast<float*>(context.actions.data()),
                      {n, k, static_cast<int64_t>(architecture.action_dim())}, at::kFloat);
    const at::Tensor mask =
        at::from_blob(const_cast<float*>(context.mask.data()), {n, k}, at::kFloat);
    ActOwn(own, s, history_obs, history_actions, mask, deterministic, rng, actions);
  }
  if (!translated.rows.empty()) ActTranslated(translated, s, deterministic, rng, actions);
}

void PolicyRunner::Impl::ActOwn(const RowGroup& group, const at::Tensor& obs,
                                const at::Tensor& history_obs, const at::Tensor& history_actions,
                                const at::Tensor& mask, bool deterministic, std::mt19937_64& rng,
                                absl::Span<float> actions) const {
  // π([s, C(history)]) for the group's rows
  at::Tensor mean, log_std;
  RunTorch("context policy forward", [&] {
    const at::Tensor z = encoder->Forward(mcat_params, Rows(history_obs, group.rows),
                                          Rows(history_actions, group.rows), Rows(mask, group.rows),
                                          GemmBackend::kOneDnn);
    PolicyNetwork::Output out = network->Forward(at::cat({Rows(obs, group.rows), z}, 1));
    mean = out.mean.contiguous();
    if (out.log_std.defined()) log_std = out.log_std.contiguous();
  });
  const int64_t out_dim = architecture.output_dim();
  std::vector<float> result(group.rows.size() * out_dim);
  Squash(mean, log_std, deterministic, rng, result.data());
  Explore(deterministic, rng, absl::MakeSpan(result));
  for (size_t r = 0; r < group.rows.size(); ++r) {
    std::copy_n(result.data() + r * out_dim, out_dim, actions.data() + group.rows[r] * out_dim);
  }
}

void PolicyRunner::Impl::ActTranslated(const RowGroup& group, const at::Tensor& obs,
                                       bool deterministic, std::mt19937_64& rng,
                                       absl::Span<float> actions) const {
  // the source task's action π([s, z^(j)]) ...
  const int64_t m = static_cast<int64_t>(group.rows.size());
  at::Tensor s, z_source, z_target, mean, log_std;
  RunTorch("context policy forward", [&] {
    s = Rows(obs, group.rows);
    z_source = Rows(task_contexts, group.source_task);
    z_target = Rows(task_contexts, group.target_task);
    PolicyNetwork::Output out = network->Forward(at::cat({s, z_source}, 1));
    mean = out.mean.contiguous();
    if (out.log_std.defined()) log_std = out.log_std.contiguous();
  });
  const int64_t out_dim = architecture.output_dim();
  std::vector<float> source_action(m * out_dim);
  Squash(mean, log_std, deterministic, rng, source_action.data());
  // ... translated to the row's task, H(s, a_j, z^(j), z^(i))
  at::Tensor target_action;
  RunTorch("action translator forward", [&] {
    const at::Tensor a = at::from_blob(source_action.data(), {m, out_dim}, at::kFloat);
    target_action = translator->Forward(mcat_params, s, a, z_source, z_target, GemmBackend::kOneDnn)
                        .contiguous();
  });
  const float bound = static_cast<float>(architecture.output_bound());
  std::vector<float> result(target_action.data_ptr<float>(),
                            target_action.data_ptr<float>() + m * out_dim);
  for (float& a : result) a = std::clamp(a, -bound, bound);
  Explore(deterministic, rng, absl::MakeSpan(result));
  for (int64_t r = 0; r < m; ++r) {
    std::copy_n(result.data() + r * out_dim, out_dim, actions.data() + group.rows[r] * out_dim);
  }
}

const v1::PolicyArchitecture& PolicyRunner::architecture() const { return impl_->architecture; }
int PolicyRunner::obs_dim() const { return impl_->architecture.obs_dim(); }
int PolicyRunner::output_dim() const { return impl_->architecture.output_dim(); }
int PolicyRunner::context_history() const {
  return impl_->encoder != nullptr ? impl_->architecture.context_history() : 0;
}

}  // namespace prl::models
