// Env stepping throughput: for each domain, PRL's Env::Step on one thread against the
// physical limit (raw mj_step on the same compiled model, frame_skip times per env step, no
// observation or reward work), and a batch stepped by 2 workers against 1. Prints each ratio
// with its target; --json writes the numbers for bench/env_vs_envpool.py.
//
//   bazel build -c opt //bench:env_bench && .bazel/bin/bench/env_bench
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "actor/envs/batched_env.h"
#include "actor/envs/env_factory.h"
#include "actor/envs/mujoco_model.h"
#include "mujoco/mujoco.h"

ABSL_FLAG(double, seconds, 2.0, "Duration of each measured case.");
ABSL_FLAG(int, num_envs, 8, "Envs in the batched cases.");
ABSL_FLAG(std::string, domains, "cheetah,hopper,ant,point_maze", "Domains to measure.");
ABSL_FLAG(std::string, json, "", "Also write the results as JSON to this file.");

namespace prl::actor {
namespace {

using Clock = std::chrono::steady_clock;

// Runs `step` (which returns how many env steps it took) until `seconds` pass; steps/s.
double Measure(double seconds, const std::function<int64_t()>& step) {
  for (int i = 0; i < 50; ++i) step();  // warm up
  int64_t steps = 0;
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  auto now = start;
  while (now < end) {
    for (int i = 0; i < 20; ++i) steps += step();
    now = Clock::now();
  }
  return steps / std::chrono::duration<double>(now - start).count();
}

std::unique_ptr<EnvFactory> Factory(const std::string& name) {
  v1::EnvSpec spec;
  spec.set_domain(env_desc::FindDomainByName(name)->domain);
  absl::StatusOr<env_desc::EnvConfig> config = env_desc::ResolveEnvSpec(spec);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", std::string(config.status().message()).c_str());
    std::exit(1);
  }
  auto factory = EnvFactory::Create(*config);
  if (!factory.ok()) {
    std::fprintf(stderr, "%s\n", std::string(factory.status().message()).c_str());
    std::exit(1);
  }
  return std::move(*factory);
}

struct Result {
  std::string domain;
  double raw = 0, env = 0, batch1 = 0, batch2 = 0;
};

Result Run(const std::string& name, double seconds, int num_envs) {
  Result result{name};
  auto factory = Factory(name);
  const mjModel* model = &factory->model();
  const int frame_skip = factory->config().domain->frame_skip;
  const int episode = factory->config().episode_length;
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> uniform(-1, 1);

  // the limit: raw physics with random controls, reset every episode length
  {
    MjDataPtr data(mj_makeData(model));
    int t = 0;
    result.raw = Measure(seconds, [&] {
      for (int i = 0; i < model->nu; ++i) data->ctrl[i] = uniform(rng);
      for (int k = 0; k < frame_skip; ++k) mj_step(model, data.get());
      if (++t == episode) {
        mj_resetData(model, data.get());
        t = 0;
      }
      return int64_t{1};
    });
  }
  // one env, one thread
  {
    std::unique_ptr<Env> env = factory->Make(1);
    std::vector<float> obs(env->obs_dim()), action(env->act_dim());
    env->Reset(absl::MakeSpan(obs));
    std::uniform_real_distribution<float> uniformf(-1, 1);
    result.env = Measure(seconds, [&] {
      for (float& a : action) a = uniformf(rng);
      if (env->Step(action, absl::MakeSpan(obs)).done()) env->Reset(absl::MakeSpan(obs));
      return int64_t{1};
    });
  }
  // a batch on 1 and on 2 workers
  for (int workers : {1, 2}) {
    std::vector<std::unique_ptr<Env>> envs;
    for (int i = 0; i < num_envs; ++i) envs.push_back(factory->Make(10 + i));
    BatchedEnv batch(std::move(envs), workers);
    BatchedEnv::Output out;
    batch.Reset(&out);
    std::vector<float> actions(static_cast<size_t>(num_envs) * batch.act_dim());
    std::uniform_real_distribution<float> uniformf(-1, 1);
    const double rate = Measure(seconds, [&] {
      for (float& a : actions) a = uniformf(rng);
      batch.Step(actions, &out);
      return int64_t{num_envs};
    });
    (workers == 1 ? result.batch1 : result.batch2) = rate;
  }
  return result;
}

int Main() {
  const double seconds = absl::GetFlag(FLAGS_seconds);
  const int num_envs = absl::GetFlag(FLAGS_num_envs);
  std::printf("env stepping, %.1f s per case, random actions (steps/s are env steps)\n", seconds);
  std::printf("%-11s %12s %12s %7s %12s %12s %7s\n", "domain", "raw mj_step", "Env::Step", "ratio",
              "batch 1 w", "batch 2 w", "2w/1w");
  std::vector<Result> results;
  bool ok = true;
  for (const std::string& name :
       std::vector<std::string>(absl::StrSplit(absl::GetFlag(FLAGS_domains), ','))) {
    if (env_desc::FindDomainByName(name) == nullptr) {
      std::fprintf(stderr, "--domains: unknown domain %s\n", name.c_str());
      return 1;
    }
    const Result r = Run(name, seconds, num_envs);
    const double ratio = r.env / r.raw;
    ok = ok && ratio >= 0.9;
    std::printf("%-11s %12.0f %12.0f %6.2f%s %12.0f %12.0f %7.2f\n", name.c_str(), r.raw, r.env,
                ratio, ratio >= 0.9 ? " " : "!", r.batch1, r.batch2, r.batch2 / r.batch1);
    results.push_back(r);
  }
  std::printf("target: Env::Step >= 0.90 of raw mj_step (the physical limit): %s\n",
              ok ? "met" : "MISSED (marked !)");
  std::printf("batched: %d envs; 2 workers vs 1 on this machine's cores\n", num_envs);

  const std::string json = absl::GetFlag(FLAGS_json);
  if (!json.empty()) {
    std::vector<std::string> items;
    for (const Result& r : results) {
      items.push_back(absl::StrCat("\"", r.domain, "\": {\"raw\": ", r.raw, ", \"env\": ", r.env,
                                   ", \"batch1\": ", r.batch1, ", \"batch2\": ", r.batch2, "}"));
    }
    std::ofstream(json) << "{\"num_envs\": " << num_envs << ", \"domains\": {"
                        << absl::StrJoin(items, ", ") << "}}\n";
  }
  return 0;
}

}  // namespace
}  // namespace prl::actor

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return prl::actor::Main();
}
