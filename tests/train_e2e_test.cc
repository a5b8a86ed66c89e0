// The whole training loop with real processes on loopback: a replay shard, the learner and an
// actor. A small SAC experiment on the cheetah must finish and its evaluation return must
// clearly improve over the initial policy's; then a second experiment is SIGKILLed mid-run
// (the learner process) and resumes from its checkpoint after a restart, with its policy
// version and env steps not going backwards.
#include <signal.h>
#include <unistd.h>

#include <iostream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/client.h"
#include "common/testing/http_get.h"
#include "common/testing/subprocess.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "proto/experiment.grpc.pb.h"

namespace prl {
namespace {

using ::prl::testing::Runfile;
using ::prl::testing::Subprocess;

// Starts a PRL binary and returns its gRPC address (and metrics port, when asked) from the
// PRL_READY line.
std::unique_ptr<Subprocess> StartServer(const std::vector<std::string>& argv, std::string* address,
                                        int* metrics_port = nullptr) {
  auto process = Subprocess::Start(argv, {});
  EXPECT_TRUE(process.ok()) << process.status();
  if (!process.ok()) return nullptr;
  auto line = (*process)->WaitForLine("PRL_READY", absl::Seconds(60));
  EXPECT_TRUE(line.ok()) << argv[0] << ": " << line.status();
  for (absl::string_view field : absl::StrSplit(line.value_or(""), ' ')) {
    if (absl::ConsumePrefix(&field, "grpc=")) *address = std::string(field);
    if (metrics_port != nullptr && absl::ConsumePrefix(&field, "metrics=")) {
      EXPECT_TRUE(absl::SimpleAtoi(field.substr(field.rfind(':') + 1), metrics_port));
    }
  }
  return std::move(*process);
}

// A small SAC run: short cheetah episodes, small networks, evaluation every 2,000 steps.
constexpr char kSpec[] = R"pb(
  name: "e2e-cheetah-sac"
  kind: KIND_TRAIN
  env { domain: DOMAIN_CHEETAH task: "run_forward" episode_length: 200 seed: 3 }
  algorithm {
    sac {}
    network { hidden_sizes: [ 64, 64 ] }
    batch_size: 128
    actor_lr: 1e-3
    critic_lr: 1e-3
    warmup_env_steps: 1000
  }
  replay { capacity: 100000 min_size_to_sample: 1000 samples_per_insert: 128 }
  resources { num_actors: 1 envs_per_actor: 2 }
  stop { max_env_steps: 20000 }
  evaluation { every_env_steps: 2000 episodes: 2 }
)pb";

class TrainE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    state_dir_ = absl::StrCat(::testing::TempDir(), "/e2e_", getpid(), "_",
                              ::testing::UnitTest::GetInstance()->current_test_info()->name());
    replay_ = StartServer({Runfile("replay/prl_replay"), "--port=0", "--metrics_port=-1"},
                          &replay_address_);
    ASSERT_NE(replay_, nullptr);
    StartLearner();
    actor_ = StartServer(
        {Runfile("actor/prl_actor"), "--port=0", "--metrics_port=-1",
         "--actor_learner=" + learner_address_, "--actor_num_envs=2", "--actor_name=e2e-actor"},
        &actor_address_);
    ASSERT_NE(actor_, nullptr);
  }

  void StartLearner() {
    learner_ =
        StartServer({Runfile("learner/prl_learner"), "--port=0", "--metrics_port=0",
                     "--learner_replay=" + replay_address_, "--learner_state_dir=" + state_dir_,
                     "--learner_torch_threads=1", "--learner_checkpoint_period=2s",
                     // the first checkpoint well before a short run can end (the kill test
                     // waits for one; with the default 10 s an 8,000-step run could finish first)
                     "--learner_first_checkpoint=2s", "--learner_heartbeat_interval=1s",
                     // the restarted learner must take the same port: actors know it
                     learner_address_.empty()
                         ? "--port=0"
                         : "--port=" + learner_address_.substr(learner_address_.rfind(':') + 1)},
                    &learner_address_, &learner_metrics_port_);
    ASSERT_NE(learner_, nullptr);
    auto channel = CreateChannel({learner_address_});
    ASSERT_TRUE(channel.ok());
    stub_ = v1::ExperimentService::NewStub(*channel);
  }

  std::string Submit(const std::string& text) {
    v1::SubmitRequest request;
    EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, request.mutable_spec()));
    v1::SubmitResponse response;
    grpc::ClientContext context;
    PrepareContext({absl::Seconds(10)}, &context);
    grpc::Status s = stub_->Submit(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.id();
  }

  v1::Experiment Get(const std::string& id) {
    v1::GetRequest request;
    request.set_id(id);
    request.set_include_curve(true);
    v1::GetResponse response;
    grpc::ClientContext context;
    PrepareContext({absl::Seconds(10)}, &context);
    grpc::Status s = stub_->Get(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.experiment();
  }

  // Follows the experiment's Watch stream (the learner pushes every change) until
  // `done(experiment)` or the deadline; returns it with its curve.
  template <typename Pred>
  v1::Experiment WaitFor(const std::string& id, absl::Duration timeout, Pred done) {
    v1::WatchRequest request;
    request.set_id(id);
    request.set_min_interval_ms(200);
    grpc::ClientContext context;
    PrepareContext({timeout}, &context);
    auto reader = stub_->Watch(&context, request);
    v1::WatchResponse update;
    v1::Experiment last;
    bool reached = false;
    while (reader->Read(&update)) {
      last = update.experiment();
      if (done(last)) {
        reached = true;
        context.TryCancel();
        break;
      }
    }
    reader->Finish();
    if (!reached) {
      ADD_FAILURE() << "timed out waiting for " << id << "; last state:\n" << last.DebugString();
      return last;
    }
    return Get(id);
  }

  std::string state_dir_;
  // The value of the learner's series `name` whose labels include `labels` (e.g.
  // `experiment="e-1"`), or -1 when /metrics does not show it.
  double LearnerMetric(const std::string& name, const std::string& labels) {
    absl::StatusOr<std::string> text = prl::testing::HttpGet(learner_metrics_port_, "/metrics");
    EXPECT_TRUE(text.ok()) << text.status();
    for (absl::string_view line : absl::StrSplit(text.value_or(""), '\n')) {
      if (!absl::StartsWith(line, name + "{") || !absl::StrContains(line, labels)) continue;
      double value = 0;
      if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &value)) return value;
    }
    return -1;
  }

  std::string replay_address_, learner_address_, actor_address_;
  int learner_metrics_port_ = 0;
  std::unique_ptr<Subprocess> replay_, learner_, actor_;
  std::unique_ptr<v1::ExperimentService::Stub> stub_;
};

