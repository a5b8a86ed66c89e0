#include "learner/agent.h"

#include <cmath>
#include <cstring>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "ATen/CPUGeneratorImpl.h"
#include "ATen/Parallel.h"
#include "ATen/core/grad_mode.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/field_error.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/torch_tensor.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "learner/agent_internal.h"
#include "learner/algorithm_defaults.h"

namespace prl::learner {
namespace internal {

std::string ErrorText(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

namespace {

absl::StatusOr<at::Device> ResolveDevice(const std::string& name) {
  if (name.empty() || name == "auto") {
    return at::hasCUDA() ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  }
  if (name == "cpu") return at::Device(at::kCPU);
  int index = 0;
  if (name != "cuda") {
    if (!absl::StartsWith(name, "cuda:") || !absl::SimpleAtoi(name.substr(5), &index) ||
        index < 0) {
      return FieldError("device", absl::StrCat("\"", name, "\""), "auto, cpu, cuda or cuda:N");
    }
  }
  if (!at::hasCUDA() || index >= static_cast<int>(at::getNumGPUs())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "device: \"", name, "\" is not available; this process sees ", at::getNumGPUs(),
        " CUDA devices", at::hasCUDA() ? "" : " (LibTorch built without CUDA or no GPU)"));
  }
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
}

}  // namespace

absl::StatusOr<AgentConfig> ResolveAgentOptions(const AgentOptions& options) {
  AgentConfig config;
  if (options.obs_dim <= 0) return FieldError("obs_dim", options.obs_dim, "> 0");
  if (options.act_dim <= 0) return FieldError("act_dim", options.act_dim, "> 0");
  if (options.num_threads < 0) return FieldError("num_threads", options.num_threads, ">= 0");
  config.obs_dim = options.obs_dim;
  config.act_dim = options.act_dim;
  config.seed = options.seed;
  config.num_threads = options.num_threads;
  config.gemm = options.fast_cpu_gemm ? models::GemmBackend::kOneDnn : models::GemmBackend::kAten;
  config.cuda_graphs = options.cuda_graphs;
  config.direct_cpu_update = options.direct_cpu_update;
  config.algorithm = options.algorithm;
  PRL_RETURN_IF_ERROR(ResolveAlgorithmSpec(options.act_dim, &config.algorithm));
  config.actor_network = config.algorithm.network();
  PRL_ASSIGN_OR_RETURN(config.device, ResolveDevice(options.device));
  return config;
}

// ---- TwinCriticAgent ----

namespace {

std::string Shape(const at::Tensor& t) {
  return ShapeString(absl::MakeConstSpan(t.sizes().data(), t.sizes().size()));
}

// Checks one batch field and moves it to `device`. `dim` < 0: shape [B]; else [B, dim].
absl::StatusOr<at::Tensor> BatchField(const at::Tensor& t, absl::string_view name, int64_t size,
                                      int64_t dim, at::Device device) {
  if (!t.defined()) return absl::InvalidArgumentError(absl::StrCat("batch.", name, ": not set"));
  if (t.scalar_type() != at::kFloat) {
    return FieldError(absl::StrCat("batch.", name),
                      absl::StrCat("dtype ", std::string(c10::toString(t.scalar_type()))),
                      "float32");
  }
  const bool ok = dim < 0 ? (t.dim() == 1 && t.size(0) == size)
                          : (t.dim() == 2 && t.size(0) == size && t.size(1) == dim);
  if (!ok) {
    return FieldError(
        absl::StrCat("batch.", name), absl::StrCat("shape ", Shape(t)),
        dim < 0 ? absl::StrCat("[", size, "]") : absl::StrCat("[", size, ", ", dim, "]"));
  }
  return t.to(device);
}

absl::StatusOr<DeviceBatch> PrepareBatch(const TransitionBatch& in, const AgentConfig& config) {
  if (!in.obs.defined()) return absl::InvalidArgumentError("batch.obs: not set");
  DeviceBatch b;
  b.size = in.obs.dim() >= 1 ? in.obs.size(0) : 0;
  if (b.size < 1) {
    return FieldError("batch.obs", absl::StrCat("shape ", Shape(in.obs)),
                      absl::StrCat("[B, ", config.obs_dim, "] with B >= 1"));
  }
  const at::Device d = config.device;
  PRL_ASSIGN_OR_RETURN(b.obs, BatchField(in.obs, "obs", b.size, config.obs_dim, d));
  PRL_ASSIGN_OR_RETURN(b.action, BatchField(in.action, "action", b.size, config.act_dim, d));
  PRL_ASSIGN_OR_RETURN(b.reward, BatchField(in.reward, "reward", b.size, -1, d));
  PRL_ASSIGN_OR_RETURN(b.next_obs, BatchField(in.next_obs, "next_obs", b.size, config.obs_dim, d));
  PRL_ASSIGN_OR_RETURN(b.discount, BatchField(in.discount, "discount", b.size, -1, d));
  if (in.weight.defined()) {
    PRL_ASSIGN_OR_RETURN(b.weight, BatchField(in.weight, "weight", b.size, -1, d));
  }
  if (in.sil_obs.defined()) {
    const int64_t s = in.sil_obs.dim() >= 1 ? in.sil_obs.size(0) : 0;
    if (s < 1) {
      return FieldError("batch.sil_obs", absl::StrCat("shape ", Shape(in.sil_obs)),
                        absl::StrCat("[S, ", config.obs_dim, "] with S >= 1"));
    }
    PRL_ASSIGN_OR_RETURN(b.sil_obs, BatchField(in.sil_obs, "sil_obs", s, config.obs_dim, d));
    PRL_ASSIGN_OR_RETURN(b.sil_action,
                         BatchField(in.sil_action, "sil_action", s, config.act_dim, d));
    PRL_ASSIGN_OR_RETURN(b.sil_return, BatchField(in.sil_return, "sil_return", s, -1, d));
    if (in.sil_weight.defined()) {
      PRL_ASSIGN_OR_RETURN(b.sil_weight, BatchField(in.sil_weight, "sil_weight", s, -1, d));
    }
    if (!(in.self_imitation_weight >= 0)) {
      return FieldError("batch.self_imitation_weight", absl::StrCat(in.self_imitation_weight),
                        ">= 0");
    }
    b.sil_coef = in.self_imitation_weight;
  }
  return b;
}

}  // namespace

TwinCriticAgent::TwinCriticAgent(const AgentConfig& config, models::PolicyNetwork::Head head)
    : config_(config),
      train_generator_(at::detail::createCPUGenerator(config.seed)),
      act_generator_(at::detail::createCPUGenerator(config.seed ^ 0x9e3779b97f4a7c15ULL)) {
  const models::NetworkOptions trainable{config.device, /*trainable=*/true, config.gemm};
  const models::NetworkOptions frozen{config.device, /*trainable=*/false, config.gemm};
  const v1::NetworkSpec& net = config.algorithm.network();
  actor_ = std::make_unique<models::PolicyNetwork>(config.obs_dim, config.act_dim,
                                                   config.actor_network, head, trainable);
  critic_ = std::make_unique<models::QEnsemble>(config.obs_dim, config.act_dim, net, 2, trainable);
  critic_target_ =
      std::make_unique<models::QEnsemble>(config.obs_dim, config.act_dim, net, 2, frozen);
  actor_->params().Initialize(train_generator_);
  critic_->params().Initialize(train_generator_);
  critic_target_->params().flat().copy_(critic_->params().flat());
  actor_adam_ = std::make_unique<FlatAdam>(actor_->params().flat(),
                                           FlatAdam::Options{config.algorithm.actor_lr()});
  critic_adam_ = std::make_unique<FlatAdam>(critic_->params().flat(),
                                            FlatAdam::Options{config.algorithm.critic_lr()});
  if (config.cuda_graphs) graph_stream_ = GraphStream::Create(config.device);
}

// A captured update with its static inputs and outputs.
struct TwinCriticAgent::GraphEntry {
  int eager_updates = 0;
  std::unique_ptr<CapturedGraph> graph;
  DeviceBatch batch;         // the graph's inputs: each replay copies the batch into them
  at::Tensor device_inputs;  // [noise draws | scalars of each optimiser], written in one copy
  at::Tensor noise;          // the draws' view of device_inputs
  std::vector<FlatAdam*> optimizers;
  at::Tensor packed_stats;  // what FetchStats would have copied
  size_t num_scalars = 0;
  UpdateStats stats;  // what DoUpdate returned at capture (its flags), numbers filled per replay
  std::vector<std::pair<int64_t*, int64_t>> counter_steps;  // what one update adds to each
};

TwinCriticAgent::~TwinCriticAgent() = default;

std::vector<FlatAdam*> TwinCriticAgent::Optimizers() {
  return {actor_adam_.get(), critic_adam_.get()};
}

absl::StatusOr<UpdateStats> TwinCriticAgent::Update(const TransitionBatch& batch) {
  return RunUpdate(batch, nullptr);
}

absl::StatusOr<UpdateStats> TwinCriticAgent::UpdateWithNoise(const TransitionBatch& batch,
                                                             const at::Tensor& noise) {
  return RunUpdate(batch, &noise);
}

absl::StatusOr<UpdateStats> TwinCriticAgent::RunUpdate(const TransitionBatch& batch,
                                                       const at::Tensor* noise) {
  try {
    PRL_ASSIGN_OR_RETURN(DeviceBatch b, PrepareBatch(batch, config_));
    // OpenMP thread counts are per calling thread: apply ours on whichever thread updates.
    if (config_.num_threads > 0 && at::get_num_threads() != config_.num_threads) {
      at::set_num_threads(config_.num_threads);
    }
    const std::vector<int64_t> shape = {NoiseDraws(), b.size, config_.act_dim};
    at::Tensor draws;  // on the CPU
    if (noise != nullptr) {
      if (noise->sizes().vec() != shape) return FieldError("noise", Shape(*noise), "[draws, B, A]");
      draws = noise->to(at::kCPU, at::kFloat).contiguous();
    } else {
      draws = at::randn(shape, train_generator_, at::kFloat);
    }
    if (graph_stream_ != nullptr && GraphSafe() && !b.sil_obs.defined()) {
      return GraphUpdate(b, draws);
    }
    return DoUpdate(b, draws.to(config_.device));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("learner update failed: ", ErrorText(e)));
  }
}

