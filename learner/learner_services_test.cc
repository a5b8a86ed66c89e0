#include "learner/learner_services.h"

#include "common/testing/in_process_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl::learner {
namespace {

using ::testing::HasSubstr;

class LearnerServicesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = prl::testing::InProcessServer::Start("learner", {&experiments_, &actors_});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    experiment_stub_ = v1::ExperimentService::NewStub(server_->channel());
    actor_stub_ = v1::ActorService::NewStub(server_->channel());
  }

  ExperimentServiceImpl experiments_{LearnerServiceOptions{"token-3"}};
  ActorServiceImpl actors_{LearnerServiceOptions{"token-3"}};
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

TEST_F(LearnerServicesTest, SubmitAndStopNeedTheToken) {
  v1::SubmitRequest submit;
  v1::SubmitResponse submit_response;
  EXPECT_EQ(
      experiment_stub_->Submit(server_->Context().get(), submit, &submit_response).error_code(),
      grpc::StatusCode::UNAUTHENTICATED);
  v1::StopRequest stop;
  v1::StopResponse stop_response;
  EXPECT_EQ(experiment_stub_->Stop(server_->Context("x").get(), stop, &stop_response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  grpc::Status s =
      experiment_stub_->Submit(server_->Context("token-3").get(), submit, &submit_response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_THAT(s.error_message(), HasSubstr("ExperimentService.Submit"));
}

TEST_F(LearnerServicesTest, ActorJoinNeedsTheTokenAndWatchIsNotYetServed) {
  v1::JoinRequest join;
  v1::JoinResponse join_response;
  EXPECT_EQ(actor_stub_->Join(server_->Context().get(), join, &join_response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  v1::WatchRequest watch;
  auto context = server_->Context();
  auto reader = experiment_stub_->Watch(context.get(), watch);
  v1::WatchResponse update;
  EXPECT_FALSE(reader->Read(&update));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNIMPLEMENTED);
}

}  // namespace
}  // namespace prl::learner
