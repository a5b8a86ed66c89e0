// ActorLoop against an in-process fake learner (ActorService) and a real in-process replay
// shard: joining, training inserts and episode reports, generation switches, evaluation rounds,
// re-joining after NOT_FOUND and riding out an unavailable learner.
#include "actor/actor_loop.h"

#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/server.h"
#include "common/tensor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/prior_inference.h"
#include "prometheus/text_serializer.h"
#include "replay/replay_service.h"
#include "replay/shard.h"

namespace prl::actor {
namespace {

using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int64_t kObs = 17;  // cheetah
constexpr int64_t kAct = 6;
constexpr int64_t kEpisodeLength = 10;
constexpr int64_t kWarmup = 40;  // env steps: two episodes of each of the two envs
constexpr absl::Duration kTimeout = absl::Seconds(20);
constexpr char kExperiment[] = "exp-1";

// Acts with a constant: `bias` in training, -bias when deterministic (evaluation), so a test
// can tell which kind of step an inserted action came from.
class ConstantPolicy final : public models::ActingPolicy {
 public:
  ConstantPolicy(float bias, int64_t version, int64_t dim = kAct)
      : bias_(bias), version_(version), dim_(dim) {}
  void Act(absl::Span<const float> obs, int n, bool deterministic,
           absl::Span<float> actions) override {
    EXPECT_EQ(obs.size(), static_cast<size_t>(n) * kObs);
    EXPECT_EQ(actions.size(), static_cast<size_t>(n) * dim_);
    for (float& a : actions) a = deterministic ? -bias_ : bias_;
  }
  int64_t version() const override { return version_; }
  int obs_dim() const override { return static_cast<int>(kObs); }
  int action_dim() const override { return static_cast<int>(dim_); }

 private:
  const float bias_;
  const int64_t version_;
  const int64_t dim_;
};

constexpr int64_t kLatent = 3;
constexpr int kHorizon = 4;

// A flow standing in for PARROT's: a = tanh(z) / 2 + 0.1·state_0 per dimension.
class FakeFlowPrior final : public models::PriorInference {
 public:
  explicit FakeFlowPrior(std::atomic<int>* calls) : calls_(calls) {
    info_.set_name("flow");
    info_.set_version(2);
    info_.set_kind(v1::PRIOR_KIND_REAL_NVP_FLOW);
    info_.set_obs_dim(kObs);
    info_.set_action_dim(kAct);
    info_.set_latent_dim(kAct);
    info_.set_horizon(1);
    info_.add_methods("Forward");
    info_.add_methods("Inverse");
  }
  const v1::ModelInfo& info() const override { return info_; }
  absl::StatusOr<std::vector<HostTensor>> Run(
      models::PriorMethod method, const std::vector<HostTensor>& inputs) const override {
    absl::StatusOr<int64_t> rows = models::CheckPriorInputs(info_, method, inputs);
    if (!rows.ok()) return rows.status();
    ++*calls_;
    absl::Span<const float> z = inputs[0].data<float>();
    absl::Span<const float> state = inputs[1].data<float>();
    std::vector<float> actions;
    for (int64_t r = 0; r < *rows; ++r) {
      for (int64_t i = 0; i < kAct; ++i) {
        actions.push_back(std::tanh(z[r * kAct + i]) / 2 + 0.1f * state[r * kObs]);
      }
    }
    return std::vector<HostTensor>{HostTensor::FromFloats({*rows, kAct}, actions),
                                   *HostTensor::Zeros(DType::kFloat32, {*rows})};
  }

 private:
  std::atomic<int>* const calls_;
  v1::ModelInfo info_;
};

// An action translator between two tasks: H(s, a) = 3·a (clipped by the actor), recording the
// source actions it saw.
class FakeTranslator final : public models::PriorInference {
 public:
  FakeTranslator(std::atomic<int>* calls, std::vector<float>* seen, absl::Mutex* mu)
      : calls_(calls), seen_(seen), mu_(mu) {
    info_.set_name("pair");
    info_.set_version(1);
    info_.set_kind(v1::PRIOR_KIND_ACTION_TRANSLATOR);
    info_.set_obs_dim(kObs);
    info_.set_action_dim(kAct);
    info_.set_horizon(1);
    info_.add_methods("Translate");
  }
  const v1::ModelInfo& info() const override { return info_; }
  absl::StatusOr<std::vector<HostTensor>> Run(
      models::PriorMethod method, const std::vector<HostTensor>& inputs) const override {
    absl::StatusOr<int64_t> rows = models::CheckPriorInputs(info_, method, inputs);
    if (!rows.ok()) return rows.status();
    ++*calls_;
    absl::Span<const float> source = inputs[1].data<float>();
    {
      absl::MutexLock lock(mu_);
      seen_->insert(seen_->end(), source.begin(), source.end());
    }
    std::vector<float> target(source.begin(), source.end());
    for (float& a : target) a *= 3;
    return std::vector<HostTensor>{HostTensor::FromFloats({*rows, kAct}, target)};
  }

 private:
  std::atomic<int>* const calls_;
  std::vector<float>* const seen_;
  absl::Mutex* const mu_;
  v1::ModelInfo info_;
};

// A latent policy: z = bias in every dimension.
absl::StatusOr<std::unique_ptr<models::ActingPolicy>> MakeLatentPolicy(const v1::Policy& policy) {
  auto bias = ViewTensorProto(policy.weights(0).tensor(), "bias");
  if (!bias.ok()) return bias.status();
  return std::make_unique<ConstantPolicy>(bias->data<float>()[0], policy.version(), kLatent);
}

// A closed-loop skill decoder standing in for the prior: action_i = z_0 / 2 + 0.1·state_0 (so
// the state reaches the decoder each step), p(z|s) = N(0, e^-20).
//
// With `open_loop` it stands in for EAP's CVAE instead: one Decode call gives the kHorizon
// actions of a decision, z_0/2 + 0.1·state_0 + 0.01·t at step t; `decoded_rows` counts the
// decisions it decoded.
class FakeSkillPrior final : public models::PriorInference {
 public:
  explicit FakeSkillPrior(std::atomic<int>* calls, bool open_loop = false,
                          std::atomic<int>* decoded_rows = nullptr)
      : calls_(calls), open_loop_(open_loop), decoded_rows_(decoded_rows) {
    info_.set_name(open_loop ? "eap" : "skills");
    info_.set_version(1);
    info_.set_kind(open_loop ? v1::PRIOR_KIND_CVAE : v1::PRIOR_KIND_SKILL_VAE);
    info_.set_obs_dim(kObs);
    info_.set_action_dim(kAct);
    info_.set_latent_dim(kLatent);
    info_.set_horizon(kHorizon);
    info_.set_state_conditioned_decoder(true);
    info_.add_methods("Decode");
    info_.add_methods("Prior");
  }
  const v1::ModelInfo& info() const override { return info_; }
  absl::StatusOr<std::vector<HostTensor>> Run(
      models::PriorMethod method, const std::vector<HostTensor>& inputs) const override {
    absl::StatusOr<int64_t> rows = models::CheckPriorInputs(info_, method, inputs);
    if (!rows.ok()) return rows.status();
    ++*calls_;
    if (method == models::PriorMethod::kPrior) {
      return std::vector<HostTensor>{
          *HostTensor::Zeros(DType::kFloat32, {*rows, kLatent}),
          HostTensor::FromFloats({*rows, kLatent}, std::vector<float>(*rows * kLatent, -20))};
    }
    absl::Span<const float> z = inputs[0].data<float>();
    absl::Span<const float> state = inputs[1].data<float>();
    const int64_t steps = open_loop_ ? kHorizon : 1;
    if (decoded_rows_ != nullptr) *decoded_rows_ += static_cast<int>(*rows);
    std::vector<float> actions;
    for (int64_t r = 0; r < *rows; ++r) {
      for (int64_t t = 0; t < steps; ++t) {
        for (int64_t i = 0; i < kAct; ++i) {
          actions.push_back(z[r * kLatent] / 2 + 0.1f * state[r * kObs] + 0.01f * t);
        }
      }
    }
    return std::vector<HostTensor>{HostTensor::FromFloats({*rows, steps, kAct}, actions)};
  }

