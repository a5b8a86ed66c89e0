// mcat_model_bench: how fast the learner trains MCAT's context model and translator on the CPU,
// the part of an `mcat` update that is not TD3 (learner/mcat_algorithm.cc: one
// McatModel::TrainContext and one TrainTranslator per update, on the update's batch of
// windows). It times both training paths of the same model on the same batches:
//
//   direct     the autograd-free step (McatModelOptions::direct_cpu_step, the default)
//   autograd   the LibTorch autograd step (the reference)
//
// and prints steps/s for each and their ratio. The defaults are the shapes of
// bench/mcat_transfer.sh's runs: the cheetah (obs 17, action 6), 4 tasks, K = M = 10, context 10,
// 64 × 64 networks, batch 128.
//
//   bazel build -c opt //bench:mcat_model_bench
//   $(bazel info -c opt bazel-bin)/bench/mcat_model_bench --threads=1 --seconds=5
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ATen/ATen.h"
#include "ATen/Parallel.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/statusor.h"
#include "models/mcat_model.h"
#include "proto/experiment.pb.h"

ABSL_FLAG(int, threads, 1, "LibTorch intra-op threads.");
ABSL_FLAG(int, batch, 128, "Windows per step.");
ABSL_FLAG(int, hidden, 64, "Width of the two hidden layers of every network.");
ABSL_FLAG(int, obs_dim, 17, "Observation dimension.");
ABSL_FLAG(int, act_dim, 6, "Action dimension.");
ABSL_FLAG(int, tasks, 4, "Training tasks.");
ABSL_FLAG(double, seconds, 5.0, "Measured time per path.");
ABSL_FLAG(bool, autograd, true, "Also time the autograd path (false: the direct path alone).");

namespace prl::models {
namespace {

constexpr int kHistory = 10;  // K
constexpr int kHorizon = 10;  // M
constexpr int kContext = 10;

// Windows of random states and actions with random tasks; some begin before their episode.
std::vector<McatWindowBatch> Batches(int count, int rows, int obs, int act, int tasks) {
  std::mt19937 rng(1);
  std::vector<McatWindowBatch> out;
  const int w = kHistory + kHorizon;
  for (int i = 0; i < count; ++i) {
    McatWindowBatch b;
    b.observations = at::randn({rows, w + 1, obs});
    b.actions = at::rand({rows, w, act}) * 2 - 1;
    b.mask = at::ones({rows, w});
    b.task = at::randint(tasks, {rows}, at::kLong);
    for (int r = 0; r < rows; r += 7) b.mask[r].narrow(0, 0, 1 + rng() % 5).zero_();
    out.push_back(std::move(b));
  }
  return out;
}

// Steps/s of TrainContext + TrainTranslator on `batches` (round robin) for `seconds`.
double Measure(bool direct, const std::vector<McatWindowBatch>& batches, double seconds) {
  McatModelOptions o;
  o.dims = {absl::GetFlag(FLAGS_obs_dim), absl::GetFlag(FLAGS_act_dim), kContext, kHistory};
  o.prediction_horizon = kHorizon;
  o.num_tasks = absl::GetFlag(FLAGS_tasks);
  o.network.add_hidden_sizes(absl::GetFlag(FLAGS_hidden));
  o.network.add_hidden_sizes(absl::GetFlag(FLAGS_hidden));
  o.network.set_activation(v1::NetworkSpec::ACTIVATION_RELU);
  o.contrastive_weight = 0.01;
  o.direct_cpu_step = direct;
  o.seed = 1;
  absl::StatusOr<std::unique_ptr<McatModel>> model = McatModel::Create(o);
  if (!model.ok()) {
    std::fprintf(stderr, "mcat_model_bench: %s\n", std::string(model.status().message()).c_str());
    std::exit(1);
  }
  if (direct && !(*model)->direct_step()) {
    std::fprintf(stderr, "mcat_model_bench: no direct step here (no oneDNN sgemm)\n");
    std::exit(1);
  }
  auto step = [&](size_t i) {
    const McatWindowBatch& b = batches[i % batches.size()];
    if (!(*model)->TrainContext(b).ok() || !(*model)->TrainTranslator(b).ok()) {
      std::fprintf(stderr, "mcat_model_bench: a training step failed\n");
      std::exit(1);
    }
  };
  for (size_t i = 0; i < 10; ++i) step(i);  // warm-up: every task seen, buffers grown
  const auto start = std::chrono::steady_clock::now();
  size_t steps = 0;
  double elapsed = 0;
  while (elapsed < seconds) {
    step(steps++);
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  return static_cast<double>(steps) / elapsed;
}

}  // namespace
}  // namespace prl::models

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  const std::vector<prl::models::McatWindowBatch> batches =
      prl::models::Batches(16, absl::GetFlag(FLAGS_batch), absl::GetFlag(FLAGS_obs_dim),
                           absl::GetFlag(FLAGS_act_dim), absl::GetFlag(FLAGS_tasks));
  const double seconds = absl::GetFlag(FLAGS_seconds);
  const double autograd =
      absl::GetFlag(FLAGS_autograd) ? prl::models::Measure(false, batches, seconds) : 0.0;
  const double direct = prl::models::Measure(true, batches, seconds);
  std::printf(
      "mcat model step (TrainContext + TrainTranslator), batch %d, %d-wide, %d thread(s):\n",
      absl::GetFlag(FLAGS_batch), absl::GetFlag(FLAGS_hidden), absl::GetFlag(FLAGS_threads));
  if (autograd > 0) std::printf("  autograd %.0f steps/s (%.2f ms)\n", autograd, 1e3 / autograd);
  std::printf("  direct   %.0f steps/s (%.2f ms)\n", direct, 1e3 / direct);
  if (autograd > 0) std::printf("  ratio direct/autograd %.2f\n", direct / autograd);
  return 0;
}
