// prior_coverage: is a trained prior useful for exploration? On a random point maze (typically
// one held out of the prior's training data), counts the distinct maze cells a rollout visits in
// --steps env steps under each policy, per seed:
//
//   random  a uniform action in [-1, 1]² every step;
//   held    a uniform action held for H steps (H = the skill model's horizon): random actions
//           with the skills' temporal extent, a structure-free baseline for them;
//   prior   SPiRL's prior-guided exploration: every H steps z ~ p(z | s) from the skill prior,
//           then each step a = clamp(Decode(s, z), -1, 1) (the closed-loop decoder);
//   flow    with --flow: PARROT's prior-only exploration, z ~ N(0, I) every step and
//           a = f(z; s) through the state-conditioned flow (what a parrot policy does before it
//           has learned anything).
//
// Episodes restart where the env ends them, at the start cell the env chooses; episodes that
// reach the goal are counted as successes. Prints the cells per seed, mean ± std over seeds and
// the ratios to random; --output writes the rows as CSV. --env_spec takes the env (maze, start,
// goal, episode length) of a TRAIN spec instead, e.g. the transfer task of
// examples/maze_parrot.textproto: do prior rollouts ever reach its goal?
//
//   prior_coverage --model=state/learner/models/maze-skills/v1.prl
//       [--flow=state/learner/models/maze-flow/v1.prl] --maze_rows=10 --maze_cols=10
//       --maze_seed=7 --steps=1000 --seeds=3 --output=coverage.csv
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
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
#include "actor/envs/env.h"
#include "actor/envs/env_factory.h"
#include "cli/spec_file.h"
#include "common/status_macros.h"
#include "env_desc/env_spec.h"
#include "env_desc/maze.h"
#include "models/artifact.h"
#include "models/real_nvp.h"
#include "models/skill_model.h"
#include "proto/experiment.pb.h"

ABSL_FLAG(std::string, model, "", "Skill-model artifact (a SKILL_VAE .prl file). Required.");
ABSL_FLAG(std::string, flow, "",
          "Optional flow artifact (a REAL_NVP_FLOW .prl file) for the \"flow\" policy.");
ABSL_FLAG(double, flow_latent_bound, 0,
          "0: the flow policy draws z ~ N(0, I). B > 0: z = B·tanh(u/S), u ~ N(0, I), with S = B "
          "when --flow_latent_scaled, else 1 — the latents a parrot policy with latent_bound B "
          "draws at its start.");
ABSL_FLAG(bool, flow_latent_scaled, false, "See --flow_latent_bound.");
ABSL_FLAG(std::string, env_spec, "",
          "Optional text-format ExperimentSpec whose point_maze env to use instead of the random "
          "maze of --maze_rows/--maze_cols/--maze_seed.");
ABSL_FLAG(int, maze_rows, 10, "Rows of the random maze, border included (4..64).");
ABSL_FLAG(int, maze_cols, 10, "Columns of the random maze, border included (4..64).");
ABSL_FLAG(uint64_t, maze_seed, 7, "Seed of the random maze; keep it outside the dataset's.");
ABSL_FLAG(int64_t, steps, 1000, "Env steps per rollout.");
ABSL_FLAG(int, seeds, 3, "Rollouts per policy; rollout i uses seed i for the env and policy.");
ABSL_FLAG(std::string, output, "", "CSV to write (seed,policy,steps,cells,free_cells,episodes).");

namespace prl::bench {
namespace {

// Chooses the action for the current observation; `t` counts steps within the rollout.
class Policy {
 public:
  virtual ~Policy() = default;
  virtual absl::Status Act(int64_t t, const std::vector<float>& obs, std::vector<float>* act) = 0;
};

// Uniform actions in [-1, 1].
class RandomPolicy final : public Policy {
 public:
  explicit RandomPolicy(uint64_t seed) : rng_(seed) {}
  absl::Status Act(int64_t, const std::vector<float>&, std::vector<float>* act) override {
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    for (float& a : *act) a = uniform(rng_);
    return absl::OkStatus();
  }

