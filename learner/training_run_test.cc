// The training loop driven with a fake feed and a simulated actor: no sockets, no sleeps. The
// feed's Next runs on the loop's thread, so what an actor would report between two batches is
// reported there, deterministically.
#include "learner/training_run.h"

#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/checksummed_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "learner/checkpoint.pb.h"
#include "learner/recording_run_context.h"
#include "learner/spec_validation.h"
#include "prometheus/registry.h"

namespace prl::learner {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::Gt;
using ::testing::HasSubstr;
using ::testing::Key;

// Synthetic transitions of the request's table, generated on demand; `on_next` runs first on
// each call (the simulated actor's turn).
class FakeFeed final : public BatchFeed {
 public:
  explicit FakeFeed(FeedRequest request) : request_(std::move(request)) {}

  absl::Status Start() override {
    started = true;
    return absl::OkStatus();
  }
  absl::StatusOr<std::optional<Batch>> Next(absl::Duration timeout) override {
    ++calls;
    if (timeout == absl::ZeroDuration()) ++ready_only_calls;
    if (on_next) on_next(calls);
    if (!error.ok()) return error;
    if (stopped) return std::optional<Batch>();
    Batch batch;
    const int64_t b = request_.batch_size;
    for (const v1::ColumnSpec& c : request_.tables.front().signature()) {
      std::vector<int64_t> shape{b};
      for (int64_t d : c.shape()) shape.push_back(d);
      at::Tensor t = c.name() == "discount" ? at::ones(shape) : at::randn(shape);
      if (c.name() == "action") t = at::tanh(t);
      batch.columns[c.name()] = t;
    }
    for (int64_t i = 0; i < b; ++i) batch.keys.push_back(calls * 1000 + i);
    batch.source_size = calls * b;
    return std::optional<Batch>(std::move(batch));
  }
  void UpdatePriorities(const std::vector<uint64_t>& keys,
                        const std::vector<double>& priorities) override {
    priority_updates++;
    EXPECT_EQ(keys.size(), priorities.size());
  }
  int64_t size() const override { return calls * request_.batch_size; }
  void Stop() override { stopped = true; }
  absl::Status Release() override {
    stopped = true;
    released = true;
    return absl::OkStatus();
  }

  const FeedRequest& request() const { return request_; }

  std::function<void(int64_t call)> on_next;
  absl::Status error;
  bool started = false;
  bool stopped = false;
  bool released = false;
  int64_t calls = 0;
  int64_t ready_only_calls = 0;  // calls with a zero timeout (TrainingRun::TakeBatches)
  int priority_updates = 0;

