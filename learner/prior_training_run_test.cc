// TRAIN_PRIOR runs end to end inside the learner: a real HDF5 dataset, the real skill model
// and flow, the real model store. No sockets, no sleeps.
#include "learner/prior_training_run.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/dataset_writer.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "learner/prior_models.h"
#include "learner/recording_run_context.h"
#include "learner/spec_validation.h"
#include "prometheus/registry.h"

namespace prl::learner {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// `episodes` episodes of `length` steps: 4-D states, 2-D actions that depend on the state.
std::string WriteDataset(const std::string& path, int episodes, int length) {
  DatasetWriterOptions options;
  options.obs_dim = 4;
  options.act_dim = 2;
  auto writer = DatasetWriter::Create(path, options);
  EXPECT_TRUE(writer.ok()) << writer.status();
  for (int e = 0; e < episodes; ++e) {
    for (int t = 0; t < length; ++t) {
      const float x = std::sin(0.3f * t + e), y = std::cos(0.2f * t - e);
      const std::vector<float> obs = {x, y, 0.1f * e, 0.05f * t};
      const std::vector<float> act = {std::tanh(x + y), std::tanh(x - y)};
      TransitionRow row;
      row.observation = obs;
      row.action = act;
      row.next_observation = obs;
      row.timeout = t + 1 == length;
      EXPECT_TRUE((*writer)->Append(row).ok());
    }
  }
  EXPECT_TRUE((*writer)->Close().ok());
  return path;
}

// A task whose actions move a 2-D state: s' = s + 0.2·R(angle)·a, actions uniform in
// [-0.8, 0.8]². Tasks with different angles need different actions for the same move.
std::string WriteTaskDataset(const std::string& path, double angle, int episodes, int length,
                             int obs_dim = 2) {
  DatasetWriterOptions options;
  options.obs_dim = obs_dim;
  options.act_dim = 2;
  auto writer = DatasetWriter::Create(path, options);
  EXPECT_TRUE(writer.ok()) << writer.status();
  std::mt19937 rng(static_cast<unsigned>(angle * 1000) + episodes);
  std::uniform_real_distribution<float> uniform(-0.8f, 0.8f);
  const float c = static_cast<float>(std::cos(angle)), s = static_cast<float>(std::sin(angle));
  for (int e = 0; e < episodes; ++e) {
    std::vector<float> obs(obs_dim, 0.0f);
    for (int t = 0; t < length; ++t) {
      const std::vector<float> act = {uniform(rng), uniform(rng)};
      std::vector<float> next = obs;
      next[0] += 0.2f * (c * act[0] - s * act[1]);
      next[1] += 0.2f * (s * act[0] + c * act[1]);
      TransitionRow row;
      row.observation = obs;
      row.action = act;
      row.next_observation = next;
      row.timeout = t + 1 == length;
      EXPECT_TRUE((*writer)->Append(row).ok());
      obs = next;
    }
  }
  EXPECT_TRUE((*writer)->Close().ok());
  return path;
}

class PriorTrainingRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/prior_", getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    auto store = ModelStore::Open(dir_ + "-models");
    ASSERT_TRUE(store.ok());
    store_ = std::move(*store);
    dataset_ = WriteDataset(dir_ + "-data.hdf5", 12, 30);
  }

  // Runs a new experiment (a fresh id, unless `id` names one run before).
  ExperimentRun::Result Run(const std::string& prior_training, bool stop_at_once = false,
                            const PriorTrainingRunOptions* base = nullptr, std::string id = "") {
    v1::ExperimentSpec spec;
    EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(
        absl::StrCat("name: \"prior\" kind: KIND_TRAIN_PRIOR prior_training { ", prior_training,
                     " }"),
        &spec));
    absl::StatusOr<v1::ExperimentSpec> filled = ValidateAndFillSpec(spec);
    EXPECT_TRUE(filled.ok()) << filled.status();
    v1::Experiment experiment;
    experiment.set_id(id.empty() ? absl::StrCat("exp-prior-", ++experiments_) : id);
    *experiment.mutable_spec() = *filled;
    PriorTrainingRunOptions options = base != nullptr ? *base : PriorTrainingRunOptions();
    options.models = store_.get();
    options.datasets = datasets_.get();
    options.factory = CreatePriorModel;
    options.metrics = &metrics_;
    options.device = "cpu";
    auto run = CreatePriorTrainingRun(experiment, &context_, options);
    EXPECT_TRUE(run.ok()) << run.status();
    if (stop_at_once) (*run)->RequestStop("user", /*shutdown=*/false);
    return (*run)->Run();
  }

  std::string dir_, dataset_;
  int experiments_ = 0;
  std::unique_ptr<ModelStore> store_;
  std::unique_ptr<DatasetStore> datasets_;
  prometheus::Registry registry_;
  LearnerMetrics metrics_{registry_};
  RecordingRunContext context_;
};

