// The learner's gRPC adapters in-process: experiment lifecycle through ExperimentService (with
// a fake run so no training happens), the actor protocol through ActorService, and the token
// on mutating RPCs.
#include "learner/learner_services.h"

#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/testing/in_process_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl::learner {
namespace {

using ::testing::HasSubstr;

// Reports some progress, then waits for Stop.
class WaitingRun final : public ExperimentRun {
 public:
  explicit WaitingRun(RunContext* context) : context_(context) {}
  Result Run() override {
    v1::Progress p;
    p.set_env_steps(7);
    context_->ReportProgress(p);
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&stopped_));
    return {shutdown_ ? v1::EXPERIMENT_STATE_RUNNING : v1::EXPERIMENT_STATE_STOPPED, reason_};
  }
  void RequestStop(const std::string& reason, bool shutdown) override {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
    reason_ = reason;
    shutdown_ = shutdown;
  }

 private:
  RunContext* context_;
  absl::Mutex mu_;
  bool stopped_ = false, shutdown_ = false;
  std::string reason_;
};

class LearnerServicesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ExperimentManagerOptions options;
    options.state_dir =
        absl::StrCat(::testing::TempDir(), "/services_", getpid(), "_",
                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    options.validate = [](const v1::ExperimentSpec& spec) -> absl::StatusOr<v1::ExperimentSpec> {
      if (spec.name().empty()) {
        return absl::InvalidArgumentError("name: \"\" is not allowed; a name is required");
      }
      return spec;
    };
    options.run_factory =
        [](const v1::Experiment&,
           RunContext* context) -> absl::StatusOr<std::unique_ptr<ExperimentRun>> {
      return std::make_unique<WaitingRun>(context);
    };
    auto manager = ExperimentManager::Create(options);
    ASSERT_TRUE(manager.ok()) << manager.status();
    manager_ = std::move(*manager);
    datasets_ = *DatasetStore::Open(options.state_dir + "/datasets");
    // one waiting-call limit for both services, as prl_learner has
    const LearnerServiceOptions service_options{"token-3", &waiting_calls_};
    experiments_ =
        std::make_unique<ExperimentServiceImpl>(service_options, manager_.get(), datasets_.get());
    actors_ = std::make_unique<ActorServiceImpl>(service_options, &registry_, &policies_);
    auto server =
        prl::testing::InProcessServer::Start("learner", {experiments_.get(), actors_.get()});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    experiment_stub_ = v1::ExperimentService::NewStub(server_->channel());
    actor_stub_ = v1::ActorService::NewStub(server_->channel());
  }
  void TearDown() override {
    manager_->Shutdown();
    server_.reset();
  }

  std::unique_ptr<grpc::ClientContext> Authorized(absl::Duration timeout = absl::Seconds(10)) {
    auto context = server_->Context("token-3");
    context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    return context;
  }

  WaitingCallLimit waiting_calls_{8};
  ActorRegistry registry_;
  PolicyStore policies_;
  std::unique_ptr<DatasetStore> datasets_;
  std::unique_ptr<ExperimentManager> manager_;
  std::unique_ptr<ExperimentServiceImpl> experiments_;
  std::unique_ptr<ActorServiceImpl> actors_;
  std::unique_ptr<prl::testing::InProcessServer> server_;
  std::unique_ptr<v1::ExperimentService::Stub> experiment_stub_;
  std::unique_ptr<v1::ActorService::Stub> actor_stub_;
};

TEST_F(LearnerServicesTest, ServesHealthAndBuildInfo) {
  EXPECT_TRUE(CheckHealth(server_->channel(), {}).ok());
  auto metrics = server_->Metrics();
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_THAT(*metrics, HasSubstr("prl_build_info{service=\"learner\""));
}