 private:
  const FeedRequest request_;
};

v1::ExperimentSpec SmallSacSpec() {
  v1::ExperimentSpec spec;
  spec.set_name("loop-test");
  spec.set_kind(v1::ExperimentSpec::KIND_TRAIN);
  spec.mutable_env()->set_domain(v1::EnvSpec::DOMAIN_CHEETAH);
  spec.mutable_env()->set_task("run_forward");
  spec.mutable_algorithm()->mutable_sac();
  spec.mutable_algorithm()->mutable_network()->add_hidden_sizes(16);
  spec.mutable_algorithm()->mutable_network()->add_hidden_sizes(16);
  spec.mutable_algorithm()->set_batch_size(8);
  spec.mutable_algorithm()->set_seed(5);
  spec.mutable_evaluation()->set_disabled(true);
  spec.mutable_evaluation()->set_every_env_steps(100);
  spec.mutable_stop()->set_max_updates(30);
  return spec;
}

class TrainingRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    checkpoint_path_ = ::testing::TempDir() + "/" +
                       ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".ckpt";
    std::remove(checkpoint_path_.c_str());
    std::remove((checkpoint_path_ + ".versions").c_str());
  }

  // Runs `spec` as experiment `id` to its end; the fake feed is kept in feed_.
  ExperimentRun::Result RunSpec(const v1::ExperimentSpec& spec,
                                std::function<void(ExperimentRun*, int64_t)> on_next = nullptr,
                                const std::string& id = "exp-1") {
    absl::StatusOr<v1::ExperimentSpec> filled = ValidateAndFillSpec(spec);
    EXPECT_TRUE(filled.ok()) << filled.status();
    v1::Experiment experiment;
    experiment.set_id(id);
    *experiment.mutable_spec() = *filled;
    ExperimentRun* run_ptr = nullptr;
    TrainingRunOptions options;
    options.registry = &registry_;
    options.policies = policies_.get();
    options.algorithms = &algorithms_;
    options.metrics = &metrics_;
    options.checkpoint_path = checkpoint_path_;
    options.device = "cpu";
    options.publish_every_updates = 10;
    options.initial_state = initial_state_;
    options.updates_per_call = updates_per_call_;
    options.feed_factory =
        [&](const FeedRequest& request) -> absl::StatusOr<std::unique_ptr<BatchFeed>> {
      auto feed = std::make_unique<FakeFeed>(request);
      feed->error = feed_error_;
      if (on_next) feed->on_next = [&, on_next](int64_t call) { on_next(run_ptr, call); };
      feed_ = feed.get();
      return std::unique_ptr<BatchFeed>(std::move(feed));
    };
    absl::StatusOr<std::unique_ptr<ExperimentRun>> run =
        CreateTrainingRun(experiment, &context_, options);
    EXPECT_TRUE(run.ok()) << run.status();
    run_ptr = run->get();
    ExperimentRun::Result result = (*run)->Run();
    feed_calls_ = feed_ != nullptr ? feed_->calls : 0;
    ready_only_calls_ = feed_ != nullptr ? feed_->ready_only_calls : 0;
    feed_stopped_ = feed_ != nullptr && feed_->stopped;
    feed_released_ = feed_ != nullptr && feed_->released;
    priority_updates_ = feed_ != nullptr ? feed_->priority_updates : 0;
    if (feed_ != nullptr) request_ = feed_->request();
    feed_ = nullptr;  // owned by the run, gone with it
    return result;
  }

  double Metric(const std::string& name, const std::map<std::string, std::string>& labels) {
    for (const prometheus::MetricFamily& family : prom_.Collect()) {
      if (family.name != name) continue;
      for (const prometheus::ClientMetric& m : family.metric) {
        bool match = true;
        for (const auto& [k, v] : labels) {
          bool found = false;
          for (const prometheus::ClientMetric::Label& l : m.label) {
            found |= l.name == k && l.value == v;
          }
          match &= found;
        }
        if (!match) continue;
        switch (family.type) {
          case prometheus::MetricType::Counter:
            return m.counter.value;
          case prometheus::MetricType::Gauge:
            return m.gauge.value;
          case prometheus::MetricType::Histogram:
            return static_cast<double>(m.histogram.sample_count);
          default:
            return -1;
        }
      }
    }
    return -1;
  }

  std::string checkpoint_path_;
  ActorRegistry registry_;
  std::unique_ptr<PolicyStore> policies_ = std::make_unique<PolicyStore>();
  AlgorithmRegistry algorithms_ = DefaultAlgorithmRegistry();
  prometheus::Registry prom_;
  LearnerMetrics metrics_{prom_};
  RecordingRunContext context_;
  absl::Status feed_error_;
  std::function<absl::StatusOr<std::string>(const v1::PolicyRef&)> initial_state_;
  FakeFeed* feed_ = nullptr;
  int64_t feed_calls_ = 0;
  int64_t ready_only_calls_ = 0;
  int updates_per_call_ = 0;
  bool feed_stopped_ = false;
  bool feed_released_ = false;
  int priority_updates_ = 0;
  FeedRequest request_;

  void ExpectTheBudgetExactWhileALastEvaluationRoundFinishes();
};