TEST_F(PriorTrainingRunTest, TrainsASkillModelAndStoresVersionsWithTheirProvenance) {
  const std::string spec =
      absl::StrCat("kind: PRIOR_KIND_SKILL_VAE dataset: '", dataset_,
                   "' output_model: 'skills' horizon: 5 latent_dim: 3 epochs: 3 batch_size: 32 "
                   "network { hidden_sizes: [32, 32] }");
  const ExperimentRun::Result result = Run(spec);
  ASSERT_EQ(result.state, v1::EXPERIMENT_STATE_SUCCEEDED) << result.reason;
  EXPECT_EQ(result.reason, "epochs done");
  EXPECT_EQ(context_.outputs().prior_model().name(), "skills");
  EXPECT_EQ(context_.outputs().prior_model().version(), 1);
  const v1::Progress p = context_.progress();
  EXPECT_GT(p.updates(), 0);
  EXPECT_DOUBLE_EQ(p.fraction_done(), 1.0);
  EXPECT_EQ(p.scalars().at("epoch"), 3);
  EXPECT_TRUE(p.scalars().count("train_loss"));
  EXPECT_TRUE(p.scalars().count("validation_loss"));
  EXPECT_GT(p.scalars().at("samples_per_second"), 0);
  absl::StatusOr<models::ModelArtifact> stored = store_->Read("skills", 1);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->info.kind(), v1::PRIOR_KIND_SKILL_VAE);
  EXPECT_EQ(stored->info.horizon(), 5);
  EXPECT_EQ(stored->info.latent_dim(), 3);
  EXPECT_EQ(stored->info.obs_dim(), 4);
  EXPECT_EQ(stored->info.action_dim(), 2);
  EXPECT_EQ(stored->info.dataset(), dataset_);
  EXPECT_EQ(stored->info.dataset_hash(), *Sha256File(dataset_));
  EXPECT_THAT(stored->info.training_summary(), HasSubstr("output_model: \"skills\""));
  EXPECT_THAT(stored->info.training_summary(), HasSubstr("# validation_loss: "));
  // a second run is the next version
  ASSERT_EQ(Run(spec).state, v1::EXPERIMENT_STATE_SUCCEEDED);
  EXPECT_EQ(context_.outputs().prior_model().version(), 2);
}

TEST_F(PriorTrainingRunTest, TrainsAFlowForItsSteps) {
  const ExperimentRun::Result result = Run(absl::StrCat(
      "kind: PRIOR_KIND_REAL_NVP_FLOW dataset: '", dataset_,
      "' output_model: 'flow' max_steps: 20 batch_size: 16 network { hidden_sizes: [16] }"));
  ASSERT_EQ(result.state, v1::EXPERIMENT_STATE_SUCCEEDED) << result.reason;
  EXPECT_EQ(result.reason, "max_steps reached");
  EXPECT_EQ(context_.progress().updates(), 20);
  absl::StatusOr<models::ModelArtifact> stored = store_->Read("flow", 0);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->info.kind(), v1::PRIOR_KIND_REAL_NVP_FLOW);
  EXPECT_EQ(stored->info.latent_dim(), 2);
}

