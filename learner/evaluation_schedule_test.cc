#include "learner/evaluation_schedule.h"

#include <vector>

#include "gtest/gtest.h"

namespace prl::learner {
namespace {

v1::ExperimentSpec Spec(bool disabled) {
  v1::ExperimentSpec spec;
  spec.mutable_evaluation()->set_every_env_steps(100);
  spec.mutable_evaluation()->set_episodes(4);
  spec.mutable_evaluation()->set_disabled(disabled);
  spec.mutable_stop()->set_target_return(50);
  return spec;
}

std::vector<v1::EpisodeSummary> Eval(int64_t round, std::vector<double> returns) {
  std::vector<v1::EpisodeSummary> out;
  for (double r : returns) {
    v1::EpisodeSummary e;
    e.set_is_eval(true);
    e.set_eval_round(round);
    e.set_episode_return(r);
    out.push_back(e);
  }
  return out;
}

const absl::Time kT0 = absl::FromUnixSeconds(1000);

TEST(EvaluationScheduleTest, ARoundStartsAtItsStepsAndEndsWithItsEpisodes) {
  EvaluationSchedule s(Spec(false), absl::Minutes(5));
  EXPECT_EQ(s.Advance(99, 0, 1, kT0).start_round, 0);
  const EvaluationSchedule::Due due = s.Advance(130, 10, 2, kT0);
  ASSERT_EQ(due.start_round, 1);
  EXPECT_FALSE(due.point.has_value());
  s.RoundStarted(1, 4, kT0);
  s.OnEpisodes(Eval(1, {10, 20, 30}));
  s.OnEpisodes(Eval(7, {1000}));  // another round's episode is not counted
  EXPECT_FALSE(s.Advance(150, 12, 3, kT0).point.has_value());
  s.OnEpisodes(Eval(1, {40}));
  const EvaluationSchedule::Due done = s.Advance(160, 13, 4, kT0);
  ASSERT_TRUE(done.point.has_value());
  EXPECT_EQ(done.point->env_steps(), 130);  // the round's start
  EXPECT_DOUBLE_EQ(done.point->eval_return(), 25);
  EXPECT_EQ(done.point->eval_episodes(), 4);
  EXPECT_FALSE(s.round_in_flight());
  EXPECT_FALSE(s.target_return_reached());
}

TEST(EvaluationScheduleTest, ARoundEndsWithoutTheShareOfAnActorThatDied) {
  EvaluationSchedule s(Spec(false), absl::Minutes(5));
  ASSERT_EQ(s.Advance(100, 0, 1, kT0).start_round, 1);
  s.RoundStarted(1, 4, kT0);
  s.OnEpisodes(Eval(1, {60, 80}));
  EXPECT_FALSE(s.Advance(120, 0, 1, kT0, /*expected_eval_episodes=*/4).point.has_value());
  const EvaluationSchedule::Due due = s.Advance(130, 0, 1, kT0, /*expected_eval_episodes=*/2);
  ASSERT_TRUE(due.point.has_value());
  EXPECT_EQ(due.point->eval_episodes(), 2);
  EXPECT_TRUE(s.target_return_reached());  // mean 70 >= 50
}

TEST(EvaluationScheduleTest, AnUnfinishedRoundIsAbandonedAfterItsTimeout) {
  EvaluationSchedule s(Spec(false), absl::Minutes(5));
  ASSERT_EQ(s.Advance(100, 0, 1, kT0).start_round, 1);
  s.RoundStarted(1, 4, kT0);
  s.OnEpisodes(Eval(1, {5}));
  EXPECT_FALSE(s.Advance(110, 0, 1, kT0 + absl::Minutes(4)).point.has_value());
  const EvaluationSchedule::Due due = s.Advance(120, 0, 1, kT0 + absl::Minutes(6));
  ASSERT_TRUE(due.point.has_value());
  EXPECT_EQ(due.point->eval_episodes(), 1);
}

TEST(EvaluationScheduleTest, NoActorsMeansTheRoundIsRetriedAtTheNextPoint) {
  EvaluationSchedule s(Spec(false), absl::Minutes(5));
  ASSERT_EQ(s.Advance(100, 0, 1, kT0).start_round, 1);
  s.RoundStarted(1, 0, kT0);
  EXPECT_FALSE(s.round_in_flight());
  EXPECT_EQ(s.Advance(150, 0, 1, kT0).start_round, 0);
  EXPECT_EQ(s.Advance(200, 0, 1, kT0).start_round, 1);  // the same number again
}

TEST(EvaluationScheduleTest, WithoutEvaluationPointsCarryTrainingReturnsAndSurviveACheckpoint) {
  EvaluationSchedule s(Spec(true), absl::Minutes(5));
  std::vector<v1::EpisodeSummary> train(3);
  train[0].set_episode_return(1);
  train[1].set_episode_return(2);
  train[2].set_episode_return(6);
  s.OnEpisodes(train);
  const EvaluationSchedule::Due due = s.Advance(100, 5, 1, kT0);
  ASSERT_TRUE(due.point.has_value());
  EXPECT_DOUBLE_EQ(due.point->train_return(), 3);
  EXPECT_EQ(due.point->train_episodes(), 3);
  TrainingCheckpoint checkpoint;
  s.Save(&checkpoint);
  EvaluationSchedule restored(Spec(true), absl::Minutes(5));
  restored.Restore(checkpoint);
  EXPECT_EQ(restored.episodes(), 3);
  EXPECT_DOUBLE_EQ(restored.latest_train_return(), 3);
  EXPECT_FALSE(restored.Advance(150, 5, 1, kT0).point.has_value());  // next point at 200
  EXPECT_TRUE(restored.Advance(200, 5, 1, kT0).point.has_value());
}

}  // namespace
}  // namespace prl::learner