 private:
  std::atomic<int>* const calls_;  // outlives the prior (the test fixture's)
  const bool open_loop_;
  std::atomic<int>* const decoded_rows_;
  v1::ModelInfo info_;
};

absl::StatusOr<std::unique_ptr<models::ActingPolicy>> MakeConstantPolicy(const v1::Policy& policy) {
  if (policy.weights_size() != 1 || policy.weights(0).name() != "bias") {
    return absl::InvalidArgumentError("expected one weight named bias");
  }
  auto bias = ViewTensorProto(policy.weights(0).tensor(), "bias");
  if (!bias.ok()) return bias.status();
  return std::make_unique<ConstantPolicy>(bias->data<float>()[0], policy.version());
}

// What the fake learner saw; read under FakeLearner's mutex.
struct Seen {
  int joins = 0;
  int rejected = 0;  // calls answered UNAVAILABLE
  std::vector<v1::HeartbeatRequest> heartbeats;
  // Episodes with the generation and actor id of their report.
  struct Episode {
    v1::EpisodeSummary summary;
    int64_t generation;
    std::string actor_id;
    int64_t number = 0;  // ReportEpisodesRequest.first_sequence + its index in the request
  };
  std::vector<Episode> episodes;
  std::vector<v1::GetPolicyRequest> policy_requests;
  std::vector<std::string> left;

  int Count(const std::function<bool(const Episode&)>& pred) const {
    int n = 0;
    for (const Episode& e : episodes) n += pred(e);
    return n;
  }
};

// ActorService with a scripted assignment, evaluation request and policy; answers NOT_FOUND
// for actor ids it forgot and UNAVAILABLE while switched off.
class FakeLearner final : public v1::ActorService::Service {
 public:
  void SetAssignment(v1::Assignment assignment) {
    absl::MutexLock lock(&mu_);
    assignment.set_generation(assignment_.generation() + 1);
    assignment_ = std::move(assignment);
    evaluation_ = v1::EvaluationRequest();
  }
  void SetEvaluation(int64_t round, int episodes, int64_t min_policy_version) {
    absl::MutexLock lock(&mu_);
    evaluation_.set_round(round);
    evaluation_.set_episodes(episodes);
    evaluation_.set_min_policy_version(min_policy_version);
  }
  void SetHeartbeatInterval(absl::Duration interval) {
    absl::MutexLock lock(&mu_);
    heartbeat_interval_ = interval;
  }
  void PublishPolicy(float bias) {
    absl::MutexLock lock(&mu_);
    policy_.set_experiment_id(kExperiment);
    policy_.set_version(policy_.version() + 1);
    policy_.clear_weights();
    v1::NamedTensor* w = policy_.add_weights();
    w->set_name("bias");
    TensorToProto(HostTensor::FromFloats({}, {bias}).view(), w->mutable_tensor());
  }
  void ForgetActors() {
    absl::MutexLock lock(&mu_);
    known_.clear();
  }
  void SetAvailable(bool available) {
    absl::MutexLock lock(&mu_);
    available_ = available;
  }

  // Waits until `pred` holds for what was seen; false after kTimeout.
  bool Await(const std::function<bool(const Seen&)>& pred) {
    absl::MutexLock lock(&mu_);
    const auto ready = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return pred(seen_); };
    return mu_.AwaitWithTimeout(absl::Condition(&ready), kTimeout);
  }
  Seen seen() {
    absl::MutexLock lock(&mu_);
    return seen_;
  }

  grpc::Status Join(grpc::ServerContext*, const v1::JoinRequest* request,
                    v1::JoinResponse* response) override {
    absl::MutexLock lock(&mu_);
    if (!available_) return Unavailable();
    EXPECT_EQ(request->actor_name(), "actor-test");
    EXPECT_EQ(request->num_envs(), 2);
    const std::string id = absl::StrCat("id-", ++seen_.joins);
    known_.insert(id);
    response->set_actor_id(id);
    *response->mutable_assignment() = assignment_;
    response->mutable_heartbeat_interval()->set_seconds(absl::ToInt64Seconds(heartbeat_interval_));
    response->mutable_heartbeat_interval()->set_nanos(
        static_cast<int32_t>(absl::ToInt64Nanoseconds(heartbeat_interval_) % 1'000'000'000));
    return grpc::Status::OK;
  }

  grpc::Status Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override {
    absl::MutexLock lock(&mu_);
    if (!available_) return Unavailable();
    if (!known_.count(request->actor_id())) return NotFound(request->actor_id());
    seen_.heartbeats.push_back(*request);
    response->set_generation(assignment_.generation());
    if (request->generation() != assignment_.generation()) {
      *response->mutable_assignment() = assignment_;
    }
    *response->mutable_evaluation() = evaluation_;
    return grpc::Status::OK;
  }

  grpc::Status GetPolicy(grpc::ServerContext* context, const v1::GetPolicyRequest* request,
                         v1::GetPolicyResponse* response) override {
    absl::MutexLock lock(&mu_);
    if (!available_) return Unavailable();
    seen_.policy_requests.push_back(*request);
    const int64_t min_version = std::max<int64_t>(1, request->min_version());
    const auto ready = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return policy_.version() >= min_version || context->IsCancelled();
    };
    const absl::Time deadline = absl::FromChrono(context->deadline());
    while (!ready() && absl::Now() < deadline) {
      mu_.AwaitWithDeadline(absl::Condition(&ready),
                            std::min(deadline, absl::Now() + absl::Milliseconds(20)));
    }
    if (policy_.version() < min_version) {
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "no such version yet");
    }
    if (request->have_version() == policy_.version()) {
      response->set_not_modified(true);
      response->mutable_policy()->set_version(policy_.version());
    } else {
      *response->mutable_policy() = policy_;
    }
    return grpc::Status::OK;
  }

