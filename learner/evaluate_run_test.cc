// EVALUATE runs with a real ActorRegistry and PolicyStore, and actors scripted through the
// registry's ActorService calls (Join, Heartbeat, ReportEpisodes) on a thread.
#include "learner/evaluate_run.h"

#include <unistd.h>

#include <cmath>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "learner/actor_registry.h"
#include "learner/model_store.h"
#include "learner/policy_store.h"
#include "learner/recording_run_context.h"
#include "learner/spec_validation.h"
#include "models/task_pair_translator.h"
#include "proto/actor.pb.h"
#include "proto/experiment.pb.h"

namespace prl::learner {
namespace {

using ::testing::HasSubstr;

constexpr int kObs = 17;  // DOMAIN_CHEETAH
constexpr int kAct = 6;

// An actor that joins, heartbeats, and answers each evaluation round with its share of
// episodes; episode k of the actor returns `base` + k (success on even k).
class ScriptedActor {
 public:
  ScriptedActor(ActorRegistry* registry, std::string name, double base, int max_episodes = 1 << 20)
      : registry_(registry), base_(base), max_episodes_(max_episodes) {
    v1::JoinRequest join;
    join.set_actor_name(std::move(name));
    join.set_num_envs(2);
    id_ = registry_->Join(join).actor_id();
    thread_ = std::thread([this] { Loop(); });
  }
  ~ScriptedActor() { Stop(); }
  void Stop() {
    if (!stop_.HasBeenNotified()) stop_.Notify();
    if (thread_.joinable()) thread_.join();
  }
  // Leaves the learner (as an actor that dies and is dropped).
  void Leave() {
    Stop();
    (void)registry_->Leave(id_);
  }
  // The latest assignment for an experiment.
  v1::Assignment assignment() {
    absl::MutexLock lock(&mu_);
    return assignment_;
  }
  // Waits until the actor has reported `n` episodes.
  void AwaitReported(int n) {
    absl::MutexLock lock(&mu_);
    const auto done = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return reported_ >= n; };
    mu_.Await(absl::Condition(&done));
  }

 private:
  void Loop() {
    int64_t last_round = 0;
    int64_t sequence = 1;
    while (!stop_.HasBeenNotified()) {
      v1::HeartbeatRequest heartbeat;
      heartbeat.set_actor_id(id_);
      heartbeat.set_generation(generation_);
      absl::StatusOr<v1::HeartbeatResponse> r = registry_->Heartbeat(heartbeat);
      if (r.ok()) {
        if (r->assignment().generation() > generation_) {
          generation_ = r->assignment().generation();
          // the job's assignment is kept (the idle one after the job ends is not)
          if (!r->assignment().experiment_id().empty()) {
            absl::MutexLock lock(&mu_);
            assignment_ = r->assignment();
          }
        }
        const v1::EvaluationRequest& e = r->evaluation();
        if (e.round() > last_round && !assignment_experiment().empty()) {
          last_round = e.round();
          v1::ReportEpisodesRequest report;
          report.set_actor_id(id_);
          report.set_experiment_id(assignment_experiment());
          report.set_generation(generation_);
          report.set_first_sequence(sequence);
          int k;
          {
            absl::MutexLock lock(&mu_);
            k = reported_;
          }
          for (int i = 0; i < e.episodes() && k < max_episodes_; ++i, ++k) {
            v1::EpisodeSummary* s = report.add_episodes();
            s->set_is_eval(true);
            s->set_eval_round(e.round());
            s->set_episode_return(base_ + k);
            s->set_length(100);
            s->set_success(k % 2 == 0);
            s->set_truncated(true);
            s->set_policy_version(e.min_policy_version());
            ++sequence;
          }
          if (report.episodes_size() > 0) (void)registry_->ReportEpisodes(report);
          absl::MutexLock lock(&mu_);
          reported_ = k;
        }
      }
      stop_.WaitForNotificationWithTimeout(absl::Milliseconds(2));  // the heartbeat interval
    }
  }
  std::string assignment_experiment() {
    absl::MutexLock lock(&mu_);
    return assignment_.experiment_id();
  }

