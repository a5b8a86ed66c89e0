// The first half of the transfer workflow with real processes: prl_collect writes a maze
// dataset with the scripted planner (real MuJoCo), a real prl_learner runs a TRAIN_PRIOR
// experiment on it submitted over gRPC, and the skill prior lands as version 1 in the learner's
// model store, readable as an artifact with the dataset's hash.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/client.h"
#include "common/sha256.h"
#include "common/testing/subprocess.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "models/artifact.h"
#include "proto/experiment.grpc.pb.h"

namespace prl {
namespace {

using ::prl::testing::Runfile;
using ::prl::testing::Subprocess;

TEST(PriorE2eTest, CollectedMazeDataTrainsAStoredSkillPrior) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/prior_e2e_", getpid());
  const std::string dataset = dir + "-maze.hdf5";
  // 1. a dataset from the maze planner with action noise
  auto collect =
      Subprocess::Start({Runfile("actor/collect/prl_collect"), "--domain=point_maze",
                         "--collector=planner", "--action_noise=0.1", "--randomize_start_goal",
                         "--episodes=24", "--seed=5", "--num_envs=2", "--output=" + dataset},
                        {}, /*merge_stderr=*/true);
  ASSERT_TRUE(collect.ok()) << collect.status();
  const std::string collect_log = (*collect)->ReadAll(absl::Minutes(3));
  absl::StatusOr<int> collected = (*collect)->Wait(absl::Seconds(10));
  ASSERT_TRUE(collected.ok() && WIFEXITED(*collected) && WEXITSTATUS(*collected) == 0)
      << collect_log;

  // 2. a learner (no replay: prior training needs none) and the experiment
  auto learner = Subprocess::Start({Runfile("learner/prl_learner"), "--port=0", "--metrics_port=-1",
                                    "--learner_state_dir=" + dir, "--learner_torch_threads=1"});
  ASSERT_TRUE(learner.ok()) << learner.status();
  auto ready = (*learner)->WaitForLine("PRL_READY", absl::Seconds(60));
  ASSERT_TRUE(ready.ok()) << ready.status();
  std::string address;
  for (absl::string_view field : absl::StrSplit(*ready, ' ')) {
    if (absl::ConsumePrefix(&field, "grpc=")) address = std::string(field);
  }
  auto channel = CreateChannel({address});
  ASSERT_TRUE(channel.ok());
  auto stub = v1::ExperimentService::NewStub(*channel);
  v1::SubmitRequest submit;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(
      absl::StrCat("name: 'maze-skills' kind: KIND_TRAIN_PRIOR prior_training { "
                   "kind: PRIOR_KIND_SKILL_VAE dataset: '",
                   dataset,
                   "' output_model: 'maze-skills' horizon: 10 latent_dim: 4 epochs: 2 "
                   "batch_size: 64 network { hidden_sizes: [64, 64] } }"),
      submit.mutable_spec()));
  v1::SubmitResponse submitted;
  {
    grpc::ClientContext context;
    PrepareContext({absl::Seconds(10)}, &context);
    grpc::Status s = stub->Submit(&context, submit, &submitted);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  // 3. follow it to the end
  v1::WatchRequest watch;
  watch.set_id(submitted.id());
  grpc::ClientContext context;
  PrepareContext({absl::Minutes(3)}, &context);
  auto reader = stub->Watch(&context, watch);
  v1::WatchResponse update;
  v1::Experiment last;
  while (reader->Read(&update)) {
    last = update.experiment();
    if (last.state() != v1::EXPERIMENT_STATE_QUEUED &&
        last.state() != v1::EXPERIMENT_STATE_RUNNING) {
      context.TryCancel();
      break;
    }
  }
  reader->Finish();
  ASSERT_EQ(last.state(), v1::EXPERIMENT_STATE_SUCCEEDED) << last.DebugString();
  EXPECT_EQ(last.outputs().prior_model().name(), "maze-skills");
  EXPECT_EQ(last.outputs().prior_model().version(), 1);
  EXPECT_GT(last.progress().scalars().at("samples_per_second"), 0);
  EXPECT_TRUE(last.progress().scalars().count("validation_loss"));

  absl::StatusOr<models::ModelArtifact> artifact =
      models::ReadModelArtifact(dir + "/models/maze-skills/v1.prl");
  ASSERT_TRUE(artifact.ok()) << artifact.status();
  EXPECT_EQ(artifact->info.kind(), v1::PRIOR_KIND_SKILL_VAE);
  EXPECT_EQ(artifact->info.obs_dim(), 4);
  EXPECT_EQ(artifact->info.action_dim(), 2);
  EXPECT_EQ(artifact->info.horizon(), 10);
  EXPECT_EQ(artifact->info.dataset_hash(), *Sha256File(dataset));
  (*learner)->Signal(SIGTERM);
  EXPECT_TRUE((*learner)->Wait(absl::Seconds(10)).ok());
}

}  // namespace
}  // namespace prl
