// prior_training_bench: how fast the learner trains a prior on the CPU, and how much of that
// time goes to waiting for data. It runs the loop a TRAIN_PRIOR experiment runs
// (learner/prior_training_run.cc): read a D4RL-layout HDF5 dataset, cut it into H-step windows
// with held-out episodes (learner/window_dataset.h), then, step after step, draw a batch of
// windows (WindowDataset::SampleTrain) and take one Adam step on it (PriorModel::TrainStep).
// It times the two parts separately:
//
//   samples/s      windows trained on per wall-clock second (batch · steps / wall time)
//   data wait      the fraction of the wall time spent in SampleTrain (the loop has no
//                  prefetch: the step waits for every batch it gets)
//
// --model=skill is SPiRL's skill model at SPiRL's sizes (H = 10, latent 10, 5 × 128 nets,
// batch 128); --model=flow is PARROT's real NVP flow (4 couplings of [256, 256], horizon 1).
// bench/prior_training.sh runs it against the same model in PyTorch
// (bench/prior_training_vs_pytorch.py); --json appends the result as one JSON line.
// --check_dir writes a fresh skill model's weights, one batch and its Evaluate losses, which
// prior_training_vs_pytorch.py --check reads to show that its model computes the same losses.
//
//   bazel build -c opt //bench:prior_training_bench
//   .bazel/bin/bench/prior_training_bench --dataset=maze.hdf5 --threads=1 --seconds=20
#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ATen/ATen.h"
#include "ATen/Parallel.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/allocator.h"
#include "common/dataset_reader.h"
#include "common/status_macros.h"
#include "learner/window_dataset.h"
#include "models/artifact.h"
#include "models/cpu_allocator.h"
#include "models/prior_model.h"
#include "models/real_nvp.h"
#include "models/skill_model.h"
#include "proto/experiment.pb.h"
#include "proto/prior.pb.h"
#include "torch/csrc/autograd/profiler_legacy.h"
#include "torch/version.h"

ABSL_FLAG(std::string, trace, "",
          "Before the timed loop, write a Chrome trace of five steps' LibTorch operators here "
          "(chrome://tracing or ui.perfetto.dev).");
ABSL_FLAG(std::string, dataset, "", "D4RL-layout HDF5 dataset (prl_collect writes them).");
ABSL_FLAG(std::string, model, "skill", "skill (SPiRL's skill model) or flow (PARROT's flow).");
ABSL_FLAG(int, threads, 1, "LibTorch intra-op threads.");
ABSL_FLAG(double, seconds, 20.0, "Measured time (after the warm-up).");
ABSL_FLAG(int, warmup, 20, "Training steps before timing starts.");
ABSL_FLAG(int, batch, 128, "Windows per step.");
ABSL_FLAG(int, horizon, 10, "Steps per window (skill model; the flow's is 1).");
ABSL_FLAG(int, latent, 10, "Skill latent dimension.");
ABSL_FLAG(int, hidden_layers, 5, "Skill model: hidden layers per network.");
ABSL_FLAG(int, hidden_size, 128, "Skill model: units per hidden layer.");
ABSL_FLAG(bool, direct, true,
          "Skill model: the autograd-free CPU step where it applies "
          "(SkillModelOptions::direct_cpu_step); false: LibTorch's autograd.");
ABSL_FLAG(int64_t, seed, 1, "Seeds the split, the initial weights and the batches.");
ABSL_FLAG(std::string, json, "", "Append the result as one JSON line to this file.");
ABSL_FLAG(std::string, label, "prl", "The contender's name in the JSON line.");
ABSL_FLAG(std::string, check_dir, "",
          "Instead of timing: write a fresh skill model's parameters, one batch and its Evaluate "
          "losses to this directory, for prior_training_vs_pytorch.py --check.");