  ActorRegistry* const registry_;
  const double base_;
  const int max_episodes_;
  std::string id_;
  int64_t generation_ = 0;
  absl::Notification stop_;
  absl::Mutex mu_;
  int reported_ ABSL_GUARDED_BY(mu_) = 0;
  v1::Assignment assignment_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

class EvaluateRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.registry = &registry_;
    options_.policies = &policies_;
    options_.poll_period = absl::Milliseconds(2);
    options_.progress_period = absl::ZeroDuration();
    options_.policy_loader = [this](const v1::PolicyRef& ref) -> absl::StatusOr<CollectPolicy> {
      if (ref.experiment_id() != "exp-000003") {
        return absl::NotFoundError(
            absl::StrCat("evaluate.policy.experiment_id: ", ref.experiment_id(), " is unknown"));
      }
      auto policy = std::make_shared<v1::Policy>();
      policy->set_experiment_id("exp-000003");
      policy->set_version(41);
      policy->set_env_steps(50000);
      policy->set_updates(48000);
      v1::PolicyArchitecture* a = policy->mutable_architecture();
      a->set_output(output_);
      a->set_obs_dim(kObs);
      a->set_action_dim(output_ == v1::PolicyArchitecture::OUTPUT_ACTION ? kAct : 10);
      CollectPolicy out;
      out.policy = policy;
      out.acting.set_decision_horizon(output_ == v1::PolicyArchitecture::OUTPUT_ACTION ? 1 : 10);
      out.acting.mutable_prior()->set_name("skills");
      out.acting.mutable_prior()->set_version(2);
      out.acting.set_prior_address("prior:5");
      out.acting.add_tasks()->set_armature_scale(2);  // MCAT's tasks do not carry over
      return out;
    };
  }

  v1::Experiment Experiment(const std::string& evaluate) {
    v1::ExperimentSpec spec;
    EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(
        absl::StrCat(R"pb(name: "eval"
                          kind: KIND_EVALUATE
                          env {
                            domain: DOMAIN_CHEETAH
                            task: "run_forward"
                            dynamics { mass_scale: 2 }
                          }
                          resources { num_actors: 2 envs_per_actor: 2 }
                          evaluate { policy { experiment_id: "exp-000003" })pb",
                     evaluate, " }"),
        &spec));
    absl::StatusOr<v1::ExperimentSpec> filled = ValidateAndFillSpec(spec);
    EXPECT_TRUE(filled.ok()) << filled.status();
    v1::Experiment e;
    e.set_id("exp-000007");
    *e.mutable_spec() = *filled;
    return e;
  }

  ExperimentRun::Result RunToEnd(const v1::Experiment& e) {
    auto run = CreateEvaluateRun(e, &context_, options_);
    EXPECT_TRUE(run.ok()) << run.status();
    return (*run)->Run();
  }

  ActorRegistry registry_;
  PolicyStore policies_;
  RecordingRunContext context_;
  EvaluateRunOptions options_;
  v1::PolicyArchitecture::Output output_ = v1::PolicyArchitecture::OUTPUT_ACTION;
};

