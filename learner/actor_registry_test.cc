#include "learner/actor_registry.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl::learner {
namespace {

using ::testing::HasSubstr;

class RecordingSink final : public ActorEventSink {
 public:
  void OnEnvSteps(int64_t delta) override { env_steps += delta; }
  void OnEpisodes(const std::vector<v1::EpisodeSummary>& e) override {
    episodes.insert(episodes.end(), e.begin(), e.end());
  }
  int64_t env_steps = 0;
  std::vector<v1::EpisodeSummary> episodes;
};

class ActorRegistryTest : public ::testing::Test {
 protected:
  ActorRegistryTest() {
    ActorRegistryOptions options;
    options.heartbeat_interval = absl::Seconds(1);
    options.clock = [this] { return now_; };
    registry_ = std::make_unique<ActorRegistry>(options);
  }

  v1::JoinResponse Join(const std::string& name, int envs = 4) {
    v1::JoinRequest request;
    request.set_actor_name(name);
    request.set_num_envs(envs);
    return registry_->Join(request);
  }

  ActorJob Job(int actors) {
    ActorJob job;
    job.experiment_id = "exp-000001";
    job.num_actors = actors;
    job.envs_per_actor = 2;
    job.assignment.set_mode(v1::Assignment::MODE_TRAIN);
    job.assignment.set_table("exp-000001");
    job.sink = &sink_;
    return job;
  }

  absl::Time now_ = absl::FromUnixSeconds(1000);
  RecordingSink sink_;
  std::unique_ptr<ActorRegistry> registry_;
};

TEST_F(ActorRegistryTest, JobSlotsGoToJoinedActorsWithDistinctEnvOffsets) {
  v1::JoinResponse a = Join("a");
  EXPECT_EQ(a.assignment().mode(), v1::Assignment::MODE_UNSPECIFIED);
  registry_->StartJob(Job(2));
  v1::JoinResponse b = Join("b", /*envs=*/1);
  EXPECT_EQ(b.assignment().mode(), v1::Assignment::MODE_TRAIN);
  EXPECT_EQ(b.assignment().num_envs(), 1);  // capped by what the actor can run
  v1::HeartbeatRequest hb;
  hb.set_actor_id(a.actor_id());
  hb.set_generation(a.assignment().generation());
  auto r = registry_->Heartbeat(hb);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->has_assignment());
  EXPECT_EQ(r->assignment().experiment_id(), "exp-000001");
  EXPECT_NE(r->assignment().env_index_offset(), b.assignment().env_index_offset());
  EXPECT_EQ(registry_->assigned_actors(), 2);
  // a third actor waits idle
  EXPECT_EQ(Join("c").assignment().mode(), v1::Assignment::MODE_UNSPECIFIED);
  registry_->EndJob();
  EXPECT_EQ(registry_->assigned_actors(), 0);
}

TEST_F(ActorRegistryTest, EnvStepsAreDifferencesOfCumulativeCounters) {
  registry_->StartJob(Job(1));
  v1::JoinResponse a = Join("a");
  v1::ReportEpisodesRequest report;
  report.set_actor_id(a.actor_id());
  report.set_experiment_id("exp-000001");
  report.set_generation(a.assignment().generation());
  report.set_env_steps(100);
  report.add_episodes()->set_episode_return(3);
  ASSERT_TRUE(registry_->ReportEpisodes(report).ok());
  ASSERT_TRUE(registry_->ReportEpisodes(report).ok());  // a retry counts steps once
  EXPECT_EQ(sink_.env_steps, 100);
  v1::HeartbeatRequest hb;
  hb.set_actor_id(a.actor_id());
  hb.set_generation(a.assignment().generation());
  hb.mutable_status()->set_env_steps(150);
  ASSERT_TRUE(registry_->Heartbeat(hb).ok());
  EXPECT_EQ(sink_.env_steps, 150);
  // a report of an old generation is acknowledged and ignored
  report.set_generation(a.assignment().generation() - 1);
  report.set_env_steps(1000);
  auto old = registry_->ReportEpisodes(report);
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(old->num_accepted(), 0);
  EXPECT_EQ(sink_.env_steps, 150);
}

