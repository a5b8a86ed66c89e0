#include "learner/agent.h"

#include <array>
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
#include "learner/input_block.h"

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
  if (options.updates_per_graph < 1 || options.updates_per_graph > kMaxUpdatesPerGraph) {
    return FieldRangeError("updates_per_graph", options.updates_per_graph, 1, kMaxUpdatesPerGraph);
  }
  config.obs_dim = options.obs_dim;
  config.act_dim = options.act_dim;
  config.seed = options.seed;
  config.num_threads = options.num_threads;
  config.gemm = options.fast_cpu_gemm ? models::GemmBackend::kOneDnn : models::GemmBackend::kAten;
  config.cuda_graphs = options.cuda_graphs;
  config.updates_per_graph = options.updates_per_graph;
  config.direct_cpu_update = options.direct_cpu_update;
  config.algorithm = options.algorithm;
  PRL_RETURN_IF_ERROR(ResolveAlgorithmSpec(options.act_dim, &config.algorithm));
  config.actor_network = config.algorithm.network();
  PRL_ASSIGN_OR_RETURN(config.device, ResolveDevice(options.device));
  return config;
}

// ---- TwinCriticAgent ----

namespace {

// The fields a captured graph reads from its batch, in one order (graphs hold no self-imitation
// rows).
std::array<const at::Tensor*, 6> GraphInputs(const DeviceBatch& b) {
  return {&b.obs, &b.action, &b.reward, &b.next_obs, &b.discount, &b.weight};
}
std::array<at::Tensor*, 6> MutableGraphInputs(DeviceBatch& b) {
  return {&b.obs, &b.action, &b.reward, &b.next_obs, &b.discount, &b.weight};
}

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

// A captured graph of one update, or of a group of UpdateMany's updates, with its static inputs
// and outputs.
struct TwinCriticAgent::GraphEntry {
  int eager_updates = 0;
  std::unique_ptr<CapturedGraph> graph;  // none: not captured yet (a group's: capture failed)
  std::vector<DeviceBatch> batches;      // per update, its inputs: each replay copies a batch in
  std::vector<InputBlock> blocks;        // per update, how (one block where the batch was one)
  // per update [noise draws | scalars of each optimiser], written in one copy
  at::Tensor device_inputs;
  int64_t inputs_per_update = 0;
  std::vector<at::Tensor> noise;  // per update, the draws' view of device_inputs
  std::vector<FlatAdam*> optimizers;
  at::Tensor packed_stats;  // what each update's FetchStats would have copied, concatenated
  struct Step {
    UpdateStats stats;  // what DoUpdate returned at capture (its flags), numbers filled per replay
    at::Tensor packed;  // while capturing: what FetchStats packed
    uint32_t defined_scalars = 0;  // FetchStats's: which scalars it packed
    int64_t offset = 0;            // in packed_stats
    int64_t numel = 0;
    std::vector<std::pair<int64_t*, int64_t>> counter_steps;  // what the update adds to each
  };
  std::vector<Step> steps;  // one per update
  size_t capturing_step = 0;
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
  GraphKey key{b.size, b.weight.defined(), {GraphBranch()}};
  if (graphs_.count(key) == 0 && CountKinds(/*groups=*/false) >= kMaxGraphs) {
    return DoUpdate(b, draws.to(config_.device));
  }
  std::unique_ptr<GraphEntry>& slot = graphs_[std::move(key)];
  if (slot == nullptr) slot = std::make_unique<GraphEntry>();
  GraphEntry& e = *slot;
  UpdateStats stats;
  if (e.graph == nullptr) {
    absl::Status captured;
    if (e.eager_updates >= kEagerUpdatesBeforeCapture) {
      captured = CaptureUpdates(absl::MakeConstSpan(&b, 1), draws.sizes(), {GraphBranch()}, e);
    }
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
  graph_stream_->Run([&] { host_stats = EnqueueReplay(absl::MakeConstSpan(&b, 1), {draws}, e); });
  graph_stream_->Synchronize();
  UnpackReplay(e, host_stats, &stats);
  return stats;
}

size_t TwinCriticAgent::CountKinds(bool groups) const {
  size_t n = 0;
  for (const auto& [key, entry] : graphs_) n += (std::get<2>(key).size() > 1) == groups ? 1 : 0;
  return n;
}

size_t TwinCriticAgent::group_graphs() const {
  size_t n = 0;
  for (const auto& [key, entry] : graphs_) {
    n += std::get<2>(key).size() > 1 && entry->graph != nullptr ? 1 : 0;
  }
  return n;
}

const std::vector<int64_t*>& TwinCriticAgent::Counters() {
  if (counters_.empty()) {
    for (const StateEntry& entry : StateEntries()) {
      if (entry.counter != nullptr) counters_.push_back(entry.counter);
    }
  }
  return counters_;
}

bool TwinCriticAgent::PlanBranches(int64_t size, bool weighted, size_t n,
                                   std::vector<int64_t>* branches) {
  const std::vector<int64_t*>& counters = Counters();
  std::vector<int64_t> saved;
  saved.reserve(counters.size());
  for (const int64_t* c : counters) saved.push_back(*c);
  branches->clear();
  bool planned = true;
  for (size_t k = 0; k < n && planned; ++k) {
    const int64_t branch = GraphBranch();
    auto found = graphs_.find(GraphKey{size, weighted, {branch}});
    planned = found != graphs_.end() && found->second->graph != nullptr;
    if (!planned) break;
    branches->push_back(branch);
    for (const auto& [counter, step] : found->second->steps[0].counter_steps) *counter += step;
  }
  for (size_t i = 0; i < counters.size(); ++i) *counters[i] = saved[i];
  return planned;
}

TwinCriticAgent::GraphEntry* TwinCriticAgent::GroupGraph(absl::Span<const DeviceBatch> batches,
                                                         const std::function<void()>& idle) {
  // what a run's kinds (one or two batch sizes, weights or not) and its branch sequences (the
  // periods of TD3's delayed actor and of the target update) need
  constexpr size_t kMaxGroupGraphs = 12;
  const DeviceBatch& first = batches.front();
  for (const DeviceBatch& b : batches) {
    if (b.size != first.size || b.weight.defined() != first.weight.defined() ||
        b.sil_obs.defined()) {
      return nullptr;
    }
  }
  std::vector<int64_t> branches;
  if (!PlanBranches(first.size, first.weight.defined(), batches.size(), &branches)) {
    return nullptr;
  }
  GraphKey key{first.size, first.weight.defined(), branches};
  auto found = graphs_.find(key);
  if (found != graphs_.end()) {  // captured, or its capture failed (no graph)
    GraphEntry* e = found->second.get();
    return e->graph != nullptr ? e : nullptr;
  }
  // failed captures count too: a kind whose capture fails is not tried again and again
  if (CountKinds(/*groups=*/true) >= kMaxGroupGraphs) return nullptr;
  GraphEntry& e = *(graphs_[std::move(key)] = std::make_unique<GraphEntry>());
  absl::Status captured;
  try {
    idle();
    const std::vector<int64_t> noise_shape = {NoiseDraws(), first.size, config_.act_dim};
    captured = CaptureUpdates(batches, noise_shape, branches, e);
  } catch (...) {
    e = GraphEntry{};  // no graph, no copies: the kind stays on its updates' own graphs
    throw;
  }
  if (!captured.ok()) {
    // the updates' own graphs work: keep them
    PRL_LOG(WARNING) << "learner: a graph of " << batches.size()
                     << " updates: " << captured.message() << "; these updates take one graph each";
    e = GraphEntry{};
    return nullptr;
  }
  return &e;
}

at::Tensor TwinCriticAgent::EnqueueReplay(absl::Span<const DeviceBatch> batches,
                                          absl::Span<const at::Tensor> draws, GraphEntry& e) {
  PRL_CHECK(batches.size() == e.steps.size() && draws.size() == e.steps.size());
  for (size_t k = 0; k < batches.size(); ++k) {
    input_copies_ += e.blocks[k].Fill(GraphInputs(batches[k]), MutableGraphInputs(e.batches[k]));
  }
  // every update's noise and step scalars in one transfer from pinned memory; LibTorch's pinned
  // allocator keeps the block from reuse until the copy has run
  const at::TensorOptions pinned = at::TensorOptions().dtype(at::kFloat).pinned_memory(true);
  const at::Tensor staged = at::empty({e.device_inputs.numel()}, pinned);
  // the counters as the updates leave them, at once: each update's step scalars follow from its
  // predecessors' (and from here on the replay happens whatever follows, unless it fails)
  std::vector<std::pair<int64_t*, int64_t>> before;
  for (size_t k = 0; k < e.steps.size(); ++k) {
    float* p = staged.data_ptr<float>() + e.inputs_per_update * static_cast<int64_t>(k);
    const int64_t noise_numel = draws[k].numel();
    PRL_CHECK(noise_numel == e.noise[k].numel() && draws[k].is_contiguous());
    std::memcpy(p, draws[k].data_ptr<float>(), sizeof(float) * noise_numel);
    for (size_t i = 0; i < e.optimizers.size(); ++i) {
      e.optimizers[i]->NextStepScalars(p + noise_numel + FlatAdam::kDeviceScalars * i);
    }
    for (const auto& [counter, step] : e.steps[k].counter_steps) {
      before.emplace_back(counter, *counter);
      *counter += step;
    }
  }
  at::Tensor host;
  try {
    e.device_inputs.copy_(staged, /*non_blocking=*/true);
    host = at::empty(e.packed_stats.sizes(), pinned);
    e.graph->Replay();
  } catch (...) {
    for (auto it = before.rbegin(); it != before.rend(); ++it) *it->first = it->second;
    throw;
  }
  host.copy_(e.packed_stats, /*non_blocking=*/true);
  return host;
}

void TwinCriticAgent::UnpackReplay(const GraphEntry& e, const at::Tensor& host, UpdateStats* out) {
  const float* v = host.data_ptr<float>();
  for (size_t k = 0; k < e.steps.size(); ++k) {
    const GraphEntry::Step& step = e.steps[k];
    out[k] = step.stats;
    UnpackStats(v + step.offset, step.numel, step.defined_scalars, &out[k]);
  }
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
      size_t index;  // of the replay's first update
      const GraphEntry* entry;
      at::Tensor host;
    };
    std::vector<Pending> pending;
    auto collect = [&] {
      if (pending.empty()) return;
      graph_stream_->Synchronize();
      for (const Pending& q : pending) UnpackReplay(*q.entry, q.host, &out[q.index]);
      pending.clear();
    };
    const size_t group = static_cast<size_t>(config_.updates_per_graph);
    for (size_t i = 0; i < prepared.size();) {
      const DeviceBatch& b = prepared[i];
      auto noise = [&] {
        return at::randn({NoiseDraws(), b.size, config_.act_dim}, train_generator_, at::kFloat);
      };
      if (graph_stream_ == nullptr || !GraphSafe() || b.sil_obs.defined()) {
        out[i++] = DoUpdate(b, noise().to(config_.device));
        continue;
      }
      if (group > 1 && i + group <= prepared.size()) {
        const absl::Span<const DeviceBatch> members =
            absl::MakeConstSpan(prepared).subspan(i, group);
        if (GraphEntry* e = GroupGraph(members, collect)) {
          std::vector<at::Tensor> draws;
          for (size_t k = 0; k < group; ++k) draws.push_back(noise());  // in the updates' order
          at::Tensor host;
          graph_stream_->Run([&] { host = EnqueueReplay(members, draws, *e); });
          pending.push_back({i, e, std::move(host)});
          ++group_replays_;
          i += group;
          continue;
        }
      }
      const at::Tensor draws = noise();
      auto found = graphs_.find(GraphKey{b.size, b.weight.defined(), {GraphBranch()}});
      if (found == graphs_.end() || found->second->graph == nullptr) {
        collect();  // warm-up and capture want an idle stream
        out[i++] = GraphUpdate(b, draws);
        continue;
      }
      GraphEntry& e = *found->second;
      at::Tensor host;
      graph_stream_->Run([&] { host = EnqueueReplay(absl::MakeConstSpan(&b, 1), {draws}, e); });
      pending.push_back({i++, &e, std::move(host)});
    }
    collect();
    return out;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("learner update failed: ", ErrorText(e)));
  }
}

