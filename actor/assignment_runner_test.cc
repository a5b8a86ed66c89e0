// AssignmentRunner's MCAT side, run on the test thread against a fake host (the learner side)
// and a real in-process replay shard: context-conditioned acting (the context each env's policy
// call sees, the transferred flags reaching episode summaries, evaluation in context), the
// history columns of the rows, the self-imitation episode table, and the assignments it
// refuses. The host stops the runner after a fixed number of env steps and every row is flushed
// at once, so the tables hold exactly the steps taken.
#include "actor/assignment_runner.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <utility>

#include "absl/time/clock.h"
#include "common/server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "replay/replay_service.h"
#include "replay/shard.h"

namespace prl::actor {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int kObs = 17;  // cheetah
constexpr int kAct = 6;
constexpr int kEpisodeLength = 4;
constexpr int kK = 2;  // transitions the fake policy's context encoder reads
constexpr int kW = 3;  // transitions of the rows' history columns
constexpr float kEvalAction = -0.25f;

// What the fake policy was given in one ActInContext call, and what it answered.
struct ContextCall {
  int n = 0;
  bool deterministic = false;
  std::vector<float> obs, context_obs, context_actions, mask, actions;
  std::vector<int> tasks;
};

// A context-conditioned policy reading K transitions: actions 0.5·tanh(state + 0.1·call) in
// training (so rows differ from step to step), kEvalAction when deterministic. Task 1 acts with a
// translated policy, except that every odd call flips every env's flag: only an episode's first
// action decides whether it counts as transferred, and episodes start on even calls here. With
// K = 0 it is a plain policy acting through Act.
class FakeContextPolicy final : public models::ActingPolicy {
 public:
  FakeContextPolicy(int k, std::vector<ContextCall>* calls) : k_(k), calls_(calls) {}

  void Act(absl::Span<const float> obs, int n, bool deterministic,
           absl::Span<float> actions) override {
    EXPECT_EQ(k_, 0) << "a context-conditioned policy acts through ActInContext";
    Answer(obs, n, deterministic, actions);
  }
  int context_history() const override { return k_; }
  void ActInContext(absl::Span<const float> obs, int n, bool deterministic, const Context& context,
                    absl::Span<float> actions, absl::Span<uint8_t> transferred) override {
    ContextCall call;
    call.n = n;
    call.deterministic = deterministic;
    call.obs.assign(obs.begin(), obs.end());
    call.context_obs.assign(context.observations.begin(), context.observations.end());
    call.context_actions.assign(context.actions.begin(), context.actions.end());
    call.mask.assign(context.mask.begin(), context.mask.end());
    call.tasks.assign(context.task_index.begin(), context.task_index.end());
    Answer(obs, n, deterministic, actions);
    call.actions.assign(actions.begin(), actions.end());
    const bool flip = calls_->size() % 2 == 1;
    for (int i = 0; i < n; ++i) transferred[i] = (context.task_index[i] == 1) != flip;
    calls_->push_back(std::move(call));
  }
  int64_t version() const override { return 1; }
  int obs_dim() const override { return kObs; }
  int action_dim() const override { return kAct; }

 private:
  void Answer(absl::Span<const float> obs, int n, bool deterministic, absl::Span<float> actions) {
    for (int i = 0; i < n; ++i) {
      for (int d = 0; d < kAct; ++d) {
        actions[i * kAct + d] = deterministic
                                    ? kEvalAction
                                    : 0.5f * std::tanh(obs[i * kObs + d] + 0.1f * calls_->size());
      }
    }
  }

  const int k_;
  std::vector<ContextCall>* const calls_;
};

// The learner side, on the test thread: one policy version, scripted evaluation rounds, the
// reported episodes; the runner stops once `stop` holds. A backoff wait (a failed call) ends the
// run too, so a test that goes wrong fails instead of retrying; tests expect no waits.
class FakeHost final : public RunnerHost {
 public:
  std::function<bool(const FakeHost&)> stop;
  std::vector<v1::EvaluationRequest> evaluations;
  std::vector<v1::EpisodeSummary> episodes;
  int64_t env_steps = 0;
  int64_t items_inserted = 0;
  int waits = 0;