// EAP (k > 1: a learned state prior) and the latent-SAC generator (k = 1: N(0, I)).
TEST_F(PriorTrainingRunTest, TrainsCvaesWithAndWithoutAStatePrior) {
  for (int k : {4, 1}) {
    const std::string name = k > 1 ? "eap" : "generator";
    const ExperimentRun::Result result = Run(absl::StrCat(
        "kind: PRIOR_KIND_CVAE dataset: '", dataset_, "' output_model: '", name, "' horizon: ", k,
        " latent_dim: 3 max_steps: 15 batch_size: 16 network { hidden_sizes: "
        "[16] }"));
    ASSERT_EQ(result.state, v1::EXPERIMENT_STATE_SUCCEEDED) << result.reason;
    absl::StatusOr<models::ModelArtifact> stored = store_->Read(name, 0);
    ASSERT_TRUE(stored.ok()) << stored.status();
    EXPECT_EQ(stored->info.kind(), v1::PRIOR_KIND_CVAE);
    EXPECT_EQ(stored->info.horizon(), k);
    EXPECT_EQ(stored->hyperparameters.at("learned_prior"), k > 1 ? 1 : 0);
    EXPECT_TRUE(context_.progress().scalars().count("validation_kl_loss"));
  }
}

// A learner shutdown mid-training checkpoints the run; the next run of the experiment resumes
// from it and ends with a model bit-identical to one trained without the interruption.
TEST_F(PriorTrainingRunTest, AShutdownCheckpointsAndTheNextRunResumesExactly) {
  const std::string fields = absl::StrCat(
      "kind: PRIOR_KIND_SKILL_VAE dataset: '", dataset_,
      "' horizon: 5 latent_dim: 3 max_steps: 40 batch_size: 16 network { hidden_sizes: [16] } "
      "output_model: ");
  v1::ExperimentSpec spec;
  auto experiment_for = [&](const std::string& name) {
    EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(
        absl::StrCat("name: \"prior\" kind: KIND_TRAIN_PRIOR prior_training { ", fields, "'", name,
                     "' }"),
        &spec));
    v1::Experiment experiment;
    experiment.set_id("exp-" + name);
    *experiment.mutable_spec() = ValidateAndFillSpec(spec).value();
    return experiment;
  };
  auto options_for = [&](const std::string& checkpoint) {
    PriorTrainingRunOptions options;
    options.models = store_.get();
    options.factory = CreatePriorModel;
    options.device = "cpu";
    options.progress_period = absl::ZeroDuration();
    options.checkpoint_path = checkpoint;
    return options;
  };
  // uninterrupted
  auto whole = CreatePriorTrainingRun(experiment_for("whole"), &context_, options_for(""));
  ASSERT_TRUE(whole.ok());
  ASSERT_EQ((*whole)->Run().state, v1::EXPERIMENT_STATE_SUCCEEDED);

  // interrupted by a shutdown after 17 steps, then resumed by a new run
  const std::string checkpoint = dir_ + "-exp/prior_checkpoint.prl";
  const v1::Experiment resumed = experiment_for("resumed");
  auto first = CreatePriorTrainingRun(resumed, &context_, options_for(checkpoint));
  ASSERT_TRUE(first.ok());
  ExperimentRun* run = first->get();
  context_.OnProgress([run](const v1::Progress& p) {
    if (p.updates() >= 17) run->RequestStop("learner shutdown", /*shutdown=*/true);
  });
  EXPECT_EQ(run->Run().state, v1::EXPERIMENT_STATE_RUNNING);
  context_.OnProgress(nullptr);
  ASSERT_TRUE(std::ifstream(checkpoint).good()) << "no checkpoint at " << checkpoint;
  auto second = CreatePriorTrainingRun(resumed, &context_, options_for(checkpoint));
  ASSERT_TRUE(second.ok());
  ASSERT_EQ((*second)->Run().state, v1::EXPERIMENT_STATE_SUCCEEDED);
  EXPECT_FALSE(std::ifstream(checkpoint).good()) << "the checkpoint outlived the run";

  absl::StatusOr<models::ModelArtifact> a = store_->Read("whole", 0);
  absl::StatusOr<models::ModelArtifact> b = store_->Read("resumed", 0);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->tensors.size(), b->tensors.size());
  for (size_t i = 0; i < a->tensors.size(); ++i) {
    EXPECT_EQ(a->tensors[i].second.bytes(), b->tensors[i].second.bytes()) << a->tensors[i].first;
  }

  // a checkpoint that cannot be read is set aside and training starts over
  ASSERT_TRUE(std::ofstream(checkpoint).write("garbage", 7).good());
  auto third = CreatePriorTrainingRun(experiment_for("again"), &context_, options_for(checkpoint));
  ASSERT_TRUE(third.ok());
  EXPECT_EQ((*third)->Run().state, v1::EXPERIMENT_STATE_SUCCEEDED);
  EXPECT_TRUE(std::ifstream(checkpoint + ".unusable").good());
}

