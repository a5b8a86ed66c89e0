#include "common/server.h"

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/auth.h"
#include "common/client.h"
#include "common/health_service.h"
#include "common/testing/echo.grpc.pb.h"
#include "common/testing/http_get.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl {
namespace {

using ::testing::HasSubstr;

// echoes; Mutate is guarded by the token like every mutating PRL handler.
class EchoService final : public prl::testing::EchoService::Service {
 public:
  explicit EchoService(std::string token) : auth_(std::move(token)) {}
  grpc::Status Echo(grpc::ServerContext*, const prl::testing::EchoRequest* request,
                    prl::testing::EchoResponse* response) override {
    response->set_text(request->text());
    return grpc::Status::OK;
  }
  grpc::Status Mutate(grpc::ServerContext* context, const prl::testing::EchoRequest* request,
                      prl::testing::EchoResponse* response) override {
    if (grpc::Status s = auth_.Check(*context); !s.ok()) return s;
    response->set_text("mutated " + request->text());
    return grpc::Status::OK;
  }

 private:
  TokenAuthenticator auth_;
};

ServerOptions TestOptions() {
  ServerOptions o;
  o.service_name = "test";
  o.drain_timeout = absl::Milliseconds(500);
  return o;
}

std::shared_ptr<grpc::Channel> Connect(const ServerHost& host) {
  auto channel = CreateChannel({host.address()});
  EXPECT_TRUE(channel.ok());
  return *channel;
}

TEST(ServerHostTest, ServesHealthMetricsAndBuildInfo) {
  EchoService echo("");
  auto host = ServerHost::Start(TestOptions(), {&echo}, std::make_shared<prometheus::Registry>());
  ASSERT_TRUE(host.ok()) << host.status();
  EXPECT_GT((*host)->port(), 0);
  EXPECT_GT((*host)->metrics_port(), 0);
  auto channel = Connect(**host);
  EXPECT_TRUE(CheckHealth(channel, {}).ok());

  auto stub = prl::testing::EchoService::NewStub(channel);
  grpc::ClientContext context;
  PrepareContext({}, &context);
  prl::testing::EchoRequest request;
  request.set_text("hi");
  prl::testing::EchoResponse response;
  ASSERT_TRUE(stub->Echo(&context, request, &response).ok());
  EXPECT_EQ(response.text(), "hi");

  auto metrics = prl::testing::HttpGet((*host)->metrics_port(), "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_THAT(*metrics, HasSubstr("prl_build_info{"));
  EXPECT_THAT(*metrics, HasSubstr("service=\"test\""));
  EXPECT_THAT(
      *metrics,
      HasSubstr(
          "prl_grpc_server_handled_total{code=\"OK\",method=\"/prl.testing.EchoService/Echo\"} 1"));
  EXPECT_THAT(*metrics, HasSubstr("prl_grpc_server_handling_seconds_count"));
  EXPECT_THAT((*host)->ReadyLine(), HasSubstr(absl::StrCat("grpc=", (*host)->address())));
}

TEST(ServerHostTest, MutatingCallNeedsTheToken) {
  EchoService echo("s3cret");
  auto host = ServerHost::Start(TestOptions(), {&echo}, std::make_shared<prometheus::Registry>());
  ASSERT_TRUE(host.ok());
  auto stub = prl::testing::EchoService::NewStub(Connect(**host));
  prl::testing::EchoRequest request;
  prl::testing::EchoResponse response;

  auto call_mutate = [&](const std::string& token) {
    grpc::ClientContext context;
    CallOptions options;
    options.auth_token = token;
    PrepareContext(options, &context);
    return stub->Mutate(&context, request, &response);
  };
  grpc::Status none = call_mutate("");
  EXPECT_EQ(none.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(none.error_message(), HasSubstr("Bearer"));
  grpc::Status wrong = call_mutate("guess");
  EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(wrong.error_message(), ::testing::Not(HasSubstr("s3cret")));
  EXPECT_TRUE(call_mutate("s3cret").ok());

  // read-only calls need no token.
  grpc::ClientContext context;
  PrepareContext({}, &context);
  EXPECT_TRUE(stub->Echo(&context, request, &response).ok());
}

TEST(ServerHostTest, ShutdownStopsServingAndIsIdempotent) {
  EchoService echo("");
  auto host = ServerHost::Start(TestOptions(), {&echo}, std::make_shared<prometheus::Registry>());
  ASSERT_TRUE(host.ok());
  auto channel = Connect(**host);
  ASSERT_TRUE(CheckHealth(channel, {}).ok());
  (*host)->Shutdown();
  (*host)->Shutdown();
  CallOptions quick;
  quick.timeout = absl::Seconds(1);
  EXPECT_FALSE(CheckHealth(channel, quick).ok());
}

TEST(ServerHostTest, HealthNamesEachServedServiceUntilShutdown) {
  using grpc::health::v1::HealthCheckRequest;
  using grpc::health::v1::HealthCheckResponse;
  EchoService echo("");
  auto host = ServerHost::Start(TestOptions(), {&echo}, std::make_shared<prometheus::Registry>());
  ASSERT_TRUE(host.ok());
  auto channel = Connect(**host);
  // health checkers ask for a service by its full name.
  EXPECT_TRUE(CheckHealth(channel, {}, "prl.testing.EchoService").ok());
  EXPECT_TRUE(CheckHealth(channel, {}, "grpc.health.v1.Health").ok());
  EXPECT_EQ(CheckHealth(channel, {}, "prl.testing.Echo").code(), absl::StatusCode::kNotFound);

  (*host)->Shutdown();
  HealthCheckRequest request;
  request.set_service("prl.testing.EchoService");
  HealthCheckResponse response;
  ASSERT_TRUE((*host)->health().Check(nullptr, &request, &response).ok());
  EXPECT_EQ(response.status(), HealthCheckResponse::NOT_SERVING);
}

TEST(ServerHostTest, RejectsBadOptionsNamingTheFlag) {
  ServerOptions o = TestOptions();
  o.port = 70000;
  auto host = ServerHost::Start(o, {}, std::make_shared<prometheus::Registry>());
  EXPECT_EQ(host.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(host.status().message(), HasSubstr("--port"));

  o = TestOptions();
  o.tls_cert_file = "/nonexistent/cert.pem";
  host = ServerHost::Start(o, {}, std::make_shared<prometheus::Registry>());
  EXPECT_THAT(host.status().message(), HasSubstr("--tls_key"));

  o.tls_key_file = "/nonexistent/key.pem";
  host = ServerHost::Start(o, {}, std::make_shared<prometheus::Registry>());
  EXPECT_EQ(host.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(host.status().message(), HasSubstr("/nonexistent/cert.pem"));
}

TEST(ServerHostTest, PortInUseIsUnavailable) {
  EchoService echo("");
  auto first = ServerHost::Start(TestOptions(), {&echo}, std::make_shared<prometheus::Registry>());
  ASSERT_TRUE(first.ok());
  ServerOptions o = TestOptions();
  o.port = (*first)->port();
  o.metrics_port = -1;
  EchoService echo2("");
  auto second = ServerHost::Start(o, {&echo2}, std::make_shared<prometheus::Registry>());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr("--port"));
}

TEST(ServerHostTest, ServesOverTls) {
  const std::string dir = std::getenv("TEST_TMPDIR");
  const std::string cert = dir + "/cert.pem";
  const std::string key = dir + "/key.pem";
  const std::string cmd = absl::StrCat(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=prl.test -addext "
      "subjectAltName=DNS:prl.test -keyout ",
      key, " -out ", cert, " 2>/dev/null");
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "openssl is needed (scripts/setup.sh installs it)";

  EchoService echo("");
  ServerOptions o = TestOptions();
  o.tls_cert_file = cert;
  o.tls_key_file = key;
  auto host = ServerHost::Start(o, {&echo}, std::make_shared<prometheus::Registry>());
  ASSERT_TRUE(host.ok()) << host.status();
  EXPECT_TRUE((*host)->tls());

  ChannelOptions tls;
  tls.address = (*host)->address();
  tls.tls_ca_file = cert;
  tls.tls_server_name = "prl.test";
  auto channel = CreateChannel(tls);
  ASSERT_TRUE(channel.ok());
  EXPECT_TRUE(CheckHealth(*channel, {}).ok());

  // a plaintext client cannot talk to a TLS server.
  CallOptions quick;
  quick.timeout = absl::Seconds(2);
  EXPECT_FALSE(CheckHealth(Connect(**host), quick).ok());
}

}  // namespace
}  // namespace prl
