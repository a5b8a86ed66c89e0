#include "actor/envs/batched_env.h"

#include <cmath>
#include <memory>
#include <vector>

#include "actor/envs/env_factory.h"
#include "gtest/gtest.h"

namespace prl::actor {
namespace {

std::unique_ptr<EnvFactory> Factory(v1::EnvSpec::Domain domain, int episode_length) {
  v1::EnvSpec spec;
  spec.set_domain(domain);
  spec.set_episode_length(episode_length);
  absl::StatusOr<env_desc::EnvConfig> config = env_desc::ResolveEnvSpec(spec);
  EXPECT_TRUE(config.ok()) << config.status();
  auto factory = EnvFactory::Create(*config);
  EXPECT_TRUE(factory.ok()) << factory.status();
  return std::move(*factory);
}

std::unique_ptr<BatchedEnv> MakeBatch(const EnvFactory& factory, int n, int workers) {
  std::vector<std::unique_ptr<Env>> envs;
  for (int i = 0; i < n; ++i) envs.push_back(factory.Make(100 + i));
  return std::make_unique<BatchedEnv>(std::move(envs), workers);
}

std::vector<float> Actions(int n, int act_dim, int t) {
  std::vector<float> a(static_cast<size_t>(n) * act_dim);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(std::sin(0.7 * t + 0.37 * i));
  return a;
}

TEST(BatchedEnvTest, MatchesStepingEachEnvAlone) {
  auto factory = Factory(v1::EnvSpec::DOMAIN_CHEETAH, 25);
  constexpr int kEnvs = 5;
  auto batch = MakeBatch(*factory, kEnvs, 3);
  EXPECT_EQ(batch->num_workers(), 3);
  std::vector<std::unique_ptr<Env>> alone;
  for (int i = 0; i < kEnvs; ++i) alone.push_back(factory->Make(100 + i));

  BatchedEnv::Output out;
  batch->Reset(&out);
  const int obs_dim = batch->obs_dim();
  const int act_dim = batch->act_dim();
  std::vector<std::vector<float>> obs(kEnvs, std::vector<float>(obs_dim));
  for (int i = 0; i < kEnvs; ++i) {
    alone[i]->Reset(absl::MakeSpan(obs[i]));
    for (int k = 0; k < obs_dim; ++k) ASSERT_EQ(out.obs[i * obs_dim + k], obs[i][k]);
  }
  int resets = 0;
  for (int t = 0; t < 60; ++t) {  // crosses two episode ends (length 25): auto-reset
    const std::vector<float> actions = Actions(kEnvs, act_dim, t);
    batch->Step(actions, &out);
    for (int i = 0; i < kEnvs; ++i) {
      const StepResult r = alone[i]->Step(
          absl::MakeConstSpan(actions).subspan(static_cast<size_t>(i) * act_dim, act_dim),
          absl::MakeSpan(obs[i]));
      ASSERT_EQ(out.rewards[i], r.reward) << "env " << i << " step " << t;
      ASSERT_EQ(out.truncated[i], r.truncated);
      ASSERT_EQ(out.terminated[i], r.terminated);
      for (int k = 0; k < obs_dim; ++k) ASSERT_EQ(out.next_obs[i * obs_dim + k], obs[i][k]);
      if (r.done()) {
        ++resets;
        alone[i]->Reset(absl::MakeSpan(obs[i]));
      }
      for (int k = 0; k < obs_dim; ++k) ASSERT_EQ(out.obs[i * obs_dim + k], obs[i][k]);
    }
  }
  EXPECT_EQ(resets, 2 * kEnvs);
}

TEST(BatchedEnvTest, WorkerCountDoesNotChangeResults) {
  auto factory = Factory(v1::EnvSpec::DOMAIN_ANT, 1000);
  std::vector<std::vector<float>> finals;
  for (int workers : {1, 2, 4}) {
    auto batch = MakeBatch(*factory, 4, workers);
    BatchedEnv::Output out;
    batch->Reset(&out);
    for (int t = 0; t < 20; ++t) batch->Step(Actions(4, batch->act_dim(), t), &out);
    finals.push_back(out.obs);
  }
  EXPECT_EQ(finals[0], finals[1]);
  EXPECT_EQ(finals[0], finals[2]);
}

TEST(BatchedEnvTest, WorkersAreClampedToTheBatchSize) {
  auto factory = Factory(v1::EnvSpec::DOMAIN_POINT_MAZE, 0);
  EXPECT_EQ(MakeBatch(*factory, 2, 8)->num_workers(), 2);
  EXPECT_EQ(MakeBatch(*factory, 2, 0)->num_workers(), 1);
}

}  // namespace
}  // namespace prl::actor
