// Runs prlctl as a user would against a real prl_learner process: health, validate, and
// submit with and without the bearer token.
#include <signal.h>
#include <sys/wait.h>

#include <string>

#include "absl/strings/str_split.h"
#include "common/testing/subprocess.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl {
namespace {

using ::prl::testing::Runfile;
using ::prl::testing::Subprocess;
using ::testing::HasSubstr;

struct Result {
  int exit_code = -1;
  std::string output;
};

Result RunPrlctl(const std::vector<std::string>& args,
                 const std::map<std::string, std::string>& env = {}) {
  std::vector<std::string> argv = {Runfile("cli/prlctl")};
  argv.insert(argv.end(), args.begin(), args.end());
  auto process = Subprocess::Start(argv, env, /*merge_stderr=*/true);
  EXPECT_TRUE(process.ok());
  Result result;
  result.output = (*process)->ReadAll(absl::Seconds(30));
  auto status = (*process)->Wait(absl::Seconds(30));
  EXPECT_TRUE(status.ok());
  if (status.ok() && WIFEXITED(*status)) result.exit_code = WEXITSTATUS(*status);
  return result;
}

class PrlctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto learner = Subprocess::Start(
        {Runfile("learner/prl_learner"), "--port=0", "--metrics_port=-1", "--drain_timeout=1s"},
        {{"PRL_AUTH_TOKEN", "cli-token"}});
    ASSERT_TRUE(learner.ok());
    learner_ = *std::move(learner);
    auto line = learner_->WaitForLine("PRL_READY", absl::Seconds(60));
    ASSERT_TRUE(line.ok()) << line.status();
    for (absl::string_view field : absl::StrSplit(*line, ' ')) {
      if (absl::ConsumePrefix(&field, "grpc=")) address_ = std::string(field);
    }
  }

  std::unique_ptr<Subprocess> learner_;
  std::string address_;
};

TEST_F(PrlctlTest, HealthReportsServingAndUnreachable) {
  Result ok = RunPrlctl({"health", address_});
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_THAT(ok.output, HasSubstr("SERVING"));

  Result down = RunPrlctl({"--timeout=500ms", "health", address_, "127.0.0.1:1"});
  EXPECT_EQ(down.exit_code, 1) << down.output;
}

TEST_F(PrlctlTest, ValidateParsesExamplesAndNamesBadLines) {
  Result ok = RunPrlctl({"validate", Runfile("examples/cheetah_sac.textproto")});
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  Result missing = RunPrlctl({"validate", "/nonexistent.textproto"});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_THAT(missing.output, HasSubstr("/nonexistent.textproto"));
}

TEST_F(PrlctlTest, SubmitCarriesTheTokenFromTheEnvironment) {
  const std::string spec = Runfile("examples/cheetah_sac.textproto");
  Result without = RunPrlctl({"--learner=" + address_, "submit", spec});
  EXPECT_NE(without.exit_code, 0);
  EXPECT_THAT(without.output, HasSubstr("UNAUTHENTICATED"));

  Result with =
      RunPrlctl({"--learner=" + address_, "submit", spec}, {{"PRL_AUTH_TOKEN", "cli-token"}});
  EXPECT_NE(with.exit_code, 0);
  EXPECT_THAT(with.output, HasSubstr("UNIMPLEMENTED"));
}

TEST_F(PrlctlTest, UnknownCommandShowsUsage) {
  Result r = RunPrlctl({"dance"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("unknown command 'dance'"));
  EXPECT_THAT(r.output, HasSubstr("prlctl submit SPEC_FILE"));
}

}  // namespace
}  // namespace prl
