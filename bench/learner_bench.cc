// Learner benchmark: gradient updates per second of prl::learner::Agent (SAC by default) on the
// CPU, at the shapes of the papers' MuJoCo runs: batch 256, HalfCheetah's obs 17 and action 6,
// two hidden layers of 256. Measures each GEMM backend asked for: "onednn" (the learner's
// default, models/gemm.h) and "aten" (ATen's matmul on the system BLAS, which is what PyTorch
// uses), so bench/learner_vs_pytorch.py can compare like with like. --json writes the numbers.
//
//   bazel build -c opt //bench:learner_bench
//   .bazel/bin/bench/learner_bench --threads=2 --seconds=10
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ATen/ATen.h"
#include "ATen/CPUGeneratorImpl.h"
#include "ATen/Parallel.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/allocator.h"
#include "learner/agent.h"
#include "learner/device_math.h"
#include "learner/spirl_agent.h"
#include "models/cpu_allocator.h"
#include "models/gemm.h"
#include "models/skill_model.h"
#include "torch/csrc/autograd/profiler_legacy.h"
#include "torch/version.h"

#ifdef PRL_WITH_CUDA
#include <map>
#include <set>
#include <utility>

#include "torch/csrc/autograd/profiler_kineto.h"
#endif

ABSL_FLAG(std::string, algorithm, "sac",
          "sac, td3 or spirl (SAC over act_dim skill latents, KL-regularised towards an untrained "
          "skill prior of --prior_hidden, on the same device).");
ABSL_FLAG(std::string, prior_hidden, "128,128,128,128,128",
          "spirl: the skill prior's hidden layers, which the policy copies (SPiRL's 5x128).");
ABSL_FLAG(int, threads, 0, "LibTorch intra-op threads; 0 means every core.");
ABSL_FLAG(int, batch, 256, "Transitions per update.");
ABSL_FLAG(int, obs_dim, 17, "Observation dimension.");
ABSL_FLAG(int, act_dim, 6, "Action dimension.");
ABSL_FLAG(std::string, hidden, "256,256", "Hidden layer sizes, comma-separated.");
ABSL_FLAG(std::string, gemm, "onednn,aten",
          "CPU: GEMM backends to measure, comma-separated. A CUDA device measures \"graph\" "
          "(updates captured as CUDA graphs, AgentOptions::cuda_graphs) and \"eager\" instead, "
          "unless this names them.");
ABSL_FLAG(bool, direct, true,
          "CPU SAC and TD3: the update without autograd where it applies "
          "(AgentOptions::direct_cpu_update); false: LibTorch's autograd.");
ABSL_FLAG(int, check_updates, 0,
          "With a CUDA device: first run this many updates on the CPU and on the device (CUDA "
          "graphs on) from the same seed and batches, and print the largest relative "
          "difference of their losses.");
ABSL_FLAG(std::string, device, "cpu",
          "Device of the agent: cpu, cuda or cuda:N (batches are staged there before timing).");
ABSL_FLAG(int, warmup, 5, "Updates before timing starts.");
ABSL_FLAG(int, updates_per_call, 1,
          "Batches per call: 1 calls Agent::Update, more Agent::UpdateMany (on a GPU with CUDA "
          "graphs: the updates queued back to back, their statistics fetched once per call).");
ABSL_FLAG(int, updates_per_graph, 1,
          "With CUDA graphs and updates_per_call > 1: updates per graph launch "
          "(AgentOptions::updates_per_graph).");
ABSL_FLAG(bool, tf32, false,
          "On a GPU: float32 products on TF32 tensor cores (prl_learner's "
          "--learner_tf32_products, learner/device_math.h); off: IEEE float32.");
ABSL_FLAG(double, seconds, 5.0, "Measured time per backend (at least min_updates updates).");
ABSL_FLAG(int, min_updates, 5, "Fewest timed updates per backend.");
ABSL_FLAG(std::string, json, "", "Also write the results as JSON to this file.");
ABSL_FLAG(int, gpu_kernels, 0,
          "CUDA builds: after the timed updates, run this many more update calls under LibTorch's "
          "Kineto profiler and print what the GPU ran per update: kernels, copies and memsets, "
          "their GPU time, and the kernels that took most of it (for the graph case, the "
          "kernels inside the replayed graphs).");
ABSL_FLAG(std::string, profile, "",
          "Write a Chrome trace of LibTorch's operators during the timed updates to this file "
          "(prefixed with the backend name); timings then include the profiler's overhead.");