TEST_F(LearnerServicesTest, MutatingRpcsNeedTheToken) {
  v1::SubmitRequest submit;
  submit.mutable_spec()->set_name("a");
  v1::SubmitResponse submit_response;
  EXPECT_EQ(
      experiment_stub_->Submit(server_->Context().get(), submit, &submit_response).error_code(),
      grpc::StatusCode::UNAUTHENTICATED);
  v1::StopRequest stop;
  v1::StopResponse stop_response;
  EXPECT_EQ(experiment_stub_->Stop(server_->Context("x").get(), stop, &stop_response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  v1::JoinRequest join;
  v1::JoinResponse join_response;
  EXPECT_EQ(actor_stub_->Join(server_->Context().get(), join, &join_response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // nothing was stored
  v1::ListResponse list;
  ASSERT_TRUE(experiment_stub_->List(Authorized().get(), {}, &list).ok());
  EXPECT_EQ(list.experiments_size(), 0);
}

// Each open Watch holds a handler thread: past the limit a new one is refused at once (the
// threads actors' heartbeats need stay free), and a closed one makes room.
TEST_F(LearnerServicesTest, WatchStreamsAreBounded) {
  v1::SubmitRequest submit;
  submit.mutable_spec()->set_name("a");
  v1::SubmitResponse response;
  ASSERT_TRUE(experiment_stub_->Submit(Authorized().get(), submit, &response).ok());
  v1::WatchRequest watch;
  watch.set_id(response.id());
  watch.set_min_interval_ms(60000);
  const int limit = waiting_calls_.max();
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<v1::WatchResponse>>> readers;
  v1::WatchResponse update;
  for (int i = 0; i < limit; ++i) {
    contexts.push_back(Authorized(absl::Seconds(60)));
    readers.push_back(experiment_stub_->Watch(contexts.back().get(), watch));
    ASSERT_TRUE(readers.back()->Read(&update)) << "stream " << i;  // its handler is running
  }
  auto refused_context = Authorized();
  auto refused = experiment_stub_->Watch(refused_context.get(), watch);
  EXPECT_FALSE(refused->Read(&update));
  const grpc::Status status = refused->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("too many Watch streams"));
  // the learner still answers everything else
  v1::GetRequest get;
  get.set_id(response.id());
  v1::GetResponse got;
  EXPECT_TRUE(experiment_stub_->Get(Authorized().get(), get, &got).ok());
  // one closes: a new one is served
  contexts[0]->TryCancel();
  (void)readers[0]->Finish();
  bool served = false;
  for (int attempt = 0; attempt < 50 && !served; ++attempt) {
    auto context = Authorized();
    auto reader = experiment_stub_->Watch(context.get(), watch);
    served = reader->Read(&update);
    context->TryCancel();
    (void)reader->Finish();
    if (!served) absl::SleepFor(absl::Milliseconds(100));  // the cancelled handler notices
  }
  EXPECT_TRUE(served);
  for (size_t i = 1; i < contexts.size(); ++i) contexts[i]->TryCancel();
  for (size_t i = 1; i < readers.size(); ++i) (void)readers[i]->Finish();
}

// GetPolicy calls that wait for a version hold a handler thread too: past the limit a call
// only looks, and is told to ask again later when nothing newer is there yet.
TEST_F(LearnerServicesTest, GetPolicyWaitsAreBoundedToo) {
  policies_.Expect("exp-9");
  v1::GetPolicyRequest request;
  request.set_experiment_id("exp-9");
  request.set_min_version(5);
  const int limit = waiting_calls_.max();
  std::vector<std::thread> waiters;
  std::atomic<int> served{0};
  for (int i = 0; i < limit; ++i) {
    waiters.emplace_back([&] {
      auto context = Authorized(absl::Seconds(30));
      v1::GetPolicyResponse response;
      if (actor_stub_->GetPolicy(context.get(), request, &response).ok() &&
          response.policy().version() == 5) {
        ++served;
      }
    });
  }
  // all eight are waiting
  for (int i = 0; i < 2000 && waiting_calls_.count() < limit; ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ(waiting_calls_.count(), limit);
  auto context = Authorized();
  v1::GetPolicyResponse response;
  const grpc::Status refused = actor_stub_->GetPolicy(context.get(), request, &response);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("ask again later"));
  auto policy = std::make_shared<v1::Policy>();
  policy->set_experiment_id("exp-9");
  policy->set_version(5);
  policies_.Publish(policy);
  for (std::thread& t : waiters) t.join();
  EXPECT_EQ(served.load(), limit);
  // a version that is there is served at once, whatever the others do
  auto again = Authorized();
  EXPECT_TRUE(actor_stub_->GetPolicy(again.get(), request, &response).ok());
  EXPECT_EQ(response.policy().version(), 5);
}

TEST_F(LearnerServicesTest, SubmitGetListWatchStop) {
  v1::SubmitRequest bad;
  v1::SubmitResponse response;
  grpc::Status s = experiment_stub_->Submit(Authorized().get(), bad, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("name"));

  v1::SubmitRequest submit;
  submit.mutable_spec()->set_name("a");
  ASSERT_TRUE(experiment_stub_->Submit(Authorized().get(), submit, &response).ok());
  const std::string id = response.id();
  EXPECT_EQ(id, "exp-000001");

  // Watch: snapshots until RUNNING with progress, then Stop ends the stream with STOPPED
  v1::WatchRequest watch;
  watch.set_id(id);
  watch.set_min_interval_ms(100);
  auto watch_context = Authorized(absl::Seconds(30));
  auto reader = experiment_stub_->Watch(watch_context.get(), watch);
  v1::WatchResponse update;
  bool running = false;
  while (reader->Read(&update)) {
    if (update.experiment().state() == v1::EXPERIMENT_STATE_RUNNING &&
        update.experiment().progress().env_steps() == 7) {
      running = true;
      break;
    }
  }
  ASSERT_TRUE(running);
  v1::GetRequest get;
  get.set_id(id);
  v1::GetResponse got;
  ASSERT_TRUE(experiment_stub_->Get(Authorized().get(), get, &got).ok());
  EXPECT_EQ(got.experiment().state(), v1::EXPERIMENT_STATE_RUNNING);

  v1::StopRequest stop;
  stop.set_id(id);
  stop.set_reason("enough");
  v1::StopResponse stopped;
  ASSERT_TRUE(experiment_stub_->Stop(Authorized().get(), stop, &stopped).ok());
  EXPECT_EQ(stopped.experiment().state(), v1::EXPERIMENT_STATE_STOPPED);
  EXPECT_EQ(stopped.experiment().end_reason(), "enough");
  v1::ExperimentState last = v1::EXPERIMENT_STATE_UNSPECIFIED;
  while (reader->Read(&update)) last = update.experiment().state();
  EXPECT_EQ(last, v1::EXPERIMENT_STATE_STOPPED);
  EXPECT_TRUE(reader->Finish().ok());

  v1::ListRequest list;
  list.add_states(v1::EXPERIMENT_STATE_STOPPED);
  v1::ListResponse listed;
  ASSERT_TRUE(experiment_stub_->List(Authorized().get(), list, &listed).ok());
  ASSERT_EQ(listed.experiments_size(), 1);
  get.set_id("exp-999999");
  EXPECT_EQ(experiment_stub_->Get(Authorized().get(), get, &got).error_code(),
            grpc::StatusCode::NOT_FOUND);
  watch.set_min_interval_ms(5);
  auto bad_context = Authorized();
  auto bad_watch = experiment_stub_->Watch(bad_context.get(), watch);
  EXPECT_FALSE(bad_watch->Read(&update));
  EXPECT_EQ(bad_watch->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(LearnerServicesTest, ListDatasetsShowsTheStoreAndWhatItCannotRead) {
  for (const char* name : {"b-set", "a-set"}) {
    const std::string staged = datasets_->StagingPathOf(name, "exp-000001");
    std::ofstream(staged) << "rows of " << name;
    v1::DatasetInfo info;
    info.set_name(name);
    info.set_experiment_id("exp-000001");
    info.set_episodes(3);
    ASSERT_TRUE(datasets_->Commit(staged, info).ok());
  }
  std::ofstream(datasets_->dir() + "/stray.hdf5") << "no record";
  v1::ListDatasetsResponse listed;
  // read-only: no token needed
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  ASSERT_TRUE(experiment_stub_->ListDatasets(&context, {}, &listed).ok());
  ASSERT_EQ(listed.datasets_size(), 2);
  EXPECT_EQ(listed.datasets(0).name(), "a-set");
  EXPECT_EQ(listed.datasets(1).name(), "b-set");
  EXPECT_EQ(listed.datasets(1).episodes(), 3);
  EXPECT_THAT(listed.datasets(1).content_hash(), HasSubstr("sha256:"));
  ASSERT_EQ(listed.problems_size(), 1);
  EXPECT_THAT(listed.problems(0), HasSubstr("stray.hdf5"));

  v1::ListDatasetsRequest one;
  one.set_name("b-set");
  v1::ListDatasetsResponse found;
  ASSERT_TRUE(experiment_stub_->ListDatasets(Authorized().get(), one, &found).ok());
  ASSERT_EQ(found.datasets_size(), 1);
  EXPECT_EQ(found.datasets(0).name(), "b-set");
  one.set_name("c-set");
  const grpc::Status missing = experiment_stub_->ListDatasets(Authorized().get(), one, &found);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(missing.error_message(), HasSubstr("stored: a-set, b-set"));
}

TEST_F(LearnerServicesTest, WatchEndsUnavailableWhenTheManagerShutsDown) {
  v1::SubmitRequest submit;
  submit.mutable_spec()->set_name("a");
  v1::SubmitResponse submitted;
  ASSERT_TRUE(experiment_stub_->Submit(Authorized().get(), submit, &submitted).ok());
  v1::WatchRequest watch;
  watch.set_id(submitted.id());
  // a deadline far beyond the test's waits: only the shutdown may end the stream.
  auto watch_context = Authorized(absl::Seconds(60));
  auto reader = experiment_stub_->Watch(watch_context.get(), watch);
  v1::WatchResponse update;
  ASSERT_TRUE(reader->Read(&update));  // the current snapshot, at once
  EXPECT_EQ(update.experiment().id(), submitted.id());

  // a shutdown is no stop (the experiment resumes on the next start); the stream ends.
  manager_->Shutdown();
  while (reader->Read(&update)) {
    EXPECT_NE(update.experiment().state(), v1::EXPERIMENT_STATE_STOPPED);
  }
  const grpc::Status s = reader->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("shutting down"));
}

TEST_F(LearnerServicesTest, ActorProtocol) {
  v1::JoinRequest join;
  join.set_actor_name("Bad Name");
  join.set_num_envs(2);
  v1::JoinResponse joined;
  EXPECT_EQ(actor_stub_->Join(Authorized().get(), join, &joined).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  join.set_actor_name("actor-1");
  ASSERT_TRUE(actor_stub_->Join(Authorized().get(), join, &joined).ok());
  EXPECT_FALSE(joined.actor_id().empty());
  EXPECT_GT(joined.heartbeat_interval().seconds(), 0);

  v1::HeartbeatRequest hb;
  hb.set_actor_id(joined.actor_id());
  hb.set_generation(joined.assignment().generation());
  v1::HeartbeatResponse beat;
  ASSERT_TRUE(actor_stub_->Heartbeat(Authorized().get(), hb, &beat).ok());
  hb.set_actor_id("actor-unknown");
  EXPECT_EQ(actor_stub_->Heartbeat(Authorized().get(), hb, &beat).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // GetPolicy: NOT_FOUND for unknown experiments; long-poll until published; not_modified
  v1::GetPolicyRequest get;
  get.set_experiment_id("exp-000001");
  v1::GetPolicyResponse policy;
  EXPECT_EQ(actor_stub_->GetPolicy(Authorized().get(), get, &policy).error_code(),
            grpc::StatusCode::NOT_FOUND);
  policies_.Expect("exp-000001");
  EXPECT_EQ(
      actor_stub_->GetPolicy(Authorized(absl::Milliseconds(200)).get(), get, &policy).error_code(),
      grpc::StatusCode::DEADLINE_EXCEEDED);
  auto published = std::make_shared<v1::Policy>();
  published->set_experiment_id("exp-000001");
  published->set_version(1);
  published->add_weights()->set_name("w");
  policies_.Publish(published);
  ASSERT_TRUE(actor_stub_->GetPolicy(Authorized().get(), get, &policy).ok());
  EXPECT_EQ(policy.policy().version(), 1);
  EXPECT_EQ(policy.policy().weights_size(), 1);
  get.set_have_version(1);
  ASSERT_TRUE(actor_stub_->GetPolicy(Authorized().get(), get, &policy).ok());
  EXPECT_TRUE(policy.not_modified());
  EXPECT_EQ(policy.policy().weights_size(), 0);

  v1::LeaveRequest leave;
  leave.set_actor_id(joined.actor_id());
  v1::LeaveResponse left;
  EXPECT_TRUE(actor_stub_->Leave(Authorized().get(), leave, &left).ok());
  EXPECT_EQ(actor_stub_->Leave(Authorized().get(), leave, &left).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

}  // namespace
}  // namespace prl::learner