TEST_F(EvaluateRunTest, RunsTheEpisodesOnTheActorsAndSummarisesThem) {
  ScriptedActor a(&registry_, "actor-a", 100.0);
  ScriptedActor b(&registry_, "actor-b", 200.0);
  const ExperimentRun::Result result = RunToEnd(Experiment("episodes: 6 stochastic: true"));
  ASSERT_EQ(result.state, v1::EXPERIMENT_STATE_SUCCEEDED) << result.reason;
  a.Stop();
  b.Stop();
  // 3 episodes each: returns 100, 101, 102 and 200, 201, 202
  const v1::EvaluationResult r = context_.outputs().evaluation();
  EXPECT_EQ(r.episodes(), 6);
  EXPECT_DOUBLE_EQ(r.mean_return(), 151.0);
  // deviations ±49, ±50, ±51
  EXPECT_NEAR(r.std_return(), std::sqrt(2 * (49.0 * 49 + 50.0 * 50 + 51.0 * 51) / 6.0), 1e-9);
  EXPECT_DOUBLE_EQ(r.min_return(), 100.0);
  EXPECT_DOUBLE_EQ(r.max_return(), 202.0);
  EXPECT_NEAR(r.success_rate(), 4.0 / 6.0, 1e-12);
  EXPECT_DOUBLE_EQ(r.mean_length(), 100.0);
  EXPECT_EQ(r.truncated_episodes(), 6);
  EXPECT_EQ(r.policy().experiment_id(), "exp-000003");
  EXPECT_EQ(r.policy().version(), 41);
  EXPECT_EQ(r.policy_env_steps(), 50000);
  EXPECT_THAT(result.reason, HasSubstr("6 episodes: mean return 151"));
  // one curve point at the policy's env steps
  ASSERT_EQ(context_.curve().size(), 1u);
  EXPECT_EQ(context_.curve()[0].env_steps(), 50000);
  EXPECT_DOUBLE_EQ(context_.curve()[0].eval_return(), 151.0);
  EXPECT_EQ(context_.curve()[0].eval_episodes(), 6);
  EXPECT_DOUBLE_EQ(context_.progress().fraction_done(), 1.0);

  // the actors were told to evaluate in the spec's env, with the policy's acting setup
  const v1::Assignment assignment = a.assignment();
  EXPECT_EQ(assignment.mode(), v1::Assignment::MODE_EVALUATE);
  EXPECT_EQ(assignment.experiment_id(), "exp-000007");
  EXPECT_DOUBLE_EQ(assignment.env().dynamics().mass_scale(), 2.0);
  EXPECT_TRUE(assignment.stochastic_eval());
  EXPECT_EQ(assignment.prior().name(), "skills");
  EXPECT_EQ(assignment.prior_address(), "prior:5");
  EXPECT_EQ(assignment.tasks_size(), 0);
  EXPECT_TRUE(assignment.replay_addresses().empty());
  // and fetch the policy under the EVALUATE experiment's id
  absl::StatusOr<std::shared_ptr<const v1::Policy>> published =
      policies_.Wait("exp-000007", 1, absl::Now());
  ASSERT_TRUE(published.ok()) << published.status();
  EXPECT_EQ((*published)->architecture().action_dim(), kAct);
}

TEST_F(EvaluateRunTest, AnotherRoundRunsTheShareOfAnActorThatLeft) {
  // actor b delivers one of its 2 episodes and leaves; nobody takes its slot
  auto b = std::make_unique<ScriptedActor>(&registry_, "actor-b", 200.0, /*max_episodes=*/1);
  ScriptedActor a(&registry_, "actor-a", 100.0);
  std::thread leaver([&] {
    b->AwaitReported(1);
    b->Leave();
  });
  const ExperimentRun::Result result = RunToEnd(Experiment("episodes: 4"));
  leaver.join();
  ASSERT_EQ(result.state, v1::EXPERIMENT_STATE_SUCCEEDED) << result.reason;
  EXPECT_EQ(context_.outputs().evaluation().episodes(), 4);
  EXPECT_GE(context_.progress().eval_rounds(), 2);
}

TEST_F(EvaluateRunTest, FailsWhenTheActorsHoldRoundsButDeliverNothing) {
  // an actor that heartbeats but never finishes an episode (it cannot run the policy)
  ScriptedActor mute(&registry_, "actor-a", 0.0, /*max_episodes=*/0);
  options_.round_timeout = absl::Milliseconds(20);
  options_.max_stalled_rounds = 3;
  const ExperimentRun::Result result = RunToEnd(Experiment("episodes: 2"));
  mute.Stop();
  EXPECT_EQ(result.state, v1::EXPERIMENT_STATE_FAILED);
  EXPECT_THAT(result.reason, HasSubstr("no evaluation episode arrived in 3 rounds"));
  EXPECT_GE(context_.progress().eval_rounds(), 3);
}

TEST_F(EvaluateRunTest, StopsAndFailuresAreReported) {
  // a stop while no actor is there
  auto run = CreateEvaluateRun(Experiment("episodes: 3"), &context_, options_);
  ASSERT_TRUE(run.ok());
  std::thread stopper([&] {
    context_.AwaitMessage("waiting for actors");
    (*run)->RequestStop("stopped by user", /*shutdown=*/false);
  });
  const ExperimentRun::Result stopped = (*run)->Run();
  stopper.join();
  EXPECT_EQ(stopped.state, v1::EXPERIMENT_STATE_STOPPED);
  EXPECT_FALSE(context_.outputs().has_evaluation());

  // an unknown policy
  v1::Experiment unknown = Experiment("episodes: 3");
  unknown.mutable_spec()->mutable_evaluate()->mutable_policy()->set_experiment_id("exp-000099");
  ExperimentRun::Result failed = RunToEnd(unknown);
  EXPECT_EQ(failed.state, v1::EXPERIMENT_STATE_FAILED);
  EXPECT_THAT(failed.reason, HasSubstr("evaluate.policy.experiment_id: exp-000099"));

  // a policy for another env
  v1::Experiment maze = Experiment("episodes: 3");
  maze.mutable_spec()->mutable_env()->set_domain(v1::EnvSpec::DOMAIN_POINT_MAZE);
  failed = RunToEnd(maze);
  EXPECT_EQ(failed.state, v1::EXPERIMENT_STATE_FAILED);
  EXPECT_THAT(failed.reason, HasSubstr("evaluate.policy: the policy takes 17-dimensional"));
}

