#include "actor/collect/collector.h"

#include <unistd.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "actor/collect/maze_planner.h"
#include "actor/envs/env_factory.h"
#include "common/dataset_reader.h"
#include "common/dataset_writer.h"
#include "env_desc/maze.h"
#include "env_desc/maze_generator.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"

namespace prl::actor {
namespace {

std::unique_ptr<BatchedEnv> MazeBatch(int n, bool randomize, uint64_t seed, int length = 0) {
  v1::EnvSpec spec;
  spec.set_domain(v1::EnvSpec::DOMAIN_POINT_MAZE);
  spec.set_episode_length(length);
  absl::StatusOr<env_desc::EnvConfig> config = env_desc::ResolveEnvSpec(spec);
  EXPECT_TRUE(config.ok()) << config.status();
  config->randomize_start_goal = randomize;
  auto factory = EnvFactory::Create(*config);
  EXPECT_TRUE(factory.ok()) << factory.status();
  std::vector<std::unique_ptr<Env>> envs;
  for (int i = 0; i < n; ++i) envs.push_back((*factory)->Make(seed + i));
  return std::make_unique<BatchedEnv>(std::move(envs), 1);
}

// n envs of the text-format EnvSpec: env j seeded with spec.seed + j and given env index j.
std::unique_ptr<BatchedEnv> BatchFromSpec(const std::string& text, int n, bool randomize) {
  v1::EnvSpec spec;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &spec)) << text;
  absl::StatusOr<env_desc::EnvConfig> config = env_desc::ResolveEnvSpec(spec);
  EXPECT_TRUE(config.ok()) << config.status();
  config->randomize_start_goal = randomize;
  auto factory = EnvFactory::Create(*config);
  EXPECT_TRUE(factory.ok()) << factory.status();
  std::vector<std::unique_ptr<Env>> envs;
  for (int j = 0; j < n; ++j) envs.push_back((*factory)->Make(spec.seed() + j, j));
  return std::make_unique<BatchedEnv>(std::move(envs), 1);
}

std::string TempPath(const std::string& name) {
  return absl::StrCat(::testing::TempDir(), "/", name, "_", getpid(), ".hdf5");
}

DatasetWriterOptions MazeWriterOptions(const BatchedEnv& batch) {
  DatasetWriterOptions options;
  options.obs_dim = batch.obs_dim();
  options.act_dim = batch.act_dim();
  for (const InfoField& f : batch.env(0).info_fields()) options.infos.push_back({f.name, {f.dim}});
  options.metadata.collector = "scripted:planner";
  options.metadata.env_spec = "domain: DOMAIN_POINT_MAZE";
  options.metadata.seed = 3;
  return options;
}

TEST(CollectorTest, PlannerReachesTheGoalInAtLeast95PercentOfEpisodes) {
  for (bool randomize : {false, true}) {
    auto batch = MazeBatch(8, randomize, 40);
    MazePlannerPolicy planner(batch->size());
    CollectOptions options;
    options.num_episodes = 120;
    options.action_noise = 0.1;  // PARROT's scripted collectors' noise
    options.seed = 5;
    absl::StatusOr<CollectProgress> result = Collect(*batch, planner, options, nullptr);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_GE(result->episodes, 120);
    const double rate = static_cast<double>(result->successes) / result->episodes;
    EXPECT_GE(rate, 0.95) << "randomize_start_goal=" << randomize << ": " << result->successes
                          << " of " << result->episodes;
  }
}

TEST(CollectorTest, DatasetHoldsWholeConsistentEpisodes) {
  auto batch = MazeBatch(4, true, 7);
  MazePlannerPolicy planner(batch->size());
  const std::string path = TempPath("maze");
  auto writer = DatasetWriter::Create(path, MazeWriterOptions(*batch));
  ASSERT_TRUE(writer.ok()) << writer.status();
  CollectOptions options;
  options.num_episodes = 10;
  options.action_noise = 0.1;
  absl::StatusOr<CollectProgress> result = Collect(*batch, planner, options, writer->get());
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_TRUE((*writer)->Close().ok());
  EXPECT_EQ(result->kept_episodes, 10);

  absl::StatusOr<Dataset> data = ReadDataset(path);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->size, result->kept_steps);
  EXPECT_EQ(data->obs_dim, 4);
  EXPECT_EQ(data->act_dim, 2);
  EXPECT_EQ(data->metadata.collector, "scripted:planner");
  ASSERT_EQ(data->infos.size(), 3u);
  const Dataset::Info* qpos = nullptr;
  const Dataset::Info* goal = nullptr;
  for (const Dataset::Info& info : data->infos) {
    if (info.name == "qpos") qpos = &info;
    if (info.name == "goal") goal = &info;
  }
  ASSERT_NE(qpos, nullptr);
  ASSERT_NE(goal, nullptr);
  int64_t episodes = 0;
  for (int64_t t = 0; t < data->size; ++t) {
    const bool end = data->terminals[t] || data->timeouts[t];
    episodes += end;
    for (int k = 0; k < 2; ++k) {
      EXPECT_LE(std::abs(data->actions[t * 2 + k]), 1.0f);
      // infos/qpos is the position the step led to
      EXPECT_EQ(qpos->values[t * 2 + k], data->next_observations[t * 4 + k]);
    }
    if (data->terminals[t]) {
      EXPECT_EQ(data->rewards[t], 1.0f) << t;
    }
    if (!end && t + 1 < data->size) {
      for (int k = 0; k < 4; ++k) {
        ASSERT_EQ(data->next_observations[t * 4 + k], data->observations[(t + 1) * 4 + k]) << t;
      }
      // the goal is fixed within an episode
      EXPECT_EQ(goal->values[t * 2], goal->values[(t + 1) * 2]);
    }
  }
  EXPECT_EQ(episodes, 10);
  EXPECT_TRUE(data->terminals[data->size - 1] || data->timeouts[data->size - 1]);
  unlink(path.c_str());
}