TEST_F(TrainingRunTest, TrainsToMaxUpdatesPublishingCheckpointingAndCountingInMetrics) {
  const ExperimentRun::Result result = RunSpec(SmallSacSpec());
  EXPECT_EQ(result.state, v1::EXPERIMENT_STATE_SUCCEEDED) << result.reason;
  EXPECT_EQ(result.reason, "max_updates reached");
  EXPECT_EQ(feed_calls_, 30);
  EXPECT_EQ(ready_only_calls_, 0);  // on the CPU one update per loop step
  EXPECT_TRUE(feed_stopped_);
  EXPECT_TRUE(feed_released_);  // the run ended for good: its tables go
  // the feed was asked for the algorithm's table, named after the experiment
  ASSERT_EQ(request_.tables.size(), 1u);
  EXPECT_EQ(request_.tables[0].name(), "exp-1");
  EXPECT_EQ(request_.batch_size, 8);
  EXPECT_EQ(request_.device, "cpu");
  // published at the start, every 10 updates, and at the end
  EXPECT_EQ(policies_->version("exp-1"), 5);
  const v1::Progress progress = context_.progress();
  EXPECT_EQ(progress.updates(), 30);
  EXPECT_EQ(progress.policy_version(), 5);
  EXPECT_THAT(progress.scalars(), Contains(Key("critic_loss")));
  EXPECT_THAT(progress.scalars(), Contains(Key("alpha")));
  EXPECT_EQ(context_.outputs().checkpoint_path(), checkpoint_path_);
  // the run trained without actors (the feed is a fake), but once it has ended its last
  // report does not say it waits for them
  EXPECT_EQ(progress.message(), "");
  // metrics
  const std::map<std::string, std::string> exp{{"experiment", "exp-1"}};
  EXPECT_EQ(Metric("prl_learner_updates_total", exp), 30);
  EXPECT_EQ(Metric("prl_learner_update_duration_seconds", exp), 30);
  EXPECT_EQ(Metric("prl_learner_policy_version", exp), 5);
  EXPECT_GT(Metric("prl_learner_alpha", exp), 0);
  EXPECT_NE(Metric("prl_learner_loss", {{"experiment", "exp-1"}, {"loss", "critic"}}), -1);
  EXPECT_NE(Metric("prl_learner_loss", {{"experiment", "exp-1"}, {"loss", "actor"}}), -1);
  EXPECT_EQ(Metric("prl_learner_checkpoints_total", {{"experiment", "exp-1"}, {"result", "ok"}}),
            1);
  EXPECT_GE(Metric("prl_learner_sample_wait_seconds_total", exp), 0);
}

TEST_F(TrainingRunTest, ResumesFromItsCheckpointWithVersionsGoingUp) {
  v1::ExperimentSpec spec = SmallSacSpec();
  spec.mutable_stop()->set_max_updates(20);
  ASSERT_EQ(RunSpec(spec).state, v1::EXPERIMENT_STATE_SUCCEEDED);
  const int64_t first_version = policies_->version("exp-1");
  EXPECT_EQ(first_version, 4);  // start, 10, 20, end

  spec.mutable_stop()->set_max_updates(35);
  const ExperimentRun::Result result = RunSpec(spec);
  EXPECT_EQ(result.state, v1::EXPERIMENT_STATE_SUCCEEDED) << result.reason;
  // 15 more updates, not 35: the count came back with the checkpoint
  EXPECT_EQ(feed_calls_, 15);
  EXPECT_EQ(context_.progress().updates(), 35);
  EXPECT_GT(policies_->version("exp-1"), first_version);
}

TEST_F(TrainingRunTest, ACheckpointOfAnotherExperimentIsRefused) {
  ASSERT_EQ(RunSpec(SmallSacSpec(), nullptr, "exp-1").state, v1::EXPERIMENT_STATE_SUCCEEDED);
  const ExperimentRun::Result result = RunSpec(SmallSacSpec(), nullptr, "exp-2");
  EXPECT_EQ(result.state, v1::EXPERIMENT_STATE_FAILED);
  EXPECT_THAT(result.reason, HasSubstr("belongs to exp-1, not exp-2"));
  EXPECT_TRUE(feed_released_);  // failed for good: the tables an earlier start made go too
}