  bool Interrupted() override { return waits > 0 || stop(*this); }
  bool Wait(absl::Duration) override {
    ++waits;
    return true;
  }
  std::optional<v1::EvaluationRequest> Evaluation(int64_t after_round, absl::Duration) override {
    for (const v1::EvaluationRequest& r : evaluations) {
      if (r.round() > after_round) return r;
    }
    return std::nullopt;
  }
  absl::StatusOr<v1::GetPolicyResponse> GetPolicy(const v1::GetPolicyRequest& request,
                                                  absl::Duration) override {
    v1::GetPolicyResponse response;
    response.mutable_policy()->set_version(1);
    response.set_not_modified(request.have_version() == 1);
    return response;
  }
  absl::StatusOr<v1::ReportEpisodesResponse> ReportEpisodes(v1::ReportEpisodesRequest request,
                                                            absl::Duration) override {
    for (const v1::EpisodeSummary& e : request.episodes()) episodes.push_back(e);
    v1::ReportEpisodesResponse response;
    response.set_num_accepted(request.episodes_size());
    return response;
  }
  int64_t AddProgress(int64_t steps, int64_t, int64_t items) override {
    env_steps += steps;
    items_inserted += items;
    return env_steps;
  }
  void SetActingVersion(int64_t) override {}
  int64_t NumberEpisode() override { return ++numbers_; }

