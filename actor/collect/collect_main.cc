// prl_collect: writes an offline dataset (HDF5, D4RL layout) by running a scripted or random
// policy on a batch of envs.
//
//   prl_collect --domain=point_maze --collector=planner --episodes=1000
//       --action_noise=0.1 --randomize_start_goal --output=state/datasets/maze.hdf5
//
// Many mazes (SPiRL): --random_maze=20x20 --maze_seed=1000 gives env j the random maze of seed
// 1000 + j, with random start and goal per episode under --randomize_start_goal.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "actor/collect/collector.h"
#include "actor/collect/maze_planner.h"
#include "actor/collect/policy.h"
#include "actor/envs/batched_env.h"
#include "actor/envs/env_factory.h"
#include "common/dataset_writer.h"
#include "common/status_macros.h"
#include "env_desc/env_spec.h"
#include "env_desc/maze_generator.h"
#include "google/protobuf/text_format.h"

ABSL_FLAG(std::string, domain, "",
          "Domain: cheetah, hopper, ant or point_maze (or use --env_spec).");
ABSL_FLAG(std::string, task, "", "Task of the domain; empty means its first task.");
ABSL_FLAG(std::string, env_spec, "",
          "Text-format prl.v1.EnvSpec file (dynamics, maze, ...); overrides --domain/--task.");
ABSL_FLAG(std::string, collector, "random", "random, or planner (point_maze's scripted planner).");
ABSL_FLAG(int64_t, episodes, 0, "Episodes to keep (0: no limit).");
ABSL_FLAG(int64_t, steps, 0, "Env steps to take (0: no limit).");
ABSL_FLAG(double, action_noise, 0.0, "Std of Gaussian noise added to every action.");
ABSL_FLAG(bool, randomize_start_goal, false,
          "point_maze: each episode starts and aims at random free cells.");
ABSL_FLAG(std::string, random_maze, "",
          "point_maze: ROWSxCOLS (border included, 4..64 each) to run mazes generated from "
          "--maze_seed instead of the spec's layout; sets env.maze.random.");
ABSL_FLAG(uint64_t, maze_seed, 0,
          "With --random_maze: seed of the maze (env j's is maze_seed + j with --maze_per_env). "
          "Keep the transfer task's maze outside the seeds a dataset used.");
ABSL_FLAG(bool, maze_per_env, true,
          "With --random_maze: each env j runs the maze of maze_seed + j, so the dataset spans "
          "--num_envs mazes; false: every env runs the maze of --maze_seed.");
ABSL_FLAG(double, maze_extra_openings, prl::env_desc::kDefaultExtraOpenings,
          "With --random_maze: fraction of the inner walls opened beyond the spanning tree "
          "(0 a perfect maze, 1 an open grid).");
ABSL_FLAG(bool, success_only, false, "Keep only episodes that reached their goal.");
ABSL_FLAG(int64_t, seed, 0, "Seed: env j gets seed + j; the policy and noise derive from it.");
ABSL_FLAG(int, num_envs, 4, "Envs stepped as one batch.");
ABSL_FLAG(int, workers, 1, "Threads stepping the batch.");
ABSL_FLAG(std::string, output, "", "Dataset file to write (must not exist).");
ABSL_FLAG(int, compression, 0, "gzip level 0-9 for the dataset's arrays.");

namespace prl::actor {
namespace {

int Fail(const std::string& message) {
  std::cerr << "prl_collect: " << message << "\n";
  return 1;
}

// Sets spec->maze.random from --random_maze and its companions; INVALID_ARGUMENT naming the flag.
absl::Status ApplyRandomMazeFlags(v1::EnvSpec* spec) {
  const std::string size = absl::GetFlag(FLAGS_random_maze);
  if (size.empty()) return absl::OkStatus();
  if (spec->domain() != v1::EnvSpec::DOMAIN_POINT_MAZE) {
    return absl::InvalidArgumentError("--random_maze applies to point_maze only");
  }
  if (!spec->maze().layout().empty()) {
    return absl::InvalidArgumentError(
        "--random_maze: the --env_spec file sets maze.layout; a maze is either a given layout "
        "or generated, so drop one");
  }
  const std::vector<std::string> parts = absl::StrSplit(size, 'x');
  int rows = 0, cols = 0;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &rows) ||
      !absl::SimpleAtoi(parts[1], &cols)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--random_maze=", size, " is not ROWSxCOLS (e.g. 20x20)"));
  }
  v1::MazeSpec::RandomMaze* random = spec->mutable_maze()->mutable_random();
  random->set_rows(rows);
  random->set_cols(cols);
  random->set_seed(absl::GetFlag(FLAGS_maze_seed));
  random->set_per_env(absl::GetFlag(FLAGS_maze_per_env));
  random->set_extra_openings(absl::GetFlag(FLAGS_maze_extra_openings));
  return absl::OkStatus();
}