TEST_F(TrainingRunTest, InitFromStartsANewRunFromAnotherRunsNetworks) {
  ASSERT_EQ(RunSpec(SmallSacSpec(), nullptr, "exp-1").state, v1::EXPERIMENT_STATE_SUCCEEDED);
  absl::StatusOr<std::shared_ptr<const v1::Policy>> source =
      policies_->Wait("exp-1", 0, absl::InfinitePast());
  ASSERT_TRUE(source.ok()) << source.status();
  // the source's agent state, as the run factory reads it from exp-1's checkpoint
  std::vector<v1::PolicyRef> asked;
  absl::StatusOr<std::string> file = ReadChecksummedFile(checkpoint_path_);
  ASSERT_TRUE(file.ok()) << file.status();
  TrainingCheckpoint checkpoint;
  ASSERT_TRUE(checkpoint.ParseFromString(*file));
  const std::string bytes = checkpoint.agent_state();
  std::remove(checkpoint_path_.c_str());
  std::remove((checkpoint_path_ + ".versions").c_str());
  initial_state_ = [&](const v1::PolicyRef& ref) -> absl::StatusOr<std::string> {
    asked.push_back(ref);
    return bytes;
  };

  v1::ExperimentSpec spec = SmallSacSpec();
  spec.mutable_algorithm()->mutable_init_from()->set_experiment_id("exp-1");
  spec.mutable_algorithm()->set_seed(99);  // other initial weights, were they used
  std::shared_ptr<const v1::Policy> first;
  const ExperimentRun::Result result = RunSpec(
      spec,
      [&](ExperimentRun*, int64_t call) {
        if (call == 1) first = *policies_->Wait("exp-2", 1, absl::InfinitePast());
      },
      "exp-2");
  ASSERT_EQ(result.state, v1::EXPERIMENT_STATE_SUCCEEDED) << result.reason;
  ASSERT_EQ(asked.size(), 1u);
  EXPECT_EQ(asked[0].experiment_id(), "exp-1");
  // exp-2's first policy, published before its first update, is exp-1's last
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first->version(), 1);
  ASSERT_EQ(first->weights_size(), (*source)->weights_size());
  for (int i = 0; i < first->weights_size(); ++i) {
    EXPECT_EQ(first->weights(i).SerializeAsString(), (*source)->weights(i).SerializeAsString())
        << first->weights(i).name();
  }
  EXPECT_EQ(context_.progress().updates(), 30);  // counters start over
  EXPECT_THAT(context_.progress().message(), HasSubstr("started from the networks of exp-1"));
}

TEST_F(TrainingRunTest, InitFromFailuresFailTheRunNamingTheField) {
  v1::ExperimentSpec spec = SmallSacSpec();
  spec.mutable_algorithm()->mutable_init_from()->set_experiment_id("exp-0");
  initial_state_ = [](const v1::PolicyRef&) -> absl::StatusOr<std::string> {
    return absl::NotFoundError("algorithm.init_from.experiment_id: exp-0 has no checkpoint");
  };
  ExperimentRun::Result result = RunSpec(spec);
  EXPECT_EQ(result.state, v1::EXPERIMENT_STATE_FAILED);
  EXPECT_THAT(result.reason, HasSubstr("algorithm.init_from.experiment_id: exp-0"));

  // a source with another network
  v1::ExperimentSpec wide = SmallSacSpec();
  wide.mutable_algorithm()->mutable_network()->set_hidden_sizes(0, 32);
  ASSERT_EQ(RunSpec(wide, nullptr, "exp-0").state, v1::EXPERIMENT_STATE_SUCCEEDED);
  TrainingCheckpoint checkpoint;
  ASSERT_TRUE(checkpoint.ParseFromString(*ReadChecksummedFile(checkpoint_path_)));
  std::remove(checkpoint_path_.c_str());
  std::remove((checkpoint_path_ + ".versions").c_str());
  initial_state_ = [&](const v1::PolicyRef&) -> absl::StatusOr<std::string> {
    return checkpoint.agent_state();
  };
  result = RunSpec(spec);
  EXPECT_EQ(result.state, v1::EXPERIMENT_STATE_FAILED);
  EXPECT_THAT(result.reason, HasSubstr("algorithm.init_from: agent checkpoint is for network "
                                       "hidden_sizes [32, 16]"));
}

