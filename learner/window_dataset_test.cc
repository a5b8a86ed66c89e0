#include "learner/window_dataset.h"

#include <cmath>
#include <limits>
#include <random>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl::learner {
namespace {

using ::testing::HasSubstr;

// Episodes of the given lengths; observation row i is (i, tag + episode), action row i is
// (i, -i).
Dataset Episodes(const std::vector<int>& lengths, float tag = 0) {
  Dataset d;
  d.obs_dim = 2;
  d.act_dim = 2;
  int64_t row = 0;
  for (size_t e = 0; e < lengths.size(); ++e) {
    for (int t = 0; t < lengths[e]; ++t, ++row) {
      d.observations.insert(d.observations.end(), {float(row), tag + float(e)});
      d.actions.insert(d.actions.end(), {float(row), -float(row)});
      d.rewards.push_back(0);
      d.terminals.push_back(t + 1 == lengths[e]);
      d.timeouts.push_back(0);
    }
  }
  d.size = row;
  d.next_observations = d.observations;
  return d;
}

TEST(WindowDatasetTest, WindowsStayInsideEpisodesAndTheSplitIsByEpisode) {
  WindowDatasetOptions options;
  options.horizon = 10;
  options.validation_fraction = 0.34;
  auto ds = WindowDataset::Create(Episodes({12, 5, 15, 20}), options, "test.hdf5");
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ((*ds)->episodes(), 3);  // the 5-step episode has no whole window
  EXPECT_EQ((*ds)->train_windows() + (*ds)->validation_windows(), 3 + 6 + 11);
  EXPECT_GT((*ds)->validation_windows(), 0);
  std::set<float> validation_episodes;
  const models::WindowBatch val = (*ds)->Validation(0, 1000);
  for (int64_t i = 0; i < val.obs.size(0); ++i)
    validation_episodes.insert(val.obs[i][0][1].item<float>());
  EXPECT_EQ(validation_episodes.size(), 1u);
  std::mt19937_64 rng(3);
  const models::WindowBatch batch = (*ds)->SampleTrain(64, rng);
  ASSERT_EQ(batch.obs.sizes(), (std::vector<int64_t>{64, 10, 2}));
  ASSERT_EQ(batch.actions.sizes(), (std::vector<int64_t>{64, 10, 2}));
  for (int64_t i = 0; i < 64; ++i) {
    const float episode = batch.obs[i][0][1].item<float>();
    EXPECT_EQ(validation_episodes.count(episode), 0u);  // never a held-out episode
    for (int t = 1; t < 10; ++t) {
      // consecutive rows of one episode, actions aligned with their states
      EXPECT_EQ(batch.obs[i][t][0].item<float>(), batch.obs[i][0][0].item<float>() + t);
      EXPECT_EQ(batch.obs[i][t][1].item<float>(), episode);
      EXPECT_EQ(batch.actions[i][t][0].item<float>(), batch.obs[i][t][0].item<float>());
    }
  }
}

TEST(WindowDatasetTest, TasksAreLabelledAndBalanced) {
  WindowDatasetOptions options;
  options.horizon = 2;
  options.validation_fraction = 0.25;
  Dataset source = Episodes({6, 6, 6, 6});
  source.terminals.back() = 0;  // an unfinished last episode must not run into the target's
  auto ds = WindowDataset::CreateTasks({std::move(source), Episodes({4, 4, 4, 4, 4, 4, 4, 4}, 100)},
                                       options, {"source.hdf5", "target.hdf5"});
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ((*ds)->tasks(), 2);
  EXPECT_EQ((*ds)->episodes(), 12);
  // training: 3 source episodes of 5 windows, 6 target episodes of 3; validation: 5 of each
  // (one source episode of 5 windows; the target's 2 held-out episodes have 6, one is left out)
  EXPECT_EQ((*ds)->train_windows(), 3 * 5 + 6 * 3);
  EXPECT_EQ((*ds)->validation_windows(), 10);
  std::mt19937_64 rng(5);
  const models::WindowBatch batch = (*ds)->SampleTrain(64, rng);
  ASSERT_TRUE(batch.task.defined());
  ASSERT_EQ(batch.task.sizes(), (std::vector<int64_t>{64}));
  for (int64_t i = 0; i < 64; ++i) {
    const int64_t task = batch.task[i].item<int64_t>();
    EXPECT_EQ(task, i % 2);
    for (int t = 0; t < 2; ++t) {
      EXPECT_EQ(batch.obs[i][t][1].item<float>() >= 100, task == 1) << "row " << i;
    }
    EXPECT_EQ(batch.obs[i][1][1].item<float>(), batch.obs[i][0][1].item<float>());
  }
  // the validation windows alternate between the tasks
  const models::WindowBatch val = (*ds)->Validation(0, 100);
  ASSERT_TRUE(val.task.defined());
  ASSERT_EQ(val.task.size(0), 10);
  for (int64_t i = 0; i < 10; ++i) {
    EXPECT_EQ(val.task[i].item<int64_t>(), i % 2);
    EXPECT_EQ(val.obs[i][0][1].item<float>() >= 100, i % 2 == 1);
  }
  // one dataset: no task column
  auto single = WindowDataset::Create(Episodes({6}), options, "one.hdf5");
  ASSERT_TRUE(single.ok());
  EXPECT_EQ((*single)->tasks(), 1);
  EXPECT_FALSE((*single)->SampleTrain(4, rng).task.defined());
}

TEST(WindowDatasetTest, TasksWithOtherSpacesAreRefused) {
  WindowDatasetOptions options;
  options.horizon = 2;
  Dataset target = Episodes({5});
  target.act_dim = 1;
  target.actions.resize(5);
  const absl::Status s =
      WindowDataset::CreateTasks({Episodes({5}), std::move(target)}, options, {"a.hdf5", "b.hdf5"})
          .status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("b.hdf5: observations of 2 and actions of 1"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("a.hdf5's 2 and 2"));
  // each dataset's own problems name it
  const absl::Status short_target =
      WindowDataset::CreateTasks({Episodes({5}), Episodes({1, 1})}, options, {"a.hdf5", "b.hdf5"})
          .status();
  EXPECT_THAT(std::string(short_target.message()), HasSubstr("b.hdf5: no episode has 2 steps"));
}

TEST(WindowDatasetTest, EpisodesShorterThanTheHorizonAreNamed) {
  WindowDatasetOptions options;
  options.horizon = 10;
  const absl::Status s = WindowDataset::Create(Episodes({7, 3}), options, "maze.hdf5").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("maze.hdf5: no episode has 10 steps (the horizon); the longest has 7"));
}

TEST(WindowDatasetTest, NonFiniteDataIsRefusedNamingTheRow) {
  Dataset d = Episodes({12});
  d.actions[2 * 4 + 1] = std::numeric_limits<float>::quiet_NaN();
  const absl::Status s = WindowDataset::Create(std::move(d), {}, "bad.hdf5").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("bad.hdf5: actions[4] is not finite"));
}

TEST(WindowDatasetTest, OneEpisodeTrainsWithoutValidation) {
  WindowDatasetOptions options;
  options.horizon = 4;
  auto ds = WindowDataset::Create(Episodes({6}), options, "one.hdf5");
  ASSERT_TRUE(ds.ok());
  EXPECT_EQ((*ds)->train_windows(), 3);
  EXPECT_EQ((*ds)->validation_windows(), 0);
  EXPECT_EQ((*ds)->Validation(0, 10).obs.size(0), 0);
}

}  // namespace
}  // namespace prl::learner
