#include "prior_server/prior_service.h"

#include "common/testing/in_process_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl::prior_server {
namespace {

using ::testing::HasSubstr;

class PriorServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = prl::testing::InProcessServer::Start("prior_server", {&service_});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = v1::PriorService::NewStub(server_->channel());
  }

  PriorServiceImpl service_{PriorServiceOptions{"token-2"}};
  std::unique_ptr<prl::testing::InProcessServer> server_;
  std::unique_ptr<v1::PriorService::Stub> stub_;
};

TEST_F(PriorServiceTest, ServesHealthAndBuildInfo) {
  EXPECT_TRUE(CheckHealth(server_->channel(), {}).ok());
  auto metrics = server_->Metrics();
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_THAT(*metrics, HasSubstr("prl_build_info{service=\"prior_server\""));
}

TEST_F(PriorServiceTest, LoadAndUnloadNeedTheToken) {
  v1::LoadModelRequest load;
  v1::LoadModelResponse load_response;
  EXPECT_EQ(stub_->LoadModel(server_->Context().get(), load, &load_response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  v1::UnloadModelRequest unload;
  v1::UnloadModelResponse unload_response;
  EXPECT_EQ(
      stub_->UnloadModel(server_->Context("nope").get(), unload, &unload_response).error_code(),
      grpc::StatusCode::UNAUTHENTICATED);
  grpc::Status s = stub_->LoadModel(server_->Context("token-2").get(), load, &load_response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_THAT(s.error_message(), HasSubstr("PriorService.LoadModel"));
}

TEST_F(PriorServiceTest, InferenceRpcsAreNotYetServed) {
  v1::DecodeRequest request;
  v1::DecodeResponse response;
  grpc::Status s = stub_->Decode(server_->Context().get(), request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_THAT(s.error_message(), HasSubstr("prl_prior_server"));
}

}  // namespace
}  // namespace prl::prior_server