UpdateStats TwinCriticAgent::GraphUpdate(const DeviceBatch& b, const at::Tensor& draws) {
  constexpr int kEagerUpdatesBeforeCapture = 3;  // warm-up: cuBLAS, autograd, the allocator
  // each kind holds a memory pool and copies of its inputs; a run has one or two batch sizes
  // and at most three branches, so kinds beyond these are rare and run eagerly
  constexpr size_t kMaxGraphs = 12;
  const std::tuple<int64_t, bool, int64_t> key{b.size, b.weight.defined(), GraphBranch()};
  if (graphs_.size() >= kMaxGraphs && graphs_.count(key) == 0) {
    return DoUpdate(b, draws.to(config_.device));
  }
  std::unique_ptr<GraphEntry>& slot = graphs_[key];
  if (slot == nullptr) slot = std::make_unique<GraphEntry>();
  GraphEntry& e = *slot;
  UpdateStats stats;
  if (e.graph == nullptr) {
    absl::Status captured;
    if (e.eager_updates >= kEagerUpdatesBeforeCapture) captured = CaptureUpdate(b, draws, e);
    if (!captured.ok()) {
      PRL_LOG(WARNING) << "learner: " << captured.message()
                       << "; this agent's updates stay eager from now on";
      graph_stream_.reset();
      graphs_.clear();
      return DoUpdate(b, draws.to(config_.device));
    }
    if (e.graph == nullptr) {
      ++e.eager_updates;
      graph_stream_->Run([&] { stats = DoUpdate(b, draws.to(config_.device)); });
      return stats;
    }
  }
  at::Tensor host_stats;
  graph_stream_->Run([&] { host_stats = EnqueueReplay(b, draws, e); });
  graph_stream_->Synchronize();
  stats = e.stats;
  UnpackStats(host_stats, e.num_scalars, &stats);
  return stats;
}