namespace prl::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Process CPU time, all threads.
double CpuSeconds() {
  rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         1e-6 * (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

absl::StatusOr<std::unique_ptr<models::PriorModel>> MakeModel(const std::string& kind, int obs_dim,
                                                              int act_dim) {
  if (kind == "skill") {
    models::SkillModelOptions o;
    o.obs_dim = obs_dim;
    o.act_dim = act_dim;
    o.horizon = absl::GetFlag(FLAGS_horizon);
    o.latent_dim = absl::GetFlag(FLAGS_latent);
    for (int i = 0; i < absl::GetFlag(FLAGS_hidden_layers); ++i) {
      o.network.add_hidden_sizes(absl::GetFlag(FLAGS_hidden_size));
    }
    o.seed = absl::GetFlag(FLAGS_seed);
    o.direct_cpu_step = absl::GetFlag(FLAGS_direct);
    PRL_ASSIGN_OR_RETURN(std::unique_ptr<models::SkillModel> m, models::SkillModel::Create(o));
    return std::unique_ptr<models::PriorModel>(std::move(m));
  }
  if (kind == "flow") {
    models::RealNvpOptions o;
    o.obs_dim = obs_dim;
    o.act_dim = act_dim;
    o.seed = absl::GetFlag(FLAGS_seed);
    PRL_ASSIGN_OR_RETURN(std::unique_ptr<models::RealNvpFlow> m, models::RealNvpFlow::Create(o));
    return std::unique_ptr<models::PriorModel>(std::move(m));
  }
  return absl::InvalidArgumentError(absl::StrCat("--model: '", kind, "' is not skill or flow"));
}

// Writes `t` (float32, contiguous) to `path` as raw little-endian floats.
absl::Status WriteFloats(const std::string& path, const at::Tensor& t) {
  at::Tensor c = t.to(at::kCPU, at::kFloat).contiguous();
  std::ofstream file(path, std::ios::binary);
  file.write(reinterpret_cast<const char*>(c.data_ptr<float>()), c.numel() * sizeof(float));
  if (!file.good()) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

// --check_dir: params.txt ("name dim..." per line) and params.bin (the values in that order),
// obs.bin and actions.bin (one batch), check.txt (shapes, seed and the Evaluate losses).
absl::Status WriteCheck(const std::string& dir, const learner::WindowDataset& data) {
  if (absl::GetFlag(FLAGS_model) != "skill") {
    return absl::InvalidArgumentError("--check_dir needs --model=skill");
  }
  PRL_ASSIGN_OR_RETURN(std::unique_ptr<models::PriorModel> model,
                       MakeModel("skill", data.obs_dim(), data.act_dim()));
  v1::ModelInfo info;
  info.set_name("check");
  info.set_version(1);
  PRL_ASSIGN_OR_RETURN(models::ModelArtifact artifact, model->ToArtifact(info));
  std::ofstream names(dir + "/params.txt");
  std::ofstream values(dir + "/params.bin", std::ios::binary);
  for (const auto& [name, tensor] : artifact.tensors) {
    names << name;
    for (int64_t d : tensor.shape()) names << " " << d;
    names << "\n";
    const absl::Span<const float> v = tensor.data<float>();
    values.write(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
  }
  if (!names.good() || !values.good()) return absl::InternalError("cannot write the parameters");
  std::mt19937_64 rng(static_cast<uint64_t>(absl::GetFlag(FLAGS_seed)));
  const models::WindowBatch batch = data.SampleTrain(absl::GetFlag(FLAGS_batch), rng);
  PRL_RETURN_IF_ERROR(WriteFloats(dir + "/obs.bin", batch.obs));
  PRL_RETURN_IF_ERROR(WriteFloats(dir + "/actions.bin", batch.actions));
  PRL_ASSIGN_OR_RETURN(models::Losses losses, model->Evaluate(batch));
  std::ofstream check(dir + "/check.txt");
  check << "batch " << batch.obs.size(0) << "\nhorizon " << data.horizon() << "\nobs_dim "
        << data.obs_dim() << "\nact_dim " << data.act_dim() << "\nlatent "
        << absl::GetFlag(FLAGS_latent) << "\nseed " << absl::GetFlag(FLAGS_seed) << "\n";
  for (const auto& [name, value] : losses) {
    check << name << " " << absl::StrFormat("%.9g", value) << "\n";
  }
  if (!check.good()) return absl::InternalError("cannot write check.txt");
  std::cout << "wrote " << artifact.tensors.size() << " parameters, a batch of "
            << batch.obs.size(0) << " and the losses to " << dir << "\n";
  return absl::OkStatus();
}

absl::Status Main() {
  const std::string path = absl::GetFlag(FLAGS_dataset);
  const std::string kind = absl::GetFlag(FLAGS_model);
  const int threads = absl::GetFlag(FLAGS_threads);
  const int batch = absl::GetFlag(FLAGS_batch);
  if (path.empty()) return absl::InvalidArgumentError("--dataset is required");
  if (threads < 1 || batch < 1) return absl::InvalidArgumentError("--threads, --batch: >= 1");
  at::set_num_threads(threads);

  // the data path of a TRAIN_PRIOR run: the whole file in memory, windows, a seeded split
  PRL_ASSIGN_OR_RETURN(Dataset dataset, ReadDataset(path));
  learner::WindowDatasetOptions options;
  options.horizon = kind == "flow" ? 1 : absl::GetFlag(FLAGS_horizon);
  options.seed = static_cast<uint64_t>(absl::GetFlag(FLAGS_seed));
  options.device = "cpu";
  PRL_ASSIGN_OR_RETURN(std::unique_ptr<learner::WindowDataset> data,
                       learner::WindowDataset::Create(std::move(dataset), options, path));
  if (const std::string dir = absl::GetFlag(FLAGS_check_dir); !dir.empty()) {
    return WriteCheck(dir, *data);
  }
  PRL_ASSIGN_OR_RETURN(std::unique_ptr<models::PriorModel> model,
                       MakeModel(kind, data->obs_dim(), data->act_dim()));
  std::cout << absl::StrFormat(
      "%s on %s: %d training windows of %d steps (obs %d, action %d), batch %d, %d thread(s), "
      "LibTorch %s\n",
      kind, path, data->train_windows(), data->horizon(), data->obs_dim(), data->act_dim(), batch,
      threads, TORCH_VERSION);

  std::mt19937_64 rng(static_cast<uint64_t>(absl::GetFlag(FLAGS_seed)) ^ 0x5eed5eedULL);
  for (int i = 0; i < absl::GetFlag(FLAGS_warmup); ++i) {
    PRL_RETURN_IF_ERROR(model->TrainStep(data->SampleTrain(batch, rng)).status());
  }
  if (const std::string trace = absl::GetFlag(FLAGS_trace); !trace.empty()) {
    // LibTorch's profiler over a few untimed steps: a Chrome trace of every operator
    torch::autograd::profiler::RecordProfile guard(trace);
    for (int i = 0; i < 5; ++i) {
      PRL_RETURN_IF_ERROR(model->TrainStep(data->SampleTrain(batch, rng)).status());
    }
  }
  // the timed loop: the learner's, with the batch drawn and the step taken in turn
  const double seconds = absl::GetFlag(FLAGS_seconds);
  Clock::duration wait{}, compute{};
  int64_t steps = 0;
  double last_loss = 0;
  const double cpu_start = CpuSeconds();
  const Clock::time_point start = Clock::now();
  Clock::time_point now = start;
  while (Seconds(now - start) < seconds || steps < 10) {
    const Clock::time_point t0 = now;
    models::WindowBatch windows = data->SampleTrain(batch, rng);
    const Clock::time_point t1 = Clock::now();
    PRL_ASSIGN_OR_RETURN(models::Losses losses, model->TrainStep(windows));
    now = Clock::now();
    wait += t1 - t0;
    compute += now - t1;
    last_loss = losses["loss"];
    ++steps;
  }
  const double wall = Seconds(now - start);
  const double cpu = CpuSeconds() - cpu_start;
  const double samples_per_second = static_cast<double>(steps) * batch / wall;
  const double wait_fraction = Seconds(wait) / wall;
  std::cout << absl::StrFormat(
      "%d steps in %.2f s: %.0f samples/s (%.0f per CPU-second), %.2f ms per step: data %.3f ms "
      "(%.2f%% of the time), train step %.3f ms; last loss %.4f\n",
      steps, wall, samples_per_second, steps * batch / cpu, 1e3 * wall / steps,
      1e3 * Seconds(wait) / steps, 100 * wait_fraction, 1e3 * Seconds(compute) / steps, last_loss);

  if (const std::string json = absl::GetFlag(FLAGS_json); !json.empty()) {
    std::ofstream file(json, std::ios::app);
    file << absl::StrFormat(
        "{\"contender\": \"%s\", \"model\": \"%s\", \"loader\": \"window_dataset\", "
        "\"threads\": %d, \"torch\": \"%s\", \"batch\": %d, \"steps\": %d, \"seconds\": %.4f, "
        "\"cpu_seconds\": %.4f, \"samples_per_second\": %.2f, \"data_wait_fraction\": %.6f, "
        "\"data_ms_per_step\": %.5f, \"step_ms_per_step\": %.5f, \"loss\": %.6f}\n",
        absl::GetFlag(FLAGS_label), kind, threads, TORCH_VERSION, batch, steps, wall, cpu,
        samples_per_second, wait_fraction, 1e3 * Seconds(wait) / steps,
        1e3 * Seconds(compute) / steps, last_loss);
    if (!file.good()) return absl::InternalError(absl::StrCat("cannot write ", json));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace prl::bench

int main(int argc, char** argv) {
  prl::RetainFreedMemory();  // as prl_learner does
  prl::models::InstallCachingCpuAllocator();
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = prl::bench::Main();
  if (!status.ok()) {
    std::cerr << "prior_training_bench: " << status << "\n";
    return 1;
  }
  return 0;
}