 private:
  std::mt19937_64 rng_;
};

// Uniform actions in [-1, 1], each held for `horizon` steps.
class HeldRandomPolicy final : public Policy {
 public:
  HeldRandomPolicy(int64_t horizon, uint64_t seed) : horizon_(horizon), rng_(seed) {}
  absl::Status Act(int64_t t, const std::vector<float>&, std::vector<float>* act) override {
    if (t % horizon_ == 0 || held_.size() != act->size()) {
      std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
      held_.resize(act->size());
      for (float& a : held_) a = uniform(rng_);
    }
    *act = held_;
    return absl::OkStatus();
  }

 private:
  const int64_t horizon_;
  std::mt19937_64 rng_;
  std::vector<float> held_;
};

// PARROT before learning: a = f(z; s) with a fresh z ~ N(0, I) every step, or with z = 0 (the
// initial policy's mean, which evaluation episodes act with). Borrows the flow.
class FlowPriorPolicy final : public Policy {
 public:
  // bound 0: z ~ N(0, I); otherwise z = bound·tanh(u / scale), u ~ N(0, I). mean: z = 0.
  FlowPriorPolicy(const models::RealNvpFlow& flow, double bound, double scale, uint64_t seed,
                  bool mean = false)
      : flow_(flow), bound_(bound), scale_(scale), mean_(mean), rng_(seed) {}

  absl::Status Act(int64_t, const std::vector<float>& obs, std::vector<float>* act) override {
    at::Tensor s = at::from_blob(const_cast<float*>(obs.data()),
                                 {1, static_cast<int64_t>(obs.size())}, at::kFloat)
                       .clone();
    at::Tensor z = at::empty({1, static_cast<int64_t>(act->size())}, at::kFloat);
    std::normal_distribution<float> normal;
    for (size_t j = 0; j < act->size(); ++j) {
      const double u = normal(rng_);
      z.data_ptr<float>()[j] =
          mean_ ? 0.0f : static_cast<float>(bound_ > 0 ? bound_ * std::tanh(u / scale_) : u);
    }
    at::NoGradGuard no_grad;
    PRL_ASSIGN_OR_RETURN(models::RealNvpFlow::Result a, flow_.Forward(z, s));
    const at::Tensor value = a.value.cpu().contiguous();
    for (size_t i = 0; i < act->size(); ++i) {
      (*act)[i] = std::clamp(value.data_ptr<float>()[i], -1.0f, 1.0f);
    }
    return absl::OkStatus();
  }

 private:
  const models::RealNvpFlow& flow_;
  const double bound_, scale_;
  const bool mean_;
  std::mt19937_64 rng_;
};

// SPiRL's prior rollouts: a fresh z ~ p(z | s) every H steps, decoded closed loop. Borrows the
// model, which must outlive it.
class SkillPriorPolicy final : public Policy {
 public:
  SkillPriorPolicy(const models::SkillModel& model, uint64_t seed) : model_(model), rng_(seed) {}

  absl::Status Act(int64_t t, const std::vector<float>& obs, std::vector<float>* act) override {
    at::Tensor s = at::from_blob(const_cast<float*>(obs.data()),
                                 {1, static_cast<int64_t>(obs.size())}, at::kFloat)
                       .clone();
    if (t % model_.horizon() == 0) {
      PRL_ASSIGN_OR_RETURN(models::DiagonalGaussian prior, model_.Prior(s));
      const int64_t latent = prior.mean.size(1);
      std::normal_distribution<float> normal;
      at::Tensor eps = at::empty({1, latent}, at::kFloat);
      for (int64_t j = 0; j < latent; ++j) eps.data_ptr<float>()[j] = normal(rng_);
      z_ = prior.mean.cpu() + prior.log_std.cpu().exp() * eps;
    }
    PRL_ASSIGN_OR_RETURN(at::Tensor mean, model_.Decode(s, z_));
    mean = mean.cpu().contiguous();
    for (size_t i = 0; i < act->size(); ++i) {
      (*act)[i] = std::clamp(mean.data_ptr<float>()[i], -1.0f, 1.0f);
    }
    return absl::OkStatus();
  }

