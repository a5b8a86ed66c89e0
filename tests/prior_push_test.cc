// The Kubernetes path for models, with real processes: a learner-side ModelStore and
// ModelPusher push each stored artifact to a real prl_prior_server that shares no directory
// with them; the server serves it at once, keeps it in its own model directory, and after a
// SIGKILL and restart serves it again without being pushed anything.
#include <signal.h>
#include <sys/stat.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "ATen/ATen.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/client.h"
#include "common/testing/subprocess.h"
#include "common/torch_tensor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "learner/model_pusher.h"
#include "learner/model_store.h"
#include "models/skill_model.h"
#include "prior_server/prior_client.h"

namespace prl {
namespace {

using ::prl::testing::Runfile;
using ::prl::testing::Subprocess;

constexpr char kToken[] = "push-token";

struct Server {
  std::unique_ptr<Subprocess> process;
  std::shared_ptr<grpc::Channel> channel;
  std::string address;
};

Server StartServer(const std::string& model_dir, int port) {
  Server server;
  auto process = Subprocess::Start(
      {Runfile("prior_server/prl_prior_server"), absl::StrCat("--port=", port), "--metrics_port=0",
       absl::StrCat("--prior_model_dir=", model_dir), "--prior_threads=1"},
      {{"PRL_AUTH_TOKEN", kToken}});
  EXPECT_TRUE(process.ok()) << process.status();
  if (!process.ok()) return server;
  server.process = *std::move(process);
  auto ready = server.process->WaitForLine("PRL_READY", absl::Seconds(60));
  EXPECT_TRUE(ready.ok()) << ready.status();
  if (!ready.ok()) return server;
  for (absl::string_view field : absl::StrSplit(*ready, ' ')) {
    if (absl::ConsumePrefix(&field, "grpc=")) server.address = std::string(field);
  }
  ChannelOptions options;
  options.address = server.address;
  server.channel = CreateChannel(options).value();
  return server;
}

TEST(PriorPushTest, PushedModelsAreServedAndSurviveAServerRestart) {
  const std::string root = ::testing::TempDir() + "/push";
  mkdir(root.c_str(), 0755);
  const std::string server_dir = root + "/server-models";
  mkdir(server_dir.c_str(), 0755);
  Server server = StartServer(server_dir, 0);
  ASSERT_NE(server.process, nullptr);
  ASSERT_FALSE(server.address.empty());
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(server.address.substr(server.address.rfind(':') + 1), &port));

  // The learner's side: its own store, and a pusher with the cluster's token.
  auto store = learner::ModelStore::Open(root + "/learner-models");
  ASSERT_TRUE(store.ok()) << store.status();
  prior_server::RemotePriorOptions push_options;
  push_options.call.auth_token = kToken;
  learner::ModelPusher pusher(server.channel, server.address, push_options);
  (*store)->SetWriteListener([&](const std::string& name, int64_t version,
                                 const std::string& path) { pusher.Push(name, version, path); });

  models::SkillModelOptions options;
  options.obs_dim = 4;
  options.act_dim = 2;
  options.horizon = 5;
  options.latent_dim = 3;
  options.network.add_hidden_sizes(16);
  options.seed = 11;
  std::unique_ptr<models::SkillModel> skill = models::SkillModel::Create(options).value();
  v1::ModelInfo info;
  info.set_name("maze-skills");
  info.set_version((*store)->Reserve("maze-skills").value());
  ASSERT_TRUE((*store)->Write(skill->ToArtifact(info).value()).ok());
  ASSERT_TRUE(pusher.AwaitFinished(1, absl::Seconds(60))) << "the push never finished";
  ASSERT_EQ(pusher.succeeded(), 1);

  at::manual_seed(0);
  const at::Tensor z = at::randn({3, 3});
  const at::Tensor state = at::randn({3, 4});
  std::vector<HostTensor> inputs = {FromTorch(z).value(), FromTorch(state).value()};
  const at::Tensor want = skill->Decode(state, z).value();
  auto expect_served = [&](const std::shared_ptr<grpc::Channel>& channel) {
    v1::PriorRef ref;
    ref.set_name("maze-skills");
    auto remote = prior_server::RemotePrior::Connect(channel, ref);
    ASSERT_TRUE(remote.ok()) << remote.status();
    EXPECT_EQ((*remote)->info().version(), 1);
    auto out = (*remote)->Run(models::PriorMethod::kDecode, inputs);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_TRUE(at::allclose(ToTorch((*out)[0].view()).view({3, 2}), want, 1e-6, 1e-6));
  };
  expect_served(server.channel);