  grpc::Status ReportEpisodes(grpc::ServerContext*, const v1::ReportEpisodesRequest* request,
                              v1::ReportEpisodesResponse* response) override {
    absl::MutexLock lock(&mu_);
    if (!available_) return Unavailable();
    if (!known_.count(request->actor_id())) return NotFound(request->actor_id());
    EXPECT_EQ(request->experiment_id(), kExperiment);
    for (int i = 0; i < request->episodes_size(); ++i) {
      seen_.episodes.push_back({request->episodes(i), request->generation(), request->actor_id(),
                                request->first_sequence() + i});
    }
    response->set_num_accepted(request->episodes_size());
    response->set_generation(assignment_.generation());
    *response->mutable_evaluation() = evaluation_;
    return grpc::Status::OK;
  }

  grpc::Status Leave(grpc::ServerContext*, const v1::LeaveRequest* request,
                     v1::LeaveResponse*) override {
    absl::MutexLock lock(&mu_);
    seen_.left.push_back(request->actor_id());
    return grpc::Status::OK;
  }

 private:
  grpc::Status Unavailable() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ++seen_.rejected;
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "learner restarting");
  }
  static grpc::Status NotFound(const std::string& id) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown actor " + id);
  }

  absl::Mutex mu_;
  v1::Assignment assignment_ ABSL_GUARDED_BY(mu_);
  v1::EvaluationRequest evaluation_ ABSL_GUARDED_BY(mu_);
  absl::Duration heartbeat_interval_ ABSL_GUARDED_BY(mu_) = absl::Milliseconds(20);
  v1::Policy policy_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> known_ ABSL_GUARDED_BY(mu_);
  bool available_ ABSL_GUARDED_BY(mu_) = true;
  Seen seen_ ABSL_GUARDED_BY(mu_);
};

v1::TableConfig TableConfig(const std::string& name, int64_t obs_dim = kObs,
                            int64_t act_dim = kAct) {
  v1::TableConfig config;
  config.set_name(name);
  config.set_capacity(1'000'000);
  config.set_sampler(v1::SAMPLER_FIFO);  // samples come back in insertion order
  const std::pair<const char*, int64_t> columns[] = {{"observation", obs_dim},
                                                     {"action", act_dim},
                                                     {"reward", 0},
                                                     {"discount", 0},
                                                     {"next_observation", obs_dim}};
  for (const auto& [column, dim] : columns) {
    v1::ColumnSpec* c = config.add_signature();
    c->set_name(column);
    c->set_dtype(v1::Tensor::DTYPE_FLOAT32);
    if (dim > 0) c->add_shape(dim);
  }
  return config;
}

class ActorLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StartLearner(/*port=*/0);
    shard_ = *replay::ReplayShard::Create(replay::ShardOptions(), *replay_registry_);
    replay_service_ =
        std::make_unique<replay::ReplayServiceImpl>(replay::ReplayServiceOptions(), shard_.get());
    auto replay =
        ServerHost::Start(ServerOptionsFor("replay", 0), {replay_service_.get()}, replay_registry_);
    ASSERT_TRUE(replay.ok()) << replay.status();
    replay_server_ = *std::move(replay);
    CreateTable("t1");
  }

  void TearDown() override {
    if (loop_) loop_->Stop();
  }

  // Servers without a metrics endpoint (it takes seconds to stop).
  static ServerOptions ServerOptionsFor(const std::string& name, int port) {
    ServerOptions options;
    options.service_name = name;
    options.port = port;
    options.metrics_port = -1;
    options.drain_timeout = absl::Milliseconds(200);
    return options;
  }

  // Serves the fake learner on `port` (0: a free one).
  void StartLearner(int port) {
    auto learner = ServerHost::Start(ServerOptionsFor("learner", port), {&learner_},
                                     std::make_shared<prometheus::Registry>());
    ASSERT_TRUE(learner.ok()) << learner.status();
    learner_server_ = *std::move(learner);
  }

  void CreateTable(const std::string& name, int64_t obs_dim = kObs, int64_t act_dim = kAct) {
    ASSERT_TRUE(shard_->CreateTable(TableConfig(name, obs_dim, act_dim)).ok());
  }
  int64_t TableSize(const std::string& name) { return (*shard_->GetTable(name))->size(); }
  // Waits until `pred` holds for the actor's state; false after kTimeout.
  bool AwaitLoop(const std::function<bool(const ActorLoop::State&)>& pred) {
    return loop_->AwaitState(pred, kTimeout);
  }
  // Waits until `table` holds at least `rows` items; false after kTimeout. A FIFO sample of
  // `rows` distinct items waits for them to be inserted; it makes no room for inserts where the
  // table has no sample-to-insert ratio (see the held tables for one that has).
  bool AwaitRows(const std::string& table, int64_t rows) {
    return SampleOldest(table, static_cast<int>(rows), kTimeout).ok();
  }

  // A MODE_TRAIN assignment on cheetah (2 envs, 10-step episodes) inserting into `table` on the
  // live shard and on an address where no shard runs.
  v1::Assignment Train(const std::string& table) {
    v1::Assignment a;
    a.set_experiment_id(kExperiment);
    a.set_mode(v1::Assignment::MODE_TRAIN);
    a.mutable_env()->set_domain(v1::EnvSpec::DOMAIN_CHEETAH);
    a.mutable_env()->set_episode_length(kEpisodeLength);
    a.mutable_env()->set_seed(5);
    a.set_env_index_offset(2);
    a.set_num_envs(2);
    a.add_replay_addresses(replay_server_->address());
    a.add_replay_addresses("127.0.0.1:1");
    a.set_table(table);
    *a.mutable_signature() = TableConfig(table).signature();
    v1::PolicyArchitecture* p = a.mutable_policy();
    p->set_head(v1::PolicyArchitecture::HEAD_SQUASHED_GAUSSIAN);
    p->set_output(v1::PolicyArchitecture::OUTPUT_ACTION);
    p->set_obs_dim(kObs);
    p->set_output_dim(kAct);
    p->set_action_dim(kAct);
    p->set_output_bound(1);
    a.set_decision_horizon(1);
    a.set_warmup_env_steps(kWarmup);
    return a;
  }

  void StartActor(absl::Duration insert_timeout = absl::Seconds(2), bool latent = false) {
    ActorLoopOptions options;
    options.insert_timeout = insert_timeout;
    options.learner_address = learner_server_->address();
    options.actor_name = "actor-test";
    options.num_envs = 2;
    options.rpc_timeout = absl::Seconds(2);
    options.initial_backoff = absl::Milliseconds(5);
    options.max_backoff = absl::Milliseconds(50);
    options.policy_poll_timeout = absl::Milliseconds(500);
    options.policy_refresh_interval = absl::Milliseconds(50);
    options.report_interval = absl::Milliseconds(20);
    options.insert_flush_interval = absl::Milliseconds(20);
    options.policy_factory = latent ? MakeLatentPolicy : MakeConstantPolicy;
    options.prior_connector =
        [this](const v1::Assignment& a) -> absl::StatusOr<std::unique_ptr<models::PriorInference>> {
      ++prior_connects_;
      if (prior_down_for_ > 0) {
        --prior_down_for_;
        return absl::UnavailableError("prior server: connection refused");
      }
      if (a.prior().name() == "pair") {
        return std::unique_ptr<models::PriorInference>(
            std::make_unique<FakeTranslator>(&translate_calls_, &translated_, &translated_mu_));
      }
      if (a.policy().output() == v1::PolicyArchitecture::OUTPUT_FLOW_LATENT) {
        return std::unique_ptr<models::PriorInference>(
            std::make_unique<FakeFlowPrior>(&prior_calls_));
      }
      const bool open_loop = a.prior().name() == "eap";
      EXPECT_TRUE(open_loop || a.prior().name() == "skills") << a.prior().name();
      auto prior = std::make_unique<FakeSkillPrior>(&prior_calls_, open_loop, &decoded_rows_);
      return std::unique_ptr<models::PriorInference>(std::move(prior));
    };
    auto loop = ActorLoop::Create(options, actor_registry_);
    ASSERT_TRUE(loop.ok()) << loop.status();
    loop_ = *std::move(loop);
    loop_->Start();
  }

  // The oldest `n` items of `table`, columns in signature order.
  v1::SampleResponse Oldest(const std::string& table, int n) {
    absl::StatusOr<v1::SampleResponse> response = SampleOldest(table, n, absl::Seconds(5));
    return response.ok() ? *std::move(response) : v1::SampleResponse();
  }
  // Samples `n` items of a FIFO table, waiting up to `timeout` for them.
  absl::StatusOr<v1::SampleResponse> SampleOldest(const std::string& table, int n,
                                                  absl::Duration timeout) {
    v1::SampleRequest request;
    request.set_table(table);
    request.set_batch_size(n);
    v1::SampleResponse response;
    absl::Status s =
        (*shard_->GetTable(table))->Sample(request, absl::Now() + timeout, nullptr, &response);
    EXPECT_TRUE(s.ok()) << "sampling " << n << " items of " << table << ": " << s;
    if (!s.ok()) return s;
    return response;
  }

  std::string Metrics() {
    return prometheus::TextSerializer().Serialize(actor_registry_.Collect());
  }

  static std::vector<float> Floats(const v1::SampleResponse& r, int column) {
    const std::string& bytes = r.columns(column).tensor().data();
    std::vector<float> out(bytes.size() / sizeof(float));
    std::memcpy(out.data(), bytes.data(), bytes.size());
    return out;
  }

  FakeLearner learner_;
  std::unique_ptr<ServerHost> learner_server_;
  std::shared_ptr<prometheus::Registry> replay_registry_ = std::make_shared<prometheus::Registry>();
  std::unique_ptr<replay::ReplayShard> shard_;
  std::unique_ptr<replay::ReplayServiceImpl> replay_service_;
  std::unique_ptr<ServerHost> replay_server_;
  prometheus::Registry actor_registry_;
  // the fake translator's calls and the source actions it saw (outlive the actor)
  std::atomic<int> translate_calls_{0};
  absl::Mutex translated_mu_;
  std::vector<float> translated_ ABSL_GUARDED_BY(translated_mu_);
  std::unique_ptr<ActorLoop> loop_;
  std::atomic<int> prior_calls_{0};     // calls to the fake prior of latent assignments
  std::atomic<int> decoded_rows_{0};    // rows the fake skill prior decoded
  std::atomic<int> prior_down_for_{0};  // connection attempts the prior connector refuses
  std::atomic<int> prior_connects_{0};  // connection attempts
};