// A learner killed after the model was stored and before the experiment's end was recorded
// runs the experiment again on its restart: the run finds the model it stored and succeeds
// with it, publishing it when asked, instead of training a second version.
TEST_F(PriorTrainingRunTest, ARunAfterTheModelWasStoredSucceedsWithItWithoutTraining) {
  const std::string spec = absl::StrCat(
      "kind: PRIOR_KIND_REAL_NVP_FLOW dataset: '", dataset_,
      "' output_model: 'flow' max_steps: 5 batch_size: 8 network { hidden_sizes: [8] } "
      "publish: true");
  ASSERT_EQ(Run(spec).state, v1::EXPERIMENT_STATE_SUCCEEDED);  // another experiment's v1
  ASSERT_EQ(Run(spec, false, nullptr, "exp-killed").state, v1::EXPERIMENT_STATE_SUCCEEDED);
  ASSERT_EQ(context_.outputs().prior_model().version(), 2);
  const int64_t updates = context_.progress().updates();

  std::vector<std::string> published;
  PriorTrainingRunOptions options;
  options.publish = [&](const std::string& name, int64_t version, const std::string& path) {
    published.push_back(absl::StrCat(name, " v", version, " ", path));
    return absl::OkStatus();
  };
  context_.SetOutputs(v1::ExperimentOutputs());
  const ExperimentRun::Result again = Run(spec, false, &options, "exp-killed");
  ASSERT_EQ(again.state, v1::EXPERIMENT_STATE_SUCCEEDED) << again.reason;
  EXPECT_THAT(again.reason, HasSubstr("stored as v2 before the learner restarted"));
  EXPECT_THAT(again.reason, HasSubstr("published to the prior server"));
  EXPECT_EQ(context_.outputs().prior_model().name(), "flow");
  EXPECT_EQ(context_.outputs().prior_model().version(), 2);
  EXPECT_EQ(context_.progress().updates(), updates) << "trained again";
  EXPECT_THAT(published, ElementsAre(absl::StrCat("flow v2 ", store_->PathOf("flow", 2))));
  EXPECT_FALSE(store_->Read("flow", 3).ok()) << "a second version was stored";
  // a new experiment with the same spec trains its own version
  ASSERT_EQ(Run(spec).state, v1::EXPERIMENT_STATE_SUCCEEDED);
  EXPECT_EQ(context_.outputs().prior_model().version(), 3);
}