 private:
  int64_t numbers_ = 0;
};

v1::ColumnSpec* AddColumn(google::protobuf::RepeatedPtrField<v1::ColumnSpec>* signature,
                          const std::string& name, v1::Tensor::DType dtype,
                          std::vector<int64_t> shape) {
  v1::ColumnSpec* c = signature->Add();
  c->set_name(name);
  c->set_dtype(dtype);
  for (int64_t d : shape) c->add_shape(d);
  return c;
}

constexpr auto kF32 = v1::Tensor::DTYPE_FLOAT32;
constexpr auto kI64 = v1::Tensor::DTYPE_INT64;

// Columns of the main table, by index.
enum Col {
  kObservation,
  kAction,
  kReward,
  kNextObservation,
  kTaskIndex,
  kEpisode,
  kStep,
  kHistoryObservation,
  kHistoryAction,
  kHistoryMask,
};

google::protobuf::RepeatedPtrField<v1::ColumnSpec> MainSignature() {
  google::protobuf::RepeatedPtrField<v1::ColumnSpec> s;
  AddColumn(&s, "observation", kF32, {kObs});
  AddColumn(&s, "action", kF32, {kAct});
  AddColumn(&s, "reward", kF32, {});
  AddColumn(&s, "next_observation", kF32, {kObs});
  AddColumn(&s, "task_index", kI64, {});
  AddColumn(&s, "episode", kI64, {});
  AddColumn(&s, "step", kI64, {});
  AddColumn(&s, "history_observation", kF32, {kW + 1, kObs});
  AddColumn(&s, "history_action", kF32, {kW, kAct});
  AddColumn(&s, "history_mask", kF32, {kW});
  return s;
}

// A sampled column as values of T.
template <typename T>
std::vector<T> Values(const v1::SampleResponse& r, int column) {
  const std::string& bytes = r.columns(column).tensor().data();
  std::vector<T> out(bytes.size() / sizeof(T));
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}
// Row `row` of a float column with `width` values per row.
std::vector<float> Row(const std::vector<float>& column, int row, int width) {
  return std::vector<float>(column.begin() + row * width, column.begin() + (row + 1) * width);
}

class AssignmentRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    shard_ = *replay::ReplayShard::Create(replay::ShardOptions(), *replay_registry_);
    service_ =
        std::make_unique<replay::ReplayServiceImpl>(replay::ReplayServiceOptions(), shard_.get());
    ServerOptions options;
    options.service_name = "replay";
    options.metrics_port = -1;
    options.drain_timeout = absl::Milliseconds(200);
    auto server = ServerHost::Start(options, {service_.get()}, replay_registry_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  void CreateTable(const std::string& name,
                   const google::protobuf::RepeatedPtrField<v1::ColumnSpec>& signature) {
    v1::TableConfig config;
    config.set_name(name);
    config.set_capacity(10'000);
    config.set_sampler(v1::SAMPLER_FIFO);  // samples come back in insertion order
    *config.mutable_signature() = signature;
    ASSERT_TRUE(shard_->CreateTable(config).ok());
  }
  int64_t TableSize(const std::string& name) { return (*shard_->GetTable(name))->size(); }
  // Every item of `table`, in insertion order.
  v1::SampleResponse All(const std::string& table) {
    v1::SampleRequest request;
    request.set_table(table);
    request.set_batch_size(static_cast<int>(TableSize(table)));
    v1::SampleResponse response;
    absl::Status s = (*shard_->GetTable(table))
                         ->Sample(request, absl::Now() + absl::Seconds(5), nullptr, &response);
    EXPECT_TRUE(s.ok()) << s;
    return response;
  }

  // MODE_TRAIN on cheetah with two MCAT tasks: env 0 runs task 1 and env 1 task 0
  // (env_index_offset 1); 4-step episodes, no warm-up, a context policy reading K transitions.
  v1::Assignment Mcat() {
    v1::Assignment a;
    a.set_generation(1);
    a.set_experiment_id("mcat");
    a.set_mode(v1::Assignment::MODE_TRAIN);
    a.mutable_env()->set_domain(v1::EnvSpec::DOMAIN_CHEETAH);
    a.mutable_env()->set_episode_length(kEpisodeLength);
    a.mutable_env()->set_seed(3);
    a.add_tasks()->set_mass_scale(1.0);
    a.add_tasks()->set_mass_scale(1.25);
    a.set_env_index_offset(1);
    a.set_num_envs(2);
    a.add_replay_addresses(server_->address());
    a.set_table("main");
    *a.mutable_signature() = MainSignature();
    v1::PolicyArchitecture* p = a.mutable_policy();
    p->set_head(v1::PolicyArchitecture::HEAD_DETERMINISTIC);
    p->set_output(v1::PolicyArchitecture::OUTPUT_ACTION);
    p->set_obs_dim(kObs);
    p->set_output_dim(kAct);
    p->set_action_dim(kAct);
    p->set_output_bound(1);
    p->set_context_dim(3);
    p->set_context_history(kK);
    a.set_decision_horizon(1);
    a.set_warmup_env_steps(0);
    return a;
  }

  RunnerOptions Options(int k) {
    RunnerOptions options;
    options.max_envs = 2;
    options.insert_batch_rows = 1;  // every step's rows go at once
    options.insert_timeout = absl::Seconds(10);
    options.policy_refresh_interval = absl::Hours(1);
    options.policy_factory = [this, k](const v1::Policy&) {
      return absl::StatusOr<std::unique_ptr<models::ActingPolicy>>(
          std::make_unique<FakeContextPolicy>(k, &calls_));
    };
    return options;
  }

  // Runs `a` until the host stops it.
  void Run(const v1::Assignment& a, int k) {
    auto runner = AssignmentRunner::Create(a, Options(k), &host_, &metrics_);
    ASSERT_TRUE(runner.ok()) << runner.status();
    (*runner)->Run();
    EXPECT_EQ(host_.waits, 0);
  }
  // The error Create gives for `a`.
  absl::Status CreateError(const v1::Assignment& a) {
    return AssignmentRunner::Create(a, Options(kK), &host_, &metrics_).status();
  }

  std::shared_ptr<prometheus::Registry> replay_registry_ = std::make_shared<prometheus::Registry>();
  std::unique_ptr<replay::ReplayShard> shard_;
  std::unique_ptr<replay::ReplayServiceImpl> service_;
  std::unique_ptr<ServerHost> server_;
  prometheus::Registry actor_registry_;
  ActorMetrics metrics_{actor_registry_};
  FakeHost host_;
  std::vector<ContextCall> calls_;
};

TEST_F(AssignmentRunnerTest, ActsInContextAndFillsTheHistoryColumns) {
  CreateTable("main", MainSignature());
  constexpr int kSteps = 3 * kEpisodeLength;  // batch steps: three episodes per env
  host_.stop = [](const FakeHost& h) { return h.env_steps >= 2 * kSteps; };
  Run(Mcat(), kK);

  // rows in order: env 0 then env 1 of each batch step
  ASSERT_EQ(TableSize("main"), 2 * kSteps);
  const v1::SampleResponse rows = All("main");
  const std::vector<float> obs = Values<float>(rows, kObservation),
                           action = Values<float>(rows, kAction),
                           next = Values<float>(rows, kNextObservation),
                           hist_obs = Values<float>(rows, kHistoryObservation),
                           hist_action = Values<float>(rows, kHistoryAction),
                           hist_mask = Values<float>(rows, kHistoryMask);
  const std::vector<int64_t> task = Values<int64_t>(rows, kTaskIndex),
                             step = Values<int64_t>(rows, kStep);
  EXPECT_THAT(rows.columns(kHistoryObservation).tensor().shape(),
              ElementsAre(2 * kSteps, kW + 1, kObs));
  const std::vector<float> zero_obs(kObs, 0.0f), zero_action(kAct, 0.0f);
  for (int r = 0; r < 2 * kSteps; ++r) {
    const int env = r % 2, t = (r / 2) % kEpisodeLength;
    EXPECT_EQ(task[r], env == 0 ? 1 : 0);
    ASSERT_EQ(step[r], t) << "row " << r;
    // the row's history: the env's last W transitions of this episode, the row's own last, and
    // the state after it; zeros and mask 0 before the episode began
    for (int i = 0; i < kW; ++i) {
      const int back = kW - 1 - i;  // transitions before the row's own
      const bool in = t - back >= 0;
      const int source = r - 2 * back;
      EXPECT_EQ(hist_mask[r * kW + i], in ? 1.0f : 0.0f) << "row " << r << " slot " << i;
      EXPECT_EQ(Row(hist_obs, r * (kW + 1) + i, kObs), in ? Row(obs, source, kObs) : zero_obs)
          << "row " << r << " slot " << i;
      EXPECT_EQ(Row(hist_action, r * kW + i, kAct), in ? Row(action, source, kAct) : zero_action)
          << "row " << r << " slot " << i;
    }
    EXPECT_EQ(Row(hist_obs, r * (kW + 1) + kW, kObs), Row(next, r, kObs)) << "row " << r;
  }

  // one policy call per batch step, for both envs: the env's last K transitions ending at its
  // current state, and its task
  ASSERT_EQ(calls_.size(), static_cast<size_t>(kSteps));
  for (int s = 0; s < kSteps; ++s) {
    const ContextCall& call = calls_[s];
    ASSERT_EQ(call.n, 2);
    EXPECT_FALSE(call.deterministic);
    EXPECT_THAT(call.tasks, ElementsAre(1, 0));
    ASSERT_EQ(call.context_obs.size(), static_cast<size_t>(2 * (kK + 1) * kObs));
    ASSERT_EQ(call.context_actions.size(), static_cast<size_t>(2 * kK * kAct));
    ASSERT_EQ(call.mask.size(), static_cast<size_t>(2 * kK));
    for (int env = 0; env < 2; ++env) {
      const int r = 2 * s + env, t = s % kEpisodeLength;
      EXPECT_EQ(Row(call.obs, env, kObs), Row(obs, r, kObs));
      EXPECT_EQ(Row(call.actions, env, kAct), Row(action, r, kAct));
      for (int i = 0; i < kK; ++i) {
        const int back = kK - i;  // transitions before the current state
        const bool in = t - back >= 0;
        const int source = r - 2 * back;
        EXPECT_EQ(call.mask[env * kK + i], in ? 1.0f : 0.0f) << "step " << s << " env " << env;
        EXPECT_EQ(Row(call.context_obs, env * (kK + 1) + i, kObs),
                  in ? Row(obs, source, kObs) : zero_obs)
            << "step " << s << " env " << env << " slot " << i;
        EXPECT_EQ(Row(call.context_actions, env * kK + i, kAct),
                  in ? Row(action, source, kAct) : zero_action)
            << "step " << s << " env " << env << " slot " << i;
      }
      EXPECT_EQ(Row(call.context_obs, env * (kK + 1) + kK, kObs), Row(obs, r, kObs));
    }
  }

  // three episodes per env; those of task 1 began with a translated action (the flags of the
  // odd calls in between do not count)
  ASSERT_EQ(host_.episodes.size(), 6u);
  for (const v1::EpisodeSummary& e : host_.episodes) {
    EXPECT_FALSE(e.is_eval());
    EXPECT_EQ(e.length(), kEpisodeLength);
    EXPECT_EQ(e.policy_version(), 1);
    EXPECT_EQ(e.task_index(), e.env_index() == 0 ? 1 : 0);
    EXPECT_EQ(e.transferred(), e.env_index() == 0) << e.ShortDebugString();
  }
  EXPECT_EQ(host_.items_inserted, 2 * kSteps);
}

TEST_F(AssignmentRunnerTest, EvaluatesDeterministicallyInContext) {
  v1::Assignment a = Mcat();
  a.set_mode(v1::Assignment::MODE_EVALUATE);
  a.clear_replay_addresses();
  a.clear_table();
  a.clear_signature();
  v1::EvaluationRequest round;
  round.set_round(1);
  round.set_episodes(3);  // two envs: env 0 runs a second episode
  host_.evaluations.push_back(round);
  host_.stop = [](const FakeHost& h) { return h.episodes.size() >= 3; };
  Run(a, kK);

  ASSERT_EQ(host_.episodes.size(), 3u);
  for (const v1::EpisodeSummary& e : host_.episodes) {
    EXPECT_TRUE(e.is_eval());
    EXPECT_EQ(e.eval_round(), 1);
    EXPECT_EQ(e.transferred(), e.env_index() == 0) << e.ShortDebugString();
  }
  // the context restarts with each episode and holds the steps the policy took before
  ASSERT_EQ(calls_.size(), static_cast<size_t>(2 * kEpisodeLength));
  for (size_t c = 0; c < calls_.size(); ++c) {
    const ContextCall& call = calls_[c];
    EXPECT_TRUE(call.deterministic);
    EXPECT_THAT(call.tasks, ElementsAre(1, 0));
    const int t = static_cast<int>(c) % kEpisodeLength;
    for (int env = 0; env < 2; ++env) {
      EXPECT_THAT(
          std::vector<float>(call.mask.begin() + env * kK, call.mask.begin() + env * kK + 2),
          ElementsAre(t >= 2 ? 1.0f : 0.0f, t >= 1 ? 1.0f : 0.0f))
          << "call " << c;
      EXPECT_EQ(Row(call.context_obs, env * (kK + 1) + kK, kObs), Row(call.obs, env, kObs));
      if (t == 0) continue;
      const ContextCall& previous = calls_[c - 1];
      EXPECT_EQ(Row(call.context_obs, env * (kK + 1) + kK - 1, kObs), Row(previous.obs, env, kObs));
      EXPECT_EQ(Row(call.context_actions, env * kK + kK - 1, kAct),
                std::vector<float>(kAct, kEvalAction));
    }
  }
}

TEST_F(AssignmentRunnerTest, InsertsFinishedTrainingEpisodesWithReturnsIntoTheEpisodeTable) {
  google::protobuf::RepeatedPtrField<v1::ColumnSpec> main;
  AddColumn(&main, "observation", kF32, {kObs});
  AddColumn(&main, "action", kF32, {kAct});
  AddColumn(&main, "reward", kF32, {});
  AddColumn(&main, "episode", kI64, {});
  AddColumn(&main, "step", kI64, {});
  google::protobuf::RepeatedPtrField<v1::ColumnSpec> sil = main;
  AddColumn(&sil, "return", kF32, {});
  CreateTable("main", main);
  CreateTable("sil", sil);
  constexpr double kDiscount = 0.9;
  v1::Assignment a = Mcat();
  *a.mutable_signature() = main;
  a.set_episode_table("sil");
  a.set_episode_discount(kDiscount);
  // a plain policy (context_dim 0); an evaluation round first, whose episodes stay out of replay
  a.mutable_policy()->set_context_dim(0);
  a.mutable_policy()->set_context_history(0);
  v1::EvaluationRequest round;
  round.set_round(1);
  round.set_episodes(2);
  host_.evaluations.push_back(round);
  // two whole episodes per env, then one step of a third, abandoned by the stop
  constexpr int kSteps = 2 * kEpisodeLength + 1;
  host_.stop = [](const FakeHost& h) { return h.env_steps >= 2 * kSteps; };
  Run(a, /*k=*/0);

  ASSERT_EQ(host_.episodes.size(), 6u);  // 2 eval + 4 training
  ASSERT_EQ(TableSize("main"), 2 * kSteps);
  ASSERT_EQ(TableSize("sil"), 4 * kEpisodeLength);
  const v1::SampleResponse rows = All("main");
  const v1::SampleResponse episodes = All("sil");
  ASSERT_EQ(episodes.columns_size(), 6);
  EXPECT_EQ(episodes.columns(5).name(), "return");
  EXPECT_THAT(episodes.columns(5).tensor().shape(), ElementsAre(4 * kEpisodeLength));

  // main rows by (episode, step), and each finished episode's return-to-go, computed here
  const std::vector<int64_t> id = Values<int64_t>(rows, 3), step = Values<int64_t>(rows, 4);
  const std::vector<float> reward = Values<float>(rows, 2), obs = Values<float>(rows, 0),
                           action = Values<float>(rows, 1);
  std::map<std::pair<int64_t, int64_t>, int> main_row;
  for (int r = 0; r < 2 * kSteps; ++r) main_row[{id[r], step[r]}] = r;
  std::map<int64_t, std::vector<double>> returns;  // by episode id, per step
  for (int r = 0; r < 2 * kSteps; ++r) {
    if (step[r] != kEpisodeLength - 1) continue;
    std::vector<double>& g = returns[id[r]];
    g.assign(kEpisodeLength, 0);
    double next = 0;
    for (int t = kEpisodeLength - 1; t >= 0; --t) {
      next = reward[main_row.at({id[r], t})] + kDiscount * next;
      g[t] = next;
    }
  }
  ASSERT_EQ(returns.size(), 4u);

  // every finished training episode, whole and in order, as its main rows plus R_t; nothing of
  // the abandoned third episodes nor of the evaluation (whose actions are kEvalAction)
  const std::vector<int64_t> sil_id = Values<int64_t>(episodes, 3),
                             sil_step = Values<int64_t>(episodes, 4);
  const std::vector<float> sil_obs = Values<float>(episodes, 0),
                           sil_action = Values<float>(episodes, 1),
                           sil_reward = Values<float>(episodes, 2),
                           sil_return = Values<float>(episodes, 5);
  for (int r = 0; r < 4 * kEpisodeLength; ++r) {
    EXPECT_EQ(sil_step[r], r % kEpisodeLength) << "row " << r;
    ASSERT_EQ(returns.count(sil_id[r]), 1u) << "row " << r;
    const int m = main_row.at({sil_id[r], sil_step[r]});
    EXPECT_EQ(Row(sil_obs, r, kObs), Row(obs, m, kObs)) << "row " << r;
    EXPECT_EQ(Row(sil_action, r, kAct), Row(action, m, kAct)) << "row " << r;
    EXPECT_EQ(sil_reward[r], reward[m]) << "row " << r;
    EXPECT_NEAR(sil_return[r], returns[sil_id[r]][sil_step[r]], 1e-5) << "row " << r;
    EXPECT_NE(sil_action[r * kAct], kEvalAction);
  }
  // rewards are not all zero, so the returns check the discounting
  EXPECT_GT(std::abs(sil_return[0] - sil_reward[0]), 1e-6);
  EXPECT_EQ(host_.items_inserted, 2 * kSteps + 4 * kEpisodeLength);
}

TEST_F(AssignmentRunnerTest, RefusesMcatAssignmentsItCannotRun) {
  v1::Assignment no_history = Mcat();
  no_history.mutable_policy()->set_context_history(0);
  EXPECT_THAT(CreateError(no_history).message(),
              HasSubstr("assignment.policy.context_history: 0 is not allowed"));

  v1::Assignment shape = Mcat();
  shape.mutable_signature(kHistoryAction)->set_shape(1, kAct + 1);
  const absl::Status bad_shape = CreateError(shape);
  EXPECT_EQ(bad_shape.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_shape.message(), HasSubstr("assignment.signature[8] ('history_action')"));

  v1::Assignment discount = Mcat();
  discount.set_episode_table("sil");
  discount.set_episode_discount(1.5);
  EXPECT_THAT(CreateError(discount).message(),
              HasSubstr("assignment.episode_discount: 1.5 is not allowed"));

  v1::Assignment same = Mcat();
  same.set_episode_table("main");
  same.set_episode_discount(0.99);
  EXPECT_THAT(CreateError(same).message(), HasSubstr("is the main table as well"));

  v1::Assignment collect = Mcat();
  collect.set_mode(v1::Assignment::MODE_COLLECT);
  collect.mutable_collect()->set_collector(v1::CollectSpec::COLLECTOR_RANDOM);
  collect.set_episode_table("sil");
  collect.set_episode_discount(0.99);
  EXPECT_THAT(CreateError(collect).message(),
              HasSubstr("assignment.episode_table: self-imitation episodes are for MODE_TRAIN"));

  // the context-conditioned policy itself is no longer refused
  EXPECT_TRUE(CreateError(Mcat()).ok()) << CreateError(Mcat());
}

// A plain flat policy (no context) on the two cheetah tasks, writing observation, action,
// reward, discount, next_observation, episode and step; the host stops it after two whole
// 4-step episodes per env.
v1::Assignment PlainTwoEpisodes(const v1::Assignment& mcat) {
  v1::Assignment a = mcat;
  google::protobuf::RepeatedPtrField<v1::ColumnSpec> s;
  AddColumn(&s, "observation", kF32, {kObs});
  AddColumn(&s, "action", kF32, {kAct});
  AddColumn(&s, "reward", kF32, {});
  AddColumn(&s, "discount", kF32, {});
  AddColumn(&s, "next_observation", kF32, {kObs});
  AddColumn(&s, "episode", kI64, {});
  AddColumn(&s, "step", kI64, {});
  *a.mutable_signature() = s;
  a.mutable_policy()->set_context_dim(0);
  a.mutable_policy()->set_context_history(0);
  return a;
}

// A table's rows grouped by episode (in order of first appearance), each ordered by step.
struct EpisodeRows {
  std::vector<float> obs, action, reward, discount, next_obs;
  std::vector<int64_t> step;
};
std::vector<EpisodeRows> ByEpisode(const v1::SampleResponse& rows) {
  const std::vector<float> obs = Values<float>(rows, 0), action = Values<float>(rows, 1),
                           reward = Values<float>(rows, 2), discount = Values<float>(rows, 3),
                           next_obs = Values<float>(rows, 4);
  const std::vector<int64_t> id = Values<int64_t>(rows, 5), step = Values<int64_t>(rows, 6);
  std::vector<int64_t> order;
  std::map<int64_t, std::map<int64_t, int>> rows_of;  // episode -> step -> row
  for (size_t r = 0; r < id.size(); ++r) {
    if (!rows_of.count(id[r])) order.push_back(id[r]);
    rows_of[id[r]][step[r]] = static_cast<int>(r);
  }
  std::vector<EpisodeRows> out;
  for (int64_t e : order) {
    EpisodeRows ep;
    for (const auto& [t, r] : rows_of[e]) {
      const std::vector<float> o = Row(obs, r, kObs), a = Row(action, r, kAct),
                               n = Row(next_obs, r, kObs);
      ep.obs.insert(ep.obs.end(), o.begin(), o.end());
      ep.action.insert(ep.action.end(), a.begin(), a.end());
      ep.next_obs.insert(ep.next_obs.end(), n.begin(), n.end());
      ep.reward.push_back(reward[r]);
      ep.discount.push_back(discount[r]);
      ep.step.push_back(t);
    }
    out.push_back(std::move(ep));
  }
  return out;
}

TEST_F(AssignmentRunnerTest, NStepRowsSumTheDiscountedRewardsOfTheOneStepRows) {
  constexpr int kN = 3;
  constexpr double kGamma = 0.9;
  constexpr int kSteps = 2 * kEpisodeLength;  // per env
  v1::Assignment one = PlainTwoEpisodes(Mcat());
  CreateTable("main", one.signature());
  host_.stop = [](const FakeHost& h) { return h.env_steps >= 2 * kSteps; };
  Run(one, /*k=*/0);
  ASSERT_EQ(TableSize("main"), 2 * kSteps);
  const std::vector<EpisodeRows> single = ByEpisode(All("main"));

  // the same run (same seeds, same fake policy) with 3-step rows, into another table
  CreateTable("n_step", one.signature());
  host_ = FakeHost();
  calls_.clear();
  host_.stop = [](const FakeHost& h) { return h.env_steps >= 2 * kSteps; };
  v1::Assignment n_step = one;
  n_step.set_table("n_step");
  n_step.set_n_step(kN);
  n_step.set_n_step_discount(kGamma);
  Run(n_step, /*k=*/0);
  // one row per env step: the time limit ends each 4-step episode and writes what is pending
  ASSERT_EQ(TableSize("n_step"), 2 * kSteps);
  const std::vector<EpisodeRows> multi = ByEpisode(All("n_step"));

  ASSERT_EQ(single.size(), 4u);
  ASSERT_EQ(multi.size(), 4u);
  for (size_t e = 0; e < single.size(); ++e) {
    SCOPED_TRACE(absl::StrCat("episode ", e));
    const EpisodeRows& s = single[e];
    const EpisodeRows& m = multi[e];
    ASSERT_EQ(m.step.size(), static_cast<size_t>(kEpisodeLength));
    EXPECT_EQ(s.obs, m.obs);
    EXPECT_EQ(s.action, m.action);
    for (int t = 0; t < kEpisodeLength; ++t) {
      SCOPED_TRACE(absl::StrCat("step ", t));
      EXPECT_EQ(m.step[t], t);
      const int span = std::min(kN, kEpisodeLength - t);  // the episode is truncated at 4
      double expected = 0, power = 1;
      for (int k = 0; k < span; ++k, power *= kGamma) expected += power * s.reward[t + k];
      EXPECT_NEAR(m.reward[t], expected, 1e-5);
      EXPECT_FLOAT_EQ(m.discount[t], static_cast<float>(std::pow(kGamma, span - 1)));
      EXPECT_EQ(Row(m.next_obs, t, kObs), Row(s.next_obs, t + span - 1, kObs));
    }
  }
  // rewards are not all zero, so the sums check the discounting
  EXPECT_GT(std::abs(multi[0].reward[0] - single[0].reward[0]), 1e-6);
}

TEST_F(AssignmentRunnerTest, RefusesNStepRowsWhereTheyDoNotApply) {
  v1::Assignment plain = PlainTwoEpisodes(Mcat());
  plain.set_n_step(5);
  plain.set_n_step_discount(0.99);
  EXPECT_TRUE(CreateError(plain).ok()) << CreateError(plain);

  v1::Assignment history = Mcat();
  history.set_n_step(5);
  history.set_n_step_discount(0.99);
  EXPECT_THAT(CreateError(history).message(),
              HasSubstr("assignment.n_step: 5 is not allowed with history columns"));

  v1::Assignment collect = plain;
  collect.set_mode(v1::Assignment::MODE_COLLECT);
  collect.mutable_collect()->set_collector(v1::CollectSpec::COLLECTOR_RANDOM);
  EXPECT_THAT(CreateError(collect).message(),
              HasSubstr("assignment.n_step: 5 is not allowed in MODE_COLLECT"));

  v1::Assignment discount = plain;
  discount.set_n_step_discount(1.5);
  EXPECT_THAT(CreateError(discount).message(),
              HasSubstr("assignment.n_step_discount: 1.5 is not allowed"));

  v1::Assignment too_long = plain;
  too_long.set_n_step(NStepWindows::kMaxSteps + 1);
  EXPECT_THAT(CreateError(too_long).message(), HasSubstr("(at most 1000)"));
}

}  // namespace
}  // namespace prl::actor