  // The server kept the pushed artifact: SIGKILL it, restart it on the same port and directory,
  // and the model is served again (loaded on demand) without another push.
  struct stat st;
  ASSERT_EQ(stat((server_dir + "/maze-skills/v1.prl").c_str(), &st), 0);
  server.process->Signal(SIGKILL);
  ASSERT_TRUE(server.process->Wait(absl::Seconds(30)).ok());
  Server restarted = StartServer(server_dir, port);
  ASSERT_NE(restarted.process, nullptr);
  expect_served(restarted.channel);

  // A learner killed after storing v2 and v3 and before pushing them (its pusher's queue died
  // with it): the next learner's pusher catches up at its start, pushing what the server lacks
  // and nothing it has. Another model the server never had goes as its newest version only.
  (*store)->SetWriteListener(nullptr);
  for (int v = 2; v <= 3; ++v) {
    info.set_version((*store)->Reserve("maze-skills").value());
    ASSERT_TRUE((*store)->Write(skill->ToArtifact(info).value()).ok());
  }
  info.set_name("other-skills");
  for (int v = 1; v <= 2; ++v) {
    info.set_version((*store)->Reserve("other-skills").value());
    ASSERT_TRUE((*store)->Write(skill->ToArtifact(info).value()).ok());
  }
  learner::ModelPusher next(restarted.channel, restarted.address, push_options);
  next.CatchUp((*store)->List(), [&](const std::string& name, int64_t version) {
    return (*store)->PathOf(name, version);
  });
  ASSERT_TRUE(next.AwaitFinished(4, absl::Seconds(60))) << "the catch-up never finished";
  EXPECT_EQ(next.succeeded(), 4);  // the listing and three pushes
  for (const char* pushed :
       {"/maze-skills/v2.prl", "/maze-skills/v3.prl", "/other-skills/v2.prl"}) {
    EXPECT_EQ(stat((server_dir + pushed).c_str(), &st), 0) << pushed << " was not pushed";
  }
  EXPECT_NE(stat((server_dir + "/other-skills/v1.prl").c_str(), &st), 0);
  // once up to date, a catch-up pushes nothing
  learner::ModelPusher again(restarted.channel, restarted.address, push_options);
  again.CatchUp((*store)->List(), [&](const std::string& name, int64_t version) {
    return (*store)->PathOf(name, version);
  });
  ASSERT_TRUE(again.AwaitFinished(1, absl::Seconds(60)));
  EXPECT_FALSE(again.AwaitFinished(2, absl::Seconds(2))) << "pushed a model the server has";
  EXPECT_EQ(again.succeeded(), 1);
}

// A learner shutting down while its pusher retries against a prior server that is down: the
// pusher's destructor cancels the push instead of waiting out minutes of retries (without the
// cancel this test runs into its timeout).
TEST(PriorPushTest, DestroyingThePusherEndsAPushInProgress) {
  ChannelOptions channel_options;
  channel_options.address = "127.0.0.1:1";  // nothing listens there
  auto channel = CreateChannel(channel_options).value();
  prior_server::RemotePriorOptions push_options;
  push_options.call.timeout = absl::Seconds(60);
  push_options.retry.max_attempts = 1000;
  push_options.retry.initial_backoff = absl::Seconds(1);
  push_options.retry.max_backoff = absl::Seconds(30);
  push_options.retry.total_timeout = absl::Minutes(30);
  const std::string path = ::testing::TempDir() + "/pending.prl";
  std::ofstream(path) << "bytes";
  auto pusher =
      std::make_unique<learner::ModelPusher>(channel, channel_options.address, push_options);
  pusher->Push("skills", 1, path);
  absl::SleepFor(absl::Milliseconds(300));  // the push is retrying now
  EXPECT_EQ(pusher->finished(), 0);
  pusher.reset();
}

}  // namespace
}  // namespace prl
