// Starts each PRL binary as a real process on loopback and checks what every server promises:
// health SERVING, /metrics with prl_build_info, mutating RPCs refused without the configured
// token, unknown flags rejected with a clear message, and exit 0 within 5 s of SIGTERM.
#include <signal.h>
#include <sys/wait.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/client.h"
#include "common/testing/http_get.h"
#include "common/testing/subprocess.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/experiment.grpc.pb.h"
#include "proto/prior.grpc.pb.h"
#include "proto/replay.grpc.pb.h"

namespace prl {
namespace {

using ::prl::testing::Runfile;
using ::prl::testing::Subprocess;
using ::testing::HasSubstr;

constexpr char kToken[] = "integration-token";

// A mutating RPC of a server, called with `context`; returns its status.
using MutatingCall =
    std::function<grpc::Status(const std::shared_ptr<grpc::Channel>&, grpc::ClientContext*)>;

struct Binary {
  std::string name;       // test name
  std::string path;       // runfile path
  std::string service;    // the service label in prl_build_info
  MutatingCall mutating;  // null for binaries that serve only health
};

void PrintTo(const Binary& b, std::ostream* os) { *os << b.name; }

struct Ready {
  std::string grpc_address;
  int metrics_port = 0;
};

// Parses "PRL_READY service=x grpc=host:port metrics=host:port".
Ready ParseReady(const std::string& line) {
  Ready ready;
  for (absl::string_view field : absl::StrSplit(line, ' ')) {
    if (absl::ConsumePrefix(&field, "grpc=")) ready.grpc_address = std::string(field);
    if (absl::ConsumePrefix(&field, "metrics=")) {
      EXPECT_TRUE(absl::SimpleAtoi(field.substr(field.rfind(':') + 1), &ready.metrics_port));
    }
  }
  return ready;
}

class ServerBinaryTest : public ::testing::TestWithParam<Binary> {};

TEST_P(ServerBinaryTest, ServesHealthMetricsAuthAndStopsOnSigterm) {
  const Binary& binary = GetParam();
  auto process = Subprocess::Start(
      {Runfile(binary.path), "--port=0", "--metrics_port=0", "--drain_timeout=2s"},
      {{"PRL_AUTH_TOKEN", kToken}});
  ASSERT_TRUE(process.ok()) << process.status();
  auto line = (*process)->WaitForLine("PRL_READY", absl::Seconds(60));
  ASSERT_TRUE(line.ok()) << line.status();
  const Ready ready = ParseReady(*line);
  EXPECT_THAT(*line, HasSubstr("service=" + binary.service));

  auto channel = CreateChannel({ready.grpc_address});
  ASSERT_TRUE(channel.ok());
  EXPECT_TRUE(CheckHealth(*channel, {}).ok());

  auto metrics = prl::testing::HttpGet(ready.metrics_port, "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_THAT(*metrics, HasSubstr("prl_build_info{service=\"" + binary.service + "\""));

  if (binary.mutating) {
    grpc::ClientContext no_token;
    PrepareContext({}, &no_token);
    EXPECT_EQ(binary.mutating(*channel, &no_token).error_code(), grpc::StatusCode::UNAUTHENTICATED);
    grpc::ClientContext with_token;
    CallOptions options;
    options.auth_token = kToken;
    PrepareContext(options, &with_token);
    EXPECT_NE(binary.mutating(*channel, &with_token).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }

  (*process)->Signal(SIGTERM);
  auto status = (*process)->Wait(absl::Seconds(5));
  ASSERT_TRUE(status.ok()) << binary.name << " still running 5 s after SIGTERM";
  ASSERT_TRUE(WIFEXITED(*status)) << "killed by signal " << WTERMSIG(*status);
  EXPECT_EQ(WEXITSTATUS(*status), 0);
}

TEST_P(ServerBinaryTest, RejectsUnknownFlagNamingIt) {
  auto process = Subprocess::Start({Runfile(GetParam().path), "--no_such_flag=3"}, {},
                                   /*merge_stderr=*/true);
  ASSERT_TRUE(process.ok());
  const std::string output = (*process)->ReadAll(absl::Seconds(30));
  auto status = (*process)->Wait(absl::Seconds(30));
  ASSERT_TRUE(status.ok());
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_NE(WEXITSTATUS(*status), 0);
  EXPECT_THAT(output, HasSubstr("no_such_flag"));
}

TEST_P(ServerBinaryTest, RejectsUnreadableTokenFile) {
  auto process = Subprocess::Start({Runfile(GetParam().path), "--port=0", "--metrics_port=-1",
                                    "--auth_token_file=/nonexistent/token"},
                                   {}, /*merge_stderr=*/true);
  ASSERT_TRUE(process.ok());
  const std::string output = (*process)->ReadAll(absl::Seconds(30));
  auto status = (*process)->Wait(absl::Seconds(30));
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(WEXITSTATUS(*status), 1);
  EXPECT_THAT(output, HasSubstr("/nonexistent/token"));
}

INSTANTIATE_TEST_SUITE_P(
    AllServers, ServerBinaryTest,
    ::testing::Values(
        Binary{"replay", "replay/prl_replay", "replay",
               [](const std::shared_ptr<grpc::Channel>& channel, grpc::ClientContext* context) {
                 v1::CreateTableResponse response;
                 return v1::ReplayService::NewStub(channel)->CreateTable(
                     context, v1::CreateTableRequest(), &response);
               }},
        Binary{"prior_server", "prior_server/prl_prior_server", "prior_server",
               [](const std::shared_ptr<grpc::Channel>& channel, grpc::ClientContext* context) {
                 v1::LoadModelResponse response;
                 return v1::PriorService::NewStub(channel)->LoadModel(
                     context, v1::LoadModelRequest(), &response);
               }},
        Binary{"learner", "learner/prl_learner", "learner",
               [](const std::shared_ptr<grpc::Channel>& channel, grpc::ClientContext* context) {
                 v1::SubmitResponse response;
                 return v1::ExperimentService::NewStub(channel)->Submit(
                     context, v1::SubmitRequest(), &response);
               }},
        Binary{"actor", "actor/prl_actor", "actor", nullptr}),
    [](const ::testing::TestParamInfo<Binary>& info) { return info.param.name; });

}  // namespace
}  // namespace prl
