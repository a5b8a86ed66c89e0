// Runs prlctl as a user would against a real prl_learner process: health, validate, and
// submit with and without the bearer token.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
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
        {Runfile("learner/prl_learner"), "--port=0", "--metrics_port=-1", "--drain_timeout=1s",
         // no replay shards: submitted experiments are stored, then fail when they start
         absl::StrCat("--learner_state_dir=", ::testing::TempDir(), "/prlctl_learner_", getpid(),
                      "_", ::testing::UnitTest::GetInstance()->current_test_info()->name())},
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
  EXPECT_EQ(with.exit_code, 0) << with.output;
  EXPECT_THAT(with.output, HasSubstr("exp-000001"));
}

TEST_F(PrlctlTest, ExperimentLifecycleThroughTheCli) {
  const std::string spec = Runfile("examples/cheetah_sac.textproto");
  const std::map<std::string, std::string> token = {{"PRL_AUTH_TOKEN", "cli-token"}};
  Result submitted = RunPrlctl({"--learner=" + address_, "submit", spec}, token);
  ASSERT_EQ(submitted.exit_code, 0) << submitted.output;
  // this learner has no replay shards, so the experiment fails when it starts; watch follows
  // it to the end and reports why
  Result watched =
      RunPrlctl({"--learner=" + address_, "--watch_timeout=60s", "watch", "exp-000001"});
  EXPECT_EQ(watched.exit_code, 1) << watched.output;
  EXPECT_THAT(watched.output, HasSubstr("FAILED"));
  EXPECT_THAT(watched.output, HasSubstr("no replay shards"));
  Result listed = RunPrlctl({"--learner=" + address_, "list"});
  EXPECT_EQ(listed.exit_code, 0) << listed.output;
  EXPECT_THAT(listed.output, HasSubstr("cheetah-sac"));
  Result got = RunPrlctl({"--learner=" + address_, "get", "exp-000001"});
  EXPECT_EQ(got.exit_code, 0) << got.output;
  EXPECT_THAT(got.output, HasSubstr("state: EXPERIMENT_STATE_FAILED"));
  EXPECT_THAT(got.output, HasSubstr("discount: 0.99"));  // stored with defaults filled
  Result stopped = RunPrlctl({"--learner=" + address_, "stop", "exp-000001"}, token);
  EXPECT_EQ(stopped.exit_code, 0) << stopped.output;  // idempotent on ended experiments
  Result plot = RunPrlctl({"--learner=" + address_, "plot", "exp-000001"});
  EXPECT_NE(plot.exit_code, 0);
  EXPECT_THAT(plot.output, HasSubstr("no curve points"));
  Result missing = RunPrlctl({"--learner=" + address_, "get", "exp-000099"});
  EXPECT_THAT(missing.output, HasSubstr("NOT_FOUND"));
}

TEST_F(PrlctlTest, InvalidSpecIsRefusedWithTheFieldNamed) {
  const std::string path = absl::StrCat(::testing::TempDir(), "/bad_", getpid(), ".textproto");
  std::ofstream(path) << "name: \"bad\" kind: KIND_TRAIN env { domain: DOMAIN_CHEETAH }\n"
                         "algorithm { sac {} discount: 1.5 } stop { max_env_steps: 10 }\n";
  Result r =
      RunPrlctl({"--learner=" + address_, "submit", path}, {{"PRL_AUTH_TOKEN", "cli-token"}});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(r.output, HasSubstr("algorithm.discount: 1.5"));
}

TEST_F(PrlctlTest, UnknownCommandShowsUsage) {
  Result r = RunPrlctl({"dance"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("unknown command 'dance'"));
  EXPECT_THAT(r.output, HasSubstr("prlctl submit SPEC_FILE"));
}

}  // namespace
}  // namespace prl

namespace prl {
namespace {

// The prior-server commands against a real prl_prior_server: push a TorchScript module from a
// local file, list it, refuse a bad name and a missing token, unload it.
TEST(PrlctlPriorTest, LoadListAndUnloadModels) {
  auto server = Subprocess::Start(
      {Runfile("prior_server/prl_prior_server"), "--port=0", "--metrics_port=-1",
       "--drain_timeout=1s", absl::StrCat("--prior_model_dir=", ::testing::TempDir())},
      {{"PRL_AUTH_TOKEN", "cli-token"}});
  ASSERT_TRUE(server.ok());
  auto line = (*server)->WaitForLine("PRL_READY", absl::Seconds(60));
  ASSERT_TRUE(line.ok()) << line.status();
  std::string address;
  for (absl::string_view field : absl::StrSplit(*line, ' ')) {
    if (absl::ConsumePrefix(&field, "grpc=")) address = std::string(field);
  }
  const std::string flag = "--prior_server=" + address;
  const std::string module = Runfile("tests/data/torchscript_prior_torch2/prior.pt");
  const std::map<std::string, std::string> token = {{"PRL_AUTH_TOKEN", "cli-token"}};

  Result refused = RunPrlctl({flag, "load-model", "tiny", module});
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_THAT(refused.output, HasSubstr("UNAUTHENTICATED"));

  Result loaded = RunPrlctl({flag, "load-model", "tiny", module}, token);
  EXPECT_EQ(loaded.exit_code, 0) << loaded.output;
  EXPECT_THAT(loaded.output, HasSubstr("TORCHSCRIPT"));

  Result listed = RunPrlctl({flag, "models"});
  EXPECT_EQ(listed.exit_code, 0) << listed.output;
  EXPECT_THAT(listed.output, HasSubstr("Decode,Prior,Forward,Inverse"));
  EXPECT_THAT(listed.output, HasSubstr("4/2/3/5"));

  Result bad = RunPrlctl({flag, "load-model", "Bad", module}, token);
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_THAT(bad.output, HasSubstr("name: 'Bad' is not allowed"));

  Result unloaded = RunPrlctl({flag, "unload-model", "tiny"}, token);
  EXPECT_EQ(unloaded.exit_code, 0) << unloaded.output;
  EXPECT_THAT(unloaded.output, HasSubstr("unloaded tiny v1"));
}

}  // namespace
}  // namespace prl