absl::StatusOr<v1::EnvSpec> EnvSpecFromFlags() {
  v1::EnvSpec spec;
  const std::string path = absl::GetFlag(FLAGS_env_spec);
  if (!path.empty()) {
    std::ifstream file(path);
    if (!file) return absl::NotFoundError(absl::StrCat("--env_spec: cannot read ", path));
    std::stringstream text;
    text << file.rdbuf();
    if (!google::protobuf::TextFormat::ParseFromString(text.str(), &spec)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--env_spec: ", path, " is not a text-format prl.v1.EnvSpec"));
    }
  } else {
    const env_desc::DomainInfo* domain = env_desc::FindDomainByName(absl::GetFlag(FLAGS_domain));
    if (domain == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("--domain=", absl::GetFlag(FLAGS_domain),
                       " is not allowed; use cheetah, hopper, ant or point_maze (or --env_spec)"));
    }
    spec.set_domain(domain->domain);
    spec.set_task(absl::GetFlag(FLAGS_task));
  }
  spec.set_seed(absl::GetFlag(FLAGS_seed));
  PRL_RETURN_IF_ERROR(ApplyRandomMazeFlags(&spec));
  return spec;
}

// One line, redrawn in place on a terminal and printed every 10% otherwise.
class ProgressBar {
 public:
  ProgressBar(int64_t episodes, int64_t steps)
      : episodes_(episodes),
        steps_(steps),
        tty_(isatty(STDERR_FILENO) != 0),
        start_(std::chrono::steady_clock::now()) {}

  void Update(const CollectProgress& p, bool final = false) {
    double fraction = 0;
    if (episodes_ > 0) fraction = std::max(fraction, double(p.kept_episodes) / episodes_);
    if (steps_ > 0) fraction = std::max(fraction, double(p.steps) / steps_);
    fraction = std::min(fraction, 1.0);
    const auto now = std::chrono::steady_clock::now();
    const double seconds = std::chrono::duration<double>(now - start_).count();
    if (!final) {
      if (tty_ && now - last_ < std::chrono::milliseconds(100)) return;
      if (!tty_ && fraction < next_report_) return;
    }
    last_ = now;
    next_report_ = fraction + 0.1;
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(fraction * kWidth);
    std::string bar(filled, '#');
    bar.resize(kWidth, '.');
    std::fprintf(stderr,
                 "%s[%s] %3.0f%%  episodes %lld (kept %lld, success %lld)  steps %lld  %.0f "
                 "steps/s  mean return %.2f%s",
                 tty_ ? "\r" : "", bar.c_str(), 100 * fraction, static_cast<long long>(p.episodes),
                 static_cast<long long>(p.kept_episodes), static_cast<long long>(p.successes),
                 static_cast<long long>(p.steps), seconds > 0 ? p.steps / seconds : 0.0,
                 p.mean_return, tty_ ? "" : "\n");
    if (final && tty_) std::fprintf(stderr, "\n");
  }

 private:
  int64_t episodes_, steps_;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_;
  double next_report_ = 0;
};