at::Tensor TwinCriticAgent::EnqueueReplay(const DeviceBatch& b, const at::Tensor& draws,
                                          GraphEntry& e) {
  const std::pair<const at::Tensor*, at::Tensor*> fields[] = {
      {&b.obs, &e.batch.obs},           {&b.action, &e.batch.action},
      {&b.reward, &e.batch.reward},     {&b.next_obs, &e.batch.next_obs},
      {&b.discount, &e.batch.discount}, {&b.weight, &e.batch.weight}};
  for (const auto& [from, to] : fields) {
    if (from->defined()) to->copy_(*from, /*non_blocking=*/true);
  }
  // noise and step scalars in one transfer from pinned memory; LibTorch's pinned allocator keeps
  // the block from reuse until the copy has run
  const at::TensorOptions pinned = at::TensorOptions().dtype(at::kFloat).pinned_memory(true);
  const at::Tensor staged = at::empty({e.device_inputs.numel()}, pinned);
  float* p = staged.data_ptr<float>();
  const int64_t noise_numel = draws.numel();
  std::memcpy(p, draws.data_ptr<float>(), sizeof(float) * noise_numel);
  for (size_t i = 0; i < e.optimizers.size(); ++i) {
    e.optimizers[i]->NextStepScalars(p + noise_numel + FlatAdam::kDeviceScalars * i);
  }
  e.device_inputs.copy_(staged, /*non_blocking=*/true);
  at::Tensor host = at::empty(e.packed_stats.sizes(), pinned);
  e.graph->Replay();
  // what the update does to the counters, at once: from here on it happens whatever follows, and
  // the next update's branch and step scalars follow from them
  for (const auto& [counter, step] : e.counter_steps) *counter += step;
  host.copy_(e.packed_stats, /*non_blocking=*/true);
  return host;
}