// Counters and returns from a broken or hostile client are refused, naming the field, and
// change nothing: the experiment's env steps cannot overflow or go NaN.
TEST_F(ActorRegistryTest, ImplausibleCountsAndReturnsAreRefused) {
  registry_->StartJob(Job(1));
  v1::JoinResponse a = Join("a");
  v1::HeartbeatRequest hb;
  hb.set_actor_id(a.actor_id());
  hb.set_generation(a.assignment().generation());
  hb.mutable_status()->set_env_steps(100);
  ASSERT_TRUE(registry_->Heartbeat(hb).ok());
  const auto refused = [&](const v1::HeartbeatRequest& request, const std::string& field) {
    auto r = registry_->Heartbeat(request);
    ASSERT_FALSE(r.ok()) << field;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr(field + ": "));
  };
  v1::HeartbeatRequest bad = hb;
  bad.mutable_status()->set_env_steps(std::numeric_limits<int64_t>::max());
  refused(bad, "status.env_steps");
  bad = hb;
  bad.mutable_status()->set_env_steps(-5);
  refused(bad, "status.env_steps");
  bad = hb;
  bad.mutable_status()->set_env_steps_per_second(std::nan(""));
  refused(bad, "status.env_steps_per_second");
  bad = hb;
  bad.mutable_status()->set_episodes(-1);
  refused(bad, "status.episodes");
  EXPECT_EQ(sink_.env_steps, 100);

  v1::ReportEpisodesRequest report;
  report.set_actor_id(a.actor_id());
  report.set_experiment_id("exp-000001");
  report.set_generation(a.assignment().generation());
  report.set_env_steps(200);
  for (const double bad_return : {std::nan(""), std::numeric_limits<double>::infinity(), 1e308}) {
    report.clear_episodes();
    report.add_episodes()->set_episode_return(3);
    report.add_episodes()->set_episode_return(bad_return);
    auto r = registry_->ReportEpisodes(report);
    ASSERT_FALSE(r.ok()) << bad_return;
    EXPECT_THAT(r.status().message(), HasSubstr("episodes[1].episode_return: "));
  }
  report.clear_episodes();
  report.add_episodes()->set_length(-3);
  EXPECT_THAT(registry_->ReportEpisodes(report).status().message(),
              HasSubstr("episodes[0].length: -3"));
  report.clear_episodes();
  report.set_env_steps(int64_t{1} << 40);
  EXPECT_THAT(registry_->ReportEpisodes(report).status().message(), HasSubstr("env_steps: "));
  EXPECT_EQ(sink_.env_steps, 100);
  EXPECT_TRUE(sink_.episodes.empty());
  // a billion steps a second after the last report: refused (it would end any run)
  report.set_env_steps(1000000000);
  EXPECT_THAT(registry_->ReportEpisodes(report).status().message(),
              HasSubstr("env steps per second"));
  // a good report still counts
  report.set_env_steps(250);
  report.add_episodes()->set_episode_return(-7.5);
  ASSERT_TRUE(registry_->ReportEpisodes(report).ok());
  EXPECT_EQ(sink_.env_steps, 250);
  // the bound grows with the time since the last counted report
  now_ += absl::Seconds(10);
  report.clear_episodes();
  report.set_env_steps(250 + 9000000);
  ASSERT_TRUE(registry_->ReportEpisodes(report).ok());
  EXPECT_EQ(sink_.env_steps, 250 + 9000000);
}

TEST_F(ActorRegistryTest, NumberedEpisodesAreRecordedOnce) {
  registry_->StartJob(Job(1));
  v1::JoinResponse a = Join("a");
  v1::ReportEpisodesRequest report;
  report.set_actor_id(a.actor_id());
  report.set_experiment_id("exp-000001");
  report.set_generation(a.assignment().generation());
  report.set_first_sequence(1);
  for (int i = 1; i <= 3; ++i) report.add_episodes()->set_episode_return(i);
  EXPECT_EQ(registry_->ReportEpisodes(report)->num_accepted(), 3);
  // the same report again (its reply was lost): nothing new.
  EXPECT_EQ(registry_->ReportEpisodes(report)->num_accepted(), 0);
  // a report overlapping the last one: only episodes 4 and 5 are new.
  report.clear_episodes();
  report.set_first_sequence(3);
  for (int i = 3; i <= 5; ++i) report.add_episodes()->set_episode_return(i);
  EXPECT_EQ(registry_->ReportEpisodes(report)->num_accepted(), 2);
  // numbers may skip (episodes the actor dropped).
  report.clear_episodes();
  report.set_first_sequence(9);
  report.add_episodes()->set_episode_return(9);
  EXPECT_EQ(registry_->ReportEpisodes(report)->num_accepted(), 1);
  std::vector<double> returns;
  for (const v1::EpisodeSummary& e : sink_.episodes) returns.push_back(e.episode_return());
  EXPECT_THAT(returns, ::testing::ElementsAre(1, 2, 3, 4, 5, 9));
  // unnumbered reports all count; negative numbers are refused naming the field.
  report.set_first_sequence(0);
  EXPECT_EQ(registry_->ReportEpisodes(report)->num_accepted(), 1);
  report.set_first_sequence(-1);
  auto bad = registry_->ReportEpisodes(report);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), ::testing::HasSubstr("first_sequence"));
}