int Main() {
  absl::StatusOr<v1::EnvSpec> spec = EnvSpecFromFlags();
  if (!spec.ok()) return Fail(std::string(spec.status().message()));
  absl::StatusOr<env_desc::EnvConfig> config = env_desc::ResolveEnvSpec(*spec, "env");
  if (!config.ok()) return Fail(std::string(config.status().message()));
  config->randomize_start_goal = absl::GetFlag(FLAGS_randomize_start_goal);
  if (config->randomize_start_goal && !config->maze) {
    return Fail("--randomize_start_goal applies to point_maze only");
  }
  const int num_envs = absl::GetFlag(FLAGS_num_envs);
  if (num_envs < 1 || num_envs > 4096) {
    return Fail(absl::StrCat("--num_envs=", num_envs, " is not allowed; use 1..4096"));
  }
  const std::string output = absl::GetFlag(FLAGS_output);
  if (output.empty()) return Fail("--output must name the dataset file to write");

  absl::StatusOr<std::unique_ptr<EnvFactory>> factory = EnvFactory::Create(*config);
  if (!factory.ok()) return Fail(std::string(factory.status().message()));
  std::vector<std::unique_ptr<Env>> envs;
  envs.reserve(num_envs);
  const uint64_t seed = static_cast<uint64_t>(absl::GetFlag(FLAGS_seed));
  for (int j = 0; j < num_envs; ++j) envs.push_back((*factory)->Make(seed + j, j));
  BatchedEnv batch(std::move(envs), absl::GetFlag(FLAGS_workers));

  std::unique_ptr<Policy> policy;
  const std::string collector = absl::GetFlag(FLAGS_collector);
  if (collector == "random") {
    policy = std::make_unique<RandomPolicy>(seed ^ 0x9e3779b97f4a7c15ULL);
  } else if (collector == "planner") {
    if (!config->maze) return Fail("--collector=planner drives point_maze only");
    policy = std::make_unique<MazePlannerPolicy>(num_envs);
  } else {
    return Fail(absl::StrCat("--collector=", collector, " is not allowed; use random or planner"));
  }

  CollectOptions options;
  options.num_episodes = absl::GetFlag(FLAGS_episodes);
  options.num_env_steps = absl::GetFlag(FLAGS_steps);
  options.action_noise = absl::GetFlag(FLAGS_action_noise);
  options.success_only = absl::GetFlag(FLAGS_success_only);
  options.seed = seed + 7919;
  ProgressBar bar(options.num_episodes, options.num_env_steps);
  options.on_progress = [&bar](const CollectProgress& p) { bar.Update(p); };

  v1::EnvSpec filled = *spec;
  env_desc::FillEnvSpecDefaults(*config, &filled);
  std::string env_text;
  google::protobuf::TextFormat::PrintToString(filled, &env_text);
  DatasetWriterOptions writer_options;
  writer_options.obs_dim = batch.obs_dim();
  writer_options.act_dim = batch.act_dim();
  for (const InfoField& f : batch.env(0).info_fields()) {
    writer_options.infos.push_back({f.name, {f.dim}});
  }
  writer_options.metadata.env_spec = env_text;
  writer_options.metadata.collector =
      absl::StrFormat("%s action_noise=%g%s%s", policy->Describe(), options.action_noise,
                      config->randomize_start_goal ? " randomize_start_goal" : "",
                      options.success_only ? " success_only" : "");
  writer_options.metadata.seed = absl::GetFlag(FLAGS_seed);
  writer_options.compression_level = absl::GetFlag(FLAGS_compression);
  absl::StatusOr<std::unique_ptr<DatasetWriter>> writer =
      DatasetWriter::Create(output, writer_options);
  if (!writer.ok()) return Fail(std::string(writer.status().message()));

  absl::StatusOr<CollectProgress> result = Collect(batch, *policy, options, writer->get());
  if (!result.ok()) return Fail(std::string(result.status().message()));
  bar.Update(*result, /*final=*/true);
  if (absl::Status closed = (*writer)->Close(); !closed.ok()) {
    return Fail(std::string(closed.message()));
  }
  std::cout << "wrote " << output << ": " << (*writer)->rows() << " transitions, "
            << result->kept_episodes << " episodes (" << result->successes << " of "
            << result->episodes << " finished episodes succeeded)\n";
  return 0;
}

}  // namespace
}  // namespace prl::actor

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "prl_collect: write an offline dataset (HDF5, D4RL layout) from a scripted or random "
      "policy.\nUsage: prl_collect --domain=point_maze --collector=planner --episodes=100 "
      "--output=maze.hdf5");
  absl::ParseCommandLine(argc, argv);
  return prl::actor::Main();
}