TEST_F(TrainingRunTest, ActorReportsMakeTheCurveAndTheEnvStepStop) {
  v1::ExperimentSpec spec = SmallSacSpec();
  spec.mutable_stop()->clear_max_updates();
  spec.mutable_stop()->set_max_env_steps(200);
  spec.mutable_algorithm()->set_n_step(5);
  spec.mutable_algorithm()->set_discount(0.95);
  std::string actor_id;
  int64_t generation = 0;
  int64_t next_episode = 1;
  const ExperimentRun::Result result = RunSpec(spec, [&](ExperimentRun*, int64_t call) {
    if (call == 1) {
      v1::JoinRequest join;
      join.set_actor_name("actor-0");
      join.set_num_envs(1);
      const v1::JoinResponse joined = registry_.Join(join);
      actor_id = joined.actor_id();
      generation = joined.assignment().generation();
      // the assignment comes from the algorithm and the run
      EXPECT_EQ(joined.assignment().experiment_id(), "exp-1");
      EXPECT_EQ(joined.assignment().table(), "exp-1");
      EXPECT_EQ(joined.assignment().decision_horizon(), 1);
      EXPECT_EQ(joined.assignment().signature_size(), 5);
      EXPECT_EQ(joined.assignment().policy().output_dim(), 6);
      // n-step rows are built by the actors, with the algorithm's discount
      EXPECT_EQ(joined.assignment().n_step(), 5);
      EXPECT_DOUBLE_EQ(joined.assignment().n_step_discount(), 0.95);
    }
    // each batch: 25 env steps and one finished episode of return `call`
    v1::ReportEpisodesRequest report;
    report.set_actor_id(actor_id);
    report.set_experiment_id("exp-1");
    report.set_generation(generation);
    report.set_env_steps(25 * call);
    report.set_first_sequence(next_episode++);
    v1::EpisodeSummary* episode = report.add_episodes();
    episode->set_episode_return(static_cast<double>(call));
    episode->set_length(25);
    ASSERT_TRUE(registry_.ReportEpisodes(report).ok());
  });
  EXPECT_EQ(result.state, v1::EXPERIMENT_STATE_SUCCEEDED) << result.reason;
  EXPECT_EQ(result.reason, "max_env_steps reached");
  EXPECT_EQ(feed_calls_, 8);
  std::vector<int64_t> steps;
  for (const v1::CurvePoint& p : context_.curve()) steps.push_back(p.env_steps());
  EXPECT_THAT(steps, ElementsAre(100, 200));
  // the first point holds episodes 1..4 (returns 1..4), the second 5..8
  EXPECT_DOUBLE_EQ(context_.curve()[0].train_return(), 2.5);
  EXPECT_EQ(context_.curve()[0].train_episodes(), 4);
  EXPECT_DOUBLE_EQ(context_.curve()[1].train_return(), 6.5);
  EXPECT_EQ(context_.progress().episodes(), 8);
  const std::map<std::string, std::string> exp{{"experiment", "exp-1"}};
  EXPECT_EQ(Metric("prl_learner_env_steps_total", exp), 200);
  EXPECT_EQ(Metric("prl_learner_episodes_total", exp), 8);
  EXPECT_EQ(registry_.assigned_actors(), 0);  // the job ended with the run
}