TEST_F(ActorRegistryTest, SilentActorsExpireAndFreeTheirSlot) {
  registry_->StartJob(Job(1));
  v1::JoinResponse a = Join("a");
  v1::JoinResponse b = Join("b");
  EXPECT_EQ(registry_->assigned_actors(), 1);
  now_ += absl::Seconds(2);
  v1::HeartbeatRequest hb;
  hb.set_actor_id(b.actor_id());
  hb.set_generation(b.assignment().generation());
  ASSERT_TRUE(registry_->Heartbeat(hb).ok());  // b stays alive
  now_ += absl::Seconds(2);
  auto r = registry_->Heartbeat(hb);  // a is now 4 s silent: dropped, b takes the slot
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->has_assignment());
  EXPECT_EQ(r->assignment().mode(), v1::Assignment::MODE_TRAIN);
  hb.set_actor_id(a.actor_id());
  EXPECT_EQ(registry_->Heartbeat(hb).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ActorRegistryTest, RejoinReplacesTheOldRegistration) {
  v1::JoinResponse first = Join("a");
  v1::JoinResponse second = Join("a");
  EXPECT_NE(first.actor_id(), second.actor_id());
  EXPECT_EQ(registry_->joined_actors(), 1);
  EXPECT_EQ(registry_->Leave(first.actor_id()).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(registry_->Leave(second.actor_id()).ok());
}

TEST_F(ActorRegistryTest, EvaluationEpisodesAreSplitOverTheJobsActors) {
  registry_->StartJob(Job(2));
  v1::JoinResponse a = Join("a");
  v1::JoinResponse b = Join("b");
  EXPECT_EQ(registry_->RequestEvaluation(1, 5, 7), 5);
  int total = 0;
  for (const auto* joined : {&a, &b}) {
    v1::HeartbeatRequest hb;
    hb.set_actor_id(joined->actor_id());
    hb.set_generation(joined->assignment().generation());
    auto r = registry_->Heartbeat(hb);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->evaluation().round(), 1);
    EXPECT_EQ(r->evaluation().min_policy_version(), 7);
    total += r->evaluation().episodes();
  }
  EXPECT_EQ(total, 5);
}

TEST_F(ActorRegistryTest, ReportsCarryTheEvaluationRequestToo) {
  registry_->StartJob(Job(1));
  v1::JoinResponse a = Join("a");
  EXPECT_EQ(registry_->RequestEvaluation(2, 3, 4), 3);
  v1::ReportEpisodesRequest report;
  report.set_actor_id(a.actor_id());
  report.set_experiment_id("exp-000001");
  report.set_generation(a.assignment().generation());
  auto r = registry_->ReportEpisodes(report);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->evaluation().round(), 2);
  EXPECT_EQ(r->evaluation().episodes(), 3);
  EXPECT_EQ(r->evaluation().min_policy_version(), 4);
  // a report of an old generation gets no request
  report.set_generation(a.assignment().generation() - 1);
  r = registry_->ReportEpisodes(report);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->evaluation().round(), 0);
}

// Reports `n` evaluation episodes of `round` from `actor`, numbered from `first`.
void ReportEval(ActorRegistry& registry, const v1::JoinResponse& actor, int64_t round, int n,
                int64_t first) {
  v1::ReportEpisodesRequest report;
  report.set_actor_id(actor.actor_id());
  report.set_experiment_id("exp-000001");
  report.set_generation(actor.assignment().generation());
  report.set_first_sequence(first);
  for (int i = 0; i < n; ++i) {
    v1::EpisodeSummary* e = report.add_episodes();
    e->set_is_eval(true);
    e->set_eval_round(round);
  }
  ASSERT_TRUE(registry.ReportEpisodes(report).ok());
}