bool IsTrain(const Seen::Episode& e) { return !e.summary.is_eval(); }
// The actor acted with a policy from the learner: its warm-up is over, and it holds a policy to
// act on while the learner is away (after warm-up, acting waits for the first policy).
bool ActedWithAPolicy(const Seen& s) {
  return s.Count([](const Seen::Episode& e) { return e.summary.policy_version() >= 1; }) > 0;
}

TEST_F(ActorLoopTest, TrainsInsertsTransitionsAndReportsEpisodes) {
  learner_.SetAssignment(Train("t1"));
  learner_.PublishPolicy(0.25f);
  StartActor();
  ASSERT_TRUE(learner_.Await([](const Seen& s) {
    return s.Count(IsTrain) >= 12 && !s.heartbeats.empty() &&
           s.heartbeats.back().status().items_inserted() >= 200;
  }));
  const Seen before_stop = learner_.seen();
  loop_->Stop();
  const Seen seen = learner_.seen();
  EXPECT_EQ(seen.joins, 1);
  EXPECT_THAT(seen.left, ElementsAre("id-1"));
  EXPECT_GE(seen.episodes.size(), before_stop.episodes.size());

  // every episode runs to its time limit; those ending within the warm-up acted with version 0.
  std::set<int> envs;
  for (const Seen::Episode& e : seen.episodes) {
    const v1::EpisodeSummary& s = e.summary;
    EXPECT_EQ(e.generation, 1);
    EXPECT_FALSE(s.is_eval());
    EXPECT_EQ(s.length(), kEpisodeLength);
    EXPECT_TRUE(s.truncated());
    EXPECT_TRUE(std::isfinite(s.episode_return()));
    EXPECT_EQ(s.env_steps() % (2 * kEpisodeLength), 0) << s.DebugString();
    EXPECT_EQ(s.policy_version(), s.env_steps() <= kWarmup ? 0 : 1) << s.DebugString();
    envs.insert(s.env_index());
  }
  EXPECT_EQ(envs, (std::set<int>{0, 1}));

  // the transitions, in insertion order: env 0 and env 1 of each batch step.
  constexpr int64_t kRows = 200;
  const v1::SampleResponse rows = Oldest("t1", kRows);
  ASSERT_EQ(rows.columns_size(), 5);
  EXPECT_THAT(rows.columns(0).tensor().shape(), ElementsAre(kRows, kObs));
  EXPECT_THAT(rows.columns(1).tensor().shape(), ElementsAre(kRows, kAct));
  EXPECT_THAT(rows.columns(2).tensor().shape(), ElementsAre(kRows));
  EXPECT_THAT(rows.columns(3).tensor().shape(), ElementsAre(kRows));
  EXPECT_THAT(rows.columns(4).tensor().shape(), ElementsAre(kRows, kObs));
  const std::vector<float> obs = Floats(rows, 0), action = Floats(rows, 1),
                           discount = Floats(rows, 3), next = Floats(rows, 4);
  EXPECT_THAT(discount, Each(1.0f));  // cheetah never terminates; truncation keeps 1
  for (int64_t r = 0; r + 2 < kRows; ++r) {
    const bool last_step = (r / 2 + 1) % kEpisodeLength == 0;
    const bool same = std::equal(next.begin() + r * kObs, next.begin() + (r + 1) * kObs,
                                 obs.begin() + (r + 2) * kObs);
    EXPECT_EQ(same, !last_step) << "row " << r;
  }
  int warmup_at_bias = 0;
  for (int64_t r = 0; r < kRows; ++r) {
    for (int64_t k = 0; k < kAct; ++k) {
      const float a = action[r * kAct + k];
      if (r < kWarmup) {
        EXPECT_LE(std::abs(a), 1.0f);
        warmup_at_bias += a == 0.25f;
      } else {
        EXPECT_EQ(a, 0.25f) << "row " << r;
      }
    }
  }
  EXPECT_EQ(warmup_at_bias, 0);

  const v1::ActorStatus& status = before_stop.heartbeats.back().status();
  EXPECT_GT(status.env_steps(), 0);
  EXPECT_GT(status.episodes(), 0);
  EXPECT_EQ(status.policy_version(), 1);
  const std::string metrics = Metrics();
  EXPECT_THAT(metrics, HasSubstr("prl_actor_env_steps_total"));
  EXPECT_THAT(metrics, HasSubstr("prl_actor_episodes_total{kind=\"train\"}"));
  EXPECT_THAT(metrics, HasSubstr("prl_actor_policy_version 1"));
  EXPECT_THAT(metrics, HasSubstr("prl_actor_inserted_items_total"));
  EXPECT_THAT(metrics, Not(HasSubstr("prl_actor_inserted_items_total 0\n")));
}

