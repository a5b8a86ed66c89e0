#include "actor/n_step.h"

#include <vector>

#include "gtest/gtest.h"

namespace prl::actor {
namespace {

// A written row, copied out of the emit callback.
struct Row {
  std::vector<float> observation, action, next_observation;
  float reward, discount, timeout;
  int64_t env_steps, episode, step, task_index;
};

class NStepTest : public ::testing::Test {
 protected:
  // Adds env's step from state `s` (1 float) with action `s + 100`, to state `s + 1`.
  void Step(NStepWindows* w, int env, float s, float reward, bool terminated = false,
            bool truncated = false) {
    const std::vector<float> obs = {s}, action = {s + 100}, next = {s + 1};
    Transition t;
    t.observation = obs;
    t.action = action;
    t.next_observation = next;
    t.reward = reward;
    t.discount = terminated ? 0.0f : 1.0f;
    t.timeout = truncated && !terminated ? 1.0f : 0.0f;
    t.episode = 7 + env;
    t.step = static_cast<int64_t>(s);
    t.task_index = env;
    w->Add(env, t, terminated || truncated, [&](const Transition& r) {
      rows_.push_back({{r.observation.begin(), r.observation.end()},
                       {r.action.begin(), r.action.end()},
                       {r.next_observation.begin(), r.next_observation.end()},
                       r.reward,
                       r.discount,
                       r.timeout,
                       r.env_steps,
                       r.episode,
                       r.step,
                       r.task_index});
    });
  }
  std::vector<Row> rows_;
};

TEST_F(NStepTest, OneStepWritesEachTransitionAsItCame) {
  NStepWindows w(/*num_envs=*/1, /*n=*/1, /*discount=*/0.9, /*obs_dim=*/1, /*action_dim=*/1);
  Step(&w, 0, 0, 2.0f);
  Step(&w, 0, 1, 3.0f, /*terminated=*/true);
  ASSERT_EQ(rows_.size(), 2u);
  EXPECT_EQ(rows_[0].observation[0], 0);
  EXPECT_EQ(rows_[0].action[0], 100);
  EXPECT_EQ(rows_[0].next_observation[0], 1);
  EXPECT_EQ(rows_[0].reward, 2.0f);
  EXPECT_EQ(rows_[0].discount, 1.0f);
  EXPECT_EQ(rows_[0].env_steps, 1);
  EXPECT_EQ(rows_[1].reward, 3.0f);
  EXPECT_EQ(rows_[1].discount, 0.0f);
  EXPECT_EQ(w.pending(0), 0);
}

TEST_F(NStepTest, FullWindowsCarryTheDiscountedSumAndBootstrapNStepsAhead) {
  NStepWindows w(1, /*n=*/3, /*discount=*/0.5, 1, 1);
  Step(&w, 0, 0, 1);
  Step(&w, 0, 1, 2);
  EXPECT_TRUE(rows_.empty());
  EXPECT_EQ(w.pending(0), 2);
  Step(&w, 0, 2, 3);
  Step(&w, 0, 3, 4);
  ASSERT_EQ(rows_.size(), 2u);
  // s_0: 1 + 0.5·2 + 0.25·3, bootstrapping from s_3 with γ·γ² = γ³
  EXPECT_EQ(rows_[0].observation[0], 0);
  EXPECT_EQ(rows_[0].action[0], 100);
  EXPECT_FLOAT_EQ(rows_[0].reward, 2.75f);
  EXPECT_FLOAT_EQ(rows_[0].discount, 0.25f);
  EXPECT_EQ(rows_[0].next_observation[0], 3);
  EXPECT_EQ(rows_[0].env_steps, 3);
  EXPECT_EQ(rows_[0].step, 0);
  EXPECT_EQ(rows_[0].episode, 7);
  // s_1: 2 + 0.5·3 + 0.25·4
  EXPECT_EQ(rows_[1].observation[0], 1);
  EXPECT_FLOAT_EQ(rows_[1].reward, 4.5f);
  EXPECT_EQ(rows_[1].next_observation[0], 4);
  EXPECT_EQ(rows_[1].step, 1);
  EXPECT_EQ(w.pending(0), 2);
}

TEST_F(NStepTest, TerminationWritesEveryPendingRowWithoutBootstrap) {
  NStepWindows w(1, /*n=*/3, /*discount=*/0.5, 1, 1);
  Step(&w, 0, 0, 1);
  Step(&w, 0, 1, 2);
  Step(&w, 0, 2, 3);  // s_0's window is full
  Step(&w, 0, 3, 4, /*terminated=*/true);
  ASSERT_EQ(rows_.size(), 4u);
  // s_1 (3 steps, full, but the episode terminated at its third), s_2 (2 steps), s_3 (1 step)
  EXPECT_FLOAT_EQ(rows_[1].reward, 2 + 0.5f * 3 + 0.25f * 4);
  EXPECT_EQ(rows_[1].discount, 0.0f);
  EXPECT_FLOAT_EQ(rows_[2].reward, 3 + 0.5f * 4);
  EXPECT_EQ(rows_[2].discount, 0.0f);
  EXPECT_EQ(rows_[2].env_steps, 2);
  EXPECT_FLOAT_EQ(rows_[3].reward, 4);
  EXPECT_EQ(rows_[3].discount, 0.0f);
  EXPECT_EQ(rows_[3].env_steps, 1);
  for (int i = 1; i < 4; ++i) {
    EXPECT_EQ(rows_[i].observation[0], i);
    EXPECT_EQ(rows_[i].next_observation[0], 4);  // the final state
    EXPECT_EQ(rows_[i].timeout, 0.0f);
  }
  EXPECT_EQ(w.pending(0), 0);
  // the next episode starts with empty windows
  Step(&w, 0, 10, 1);
  EXPECT_EQ(rows_.size(), 4u);
}

TEST_F(NStepTest, TruncationBootstrapsFromTheFinalStateWithTheStepsLeft) {
  NStepWindows w(1, /*n=*/4, /*discount=*/0.5, 1, 1);
  Step(&w, 0, 0, 1);
  Step(&w, 0, 1, 1);
  Step(&w, 0, 2, 1, /*terminated=*/false, /*truncated=*/true);
  ASSERT_EQ(rows_.size(), 3u);
  EXPECT_FLOAT_EQ(rows_[0].reward, 1.75f);
  EXPECT_FLOAT_EQ(rows_[0].discount, 0.25f);  // γ^(3-1): γ · 0.25 · V(s_3) = γ³ V(s_3)
  EXPECT_FLOAT_EQ(rows_[1].reward, 1.5f);
  EXPECT_FLOAT_EQ(rows_[1].discount, 0.5f);
  EXPECT_FLOAT_EQ(rows_[2].reward, 1.0f);
  EXPECT_FLOAT_EQ(rows_[2].discount, 1.0f);
  for (const Row& r : rows_) EXPECT_EQ(r.next_observation[0], 3);
  // only the row that ends the episode is marked as ending it by its time limit
  EXPECT_EQ(rows_[0].timeout, 0.0f);
  EXPECT_EQ(rows_[1].timeout, 0.0f);
  EXPECT_EQ(rows_[2].timeout, 1.0f);
}

TEST_F(NStepTest, EnvsHaveTheirOwnWindowsAndResetDropsPendingRows) {
  NStepWindows w(/*num_envs=*/2, /*n=*/2, /*discount=*/1.0, 1, 1);
  Step(&w, 0, 0, 1);
  Step(&w, 1, 50, 10);
  Step(&w, 0, 1, 2);
  ASSERT_EQ(rows_.size(), 1u);
  EXPECT_EQ(rows_[0].observation[0], 0);
  EXPECT_FLOAT_EQ(rows_[0].reward, 3);
  EXPECT_EQ(rows_[0].task_index, 0);
  EXPECT_EQ(w.pending(1), 1);
  w.Reset(1);
  EXPECT_EQ(w.pending(1), 0);
  Step(&w, 1, 60, 1);
  Step(&w, 1, 61, 1);
  ASSERT_EQ(rows_.size(), 2u);
  EXPECT_EQ(rows_[1].observation[0], 60);  // not the dropped s = 50
  EXPECT_FLOAT_EQ(rows_[1].reward, 2);
  EXPECT_EQ(rows_[1].episode, 8);
  EXPECT_EQ(rows_[1].task_index, 1);
}

TEST_F(NStepTest, LongEpisodesReuseRowsAndKeepWritingOnePerStep) {
  NStepWindows w(1, /*n=*/5, /*discount=*/0.99, 1, 1);
  for (int i = 0; i < 1000; ++i) Step(&w, 0, static_cast<float>(i), 1);
  ASSERT_EQ(rows_.size(), 996u);
  const float full = 1 + 0.99f + 0.9801f + 0.970299f + 0.96059601f;
  for (size_t i = 0; i < rows_.size(); ++i) {
    ASSERT_EQ(rows_[i].observation[0], static_cast<float>(i));
    ASSERT_EQ(rows_[i].next_observation[0], static_cast<float>(i + 5));
    ASSERT_NEAR(rows_[i].reward, full, 1e-5);
  }
}

}  // namespace
}  // namespace prl::actor