absl::StatusOr<std::vector<UpdateStats>> TwinCriticAgent::UpdateMany(
    absl::Span<const TransitionBatch> batches) {
  try {
    std::vector<DeviceBatch> prepared;
    prepared.reserve(batches.size());
    for (size_t i = 0; i < batches.size(); ++i) {
      absl::StatusOr<DeviceBatch> b = PrepareBatch(batches[i], config_);
      if (!b.ok()) {
        return absl::Status(b.status().code(),
                            absl::StrCat("batches[", i, "]: ", b.status().message()));
      }
      prepared.push_back(*std::move(b));
    }
    if (config_.num_threads > 0 && at::get_num_threads() != config_.num_threads) {
      at::set_num_threads(config_.num_threads);
    }
    std::vector<UpdateStats> out(batches.size());
    // replays queued on the graph stream whose statistics are still on their way to the host
    struct Pending {
      size_t index;
      const GraphEntry* entry;
      at::Tensor host;
    };
    std::vector<Pending> pending;
    auto collect = [&] {
      if (pending.empty()) return;
      graph_stream_->Synchronize();
      for (const Pending& q : pending) {
        out[q.index] = q.entry->stats;
        UnpackStats(q.host, q.entry->num_scalars, &out[q.index]);
      }
      pending.clear();
    };
    for (size_t i = 0; i < prepared.size(); ++i) {
      const DeviceBatch& b = prepared[i];
      const at::Tensor draws =
          at::randn({NoiseDraws(), b.size, config_.act_dim}, train_generator_, at::kFloat);
      if (graph_stream_ == nullptr || !GraphSafe() || b.sil_obs.defined()) {
        out[i] = DoUpdate(b, draws.to(config_.device));
        continue;
      }
      auto found = graphs_.find({b.size, b.weight.defined(), GraphBranch()});
      if (found == graphs_.end() || found->second->graph == nullptr) {
        collect();  // warm-up and capture want an idle stream
        out[i] = GraphUpdate(b, draws);
        continue;
      }
      GraphEntry& e = *found->second;
      at::Tensor host;
      graph_stream_->Run([&] { host = EnqueueReplay(b, draws, e); });
      pending.push_back({i, &e, std::move(host)});
    }
    collect();
    return out;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("learner update failed: ", ErrorText(e)));
  }
}