TEST_F(TrainE2eTest, SacLearnsAndTheEvaluationReturnImproves) {
  const std::string id = Submit(kSpec);
  // the learner's own metrics, mid-run and at the end: they must rise
  WaitFor(id, absl::Minutes(2),
          [](const v1::Experiment& e) { return e.progress().updates() > 200; });
  const std::string exp = absl::StrCat("experiment=\"", id, "\"");
  const double updates_mid = LearnerMetric("prl_learner_updates_total", exp);
  const double version_mid = LearnerMetric("prl_learner_policy_version", exp);
  EXPECT_GT(updates_mid, 0);
  EXPECT_GT(version_mid, 0);
  EXPECT_GT(LearnerMetric("prl_learner_loss", exp + ",loss=\"critic\""), -1);
  EXPECT_GT(LearnerMetric("prl_learner_alpha", exp), 0);
  const v1::Experiment done = WaitFor(id, absl::Minutes(4), [](const v1::Experiment& e) {
    return e.state() != v1::EXPERIMENT_STATE_QUEUED && e.state() != v1::EXPERIMENT_STATE_RUNNING;
  });
  ASSERT_EQ(done.state(), v1::EXPERIMENT_STATE_SUCCEEDED) << done.DebugString();
  EXPECT_EQ(done.end_reason(), "max_env_steps reached");
  EXPECT_GE(done.progress().env_steps(), 20000);
  EXPECT_GT(done.progress().updates(), 5000);
  EXPECT_GT(done.progress().policy_version(), 10);
  ASSERT_GE(done.curve_size(), 4) << done.DebugString();
  for (const v1::CurvePoint& p : done.curve()) {
    std::cout << "curve: env_steps " << p.env_steps() << " updates " << p.updates()
              << " eval_return " << p.eval_return() << " train_return " << p.train_return() << "\n";
  }
  // the first round evaluates (almost) the initial policy; the best later round must be far
  // better: a cheetah that runs forward instead of standing or flailing
  const double first = done.curve(0).eval_return();
  double best_late = -1e9;
  for (int i = done.curve_size() / 2; i < done.curve_size(); ++i) {
    if (done.curve(i).eval_episodes() > 0)
      best_late = std::max(best_late, done.curve(i).eval_return());
  }
  EXPECT_GT(best_late, first + 50) << done.DebugString();
  EXPECT_GT(best_late, 50) << done.DebugString();
  EXPECT_GT(LearnerMetric("prl_learner_updates_total", exp), updates_mid + 1000);
  EXPECT_GT(LearnerMetric("prl_learner_policy_version", exp), version_mid);
  EXPECT_GE(LearnerMetric("prl_learner_env_steps_total", exp), 20000);
  EXPECT_GT(LearnerMetric("prl_learner_checkpoints_total", exp + ",result=\"ok\""), 0);
  EXPECT_EQ(LearnerMetric("prl_learner_experiments", "state=\"succeeded\""), 1);
}