TEST(CollectorTest, PlannerCollectsOverPerEnvRandomMazes) {
  // two envs, two mazes (seeds 30 and 31), random start and goal per episode
  auto batch = BatchFromSpec(
      "domain: DOMAIN_POINT_MAZE seed: 9 "
      "maze { random { rows: 11 cols: 11 seed: 30 per_env: true } }",
      2, /*randomize=*/true);
  std::vector<env_desc::Maze> mazes;
  for (uint64_t seed : {30, 31}) {
    mazes.push_back(*env_desc::Maze::Parse(*env_desc::GenerateMazeLayout(11, 11, seed)));
  }
  ASSERT_NE(mazes[0].layout(), mazes[1].layout());
  MazePlannerPolicy planner(batch->size());
  const std::string path = TempPath("random_mazes");
  auto writer = DatasetWriter::Create(path, MazeWriterOptions(*batch));
  ASSERT_TRUE(writer.ok()) << writer.status();
  CollectOptions options;
  options.num_episodes = 30;
  options.action_noise = 0.1;
  options.seed = 4;
  absl::StatusOr<CollectProgress> result = Collect(*batch, planner, options, writer->get());
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_TRUE((*writer)->Close().ok());
  EXPECT_GE(result->successes, 0.95 * result->episodes)
      << result->successes << " of " << result->episodes;

  absl::StatusOr<Dataset> data = ReadDataset(path);
  ASSERT_TRUE(data.ok()) << data.status();
  const Dataset::Info* maze = nullptr;
  const Dataset::Info* qpos = nullptr;
  for (const Dataset::Info& info : data->infos) {
    if (info.name == "maze") maze = &info;
    if (info.name == "qpos") qpos = &info;
  }
  ASSERT_NE(maze, nullptr) << "per-env mazes write infos/maze";
  ASSERT_NE(qpos, nullptr);
  // episodes of both mazes, and every row inside a free cell of the maze it names
  int64_t episodes[2] = {0, 0};
  for (int64_t t = 0; t < data->size; ++t) {
    const float index = maze->values[t];
    ASSERT_TRUE(index == 0.0f || index == 1.0f) << t << ": " << index;
    const env_desc::Maze& m = mazes[static_cast<int>(index)];
    const env_desc::Cell cell = m.CellAt(qpos->values[2 * t], qpos->values[2 * t + 1]);
    EXPECT_TRUE(m.IsFree(cell)) << "row " << t << " in maze " << index;
    if (data->terminals[t] || data->timeouts[t]) ++episodes[static_cast<int>(index)];
    if (t + 1 < data->size && !data->terminals[t] && !data->timeouts[t]) {
      EXPECT_EQ(maze->values[t + 1], index) << "an episode stays in its maze";
    }
  }
  EXPECT_GT(episodes[0], 0);
  EXPECT_GT(episodes[1], 0);
  EXPECT_EQ(episodes[0] + episodes[1], 30);
  unlink(path.c_str());
}

TEST(CollectorTest, SuccessOnlyDropsFailedEpisodes) {
  // 40-step episodes: the planner only succeeds when start and goal are close
  auto batch = MazeBatch(4, true, 11, 40);
  MazePlannerPolicy planner(batch->size());
  const std::string path = TempPath("success");
  auto writer = DatasetWriter::Create(path, MazeWriterOptions(*batch));
  ASSERT_TRUE(writer.ok());
  CollectOptions options;
  options.num_episodes = 5;
  options.success_only = true;
  absl::StatusOr<CollectProgress> result = Collect(*batch, planner, options, writer->get());
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_TRUE((*writer)->Close().ok());
  EXPECT_GT(result->episodes, result->kept_episodes);  // some failed and were dropped
  absl::StatusOr<Dataset> data = ReadDataset(path);
  ASSERT_TRUE(data.ok()) << data.status();
  int64_t successes = 0;
  for (int64_t t = 0; t < data->size; ++t) {
    EXPECT_EQ(data->timeouts[t], 0) << t;
    successes += data->terminals[t];
  }
  EXPECT_EQ(successes, 5);
  unlink(path.c_str());
}

TEST(CollectorTest, StepLimitCutsUnfinishedEpisodesAsTimeouts) {
  auto batch = MazeBatch(3, false, 2);
  RandomPolicy policy(1);
  const std::string path = TempPath("steps");
  auto writer = DatasetWriter::Create(path, MazeWriterOptions(*batch));
  ASSERT_TRUE(writer.ok());
  CollectOptions options;
  options.num_env_steps = 300;
  absl::StatusOr<CollectProgress> result = Collect(*batch, policy, options, writer->get());
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_TRUE((*writer)->Close().ok());
  EXPECT_EQ(result->steps, 300);
  EXPECT_EQ(result->kept_steps, 300);
  absl::StatusOr<Dataset> data = ReadDataset(path);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->size, 300);
  int64_t timeouts = 0;
  for (uint8_t t : data->timeouts) timeouts += t;
  EXPECT_EQ(timeouts, 3);  // one cut-off episode per env
  unlink(path.c_str());
}

TEST(CollectorTest, BadOptionsAreRejected) {
  auto batch = MazeBatch(1, false, 1);
  RandomPolicy policy(1);
  CollectOptions options;
  EXPECT_EQ(Collect(*batch, policy, options, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.num_episodes = 1;
  options.action_noise = -1;
  EXPECT_EQ(Collect(*batch, policy, options, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace prl::actor