absl::Status TwinCriticAgent::CaptureUpdate(const DeviceBatch& b, const at::Tensor& draws,
                                            GraphEntry& e) {
  absl::StatusOr<std::unique_ptr<CapturedGraph>> graph;
  std::vector<std::pair<int64_t*, int64_t>> counters;
  for (const StateEntry& entry : StateEntries()) {
    if (entry.counter != nullptr) counters.emplace_back(entry.counter, *entry.counter);
  }
  graph_stream_->Run([&] {
    e.batch = DeviceBatch{};
    e.batch.size = b.size;
    e.batch.obs = b.obs.clone();
    e.batch.action = b.action.clone();
    e.batch.reward = b.reward.clone();
    e.batch.next_obs = b.next_obs.clone();
    e.batch.discount = b.discount.clone();
    if (b.weight.defined()) e.batch.weight = b.weight.clone();
    e.optimizers = Optimizers();
    const int64_t noise_numel = draws.numel();
    constexpr int64_t kPer = FlatAdam::kDeviceScalars;
    const int64_t total = noise_numel + kPer * static_cast<int64_t>(e.optimizers.size());
    e.device_inputs =
        at::zeros({total}, at::TensorOptions().dtype(at::kFloat).device(config_.device));
    e.noise = e.device_inputs.narrow(0, 0, noise_numel).view(draws.sizes());
    for (size_t i = 0; i < e.optimizers.size(); ++i) {
      e.optimizers[i]->UseDeviceScalars(
          e.device_inputs.narrow(0, noise_numel + kPer * static_cast<int64_t>(i), kPer));
    }
    capturing_ = &e;
    graph = graph_stream_->Capture([&] { e.stats = DoUpdate(e.batch, e.noise); });
    capturing_ = nullptr;
    for (FlatAdam* adam : e.optimizers) adam->UseDeviceScalars(at::Tensor());
  });
  // the capture ran DoUpdate's host code once but none of its kernels: undo its counting, and
  // remember it for the replays
  e.counter_steps.clear();
  for (const auto& [counter, before] : counters) {
    if (*counter != before) e.counter_steps.emplace_back(counter, *counter - before);
    *counter = before;
  }
  if (!graph.ok()) return graph.status();
  e.graph = *std::move(graph);
  return absl::OkStatus();
}

void TwinCriticAgent::Act(const at::Tensor& obs, bool deterministic, at::Tensor* action) {
  PRL_CHECK(obs.dim() == 2 && obs.size(1) == config_.obs_dim)
      << "Act: obs shape " << Shape(obs) << ", want [n, " << config_.obs_dim << "]";
  try {
    at::NoGradGuard no_grad;
    at::Tensor noise;
    if (!deterministic) {
      noise =
          at::randn({obs.size(0), config_.act_dim}, act_generator_, at::kFloat).to(config_.device);
    }
    *action = Policy(obs.to(config_.device, at::kFloat), deterministic, noise).to(obs.device());
  } catch (const std::exception& e) {
    PRL_LOG(FATAL) << "Act failed: " << ErrorText(e);
  }
}

absl::Status TwinCriticAgent::ExportPolicy(
    v1::PolicyArchitecture* architecture,
    std::vector<std::pair<std::string, HostTensor>>* weights) const {
  architecture->Clear();
  architecture->set_output(v1::PolicyArchitecture::OUTPUT_ACTION);
  architecture->set_obs_dim(static_cast<int32_t>(config_.obs_dim));
  architecture->set_output_dim(static_cast<int32_t>(config_.act_dim));
  architecture->set_action_dim(static_cast<int32_t>(config_.act_dim));
  architecture->set_output_bound(1.0);
  *architecture->mutable_network() = config_.actor_network;
  DescribePolicy(architecture);  // the head, and whatever the algorithm changes
  weights->clear();
  try {
    for (const auto& [name, tensor] : actor_->NamedParameters()) {
      PRL_ASSIGN_OR_RETURN(HostTensor host, FromTorch(tensor));
      weights->emplace_back(name, std::move(host));
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("cannot export the policy: ", ErrorText(e)));
  }
  return absl::OkStatus();
}

TwinCriticAgent::CriticStepResult TwinCriticAgent::CriticStep(const DeviceBatch& batch,
                                                              const at::Tensor& target) {
  at::Tensor q = critic_->Forward(batch.obs, batch.action);  // [2, B]
  at::Tensor error = q - target;
  at::Tensor squared = error.square();
  if (batch.weight.defined()) squared = squared * batch.weight;
  at::Tensor loss = squared.sum(0).mean() * 0.5;
  at::Tensor sil_loss, sil_advantage;
  if (batch.sil_obs.defined()) {
    // lower-bound Q-learning: only returns above the estimate push it (up)
    const at::Tensor q_sil = critic_->Forward(batch.sil_obs, batch.sil_action);  // [2, S]
    at::Tensor gap = (batch.sil_return - q_sil).clamp_min(0.0);
    sil_advantage = gap.detach().amax(0);  // (R - min_k Q_k)_+
    at::Tensor sq = gap.square();
    if (batch.sil_weight.defined()) sq = sq * batch.sil_weight;
    sil_loss = sq.sum(0).mean() * 0.5;
    loss = loss + sil_loss * batch.sil_coef;
    sil_loss = sil_loss.detach();
  }
  GradientStep(loss, critic_->params(), *critic_adam_);
  return {loss.detach(), error.detach().abs().mean(0), q.detach().mean(), sil_loss, sil_advantage};
}