TEST_F(ActorRegistryTest, ReportsFromBeforeALearnerRestartAreNotTakenForCurrentOnes) {
  registry_->StartJob(Job(1));
  const v1::JoinResponse before = Join("a");
  // the learner restarts: a new registry, a little later
  now_ += absl::Seconds(5);
  ActorRegistryOptions options;
  options.heartbeat_interval = absl::Seconds(1);
  options.clock = [this] { return now_; };
  ActorRegistry restarted(options);
  restarted.StartJob(Job(1));
  const v1::JoinRequest join = [] {
    v1::JoinRequest r;
    r.set_actor_name("b");
    r.set_num_envs(4);
    return r;
  }();
  const v1::JoinResponse after = restarted.Join(join);
  EXPECT_NE(after.actor_id(), before.actor_id());  // ids are not reused
  EXPECT_GT(after.assignment().generation(), before.assignment().generation());
  // a late report under the old id is refused; under the new id, its old generation is ignored
  v1::ReportEpisodesRequest late;
  late.set_actor_id(before.actor_id());
  late.set_experiment_id("exp-000001");
  late.set_generation(before.assignment().generation());
  late.set_first_sequence(1);
  late.add_episodes()->set_episode_return(1);
  EXPECT_EQ(restarted.ReportEpisodes(late).status().code(), absl::StatusCode::kNotFound);
  late.set_actor_id(after.actor_id());
  absl::StatusOr<v1::ReportEpisodesResponse> ignored = restarted.ReportEpisodes(late);
  ASSERT_TRUE(ignored.ok());
  EXPECT_EQ(ignored->num_accepted(), 0);
}

TEST_F(ActorRegistryTest, TheActorTakingADeadActorsSlotRunsTheRestOfItsEvaluationShare) {
  registry_->StartJob(Job(2));
  v1::JoinResponse a = Join("a");
  v1::JoinResponse b = Join("b");
  ASSERT_EQ(registry_->RequestEvaluation(3, 4, 9), 4);  // 2 each
  ReportEval(*registry_, a, 3, 2, 1);
  ReportEval(*registry_, b, 3, 1, 1);  // b dies one episode short
  EXPECT_EQ(registry_->ExpectedEvaluationEpisodes(3), 4);
  ASSERT_TRUE(registry_->Leave(b.actor_id()).ok());
  // nobody took b's slot: the run can expect only what arrived
  EXPECT_EQ(registry_->ExpectedEvaluationEpisodes(3), 3);
  // a restarted actor takes the slot and b's last episode with it
  v1::JoinResponse c = Join("c");
  EXPECT_EQ(registry_->ExpectedEvaluationEpisodes(3), 4);
  v1::HeartbeatRequest hb;
  hb.set_actor_id(c.actor_id());
  hb.set_generation(c.assignment().generation());
  auto r = registry_->Heartbeat(hb);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->evaluation().round(), 3);
  EXPECT_EQ(r->evaluation().episodes(), 1);
  EXPECT_EQ(r->evaluation().min_policy_version(), 9);
  ReportEval(*registry_, c, 3, 1, 1);
  EXPECT_EQ(registry_->ExpectedEvaluationEpisodes(3), 4);
  EXPECT_EQ(registry_->ExpectedEvaluationEpisodes(2), -1);  // not the latest round
}

TEST_F(ActorRegistryTest, AnActorThatStopsHeartbeatingIsNotWaitedFor) {
  registry_->StartJob(Job(2));
  v1::JoinResponse a = Join("a");
  v1::JoinResponse b = Join("b");
  ASSERT_EQ(registry_->RequestEvaluation(1, 4, 1), 4);
  ReportEval(*registry_, a, 1, 2, 1);
  v1::HeartbeatRequest hb;
  hb.set_actor_id(a.actor_id());
  hb.set_generation(a.assignment().generation());
  now_ += absl::Seconds(2);
  ASSERT_TRUE(registry_->Heartbeat(hb).ok());
  EXPECT_EQ(registry_->ExpectedEvaluationEpisodes(1), 4);  // b is late, not yet gone
  now_ += absl::Seconds(2);
  ASSERT_TRUE(registry_->Heartbeat(hb).ok());
  // b has been silent for 4 s (3 intervals of 1 s): dropped, its share no longer expected
  EXPECT_EQ(registry_->ExpectedEvaluationEpisodes(1), 2);
  EXPECT_EQ(registry_->assigned_actors(), 1);
}

}  // namespace
}  // namespace prl::learner