absl::Status TwinCriticAgent::CaptureUpdates(absl::Span<const DeviceBatch> batches,
                                             at::IntArrayRef noise_shape,
                                             absl::Span<const int64_t> branches, GraphEntry& e) {
  const std::vector<int64_t*>& counters = Counters();
  std::vector<int64_t> before;
  for (const int64_t* c : counters) before.push_back(*c);
  const size_t n = batches.size();
  absl::StatusOr<std::unique_ptr<CapturedGraph>> graph;
  absl::Status planned;
  graph_stream_->Run([&] {
    e.batches.clear();
    e.noise.clear();
    e.steps.assign(n, GraphEntry::Step{});
    e.blocks.clear();
    e.batches.reserve(n);
    for (const DeviceBatch& b : batches) {
      DeviceBatch& s = e.batches.emplace_back();
      s.size = b.size;
      // in one block where the batch is (a staged one), at the same offsets
      e.blocks.emplace_back(GraphInputs(b), MutableGraphInputs(s));
      e.blocks.back().Fill(GraphInputs(b), MutableGraphInputs(s));
    }
    e.optimizers = Optimizers();
    int64_t noise_numel = 1;
    for (const int64_t d : noise_shape) noise_numel *= d;
    constexpr int64_t kPer = FlatAdam::kDeviceScalars;
    e.inputs_per_update = noise_numel + kPer * static_cast<int64_t>(e.optimizers.size());
    e.device_inputs = at::zeros({e.inputs_per_update * static_cast<int64_t>(n)},
                                at::TensorOptions().dtype(at::kFloat).device(config_.device));
    for (size_t k = 0; k < n; ++k) {
      e.noise.push_back(
          e.device_inputs.narrow(0, e.inputs_per_update * static_cast<int64_t>(k), noise_numel)
              .view(noise_shape));
    }
    capturing_ = &e;
    graph = graph_stream_->Capture([&] {
      std::vector<int64_t> last = before;
      for (size_t k = 0; k < n; ++k) {
        if (GraphBranch() != branches[k]) {
          planned = absl::InternalError(absl::StrCat("update ", k, " of the graph takes branch ",
                                                     GraphBranch(), ", planned ", branches[k]));
          return;
        }
        const int64_t base = e.inputs_per_update * static_cast<int64_t>(k) + noise_numel;
        for (size_t i = 0; i < e.optimizers.size(); ++i) {
          e.optimizers[i]->UseDeviceScalars(
              e.device_inputs.narrow(0, base + kPer * static_cast<int64_t>(i), kPer));
        }
        e.capturing_step = k;
        e.steps[k].stats = DoUpdate(e.batches[k], e.noise[k]);
        if (!e.steps[k].packed.defined()) {
          planned = absl::InternalError("an update fetched no statistics");
          return;
        }
        // what this update added to the counters (the capture ran its host code, none of its
        // kernels), for the replays to add
        for (size_t j = 0; j < counters.size(); ++j) {
          if (*counters[j] != last[j]) {
            e.steps[k].counter_steps.emplace_back(counters[j], *counters[j] - last[j]);
          }
          last[j] = *counters[j];
        }
      }
      if (n == 1) {
        e.packed_stats = e.steps[0].packed;
      } else {
        std::vector<at::Tensor> parts;
        for (const GraphEntry::Step& step : e.steps) parts.push_back(step.packed);
        e.packed_stats = at::cat(parts);
      }
    });
    capturing_ = nullptr;
    for (FlatAdam* adam : e.optimizers) adam->UseDeviceScalars(at::Tensor());
  });
  // undo the capture's counting: the replays count
  for (size_t j = 0; j < counters.size(); ++j) *counters[j] = before[j];
  if (!graph.ok()) return graph.status();
  if (!planned.ok()) return planned;
  int64_t offset = 0;
  for (GraphEntry::Step& step : e.steps) {
    step.offset = offset;
    step.numel = step.packed.numel();
    offset += step.numel;
    step.packed = at::Tensor();  // packed_stats holds it (or a copy)
  }
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
  const at::Tensor q = critic_->Forward(batch.obs, batch.action);  // [2, B]
  // 0.5·mean_b Σ_k w_b·(Q_k − y)², with mean_k |Q_k − y| and mean Q (on a GPU one kernel each way)
  const models::TdLoss td = models::TwinTdLoss(q, target, batch.weight);
  at::Tensor loss = td.loss;
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
  return {loss.detach(), td.td_error_abs, td.q_mean, sil_loss, sil_advantage};
}

