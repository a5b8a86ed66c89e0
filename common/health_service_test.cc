#include "common/health_service.h"

#include <thread>

#include "absl/synchronization/notification.h"
#include "common/client.h"
#include "common/server.h"
#include "gtest/gtest.h"

namespace prl {
namespace {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

class HealthServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.service_name = "health-test";
    options.metrics_port = -1;
    options.drain_timeout = absl::Seconds(5);
    auto host = ServerHost::Start(options, {}, std::make_shared<prometheus::Registry>());
    ASSERT_TRUE(host.ok()) << host.status();
    host_ = *std::move(host);
    channel_ = *CreateChannel({host_->address()});
    stub_ = grpc::health::v1::Health::NewStub(channel_);
  }

  std::unique_ptr<ServerHost> host_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::health::v1::Health::Stub> stub_;
};

TEST_F(HealthServiceTest, ServerIsServingAndUnknownServiceIsNotFound) {
  EXPECT_TRUE(CheckHealth(channel_, {}).ok());
  absl::Status unknown = CheckHealth(channel_, {}, "prl.v1.Nothing");
  EXPECT_EQ(unknown.code(), absl::StatusCode::kNotFound);
}

TEST_F(HealthServiceTest, TheHealthServiceReportsItsOwnName) {
  // the host registers every service it serves, this one included.
  EXPECT_TRUE(CheckHealth(channel_, {}, "grpc.health.v1.Health").ok());
}

TEST_F(HealthServiceTest, NamedServiceStatusFollowsSetStatus) {
  host_->health().SetStatus("prl.v1.ReplayService", HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(CheckHealth(channel_, {}, "prl.v1.ReplayService").code(),
            absl::StatusCode::kUnavailable);
  host_->health().SetStatus("prl.v1.ReplayService", HealthCheckResponse::SERVING);
  EXPECT_TRUE(CheckHealth(channel_, {}, "prl.v1.ReplayService").ok());
}

TEST_F(HealthServiceTest, WatchSeesChangesAndEndsOnShutdown) {
  grpc::ClientContext context;
  PrepareContext({}, &context);
  HealthCheckRequest request;
  auto reader = stub_->Watch(&context, request);
  HealthCheckResponse update;
  ASSERT_TRUE(reader->Read(&update));
  EXPECT_EQ(update.status(), HealthCheckResponse::SERVING);

  // shutting down must end the stream promptly, not after the 5 s drain timeout.
  absl::Notification stopped;
  std::thread stopper([&] {
    host_->Shutdown();
    stopped.Notify();
  });
  ASSERT_TRUE(reader->Read(&update));
  EXPECT_EQ(update.status(), HealthCheckResponse::NOT_SERVING);
  EXPECT_FALSE(reader->Read(&update));
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_TRUE(stopped.WaitForNotificationWithTimeout(absl::Seconds(4)));
  stopper.join();
}

}  // namespace
}  // namespace prl