void TwinCriticAgent::GradientStep(const at::Tensor& loss, models::ParameterBlock& params,
                                   FlatAdam& adam) {
  params.ZeroGrad();
  loss.backward();
  at::NoGradGuard no_grad;
  const double max_norm = config_.algorithm.max_grad_norm();
  if (max_norm > 0) {
    // torch.nn.utils.clip_grad_norm_: scale by min(1, max_norm / (norm + 1e-6)), no host sync
    at::Tensor norm = params.flat_grad().norm();
    params.flat_grad().mul_((norm + 1e-6).reciprocal_().mul_(max_norm).clamp_max_(1.0));
  }
  adam.Step(params.flat_grad());
}

void TwinCriticAgent::Polyak(const models::ParameterBlock& online,
                             models::ParameterBlock& target) const {
  at::NoGradGuard no_grad;
  const double tau = config_.algorithm.tau();
  if (tau >= 1.0) {
    target.flat().copy_(online.flat());
  } else {
    target.flat().lerp_(online.flat(), tau);
  }
}

at::Tensor TwinCriticAgent::TdTarget(const DeviceBatch& batch, const at::Tensor& next_value) const {
  return at::addcmul(batch.reward * config_.algorithm.reward_scale(), batch.discount, next_value,
                     config_.algorithm.discount());
}

void TwinCriticAgent::FetchStats(const std::vector<at::Tensor>& scalars,
                                 const at::Tensor& td_error_abs, UpdateStats* stats) {
  std::vector<at::Tensor> parts;
  for (const at::Tensor& s : scalars) {
    parts.push_back(s.defined() ? s.reshape({1}).to(at::kFloat)
                                : at::zeros({1}, td_error_abs.options()));
  }
  parts.push_back(td_error_abs);
  at::Tensor packed = at::cat(parts);
  if (capturing_ != nullptr) {
    capturing_->packed_stats = std::move(packed);
    capturing_->num_scalars = scalars.size();
    return;
  }
  UnpackStats(packed.cpu(), scalars.size(), stats);
}

void TwinCriticAgent::UnpackStats(const at::Tensor& host, size_t num_scalars, UpdateStats* stats) {
  const float* v = host.data_ptr<float>();
  double* fields[] = {&stats->critic_loss, &stats->actor_loss, &stats->alpha,
                      &stats->alpha_loss,  &stats->q_mean,     &stats->entropy};
  for (size_t i = 0; i < num_scalars && i < 6; ++i) *fields[i] = v[i];
  stats->td_error_abs.assign(v + num_scalars, v + host.numel());
}

}  // namespace internal

Agent::~Agent() = default;

absl::StatusOr<std::unique_ptr<Agent>> Agent::Create(const AgentOptions& options) {
  PRL_ASSIGN_OR_RETURN(internal::AgentConfig config, internal::ResolveAgentOptions(options));
  try {
    if (config.num_threads > 0) at::set_num_threads(config.num_threads);
    if (config.algorithm.has_sac() || config.algorithm.has_parrot()) {
      return std::unique_ptr<Agent>(internal::NewSacAgent(config));
    }
    if (config.algorithm.has_td3()) return std::unique_ptr<Agent>(internal::NewTd3Agent(config));
    if (config.algorithm.has_mcat()) {
      return absl::UnimplementedError(
          "algorithm.mcat: Agent::Create builds sac, td3 and parrot; mcat's context-conditioned "
          "TD3 is built by CreateMcatAlgorithm (learner/mcat_algorithm.h)");
    }
    const std::string name = config.algorithm.has_eap() ? "eap" : "spirl";
    return absl::UnimplementedError(
        absl::StrCat("algorithm.", name, ": Agent::Create builds sac, td3 and parrot; a ", name,
                     " agent needs its prior (learner/spirl_agent.h, CreateSpirlAgent)"));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("cannot build the agent: ", internal::ErrorText(e)));
  }
}

}  // namespace prl::learner