TEST_F(ActorLoopTest, SwitchesToANewGenerationAndIdles) {
  learner_.SetAssignment(Train("t1"));
  learner_.PublishPolicy(0.25f);
  StartActor();
  ASSERT_TRUE(learner_.Await([](const Seen& s) { return s.Count(IsTrain) >= 4; }));

  CreateTable("t2");
  learner_.SetAssignment(Train("t2"));
  ASSERT_TRUE(learner_.Await([](const Seen& s) {
    return s.Count([](const Seen::Episode& e) { return e.generation == 2; }) >= 4;
  }));
  EXPECT_GT(TableSize("t2"), 0);
  // the counters restarted with the generation: its first episodes ended after 10 steps of 2
  // envs, in warm-up again.
  for (const Seen::Episode& e : learner_.seen().episodes) {
    if (e.generation != 2 || e.summary.env_steps() > 2 * kEpisodeLength) continue;
    EXPECT_EQ(e.summary.env_steps(), 2 * kEpisodeLength);
    EXPECT_EQ(e.summary.policy_version(), 0);
  }
  // episode numbers go on across the runners: none is reused, so a learner never takes the
  // new generation's episodes for repeats of the old one's.
  {
    const Seen seen = learner_.seen();
    for (size_t i = 1; i < seen.episodes.size(); ++i) {
      EXPECT_GT(seen.episodes[i].number, seen.episodes[i - 1].number) << "episode " << i;
    }
    EXPECT_GE(seen.episodes.front().number, 1);
  }

  learner_.SetAssignment(v1::Assignment());  // generation 3: idle
  size_t first = 0;
  ASSERT_TRUE(learner_.Await([&first](const Seen& s) {
    for (size_t i = 0; i < s.heartbeats.size(); ++i) {
      if (s.heartbeats[i].generation() == 3) {
        first = i;
        return s.heartbeats.size() >= i + 4;
      }
    }
    return false;
  }));
  const int64_t t2_size = TableSize("t2");
  ASSERT_TRUE(learner_.Await([first](const Seen& s) { return s.heartbeats.size() >= first + 8; }));
  EXPECT_EQ(TableSize("t2"), t2_size);
  const Seen seen = learner_.seen();
  for (size_t i = first; i < seen.heartbeats.size(); ++i) {
    EXPECT_EQ(seen.heartbeats[i].generation(), 3);
    EXPECT_EQ(seen.heartbeats[i].status().env_steps(), 0);
  }
  EXPECT_EQ(loop_->state().assignment.generation(), 3);
  EXPECT_EQ(loop_->state().last_error, "");
}

TEST_F(ActorLoopTest, ASwitchOrAStopCancelsAnInsertTheRateLimiterHolds) {
  // tables that take 8 items and then hold every insert until 100 samples make room
  // (samples_per_insert 100, error buffer 700): the test's own sample of the 8, which waits until
  // they are in, makes no room.
  for (const std::string name : {"held1", "held2"}) {
    v1::TableConfig config = TableConfig(name);
    config.mutable_rate_limiter()->set_min_size_to_sample(1);
    config.mutable_rate_limiter()->set_samples_per_insert(100);
    config.mutable_rate_limiter()->set_error_buffer(700);
    ASSERT_TRUE(shard_->CreateTable(config).ok());
  }
  learner_.SetAssignment(Train("held1"));
  learner_.PublishPolicy(0.25f);
  // inserts would wait a minute for the rate limiter: only a cancel ends them sooner.
  StartActor(/*insert_timeout=*/absl::Seconds(60));
  ASSERT_TRUE(AwaitRows("held1", 8));

  // the switch ends the held insert: the new generation's episodes run and reach t1.
  learner_.SetAssignment(Train("t1"));
  ASSERT_TRUE(learner_.Await([](const Seen& s) {
    return s.Count([](const Seen::Episode& e) { return e.generation == 2; }) >= 2;
  }));
  ASSERT_TRUE(AwaitRows("t1", 1));
  EXPECT_EQ(TableSize("held1"), 8);

  learner_.SetAssignment(Train("held2"));
  ASSERT_TRUE(AwaitRows("held2", 8));
  const absl::Time stop = absl::Now();
  loop_->Stop();
  // far below the insert's deadline (a minute): the stop did not wait for it.
  EXPECT_LT(absl::Now() - stop, absl::Seconds(20));
  EXPECT_EQ(TableSize("held2"), 8);
}

TEST_F(ActorLoopTest, AnEvaluationRoundArrivesWithAReportWithoutWaitingForAHeartbeat) {
  // after the join's heartbeat the next is an hour away: only a report can bring the round
  learner_.SetHeartbeatInterval(absl::Hours(1));
  learner_.SetAssignment(Train("t1"));
  learner_.PublishPolicy(0.25f);
  StartActor();
  ASSERT_TRUE(learner_.Await([](const Seen& s) { return s.Count(IsTrain) >= 6; }));
  const size_t heartbeats = learner_.seen().heartbeats.size();
  learner_.SetEvaluation(/*round=*/1, /*episodes=*/2, /*min_policy_version=*/0);
  const auto is_eval = [](const Seen::Episode& e) { return e.summary.is_eval(); };
  ASSERT_TRUE(learner_.Await([&](const Seen& s) { return s.Count(is_eval) >= 2; }));
  EXPECT_EQ(learner_.seen().heartbeats.size(), heartbeats);
}