// A translator between two cheetah tasks in a model store: the actors get it with the prior
// server's address, and the result names it.
TEST_F(EvaluateRunTest, ActsThroughATranslatorFromTheModelStore) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/evaluate_models_", getpid());
  auto store = ModelStore::Open(dir);
  ASSERT_TRUE(store.ok()) << store.status();
  models::TaskPairTranslatorOptions pair;
  pair.obs_dim = kObs;
  pair.act_dim = kAct;
  pair.network.add_hidden_sizes(8);
  v1::ModelInfo info;
  info.set_name("heavy");
  info.set_version(1);
  auto translator = models::TaskPairTranslator::Create(pair);
  ASSERT_TRUE(translator.ok()) << translator.status();
  ASSERT_TRUE((*store)->Write((*translator)->ToArtifact(info).value()).ok());
  options_.models = store->get();
  options_.prior_address = "prior:9";

  ScriptedActor a(&registry_, "actor-a", 10.0);
  ExperimentRun::Result result = RunToEnd(Experiment("episodes: 2 translator { name: 'heavy' }"));
  ASSERT_EQ(result.state, v1::EXPERIMENT_STATE_SUCCEEDED) << result.reason;
  a.Stop();
  EXPECT_EQ(a.assignment().translator().name(), "heavy");
  EXPECT_EQ(a.assignment().translator().version(), 1);  // 0 resolved to the newest
  EXPECT_EQ(a.assignment().prior_address(), "prior:9");
  EXPECT_EQ(context_.outputs().evaluation().translator().name(), "heavy");
  EXPECT_THAT(context_.progress().message(), HasSubstr("through translator heavy v1"));

  // an unknown translator, and a latent policy, fail naming evaluate.translator
  result = RunToEnd(Experiment("episodes: 2 translator { name: 'light' }"));
  EXPECT_EQ(result.state, v1::EXPERIMENT_STATE_FAILED);
  EXPECT_THAT(result.reason, HasSubstr("evaluate.translator: "));
  EXPECT_THAT(result.reason, HasSubstr("light"));
  output_ = v1::PolicyArchitecture::OUTPUT_DECODED_LATENT;
  result = RunToEnd(Experiment("episodes: 2 translator { name: 'heavy' }"));
  EXPECT_EQ(result.state, v1::EXPERIMENT_STATE_FAILED);
  EXPECT_THAT(result.reason, HasSubstr("only flat policies"));
}

TEST(EvaluateSpecTest, IsValidatedAndFilled) {
  v1::ExperimentSpec spec;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(
      R"pb(name: "eval"
           kind: KIND_EVALUATE
           env { domain: DOMAIN_CHEETAH }
           evaluate { policy { experiment_id: "exp-000001" } })pb",
      &spec));
  absl::StatusOr<v1::ExperimentSpec> filled = ValidateAndFillSpec(spec);
  ASSERT_TRUE(filled.ok()) << filled.status();
  EXPECT_EQ(filled->evaluate().episodes(), 10);

  spec.mutable_evaluate()->clear_policy();
  spec.mutable_evaluate()->set_episodes(-1);
  spec.mutable_collect()->set_num_episodes(3);
  const absl::Status s = ValidateAndFillSpec(spec).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("evaluate.policy: unset"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("evaluate.episodes: -1"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("collect: set with KIND_EVALUATE"));

  spec.mutable_evaluate()->mutable_translator()->set_name("Bad");
  EXPECT_THAT(std::string(ValidateAndFillSpec(spec).status().message()),
              HasSubstr("evaluate.translator.name: \"Bad\""));

  spec.clear_evaluate();
  spec.clear_collect();
  EXPECT_THAT(std::string(ValidateAndFillSpec(spec).status().message()),
              HasSubstr("evaluate: unset"));
}

}  // namespace
}  // namespace prl::learner