// max_env_steps is reached while the round at 200 steps is still out; the actor keeps
// stepping (25 training steps per feed call) and answers the round 6 calls late. The run
// must neither train nor count env steps past the budget while it waits.
void TrainingRunTest::ExpectTheBudgetExactWhileALastEvaluationRoundFinishes() {
  v1::ExperimentSpec spec = SmallSacSpec();
  spec.mutable_stop()->clear_max_updates();
  spec.mutable_stop()->set_max_env_steps(200);
  spec.mutable_evaluation()->set_disabled(false);
  spec.mutable_evaluation()->set_episodes(1);
  std::string actor_id;
  int64_t generation = 0;
  int64_t next_episode = 1;
  int64_t answered_round = 0;
  int64_t seen_round = 0, seen_at_call = 0;
  const ExperimentRun::Result result = RunSpec(spec, [&](ExperimentRun*, int64_t call) {
    if (call == 1) {
      v1::JoinRequest join;
      join.set_actor_name("actor-0");
      join.set_num_envs(1);
      const v1::JoinResponse joined = registry_.Join(join);
      actor_id = joined.actor_id();
      generation = joined.assignment().generation();
    }
    v1::HeartbeatRequest beat;
    beat.set_actor_id(actor_id);
    beat.set_generation(generation);
    beat.mutable_status()->set_env_steps(25 * call);
    absl::StatusOr<v1::HeartbeatResponse> response = registry_.Heartbeat(beat);
    ASSERT_TRUE(response.ok()) << response.status();
    if (response->evaluation().round() > seen_round) {
      seen_round = response->evaluation().round();
      seen_at_call = call;
    }
    v1::ReportEpisodesRequest report;
    report.set_actor_id(actor_id);
    report.set_experiment_id("exp-1");
    report.set_generation(generation);
    report.set_env_steps(25 * call);
    report.set_first_sequence(next_episode);
    v1::EpisodeSummary* episode = report.add_episodes();
    episode->set_episode_return(1.0);
    episode->set_length(25);
    ++next_episode;
    // answer the newest round, late
    if (seen_round > answered_round && call >= seen_at_call + 6) {
      v1::EpisodeSummary* eval = report.add_episodes();
      eval->set_is_eval(true);
      eval->set_eval_round(seen_round);
      eval->set_episode_return(7.0);
      eval->set_length(25);
      answered_round = seen_round;
      ++next_episode;
    }
    ASSERT_TRUE(registry_.ReportEpisodes(report).ok());
  });
  EXPECT_EQ(result.state, v1::EXPERIMENT_STATE_SUCCEEDED) << result.reason;
  EXPECT_EQ(result.reason, "max_env_steps reached");
  EXPECT_GE(feed_calls_, 14);                       // it did wait for the late round
  EXPECT_EQ(context_.progress().env_steps(), 200);  // not 25 · feed_calls_
  EXPECT_EQ(context_.progress().episodes(), 8);     // training episodes stop with the env steps
  // no update after the call that reached 200 env steps (the 8th)
  EXPECT_EQ(context_.progress().updates(), 7);
  ASSERT_FALSE(context_.curve().empty());
  EXPECT_EQ(context_.curve().back().env_steps(), 200);
  EXPECT_EQ(context_.curve().back().eval_episodes(), 1);
}

TEST_F(TrainingRunTest, TheBudgetIsExactWhileALastEvaluationRoundFinishes) {
  ExpectTheBudgetExactWhileALastEvaluationRoundFinishes();
}

TEST_F(TrainingRunTest, TheBudgetIsExactWithSeveralUpdatesPerCall) {
  updates_per_call_ = 4;  // the budget runs out in the middle of a group of batches
  ExpectTheBudgetExactWhileALastEvaluationRoundFinishes();
}

TEST_F(TrainingRunTest, SeveralUpdatesPerCallTakeTheReadyBatchesUpToMaxUpdates) {
  updates_per_call_ = 4;
  v1::ExperimentSpec spec = SmallSacSpec();
  spec.mutable_replay()->set_sampler(v1::SAMPLER_PRIORITIZED);
  const ExperimentRun::Result result = RunSpec(spec);
  EXPECT_EQ(result.state, v1::EXPERIMENT_STATE_SUCCEEDED) << result.reason;
  EXPECT_EQ(result.reason, "max_updates reached");
  EXPECT_EQ(request_.prefetch, 4);  // the feed keeps a whole call's batches ready
  // 30 updates from 30 batches: 7 calls of 4 and a last one of 2 (the budget), each the batch
  // waited for and the rest taken only if ready
  EXPECT_EQ(feed_calls_, 30);
  EXPECT_EQ(ready_only_calls_, 7 * 3 + 1);
  EXPECT_EQ(priority_updates_, 30);  // every batch's keys get their new priorities
  EXPECT_EQ(context_.progress().updates(), 30);
  const std::map<std::string, std::string> exp{{"experiment", "exp-1"}};
  EXPECT_EQ(Metric("prl_learner_updates_total", exp), 30);
  EXPECT_EQ(Metric("prl_learner_update_duration_seconds", exp), 30);
  // published at the start, after 12 and 24 updates (every 10, checked per call) and at the end
  EXPECT_EQ(policies_->version("exp-1"), 4);
  // resumed from its checkpoint it goes on counting from there
  spec.mutable_stop()->set_max_updates(33);
  ASSERT_EQ(RunSpec(spec).state, v1::EXPERIMENT_STATE_SUCCEEDED);
  EXPECT_EQ(context_.progress().updates(), 33);
}