TEST_F(ActorLoopTest, RunsEvaluationRoundsWithoutInserting) {
  learner_.SetAssignment(Train("t1"));
  learner_.PublishPolicy(0.25f);
  StartActor();
  ASSERT_TRUE(learner_.Await([](const Seen& s) { return s.Count(IsTrain) >= 6; }));

  // round 1 asks for version 2, which the actor long-polls for until it is published.
  learner_.SetEvaluation(/*round=*/1, /*episodes=*/3, /*min_policy_version=*/2);
  ASSERT_TRUE(learner_.Await([](const Seen& s) {
    for (const v1::GetPolicyRequest& r : s.policy_requests) {
      if (r.min_version() == 2) return true;
    }
    return false;
  }));
  learner_.PublishPolicy(0.5f);
  const auto is_eval = [](const Seen::Episode& e) { return e.summary.is_eval(); };
  ASSERT_TRUE(learner_.Await([&](const Seen& s) { return s.Count(is_eval) >= 3; }));
  for (const Seen::Episode& e : learner_.seen().episodes) {
    if (!e.summary.is_eval()) continue;
    EXPECT_EQ(e.summary.eval_round(), 1);
    EXPECT_EQ(e.summary.policy_version(), 2);
    EXPECT_EQ(e.summary.length(), kEpisodeLength);
    EXPECT_TRUE(e.summary.truncated());
  }
  // training goes on with version 2 after the round.
  ASSERT_TRUE(learner_.Await([](const Seen& s) {
    return s.Count([](const Seen::Episode& e) {
      return !e.summary.is_eval() && e.summary.policy_version() == 2;
    }) >= 2;
  }));

  // MODE_EVALUATE: evaluation rounds only, and rounds count from 1 again.
  v1::Assignment evaluate = Train("");
  evaluate.set_mode(v1::Assignment::MODE_EVALUATE);
  evaluate.clear_replay_addresses();
  evaluate.clear_signature();
  learner_.SetAssignment(evaluate);
  learner_.SetEvaluation(/*round=*/1, /*episodes=*/2, /*min_policy_version=*/0);
  ASSERT_TRUE(learner_.Await([](const Seen& s) {
    return s.Count([](const Seen::Episode& e) { return e.generation == 2; }) >= 2;
  }));
  loop_->Stop();
  for (const Seen::Episode& e : learner_.seen().episodes) {
    if (e.generation != 2) continue;
    EXPECT_TRUE(e.summary.is_eval());
    EXPECT_EQ(e.summary.eval_round(), 1);
  }
  EXPECT_EQ(learner_.seen().Count([](const Seen::Episode& e) { return e.generation == 2; }), 2);

  // evaluation acted deterministically (-bias); none of its steps reached replay.
  const int64_t size = TableSize("t1");
  const std::vector<float> action = Floats(Oldest("t1", static_cast<int>(size)), 1);
  EXPECT_EQ(std::count(action.begin(), action.end(), -0.5f), 0);
  EXPECT_EQ(std::count(action.begin(), action.end(), -0.25f), 0);
  EXPECT_GT(std::count(action.begin(), action.end(), 0.5f), 0);
  EXPECT_THAT(Metrics(), HasSubstr("prl_actor_episodes_total{kind=\"eval\"} 5"));
}

TEST_F(ActorLoopTest, EvaluatesThroughATranslator) {
  learner_.PublishPolicy(0.25f);
  v1::Assignment evaluate = Train("");
  evaluate.set_mode(v1::Assignment::MODE_EVALUATE);
  evaluate.clear_replay_addresses();
  evaluate.clear_signature();
  evaluate.mutable_translator()->set_name("pair");
  evaluate.mutable_translator()->set_version(1);
  evaluate.set_prior_address("prior:1");
  learner_.SetAssignment(evaluate);
  learner_.SetEvaluation(/*round=*/1, /*episodes=*/2, /*min_policy_version=*/0);
  StartActor();
  ASSERT_TRUE(learner_.Await([](const Seen& s) {
    return s.Count([](const Seen::Episode& e) { return e.summary.is_eval(); }) >= 2;
  }));
  loop_->Stop();
  // every step's deterministic action (-0.25) went through the translator
  EXPECT_GE(translate_calls_.load(), kEpisodeLength);
  absl::MutexLock lock(&translated_mu_);
  ASSERT_FALSE(translated_.empty());
  EXPECT_EQ(std::count(translated_.begin(), translated_.end(), -0.25f),
            static_cast<std::ptrdiff_t>(translated_.size()));
}

TEST_F(ActorLoopTest, JoinsAgainAfterNotFound) {
  learner_.SetAssignment(Train("t1"));
  learner_.PublishPolicy(0.25f);
  StartActor();
  ASSERT_TRUE(learner_.Await([](const Seen& s) {
    return s.Count([](const Seen::Episode& e) { return e.summary.policy_version() == 1; }) >= 2;
  }));
  learner_.ForgetActors();
  ASSERT_TRUE(learner_.Await([](const Seen& s) {
    return s.joins == 2 &&
           s.Count([](const Seen::Episode& e) { return e.actor_id == "id-2"; }) >= 4;
  }));
  // the same assignment came back, so the actor went on where it was: no second warm-up.
  for (const Seen::Episode& e : learner_.seen().episodes) {
    if (e.actor_id != "id-2") continue;
    EXPECT_EQ(e.summary.policy_version(), 1);
  }
  EXPECT_EQ(loop_->state().actor_id, "id-2");
  EXPECT_EQ(loop_->state().joins, 2);
}

TEST_F(ActorLoopTest, JoinsAgainAfterTheLearnerRestarts) {
  learner_.SetAssignment(Train("t1"));
  learner_.PublishPolicy(0.25f);
  StartActor();
  ASSERT_TRUE(learner_.Await(ActedWithAPolicy));

  // the learner process goes away; its successor on the same port knows no actors.
  const int port = learner_server_->port();
  learner_server_->Shutdown();
  learner_server_.reset();
  learner_.ForgetActors();
  ASSERT_TRUE(AwaitLoop([](const ActorLoop::State& s) { return s.heartbeat_failures > 0; }));
  EXPECT_THAT(Metrics(), HasSubstr("prl_actor_rpc_errors_total{rpc=\"Heartbeat\"}"));
  const int64_t size = TableSize("t1");
  ASSERT_TRUE(AwaitRows("t1", size + 1));  // acting goes on meanwhile
  StartLearner(port);
  ASSERT_TRUE(learner_.Await([](const Seen& s) {
    return s.joins == 2 &&
           s.Count([](const Seen::Episode& e) { return e.actor_id == "id-2"; }) >= 2;
  }));
  EXPECT_EQ(loop_->state().actor_id, "id-2");
}

TEST_F(ActorLoopTest, KeepsGoingWhileTheLearnerIsUnavailable) {
  learner_.SetAssignment(Train("t1"));
  learner_.PublishPolicy(0.25f);
  learner_.SetAvailable(false);
  StartActor();
  // joins are retried with backoff until the learner answers.
  ASSERT_TRUE(learner_.Await([](const Seen& s) { return s.rejected >= 3; }));
  learner_.SetAvailable(true);
  ASSERT_TRUE(learner_.Await(ActedWithAPolicy));

  // a second outage: training and inserts go on, reports wait for the learner.
  learner_.SetAvailable(false);
  const int rejected = learner_.seen().rejected;
  ASSERT_TRUE(learner_.Await([rejected](const Seen& s) { return s.rejected >= rejected + 5; }));
  const int64_t size = TableSize("t1");
  ASSERT_TRUE(AwaitRows("t1", size + 201));
  const int reported = learner_.seen().Count(IsTrain);
  learner_.SetAvailable(true);
  ASSERT_TRUE(learner_.Await([reported](const Seen& s) {
    return s.Count(IsTrain) >= reported + 20;  // episodes of the outage are reported late
  }));
  EXPECT_EQ(learner_.seen().joins, 1);
  EXPECT_THAT(Metrics(), HasSubstr("prl_actor_rpc_errors_total{rpc=\"Heartbeat\"}"));
  EXPECT_THAT(Metrics(), HasSubstr("prl_actor_rpc_errors_total{rpc=\"Join\"}"));
}