 private:
  const models::SkillModel& model_;
  std::mt19937_64 rng_;
  at::Tensor z_;
};

struct Coverage {
  int cells = 0;
  int episodes = 0;
  int successes = 0;  // episodes that reached the goal
};

// Runs `policy` for `steps` env steps in `env` (restarting finished episodes) and counts the
// distinct cells of `maze` the point was in, the start positions included.
absl::StatusOr<Coverage> Rollout(actor::Env& env, const env_desc::Maze& maze, Policy& policy,
                                 int64_t steps) {
  std::vector<float> obs(env.obs_dim());
  std::vector<float> act(env.act_dim());
  std::vector<bool> visited(maze.rows() * maze.cols(), false);
  Coverage coverage;
  auto visit = [&] {
    const env_desc::Cell c = maze.CellAt(obs[0], obs[1]);
    if (!maze.Contains(c)) return;
    if (!visited[c.row * maze.cols() + c.col]) ++coverage.cells;
    visited[c.row * maze.cols() + c.col] = true;
  };
  env.Reset(absl::MakeSpan(obs));
  coverage.episodes = 1;
  visit();
  for (int64_t t = 0, episode_t = 0; t < steps; ++t, ++episode_t) {
    PRL_RETURN_IF_ERROR(policy.Act(episode_t, obs, &act));
    const actor::StepResult result = env.Step(act, absl::MakeSpan(obs));
    visit();
    if (result.success) ++coverage.successes;
    if (result.done() && t + 1 < steps) {
      env.Reset(absl::MakeSpan(obs));
      ++coverage.episodes;
      episode_t = -1;
      visit();
    }
  }
  return coverage;
}

void MeanStd(const std::vector<double>& xs, double* mean, double* std) {
  *mean = 0;
  for (double x : xs) *mean += x;
  *mean /= xs.size();
  double var = 0;
  for (double x : xs) var += (x - *mean) * (x - *mean);
  *std = xs.size() > 1 ? std::sqrt(var / (xs.size() - 1)) : 0.0;  // sample std
}

absl::Status Main() {
  const std::string model_path = absl::GetFlag(FLAGS_model);
  const int64_t steps = absl::GetFlag(FLAGS_steps);
  const int seeds = absl::GetFlag(FLAGS_seeds);
  if (model_path.empty()) return absl::InvalidArgumentError("--model is required");
  if (steps < 1 || seeds < 1) {
    return absl::InvalidArgumentError("--steps and --seeds must be >= 1");
  }
  at::set_num_threads(1);  // tiny batch-1 nets: threads only add overhead

  PRL_ASSIGN_OR_RETURN(models::ModelArtifact artifact, models::ReadModelArtifact(model_path));
  PRL_ASSIGN_OR_RETURN(std::unique_ptr<models::SkillModel> model,
                       models::SkillModel::FromArtifact(artifact));
  std::unique_ptr<models::RealNvpFlow> flow;
  if (const std::string flow_path = absl::GetFlag(FLAGS_flow); !flow_path.empty()) {
    PRL_ASSIGN_OR_RETURN(models::ModelArtifact flow_artifact, models::ReadModelArtifact(flow_path));
    absl::StatusOr<std::unique_ptr<models::RealNvpFlow>> loaded =
        models::RealNvpFlow::FromArtifact(flow_artifact, at::kCPU);
    if (!loaded.ok()) {
      return absl::Status(loaded.status().code(),
                          absl::StrCat("--flow ", flow_path, ": ", loaded.status().message()));
    }
    flow = *std::move(loaded);
  }

  v1::EnvSpec spec;
  std::string maze_name;
  if (const std::string path = absl::GetFlag(FLAGS_env_spec); !path.empty()) {
    PRL_ASSIGN_OR_RETURN(v1::ExperimentSpec experiment, cli::ReadSpecFile(path));
    spec = experiment.env();
    if (spec.domain() != v1::EnvSpec::DOMAIN_POINT_MAZE) {
      return absl::InvalidArgumentError(
          absl::StrCat("--env_spec ", path, ": env.domain must be DOMAIN_POINT_MAZE"));
    }
    maze_name = absl::StrCat("the env of ", path);
  } else {
    spec.set_domain(v1::EnvSpec::DOMAIN_POINT_MAZE);
    v1::MazeSpec::RandomMaze* random = spec.mutable_maze()->mutable_random();
    random->set_rows(absl::GetFlag(FLAGS_maze_rows));
    random->set_cols(absl::GetFlag(FLAGS_maze_cols));
    random->set_seed(absl::GetFlag(FLAGS_maze_seed));
    maze_name = absl::StrCat("random maze seed ", absl::GetFlag(FLAGS_maze_seed));
  }
  PRL_ASSIGN_OR_RETURN(env_desc::EnvConfig config, env_desc::ResolveEnvSpec(spec));
  PRL_ASSIGN_OR_RETURN(std::unique_ptr<actor::EnvFactory> factory,
                       actor::EnvFactory::Create(config));
  const env_desc::Maze& maze = *config.maze;
  if (model->options().obs_dim != config.domain->obs_dim ||
      model->options().act_dim != config.domain->act_dim) {
    return absl::InvalidArgumentError(
        absl::StrCat(model_path, ": model dims (", model->options().obs_dim, ", ",
                     model->options().act_dim, ") do not fit point_maze"));
  }
  std::cout << absl::StrFormat("maze %dx%d, %s (%d free cells), H = %d, %d steps, %d seeds\n",
                               maze.rows(), maze.cols(), maze_name, maze.free_cells().size(),
                               model->horizon(), steps, seeds)
            << maze.layout() << "\n";

  std::string csv = "seed,policy,steps,cells,free_cells,episodes,successes\n";
  std::vector<std::string> names = {"random", "held", "prior"};
  if (flow != nullptr) {
    names.push_back("flow");
    names.push_back("flow_z0");
  }
  std::vector<std::vector<double>> cells(names.size());
  std::vector<int> successes(names.size(), 0), episodes(names.size(), 0);
  for (int seed = 0; seed < seeds; ++seed) {
    RandomPolicy random_policy(seed);
    HeldRandomPolicy held_policy(model->horizon(), seed);
    SkillPriorPolicy prior_policy(*model, seed);
    std::optional<FlowPriorPolicy> flow_policy, flow_mean_policy;
    if (flow != nullptr) {
      const double bound = absl::GetFlag(FLAGS_flow_latent_bound);
      flow_policy.emplace(*flow, bound,
                          absl::GetFlag(FLAGS_flow_latent_scaled) && bound > 0 ? bound : 1.0, seed);
      flow_mean_policy.emplace(*flow, 0.0, 1.0, seed, /*mean=*/true);
    }
    std::vector<Policy*> policies = {&random_policy, &held_policy, &prior_policy};
    if (flow_policy.has_value()) {
      policies.push_back(&*flow_policy);
      policies.push_back(&*flow_mean_policy);
    }
    for (size_t i = 0; i < policies.size(); ++i) {
      std::unique_ptr<actor::Env> env = factory->Make(seed);  // same start for every policy
      PRL_ASSIGN_OR_RETURN(Coverage c, Rollout(*env, maze, *policies[i], steps));
      cells[i].push_back(c.cells);
      successes[i] += c.successes;
      episodes[i] += c.episodes;
      std::cout << absl::StrFormat("seed %d  %-6s  %3d cells  (%d episodes, %d at the goal)\n",
                                   seed, names[i], c.cells, c.episodes, c.successes);
      absl::StrAppendFormat(&csv, "%d,%s,%d,%d,%d,%d,%d\n", seed, names[i], steps, c.cells,
                            maze.free_cells().size(), c.episodes, c.successes);
    }
  }
  std::cout << absl::StrFormat("cells per %d steps (mean ± sample std over %d seeds):\n", steps,
                               seeds);
  double random_mean = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    double mean, std;
    MeanStd(cells[i], &mean, &std);
    if (i == 0) random_mean = mean;
    std::cout << absl::StrFormat(
        "  %-6s %5.1f ± %4.1f   ratio to random %.2f   goal reached in %d of %d episodes\n",
        names[i], mean, std, random_mean > 0 ? mean / random_mean : 0.0, successes[i], episodes[i]);
  }

  if (const std::string output = absl::GetFlag(FLAGS_output); !output.empty()) {
    std::ofstream file(output);
    file << csv;
    if (!file.good()) return absl::InternalError(absl::StrCat("cannot write ", output));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace prl::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = prl::bench::Main();
  if (!status.ok()) {
    std::cerr << "prior_coverage: " << status << "\n";
    return 1;
  }
  return 0;
}