namespace {

using prl::learner::Agent;
using prl::learner::AgentOptions;
using prl::learner::TransitionBatch;

// Random HalfCheetah-shaped transitions, drawn once (on the CPU, then staged on `device`) so the
// timing covers updates only.
std::vector<TransitionBatch> MakeBatches(int count, int batch, int obs_dim, int act_dim,
                                         const at::Device& device) {
  at::Generator gen = at::detail::createCPUGenerator(42);
  std::vector<TransitionBatch> batches(count);
  for (TransitionBatch& b : batches) {
    b.obs = at::randn({batch, obs_dim}, gen, at::kFloat);
    b.action = at::rand({batch, act_dim}, gen, at::kFloat) * 2 - 1;
    b.reward = at::randn({batch}, gen, at::kFloat);
    b.next_obs = at::randn({batch, obs_dim}, gen, at::kFloat);
    b.discount = at::ones({batch});
    if (!device.is_cpu()) {
      for (at::Tensor* t : {&b.obs, &b.action, &b.reward, &b.next_obs, &b.discount}) {
        *t = t->to(device);
      }
    }
  }
  return batches;
}

// What the GPU ran during some update calls, per update (--gpu_kernels).
struct GpuWork {
  double kernels = 0, copies = 0, memsets = 0;                         // per update
  double kernel_us = 0, copy_us = 0;                                   // GPU time per update
  std::vector<std::pair<std::string, std::pair<double, double>>> top;  // name: {count, µs}
};

struct Result {
  std::string gemm;
  int64_t updates = 0;
  double seconds = 0;
  double cpu_seconds = 0;  // process CPU time (all threads): steadier on a shared machine
  double rate() const { return updates / seconds; }
  double cpu_rate() const { return updates / cpu_seconds; }
  bool profiled = false;  // --gpu_kernels
  GpuWork gpu;
};

AgentOptions BenchOptions(const std::string& gemm, int threads) {
  AgentOptions options;
  options.obs_dim = absl::GetFlag(FLAGS_obs_dim);
  options.act_dim = absl::GetFlag(FLAGS_act_dim);
  if (absl::GetFlag(FLAGS_algorithm) == "td3") {
    options.algorithm.mutable_td3();
  } else if (absl::GetFlag(FLAGS_algorithm) == "spirl") {
    options.algorithm.mutable_spirl();
  } else {
    options.algorithm.mutable_sac();
  }
  for (absl::string_view h : absl::StrSplit(absl::GetFlag(FLAGS_hidden), ',')) {
    int size = 0;
    if (absl::SimpleAtoi(h, &size)) options.algorithm.mutable_network()->add_hidden_sizes(size);
  }
  options.device = absl::GetFlag(FLAGS_device);
  options.seed = 1;
  options.num_threads = threads;
  options.fast_cpu_gemm = gemm == "onednn";
  options.cuda_graphs = gemm != "eager";
  options.updates_per_graph = absl::GetFlag(FLAGS_updates_per_graph);
  options.direct_cpu_update = absl::GetFlag(FLAGS_direct);
  return options;
}

// spirl's prior: an untrained skill model (the update's cost does not depend on its weights) over
// act_dim latents, H = 10, for a 2-dimensional action, on the agent's device: made on the CPU and
// moved through its artifact, so that every device has the same weights (--check_updates).
std::shared_ptr<const prl::models::LatentPriorModel> SkillPrior(const AgentOptions& options) {
  prl::models::SkillModelOptions prior;
  prior.obs_dim = static_cast<int>(options.obs_dim);
  prior.act_dim = 2;
  prior.latent_dim = static_cast<int>(options.act_dim);
  prior.seed = 2;
  for (absl::string_view h : absl::StrSplit(absl::GetFlag(FLAGS_prior_hidden), ',')) {
    int size = 0;
    if (absl::SimpleAtoi(h, &size)) prior.network.add_hidden_sizes(size);
  }
  auto model = prl::models::SkillModel::Create(prior);
  if (!model.ok()) {
    std::fprintf(stderr, "prior: %s\n", model.status().ToString().c_str());
    std::exit(1);
  }
  if (options.device == "cpu") return *std::move(model);
  prl::v1::ModelInfo info;
  info.set_name("prior");
  info.set_version(1);
  auto artifact = (*model)->ToArtifact(info);
  absl::StatusOr<std::unique_ptr<prl::models::SkillModel>> moved = artifact.status();
  if (artifact.ok()) {
    moved = prl::models::SkillModel::FromArtifact(*artifact, c10::Device(options.device));
  }
  if (!moved.ok()) {
    std::fprintf(stderr, "prior on %s: %s\n", options.device.c_str(),
                 moved.status().ToString().c_str());
    std::exit(1);
  }
  return *std::move(moved);
}

std::unique_ptr<Agent> CreateAgent(const AgentOptions& options) {
  auto agent = options.algorithm.has_spirl()
                   ? prl::learner::CreateSpirlAgent(options, SkillPrior(options))
                   : Agent::Create(options);
  if (!agent.ok()) {
    std::fprintf(stderr, "%s\n", agent.status().ToString().c_str());
    std::exit(1);
  }
  return *std::move(agent);
}

// The CPU and the device from the same seed and batches: the largest relative difference of
// each loss over `n` updates (the graph path replays what the eager CPU path computes).
void CheckAgainstCpu(int n, int threads, const std::vector<TransitionBatch>& batches) {
  AgentOptions cpu_options = BenchOptions("aten", threads);
  cpu_options.device = "cpu";
  std::unique_ptr<Agent> cpu = CreateAgent(cpu_options);
  std::unique_ptr<Agent> dev = CreateAgent(BenchOptions("graph", threads));
  double worst[3] = {0, 0, 0};
  const char* names[3] = {"critic_loss", "actor_loss", "alpha"};
  for (int i = 0; i < n; ++i) {
    const TransitionBatch& b = batches[i % batches.size()];
    TransitionBatch host{b.obs.cpu(), b.action.cpu(), b.reward.cpu(), b.next_obs.cpu(),
                         b.discount.cpu()};
    auto a = cpu->Update(host);
    auto d = dev->Update(b);
    if (!a.ok() || !d.ok()) {
      std::fprintf(stderr, "check: %s\n", (a.ok() ? d.status() : a.status()).ToString().c_str());
      std::exit(1);
    }
    const double pairs[3][2] = {
        {a->critic_loss, d->critic_loss}, {a->actor_loss, d->actor_loss}, {a->alpha, d->alpha}};
    for (int k = 0; k < 3; ++k) {
      const double scale = std::max(std::abs(pairs[k][0]), 1e-12);
      worst[k] = std::max(worst[k], std::abs(pairs[k][0] - pairs[k][1]) / scale);
    }
  }
  std::printf("  check: %d updates on cpu and %s (CUDA graphs): largest relative difference", n,
              dev->device().c_str());
  for (int k = 0; k < 3; ++k) std::printf(" %s %.2e", names[k], worst[k]);
  std::printf("\n");
  std::fflush(stdout);
}

#ifdef PRL_WITH_CUDA
// Runs `calls` calls of `update` (each `per_call` updates) under Kineto with CPU and CUDA
// activities and sums the GPU's events: CUPTI reports every kernel a graph replay runs as well
// as eager launches. Each call returns after its statistics reached the host, so its kernels are
// done when the profiler stops.
template <typename Fn>
GpuWork ProfileGpuWork(Fn update, int calls, int per_call) {
  namespace impl = torch::profiler::impl;
  const impl::ProfilerConfig config(impl::ProfilerState::KINETO);
  const std::set<impl::ActivityType> activities = {impl::ActivityType::CPU,
                                                   impl::ActivityType::CUDA};
  torch::autograd::profiler::prepareProfiler(config, activities);
  torch::autograd::profiler::enableProfiler(config, activities);
  for (int i = 0; i < calls; ++i) update();
  const std::unique_ptr<torch::autograd::profiler::ProfilerResult> result =
      torch::autograd::profiler::disableProfiler();
  GpuWork work;
  std::map<std::string, std::pair<double, double>> kernels;
  const double updates = static_cast<double>(calls) * per_call;
  for (const auto& e : result->events()) {
    if (e.deviceType() != c10::DeviceType::CUDA) continue;
    const std::string name = e.name();
    const double us = static_cast<double>(e.durationNs()) / 1e3 / updates;
    if (absl::StartsWith(name, "Memcpy")) {
      work.copies += 1.0 / updates;
      work.copy_us += us;
    } else if (absl::StartsWith(name, "Memset")) {
      work.memsets += 1.0 / updates;
    } else {
      work.kernels += 1.0 / updates;
      work.kernel_us += us;
      auto& k = kernels[name];
      k.first += 1.0 / updates;
      k.second += us;
    }
  }
  work.top.assign(kernels.begin(), kernels.end());
  std::sort(work.top.begin(), work.top.end(),
            [](const auto& a, const auto& b) { return a.second.second > b.second.second; });
  if (work.top.size() > 12) work.top.resize(12);
  return work;
}
#endif

void PrintGpuWork(const std::string& gemm, const GpuWork& w) {
  std::printf(
      "  gpu %-7s per update: %.1f kernels (%.1f us), %.1f copies (%.1f us), %.1f memsets\n",
      gemm.c_str(), w.kernels, w.kernel_us, w.copies, w.copy_us, w.memsets);
  for (const auto& [name, cost] : w.top) {
    std::printf("    %7.2f us  %5.2f x  %.90s\n", cost.second, cost.first, name.c_str());
  }
  std::fflush(stdout);
}

Result Measure(const std::string& gemm, int threads, const std::vector<TransitionBatch>& batches) {
  std::unique_ptr<Agent> agent = CreateAgent(BenchOptions(gemm, threads));
  size_t next = 0;
  const int per_call = std::max(1, absl::GetFlag(FLAGS_updates_per_call));
  std::vector<TransitionBatch> call(per_call);
  // one call: `per_call` updates
  auto update = [&]() {
    absl::Status status;
    if (per_call == 1) {
      status = agent->Update(batches[next++ % batches.size()]).status();
    } else {
      for (TransitionBatch& b : call) b = batches[next++ % batches.size()];
      status = agent->UpdateMany(call).status();
    }
    if (!status.ok()) {
      std::fprintf(stderr, "%s\n", status.ToString().c_str());
      std::exit(1);
    }
  };
  for (int i = 0; i < absl::GetFlag(FLAGS_warmup); ++i) update();
  Result result{gemm};
  std::unique_ptr<torch::autograd::profiler::RecordProfile> profile;
  if (!absl::GetFlag(FLAGS_profile).empty()) {
    profile = std::make_unique<torch::autograd::profiler::RecordProfile>(
        absl::StrCat(gemm, ".", absl::GetFlag(FLAGS_profile)));
  }
  const auto start = std::chrono::steady_clock::now();
  const std::clock_t cpu_start = std::clock();
  do {
    update();
    result.updates += per_call;
    result.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  } while (result.seconds < absl::GetFlag(FLAGS_seconds) ||
           result.updates < absl::GetFlag(FLAGS_min_updates));
  result.cpu_seconds = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
  if (absl::GetFlag(FLAGS_gpu_kernels) > 0) {
#ifdef PRL_WITH_CUDA
    profile.reset();  // one profiler at a time
    result.gpu = ProfileGpuWork(update, absl::GetFlag(FLAGS_gpu_kernels), per_call);
    result.profiled = true;
#endif
  }
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  prl::RetainFreedMemory();  // as prl_learner does
  prl::models::InstallCachingCpuAllocator();
  absl::ParseCommandLine(argc, argv);
  int threads = absl::GetFlag(FLAGS_threads);
  if (threads <= 0) threads = static_cast<int>(std::thread::hardware_concurrency());
  at::Device device(at::kCPU);
  try {
    device = at::Device(absl::GetFlag(FLAGS_device));
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "learner_bench: --device=%s: %s\n", absl::GetFlag(FLAGS_device).c_str(),
                 e.what_without_backtrace());
    return 1;
  }
  if (device.is_cuda() &&
      (!at::hasCUDA() || device.index() >= static_cast<int>(at::getNumGPUs()))) {
    std::fprintf(stderr,
                 "learner_bench: --device=%s: this LibTorch %s and sees %d CUDA device(s)\n",
                 absl::GetFlag(FLAGS_device).c_str(),
                 at::hasCUDA() ? "has CUDA" : "has no CUDA (or the machine no GPU)",
                 at::hasCUDA() ? static_cast<int>(at::getNumGPUs()) : 0);
    return 1;
  }
#ifndef PRL_WITH_CUDA
  if (absl::GetFlag(FLAGS_gpu_kernels) > 0) {
    std::fprintf(stderr,
                 "learner_bench: --gpu_kernels needs a CUDA build (scripts/cuda_build.sh)\n");
    return 1;
  }
#endif
  const std::string algorithm = absl::GetFlag(FLAGS_algorithm);
  if (algorithm != "sac" && algorithm != "td3" && algorithm != "spirl") {
    std::fprintf(stderr, "learner_bench: --algorithm=%s: sac, td3 or spirl\n", algorithm.c_str());
    return 1;
  }
  prl::learner::AllowTf32Products(absl::GetFlag(FLAGS_tf32));
  const std::vector<TransitionBatch> batches =
      MakeBatches(8, absl::GetFlag(FLAGS_batch), absl::GetFlag(FLAGS_obs_dim),
                  absl::GetFlag(FLAGS_act_dim), device);
  std::printf(
      "learner_bench: %s, batch %d, obs %d, act %d, hidden [%s]%s%s%s, %d threads, LibTorch %s, "
      "oneDNN sgemm %s, CUDA devices %d, on %s, %d updates per call, %d per graph%s\n",
      algorithm.c_str(), absl::GetFlag(FLAGS_batch), absl::GetFlag(FLAGS_obs_dim),
      absl::GetFlag(FLAGS_act_dim), absl::GetFlag(FLAGS_hidden).c_str(),
      algorithm == "spirl" ? " (critics), policy and prior [" : "",
      algorithm == "spirl" ? absl::GetFlag(FLAGS_prior_hidden).c_str() : "",
      algorithm == "spirl" ? "]" : "", threads, TORCH_VERSION,
      prl::models::FastSgemmAvailable() ? "available" : "not available",
      at::hasCUDA() ? static_cast<int>(at::getNumGPUs()) : 0, device.str().c_str(),
      std::max(1, absl::GetFlag(FLAGS_updates_per_call)), absl::GetFlag(FLAGS_updates_per_graph),
      absl::GetFlag(FLAGS_tf32) ? ", TF32 products" : "");
  if (device.is_cuda() && absl::GetFlag(FLAGS_check_updates) > 0) {
    CheckAgainstCpu(absl::GetFlag(FLAGS_check_updates), threads, batches);
  }
  std::string cases = absl::GetFlag(FLAGS_gemm);
  if (device.is_cuda() && absl::StrContains(cases, "onednn")) cases = "graph,eager";
  std::vector<Result> results;
  for (absl::string_view gemm : absl::StrSplit(cases, ',')) {
    results.push_back(Measure(std::string(gemm), threads, batches));
    const Result& r = results.back();
    std::printf("  gemm %-7s %10.2f updates/s  %10.2f updates/CPU-s  (%lld updates in %.2f s)\n",
                r.gemm.c_str(), r.rate(), r.cpu_rate(), static_cast<long long>(r.updates),
                r.seconds);
    std::fflush(stdout);
    if (r.profiled) PrintGpuWork(r.gemm, r.gpu);
  }
  const std::string json = absl::GetFlag(FLAGS_json);
  if (!json.empty()) {
    std::vector<std::string> cases;
    for (const Result& r : results) {
      cases.push_back(absl::StrCat(
          "{\"gemm\": \"", r.gemm, "\", \"updates\": ", r.updates, ", \"seconds\": ", r.seconds,
          ", \"cpu_seconds\": ", r.cpu_seconds, ", \"updates_per_second\": ", r.rate(),
          ", \"updates_per_cpu_second\": ", r.cpu_rate(),
          r.profiled ? absl::StrCat(", \"gpu_kernels_per_update\": ", r.gpu.kernels,
                                    ", \"gpu_kernel_us_per_update\": ", r.gpu.kernel_us,
                                    ", \"gpu_copies_per_update\": ", r.gpu.copies)
                     : "",
          "}"));
    }
    std::ofstream out(json);
    out << "{\"algorithm\": \"" << absl::GetFlag(FLAGS_algorithm) << "\", \"threads\": " << threads
        << ", \"batch\": " << absl::GetFlag(FLAGS_batch)
        << ", \"updates_per_call\": " << std::max(1, absl::GetFlag(FLAGS_updates_per_call))
        << ", \"updates_per_graph\": " << absl::GetFlag(FLAGS_updates_per_graph)
        << ", \"tf32\": " << (absl::GetFlag(FLAGS_tf32) ? "true" : "false") << ", \"libtorch\": \""
        << TORCH_VERSION
        << "\", \"onednn_sgemm\": " << (prl::models::FastSgemmAvailable() ? "true" : "false")
        << ", \"cases\": [" << absl::StrJoin(cases, ", ") << "]}\n";
  }
  return 0;
}