TEST_F(ActorLoopTest, IdlesWithAClearErrorOnAssignmentsItCannotRun) {
  v1::Assignment unknown = Train("t1");
  unknown.mutable_signature(1)->set_name("logits");
  learner_.SetAssignment(unknown);
  StartActor();
  ASSERT_TRUE(AwaitLoop([](const ActorLoop::State& s) { return !s.last_error.empty(); }));
  EXPECT_THAT(loop_->state().last_error, HasSubstr("assignment.signature[1] ('logits')"));
  EXPECT_THAT(loop_->state().last_error, HasSubstr("unknown column"));

  v1::Assignment latent = Train("t1");
  latent.mutable_policy()->set_output(v1::PolicyArchitecture::OUTPUT_FLOW_LATENT);
  learner_.SetAssignment(latent);
  ASSERT_TRUE(AwaitLoop([](const ActorLoop::State& s) {
    return s.assignment.generation() == 2 && !s.last_error.empty();
  }));
  EXPECT_THAT(loop_->state().last_error, HasSubstr("assignment.prior: unset"));
  // idle: heartbeats go on, nothing is inserted or reported.
  ASSERT_TRUE(learner_.Await([](const Seen& s) { return s.heartbeats.size() >= 5; }));
  EXPECT_EQ(TableSize("t1"), 0);
  EXPECT_TRUE(learner_.seen().episodes.empty());
}

TEST_F(ActorLoopTest, ActsWithDecodedLatentsEveryHStepsAndStoresOneRowPerDecision) {
  v1::TableConfig config = TableConfig("latent", kObs, kLatent);
  v1::ColumnSpec* steps = config.add_signature();
  steps->set_name("env_steps");
  steps->set_dtype(v1::Tensor::DTYPE_INT64);
  ASSERT_TRUE(shard_->CreateTable(config).ok());
  v1::Assignment a = Train("latent");
  *a.mutable_signature() = config.signature();
  a.mutable_policy()->set_output(v1::PolicyArchitecture::OUTPUT_DECODED_LATENT);
  a.mutable_policy()->set_output_dim(kLatent);
  a.mutable_policy()->set_output_bound(2);
  a.mutable_prior()->set_name("skills");
  a.mutable_prior()->set_version(1);
  a.set_prior_address("prior-server:50053");
  a.set_decision_horizon(kHorizon);
  a.set_warmup_env_steps(0);
  learner_.SetAssignment(a);
  learner_.PublishPolicy(0.5f);
  StartActor(absl::Seconds(2), /*latent=*/true);
  // 10-step episodes, H = 4: decisions of 4, 4 and 2 steps, 3 rows per env per episode
  ASSERT_TRUE(learner_.Await([](const Seen& s) { return s.Count(IsTrain) >= 4; }));
  ASSERT_TRUE(AwaitRows("latent", 12));
  loop_->Stop();
  const v1::SampleResponse rows = Oldest("latent", 12);
  ASSERT_EQ(rows.columns_size(), 6);
  EXPECT_THAT(rows.columns(1).tensor().shape(), ElementsAre(12, kLatent));
  EXPECT_THAT(Floats(rows, 1), Each(0.5f));  // z from the policy
  const std::string& step_bytes = rows.columns(5).tensor().data();
  std::vector<int64_t> env_steps(step_bytes.size() / sizeof(int64_t));
  std::memcpy(env_steps.data(), step_bytes.data(), step_bytes.size());
  // both envs decide together: rows come in pairs of (4, 4), (4, 4), (2, 2), ...
  EXPECT_THAT(env_steps, ElementsAre(4, 4, 4, 4, 2, 2, 4, 4, 4, 4, 2, 2));
  // every episode: 10 steps of actions z_0/2 + 0.1·s_0, all within [-1, 1]
  for (const Seen::Episode& e : learner_.seen().episodes) {
    EXPECT_EQ(e.summary.length(), kEpisodeLength);
    EXPECT_EQ(e.summary.policy_version(), 1);
  }
  EXPECT_GE(prior_calls_.load(), 10);  // one decode per batch step
}

// EAP: the CVAE decodes a decision's k actions in one call at its first state (open loop);
// rows are stored per decision as spirl's are, and Decode runs once per decision, not per step.
TEST_F(ActorLoopTest, ActsWithOpenLoopDecodersOncePerDecision) {
  v1::TableConfig config = TableConfig("eap", kObs, kLatent);
  v1::ColumnSpec* steps = config.add_signature();
  steps->set_name("env_steps");
  steps->set_dtype(v1::Tensor::DTYPE_INT64);
  ASSERT_TRUE(shard_->CreateTable(config).ok());
  v1::Assignment a = Train("eap");
  *a.mutable_signature() = config.signature();
  a.mutable_policy()->set_output(v1::PolicyArchitecture::OUTPUT_DECODED_LATENT);
  a.mutable_policy()->set_output_dim(kLatent);
  a.mutable_policy()->set_output_bound(2);
  a.mutable_prior()->set_name("eap");
  a.mutable_prior()->set_version(1);
  a.set_prior_address("prior-server:50053");
  a.set_decision_horizon(kHorizon);
  a.set_warmup_env_steps(0);
  learner_.SetAssignment(a);
  learner_.PublishPolicy(0.5f);
  StartActor(absl::Seconds(2), /*latent=*/true);
  ASSERT_TRUE(AwaitRows("eap", 12));
  loop_->Stop();
  const v1::SampleResponse rows = Oldest("eap", 12);
  const std::string& step_bytes = rows.columns(5).tensor().data();
  std::vector<int64_t> env_steps(step_bytes.size() / sizeof(int64_t));
  std::memcpy(env_steps.data(), step_bytes.data(), step_bytes.size());
  EXPECT_THAT(env_steps, ElementsAre(4, 4, 4, 4, 2, 2, 4, 4, 4, 4, 2, 2));
  EXPECT_THAT(Floats(rows, 1), Each(0.5f));
  // one decoded row per decision (a closed-loop decoder would decode 10 rows per 3 decisions):
  // every stored row, plus the decisions under way or not yet flushed when the loop stopped
  const int64_t stored = TableSize("eap");
  EXPECT_GE(decoded_rows_.load(), stored);
  EXPECT_LE(decoded_rows_.load(), stored * 3 / 2 + 2);

  // a decision horizon that is not the decoder's k is refused by name
  v1::Assignment wrong = a;
  wrong.set_decision_horizon(kHorizon + 1);
  learner_.SetAssignment(wrong);
  StartActor(absl::Seconds(2), /*latent=*/true);
  ASSERT_TRUE(AwaitLoop([](const ActorLoop::State& s) { return !s.last_error.empty(); }));
  EXPECT_THAT(loop_->state().last_error, HasSubstr("assignment.decision_horizon: 5"));
}