// MCAT's translator between two tasks, trained offline from a dataset of each.
TEST_F(PriorTrainingRunTest, TrainsAnActionTranslatorBetweenTwoTasksDatasets) {
  const std::string source = WriteTaskDataset(dir_ + "-source.hdf5", 0.0, 20, 50);
  const std::string target = WriteTaskDataset(dir_ + "-target.hdf5", M_PI / 2, 20, 50);
  const ExperimentRun::Result result = Run(absl::StrCat(
      "kind: PRIOR_KIND_ACTION_TRANSLATOR dataset: '", source, "' target_dataset: '", target,
      "' output_model: 'pair' max_steps: 600 batch_size: 64 lr: 3e-3 "
      "network { hidden_sizes: [32, 32] }"));
  ASSERT_EQ(result.state, v1::EXPERIMENT_STATE_SUCCEEDED) << result.reason;
  const v1::Progress p = context_.progress();
  EXPECT_THAT(p.message(), HasSubstr(absl::StrCat(source, " -> ", target)));
  for (const char* term : {"train_forward_loss", "train_translator_loss", "validation_forward_loss",
                           "validation_translator_loss", "validation_identity_loss"}) {
    EXPECT_TRUE(p.scalars().count(term)) << term;
  }
  // translated source actions explain the source moves under the target's dynamics; the
  // source actions themselves (rotated by 90° there) do not
  EXPECT_LT(p.scalars().at("validation_translator_loss"),
            p.scalars().at("validation_identity_loss") - 2.0);
  absl::StatusOr<models::ModelArtifact> stored = store_->Read("pair", 1);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->info.kind(), v1::PRIOR_KIND_ACTION_TRANSLATOR);
  EXPECT_EQ(stored->info.context_dim(), 0);
  EXPECT_EQ(stored->info.dataset(), source);
  EXPECT_EQ(stored->info.dataset_hash(), *Sha256File(source));
  EXPECT_EQ(stored->info.target_dataset(), target);
  EXPECT_EQ(stored->info.target_dataset_hash(), *Sha256File(target));
  for (const auto& [name, tensor] : stored->tensors) EXPECT_EQ(name.rfind("translator.", 0), 0u);

  // a target of other dimensions fails naming it
  const std::string wide = WriteTaskDataset(dir_ + "-wide.hdf5", 0.0, 4, 10, /*obs_dim=*/3);
  const ExperimentRun::Result mismatch =
      Run(absl::StrCat("kind: PRIOR_KIND_ACTION_TRANSLATOR dataset: '", source,
                       "' target_dataset: '", wide, "' output_model: 'pair2' max_steps: 5"));
  EXPECT_EQ(mismatch.state, v1::EXPERIMENT_STATE_FAILED);
  EXPECT_THAT(mismatch.reason, HasSubstr(wide + ": observations of 3"));
  const ExperimentRun::Result missing = Run(absl::StrCat(
      "kind: PRIOR_KIND_ACTION_TRANSLATOR dataset: '", source,
      "' target_dataset: '/nonexistent/target.hdf5' output_model: 'pair3' max_steps: 5"));
  EXPECT_EQ(missing.state, v1::EXPERIMENT_STATE_FAILED);
  EXPECT_THAT(missing.reason, HasSubstr("/nonexistent/target.hdf5"));
}

// publish: true hands the stored model to the prior server; a failure there keeps the model.
TEST_F(PriorTrainingRunTest, PublishHandsTheStoredModelToThePriorServer) {
  const std::string spec = absl::StrCat(
      "kind: PRIOR_KIND_REAL_NVP_FLOW dataset: '", dataset_,
      "' output_model: 'flow' max_steps: 3 batch_size: 8 network { hidden_sizes: [8] } "
      "publish: true");
  std::vector<std::string> published;
  PriorTrainingRunOptions options;
  options.publish = [&](const std::string& name, int64_t version, const std::string& path) {
    published.push_back(absl::StrCat(name, " v", version, " ", path));
    return absl::OkStatus();
  };
  ExperimentRun::Result result = Run(spec, false, &options);
  ASSERT_EQ(result.state, v1::EXPERIMENT_STATE_SUCCEEDED) << result.reason;
  EXPECT_THAT(result.reason, HasSubstr("published to the prior server"));
  ASSERT_EQ(published.size(), 1u);
  EXPECT_EQ(published[0], absl::StrCat("flow v1 ", store_->PathOf("flow", 1)));

  options.publish = [](const std::string&, int64_t, const std::string&) {
    return absl::UnavailableError("prior server: connection refused");
  };
  result = Run(spec, false, &options);
  EXPECT_EQ(result.state, v1::EXPERIMENT_STATE_SUCCEEDED);
  EXPECT_THAT(result.reason, HasSubstr("publishing to the prior server failed: prior server: "
                                       "connection refused"));
  EXPECT_TRUE(store_->Read("flow", 2).ok()) << "the model is kept";

  result = Run(spec);
  EXPECT_THAT(result.reason, HasSubstr("not published: this learner has no prior server"));
  // without publish, nothing is published
  options.publish = [&](const std::string&, int64_t, const std::string&) {
    ADD_FAILURE() << "published without publish: true";
    return absl::OkStatus();
  };
  result = Run(absl::StrCat("kind: PRIOR_KIND_REAL_NVP_FLOW dataset: '", dataset_,
                            "' output_model: 'flow' max_steps: 1 batch_size: 8"),
               false, &options);
  EXPECT_EQ(result.reason, "max_steps reached");
}

