#include "replay/replay_service.h"

#include "common/testing/in_process_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl::replay {
namespace {

using ::testing::HasSubstr;

class ReplayServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = prl::testing::InProcessServer::Start("replay", {&service_});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = v1::ReplayService::NewStub(server_->channel());
  }

  ReplayServiceImpl service_{ReplayServiceOptions{"token-1"}};
  std::unique_ptr<prl::testing::InProcessServer> server_;
  std::unique_ptr<v1::ReplayService::Stub> stub_;
};

TEST_F(ReplayServiceTest, ServesHealthAndBuildInfo) {
  EXPECT_TRUE(CheckHealth(server_->channel(), {}).ok());
  auto metrics = server_->Metrics();
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_THAT(*metrics, HasSubstr("prl_build_info{service=\"replay\""));
}

TEST_F(ReplayServiceTest, MutatingRpcsNeedTheToken) {
  v1::CreateTableRequest request;
  v1::CreateTableResponse response;
  grpc::Status s = stub_->CreateTable(server_->Context().get(), request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);

  v1::InsertResponse insert_response;
  auto context = server_->Context("wrong");
  auto writer = stub_->Insert(context.get(), &insert_response);
  writer->WritesDone();
  EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);

  s = stub_->CreateTable(server_->Context("token-1").get(), request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_THAT(s.error_message(), HasSubstr("ReplayService.CreateTable"));
}

TEST_F(ReplayServiceTest, ReadOnlyRpcsNeedNoToken) {
  v1::InfoRequest request;
  v1::InfoResponse response;
  grpc::Status s = stub_->Info(server_->Context().get(), request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_THAT(s.error_message(), HasSubstr("prl_replay"));
}

}  // namespace
}  // namespace prl::replay