// A prior server that is not up when the assignment arrives (UNAVAILABLE) is retried with
// backoff, not left idle until the learner changes the assignment.
TEST_F(ActorLoopTest, RetriesAPriorThatIsNotReachableYet) {
  CreateTable("flow");
  v1::Assignment a = Train("flow");
  a.mutable_policy()->set_output(v1::PolicyArchitecture::OUTPUT_FLOW_LATENT);
  a.mutable_policy()->set_output_bound(3);
  a.mutable_prior()->set_name("flow");
  a.mutable_prior()->set_version(2);
  a.set_prior_address("prior-server:50053");
  a.set_warmup_env_steps(0);
  learner_.SetAssignment(a);
  learner_.PublishPolicy(0.25f);
  prior_down_for_ = 3;
  StartActor();
  ASSERT_TRUE(AwaitRows("flow", 10));
  loop_->Stop();
  EXPECT_EQ(prior_connects_.load(), 4);
  EXPECT_EQ(prior_down_for_.load(), 0);
  EXPECT_TRUE(loop_->state().last_error.empty()) << loop_->state().last_error;
}

TEST_F(ActorLoopTest, ActsWithFlowLatentsEveryStep) {
  CreateTable("flow");
  v1::Assignment a = Train("flow");
  a.mutable_policy()->set_output(v1::PolicyArchitecture::OUTPUT_FLOW_LATENT);
  a.mutable_policy()->set_output_bound(3);
  a.mutable_prior()->set_name("flow");
  a.mutable_prior()->set_version(2);
  a.set_prior_address("prior-server:50053");
  a.set_warmup_env_steps(0);
  learner_.SetAssignment(a);
  learner_.PublishPolicy(0.25f);
  StartActor();
  ASSERT_TRUE(AwaitRows("flow", 40));
  loop_->Stop();
  // one row per env step, the latent as "action": the policy's z, not the flow's action
  const v1::SampleResponse rows = Oldest("flow", 40);
  EXPECT_THAT(Floats(rows, 1), Each(0.25f));
  EXPECT_GE(prior_calls_.load(), 20);  // Forward once per batch step
}

TEST_F(ActorLoopTest, CollectsWithThePlannerKeepingOnlySuccessfulEpisodes) {
  constexpr int64_t kMazeObs = 4;
  constexpr int64_t kMazeAct = 2;
  // a collection table: the transition columns, then where each row lies in its episode
  v1::TableConfig table = TableConfig("maze", kMazeObs, kMazeAct);
  for (const char* column : {"episode", "step"}) {
    v1::ColumnSpec* c = table.add_signature();
    c->set_name(column);
    c->set_dtype(v1::Tensor::DTYPE_INT64);
  }
  v1::ColumnSpec* timeout = table.add_signature();
  timeout->set_name("timeout");
  timeout->set_dtype(v1::Tensor::DTYPE_FLOAT32);
  ASSERT_TRUE(shard_->CreateTable(table).ok());
  v1::Assignment collect;
  collect.set_experiment_id(kExperiment);
  collect.set_mode(v1::Assignment::MODE_COLLECT);
  collect.mutable_env()->set_domain(v1::EnvSpec::DOMAIN_POINT_MAZE);
  // the default 2000-step limit: the planner needs several hundred steps through the maze.
  collect.set_num_envs(2);
  collect.add_replay_addresses(replay_server_->address());
  collect.set_table("maze");
  *collect.mutable_signature() = table.signature();
  collect.mutable_collect()->set_collector(v1::CollectSpec::COLLECTOR_SCRIPTED);
  collect.mutable_collect()->set_action_noise(0.1);
  collect.mutable_collect()->set_success_only(true);
  learner_.SetAssignment(collect);
  StartActor();
  ASSERT_TRUE(learner_.Await([](const Seen& s) { return s.Count(IsTrain) >= 6; }));
  ASSERT_TRUE(AwaitRows("maze", 1)) << [&] {
    std::string episodes;
    for (const Seen::Episode& e : learner_.seen().episodes) {
      episodes += e.summary.ShortDebugString() + "\n";
    }
    return episodes;
  }();
  loop_->Stop();

  int successes = 0;
  for (const Seen::Episode& e : learner_.seen().episodes) {
    EXPECT_EQ(e.summary.policy_version(), 0);  // a collector acted
    EXPECT_FALSE(e.summary.is_eval());
    successes += e.summary.success();
  }
  EXPECT_GT(successes, 0);
  // replay holds whole successful episodes, one after the other: the observations chain within
  // an episode, and each ends on reaching the goal (reward 1, discount 0).
  const int64_t size = TableSize("maze");
  const v1::SampleResponse rows = Oldest("maze", static_cast<int>(size));
  const std::vector<float> obs = Floats(rows, 0), reward = Floats(rows, 2),
                           discount = Floats(rows, 3), next = Floats(rows, 4);
  EXPECT_EQ(discount.back(), 0.0f);
  int terminals = 0;
  for (int64_t r = 0; r < size; ++r) {
    EXPECT_EQ(reward[r], 1.0f - discount[r]) << "row " << r;
    terminals += discount[r] == 0.0f;
    if (discount[r] == 0.0f || r + 1 == size) continue;
    EXPECT_TRUE(std::equal(next.begin() + r * kMazeObs, next.begin() + (r + 1) * kMazeObs,
                           obs.begin() + (r + 1) * kMazeObs))
        << "row " << r;
  }
  EXPECT_LE(terminals, successes);
  // each successful episode was inserted whole: one id, steps 0, 1, 2, ... and no time-out; a
  // new id starts each episode
  std::vector<int64_t> episode(size), step(size);
  std::memcpy(episode.data(), rows.columns(5).tensor().data().data(), size * sizeof(int64_t));
  std::memcpy(step.data(), rows.columns(6).tensor().data().data(), size * sizeof(int64_t));
  const std::vector<float> timeouts = Floats(rows, 7);
  std::set<int64_t> ids;
  for (int64_t r = 0; r < size; ++r) {
    const bool starts = r == 0 || discount[r - 1] == 0.0f;
    EXPECT_EQ(step[r], starts ? 0 : step[r - 1] + 1) << "row " << r;
    if (!starts) {
      EXPECT_EQ(episode[r], episode[r - 1]) << "row " << r;
    } else {
      EXPECT_TRUE(ids.insert(episode[r]).second) << "episode id reused at row " << r;
    }
    EXPECT_GT(episode[r], 0);
    EXPECT_EQ(timeouts[r], 0.0f);
  }
}

}  // namespace
}  // namespace prl::actor