TEST_F(PriorTrainingRunTest, BadDataFailsNamingTheCause) {
  ExperimentRun::Result missing =
      Run("kind: PRIOR_KIND_SKILL_VAE dataset: '/nonexistent/maze.hdf5' output_model: 'skills'");
  EXPECT_EQ(missing.state, v1::EXPERIMENT_STATE_FAILED);
  EXPECT_THAT(missing.reason, HasSubstr("/nonexistent/maze.hdf5"));
  ExperimentRun::Result named =
      Run("kind: PRIOR_KIND_SKILL_VAE dataset: 'maze-collection' output_model: 'skills'");
  EXPECT_EQ(named.state, v1::EXPERIMENT_STATE_FAILED);
  EXPECT_THAT(named.reason, HasSubstr("give the path of a D4RL-layout .hdf5 or .h5 file"));
  ExperimentRun::Result short_episodes = Run(absl::StrCat(
      "kind: PRIOR_KIND_SKILL_VAE dataset: '", dataset_, "' output_model: 'skills' horizon: 40"));
  EXPECT_EQ(short_episodes.state, v1::EXPERIMENT_STATE_FAILED);
  EXPECT_THAT(short_episodes.reason, HasSubstr("no episode has 40 steps"));
  EXPECT_TRUE(store_->List().empty());
}

TEST_F(PriorTrainingRunTest, ADatasetNameIsFoundInTheDatasetStore) {
  auto datasets = DatasetStore::Open(dir_ + "-datasets");
  ASSERT_TRUE(datasets.ok()) << datasets.status();
  datasets_ = std::move(*datasets);
  v1::DatasetInfo info;
  info.set_name("maze-planner");
  info.set_experiment_id("exp-collect");
  const std::string staged = datasets_->StagingPathOf("maze-planner", "exp-collect");
  WriteDataset(staged, 12, 30);
  absl::StatusOr<v1::DatasetInfo> stored = datasets_->Commit(staged, info);
  ASSERT_TRUE(stored.ok()) << stored.status();

  const ExperimentRun::Result result =
      Run("kind: PRIOR_KIND_SKILL_VAE dataset: 'maze-planner' output_model: 'skills' horizon: 5 "
          "latent_dim: 3 max_steps: 5 batch_size: 16 network { hidden_sizes: [16] }");
  ASSERT_EQ(result.state, v1::EXPERIMENT_STATE_SUCCEEDED) << result.reason;
  absl::StatusOr<models::ModelArtifact> model = store_->Read("skills", 1);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->info.dataset(), "maze-planner");
  EXPECT_EQ(model->info.dataset_hash(), stored->content_hash());

  // an unknown name fails naming it and what is stored
  const ExperimentRun::Result unknown =
      Run("kind: PRIOR_KIND_SKILL_VAE dataset: 'maze-random' output_model: 'skills'");
  EXPECT_EQ(unknown.state, v1::EXPERIMENT_STATE_FAILED);
  EXPECT_THAT(unknown.reason, HasSubstr("prior_training.dataset: no dataset named 'maze-random'"));
  EXPECT_THAT(unknown.reason, HasSubstr("stored: maze-planner"));

  // a file changed since it was stored is refused, naming it
  {
    std::fstream file(stored->path(), std::ios::in | std::ios::out | std::ios::binary);
    const auto middle = static_cast<std::streamoff>(stored->size_bytes() / 2);
    file.seekg(middle);
    const char byte = static_cast<char>(file.get());
    file.seekp(middle);
    file.put(static_cast<char>(byte ^ 0x5a));
  }
  const ExperimentRun::Result changed =
      Run("kind: PRIOR_KIND_SKILL_VAE dataset: 'maze-planner' output_model: 'skills'");
  EXPECT_EQ(changed.state, v1::EXPERIMENT_STATE_FAILED);
  EXPECT_THAT(changed.reason, HasSubstr(stored->path()));
  EXPECT_THAT(changed.reason, HasSubstr("has hash"));
}

TEST_F(PriorTrainingRunTest, AStoppedRunStoresNothingAndReleasesItsVersion) {
  const std::string spec = absl::StrCat("kind: PRIOR_KIND_REAL_NVP_FLOW dataset: '", dataset_,
                                        "' output_model: 'flow' max_steps: 5");
  const ExperimentRun::Result stopped = Run(spec, /*stop_at_once=*/true);
  EXPECT_EQ(stopped.state, v1::EXPERIMENT_STATE_STOPPED);
  EXPECT_TRUE(store_->List().empty());
  EXPECT_EQ(*store_->Reserve("flow"), 1);
}

}  // namespace
}  // namespace prl::learner