TEST_F(TrainE2eTest, LearnerKilledMidRunResumesFromItsCheckpoint) {
  std::string spec = kSpec;
  spec.replace(spec.find("max_env_steps: 20000"), 20, "max_env_steps: 8000");
  const std::string id = Submit(spec);
  // wait for real progress and at least one checkpoint
  const v1::Experiment before = WaitFor(id, absl::Minutes(2), [](const v1::Experiment& e) {
    return e.progress().updates() > 1500 && e.outputs().policy_version() > 0;
  });
  ASSERT_EQ(before.state(), v1::EXPERIMENT_STATE_RUNNING);
  learner_->Signal(SIGKILL);
  ASSERT_TRUE(learner_->Wait(absl::Seconds(10)).ok());
  StartLearner();
  const v1::Experiment resumed = Get(id);
  EXPECT_EQ(resumed.restarts(), 1);
  EXPECT_GE(resumed.outputs().policy_version(), before.outputs().policy_version());
  const v1::Experiment after = WaitFor(id, absl::Minutes(3), [](const v1::Experiment& e) {
    return e.state() == v1::EXPERIMENT_STATE_SUCCEEDED || e.state() == v1::EXPERIMENT_STATE_FAILED;
  });
  ASSERT_EQ(after.state(), v1::EXPERIMENT_STATE_SUCCEEDED) << after.DebugString();
  // counters continue from the checkpoint: the policy version never went backwards
  EXPECT_GT(after.progress().policy_version(), before.outputs().policy_version());
  EXPECT_GE(after.progress().updates(), before.outputs().policy_version());
  EXPECT_GE(after.progress().env_steps(), 8000);
}

TEST_F(TrainE2eTest, StopEndsARunningExperiment) {
  const std::string id = Submit(kSpec);
  WaitFor(id, absl::Minutes(2),
          [](const v1::Experiment& e) { return e.progress().updates() > 200; });
  v1::StopRequest request;
  request.set_id(id);
  request.set_reason("enough for the test");
  v1::StopResponse response;
  grpc::ClientContext context;
  PrepareContext({absl::Seconds(60)}, &context);
  grpc::Status s = stub_->Stop(&context, request, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(response.experiment().state(), v1::EXPERIMENT_STATE_STOPPED);
  EXPECT_EQ(response.experiment().end_reason(), "enough for the test");
  EXPECT_GT(response.experiment().outputs().policy_version(), 0);
}

}  // namespace
}  // namespace prl