void TwinCriticAgent::GradientStep(const at::Tensor& loss, models::ParameterBlock& params,
                                   FlatAdam& adam) {
  params.GradientInto(loss);
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

at::Tensor TwinCriticAgent::TdTarget(const DeviceBatch& batch, const at::Tensor& next_q,
                                     const at::Tensor& alpha, const at::Tensor& regularizer) const {
  return models::TwinTdTarget(next_q, alpha, regularizer, batch.reward, batch.discount,
                              config_.algorithm.reward_scale(), config_.algorithm.discount());
}

void TwinCriticAgent::FetchStats(const std::vector<at::Tensor>& scalars,
                                 const at::Tensor& td_error_abs, UpdateStats* stats) {
  // the defined scalars only (an undefined one reads 0 without a tensor of zeros: a kernel on a
  // GPU), then the per-item errors
  PRL_CHECK(scalars.size() <= kPackedScalars) << "FetchStats: " << scalars.size() << " scalars";
  std::vector<at::Tensor> parts;
  uint32_t defined = 0;
  for (size_t i = 0; i < scalars.size() && i < kPackedScalars; ++i) {
    if (!scalars[i].defined()) continue;
    parts.push_back(scalars[i].reshape({1}).to(at::kFloat));
    defined |= 1u << i;
  }
  parts.push_back(td_error_abs);
  at::Tensor packed = at::cat(parts);
  if (capturing_ != nullptr) {
    GraphEntry::Step& step = capturing_->steps[capturing_->capturing_step];
    step.packed = std::move(packed);
    step.defined_scalars = defined;
    return;
  }
  const at::Tensor host = packed.cpu();
  UnpackStats(host.data_ptr<float>(), host.numel(), defined, stats);
}

void TwinCriticAgent::UnpackStats(const float* v, int64_t numel, uint32_t defined,
                                  UpdateStats* stats) {
  double* fields[kPackedScalars] = {&stats->critic_loss, &stats->actor_loss, &stats->alpha,
                                    &stats->alpha_loss,  &stats->q_mean,     &stats->entropy};
  int64_t next = 0;
  for (size_t i = 0; i < kPackedScalars; ++i) {
    *fields[i] = (defined >> i & 1u) != 0 ? v[next++] : 0.0;
  }
  stats->td_error_abs.assign(v + next, v + numel);
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