TEST_F(TrainingRunTest, AFeedErrorWhileTakingReadyBatchesFailsTheRunNamingIt) {
  updates_per_call_ = 4;
  // the feed fails once, on its third call, a ready-only one behind the first batch (as a
  // batch whose copies failed is lost with its error): the run must not go on without it
  const ExperimentRun::Result result = RunSpec(SmallSacSpec(), [&](ExperimentRun*, int64_t call) {
    feed_->error =
        call == 3 ? absl::InternalError("waiting for a batch's copies failed") : absl::OkStatus();
  });
  EXPECT_EQ(result.state, v1::EXPERIMENT_STATE_FAILED);
  EXPECT_EQ(result.reason, "sampling replay: waiting for a batch's copies failed");
  EXPECT_EQ(context_.progress().updates(), 0);
}

TEST_F(TrainingRunTest, UpdatesPerCallOrPerGraphOutOfRangeIsRefusedNamingTheOption) {
  absl::StatusOr<v1::ExperimentSpec> filled = ValidateAndFillSpec(SmallSacSpec());
  ASSERT_TRUE(filled.ok()) << filled.status();
  v1::Experiment experiment;
  experiment.set_id("exp-1");
  *experiment.mutable_spec() = *filled;
  TrainingRunOptions options;
  options.registry = &registry_;
  options.policies = policies_.get();
  options.algorithms = &algorithms_;
  for (int bad : {-1, kMaxUpdatesPerCall + 1}) {
    options.updates_per_call = bad;
    absl::StatusOr<std::unique_ptr<ExperimentRun>> run =
        CreateTrainingRun(experiment, &context_, options);
    EXPECT_EQ(run.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(run.status().message(), HasSubstr("updates_per_call"));
  }
  options.updates_per_call = 0;
  for (int bad : {0, kMaxUpdatesPerGraph + 1}) {
    options.updates_per_graph = bad;
    absl::StatusOr<std::unique_ptr<ExperimentRun>> run =
        CreateTrainingRun(experiment, &context_, options);
    EXPECT_EQ(run.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(run.status().message(),
                HasSubstr(absl::StrCat("updates_per_graph: ", bad, " is out of range")));
  }
}

TEST_F(TrainingRunTest, StopRequestsEndStoppedAndShutdownsLeaveItRunning) {
  const auto stop_at_5 = [](bool shutdown) {
    return [shutdown](ExperimentRun* run, int64_t call) {
      if (call == 5) run->RequestStop(shutdown ? "learner shutting down" : "user", shutdown);
    };
  };
  ExperimentRun::Result stopped = RunSpec(SmallSacSpec(), stop_at_5(false), "exp-stop");
  EXPECT_EQ(stopped.state, v1::EXPERIMENT_STATE_STOPPED);
  EXPECT_EQ(stopped.reason, "user");
  std::remove(checkpoint_path_.c_str());
  ExperimentRun::Result shutdown = RunSpec(SmallSacSpec(), stop_at_5(true), "exp-shutdown");
  EXPECT_EQ(shutdown.state, v1::EXPERIMENT_STATE_RUNNING);
  EXPECT_EQ(shutdown.reason, "learner shutting down");
  EXPECT_EQ(feed_calls_, 5);
  EXPECT_FALSE(feed_released_);  // it resumes with its tables
}

TEST_F(TrainingRunTest, VersionsNeverGoBackAfterACrashBeforeTheFirstCheckpoint) {
  v1::ExperimentSpec spec = SmallSacSpec();
  spec.mutable_stop()->set_max_updates(20);
  ASSERT_EQ(RunSpec(spec).state, v1::EXPERIMENT_STATE_SUCCEEDED);
  const int64_t first_version = policies_->version("exp-1");
  // the learner died before any checkpoint reached the disk: only the reservation remains
  std::remove(checkpoint_path_.c_str());
  policies_ = std::make_unique<PolicyStore>();  // a new learner process
  ASSERT_EQ(RunSpec(spec).state, v1::EXPERIMENT_STATE_SUCCEEDED);
  EXPECT_EQ(feed_calls_, 20);                             // trained again from the start ...
  EXPECT_GT(policies_->version("exp-1"), first_version);  // ... with versions still going up
  EXPECT_THAT(context_.progress().message(),
              HasSubstr("restarted without a checkpoint; policy versions continue after v"));
}

TEST_F(TrainingRunTest, ARestoreCutsTheCurveBackToTheCheckpoint) {
  v1::ExperimentSpec spec = SmallSacSpec();
  spec.mutable_stop()->clear_max_updates();
  spec.mutable_stop()->set_max_env_steps(200);
  std::string actor_id;
  int64_t generation = 0;
  const auto actor = [&](ExperimentRun*, int64_t call) {
    if (call == 1) {
      v1::JoinRequest join;
      join.set_actor_name("actor-0");
      const v1::JoinResponse joined = registry_.Join(join);
      actor_id = joined.actor_id();
      generation = joined.assignment().generation();
    }
    v1::HeartbeatRequest beat;
    beat.set_actor_id(actor_id);
    beat.set_generation(generation);
    beat.mutable_status()->set_env_steps(25 * call);
    ASSERT_TRUE(registry_.Heartbeat(beat).ok());
  };
  ASSERT_EQ(RunSpec(spec, actor).state, v1::EXPERIMENT_STATE_SUCCEEDED);
  ASSERT_EQ(context_.curve().size(), 2u);  // 100 and 200
  // a later point the checkpoint does not cover (as if the learner died after adding it)
  v1::CurvePoint lost;
  lost.set_env_steps(300);
  context_.AddCurvePoint(lost);
  spec.mutable_stop()->set_max_env_steps(250);
  ASSERT_EQ(RunSpec(spec, actor).state, v1::EXPERIMENT_STATE_SUCCEEDED);
  EXPECT_THAT(context_.truncations(), ElementsAre(0, 200));
  for (const v1::CurvePoint& p : context_.curve()) EXPECT_NE(p.env_steps(), 300);
  EXPECT_THAT(context_.progress().message(),
              HasSubstr("resumed from the checkpoint at 200 env steps"));
}

TEST_F(TrainingRunTest, AFeedErrorFailsTheRunNamingIt) {
  feed_error_ = absl::InternalError("table exp-1 was deleted");
  const ExperimentRun::Result result = RunSpec(SmallSacSpec());
  EXPECT_EQ(result.state, v1::EXPERIMENT_STATE_FAILED);
  EXPECT_EQ(result.reason, "sampling replay: table exp-1 was deleted");
  EXPECT_TRUE(feed_released_);  // a failed run leaves no table behind
}

TEST_F(TrainingRunTest, PrioritizedReplayGetsNewPriorities) {
  v1::ExperimentSpec spec = SmallSacSpec();
  spec.mutable_replay()->set_sampler(v1::SAMPLER_PRIORITIZED);
  spec.mutable_stop()->set_max_updates(5);
  ASSERT_EQ(RunSpec(spec).state, v1::EXPERIMENT_STATE_SUCCEEDED);
  EXPECT_TRUE(request_.prioritized);
  EXPECT_EQ(priority_updates_, 5);
}

TEST_F(TrainingRunTest, AnAlgorithmTheRegistryLacksIsUnimplementedByName) {
  v1::Experiment experiment;
  experiment.set_id("exp-spirl");
  *experiment.mutable_spec() = SmallSacSpec();
  experiment.mutable_spec()->mutable_algorithm()->mutable_spirl();
  TrainingRunOptions options;
  options.registry = &registry_;
  options.policies = policies_.get();
  options.algorithms = &algorithms_;
  const auto run = CreateTrainingRun(experiment, &context_, options);
  EXPECT_EQ(run.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(run.status().message()), HasSubstr("algorithm.spirl"));
  EXPECT_THAT(std::string(run.status().message()), HasSubstr("sac, td3"));
}

}  // namespace
}  // namespace prl::learner
