#include "models/task_pair_translator.h"

#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ATen/ATen.h"
#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/artifact.h"
#include "models/mcat_model.h"
#include "proto/experiment.pb.h"
#include "proto/prior.pb.h"

namespace prl::models {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Two tasks that differ in how actions move a 2-D state: s' = s + A·a + small noise, with
// A = 0.3·I on the source task and 0.3·R(90°) on the target task. The translator must learn
// ã = R(-90°)·a = (a1, -a0), the action that moves the state on the target task as `a` does on
// the source task.
constexpr int kObs = 2;
constexpr int kAct = 2;

// `rows` 2-step windows; row i is from the target task when `task(i)` is kTargetTask.
WindowBatch Windows(int rows, std::mt19937& rng, int64_t (*task)(int)) {
  std::uniform_real_distribution<float> state(-1.0f, 1.0f), action(-0.8f, 0.8f);
  std::normal_distribution<float> noise(0.0f, 0.01f);
  at::Tensor obs = at::zeros({rows, 2, kObs});
  at::Tensor act = at::zeros({rows, 2, kAct});
  at::Tensor tasks = at::zeros({rows}, at::kLong);
  auto o = obs.accessor<float, 3>();
  auto a = act.accessor<float, 3>();
  for (int i = 0; i < rows; ++i) {
    const int64_t t = task(i);
    tasks[i] = t;
    const float s0 = state(rng), s1 = state(rng), a0 = action(rng), a1 = action(rng);
    o[i][0][0] = s0;
    o[i][0][1] = s1;
    a[i][0][0] = a0;
    a[i][0][1] = a1;
    a[i][1][0] = action(rng);
    a[i][1][1] = action(rng);
    const float m0 = t == kTargetTask ? -0.3f * a1 : 0.3f * a0;
    const float m1 = t == kTargetTask ? 0.3f * a0 : 0.3f * a1;
    o[i][1][0] = s0 + m0 + noise(rng);
    o[i][1][1] = s1 + m1 + noise(rng);
  }
  return {obs, act, tasks};
}

int64_t Alternate(int i) { return i % 2 == 0 ? kSourceTask : kTargetTask; }
int64_t SourceOnly(int) { return kSourceTask; }

TaskPairTranslatorOptions SmallOptions() {
  TaskPairTranslatorOptions o;
  o.obs_dim = kObs;
  o.act_dim = kAct;
  o.network.add_hidden_sizes(64);
  o.network.add_hidden_sizes(64);
  o.lr = 3e-3;
  o.seed = 7;
  return o;
}

std::unique_ptr<TaskPairTranslator> Make(const TaskPairTranslatorOptions& o = SmallOptions()) {
  auto model = TaskPairTranslator::Create(o);
  EXPECT_TRUE(model.ok()) << model.status();
  return std::move(*model);
}

TEST(TaskPairTranslatorTest, LearnsTheActionThatReproducesTheSourceTransition) {
  auto model = Make();
  std::mt19937 rng(1);
  const WindowBatch validation = Windows(512, rng, Alternate);
  auto before = model->Evaluate(validation);
  ASSERT_TRUE(before.ok()) << before.status();
  for (int step = 0; step < 1500; ++step) {
    auto losses = model->TrainStep(Windows(128, rng, Alternate));
    ASSERT_TRUE(losses.ok()) << losses.status();
    ASSERT_EQ(losses->count("identity_loss"), 0u);  // only Evaluate reports it
  }
  auto after = model->Evaluate(validation);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_LT(after->at("forward_loss"), before->at("forward_loss") - 3.0);
  // translated actions explain the source transitions under the target dynamics far better
  // than the untranslated ones
  EXPECT_LT(after->at("translator_loss"), after->at("identity_loss") - 3.0);
  EXPECT_NEAR(after->at("loss"), after->at("forward_loss") + after->at("translator_loss"), 1e-4);

  const at::Tensor s = validation.obs.select(1, 0);
  const at::Tensor a = validation.actions.select(1, 0);
  const at::Tensor want = at::stack({a.select(1, 1), -a.select(1, 0)}, 1);
  const double error = (model->Translate(s, a) - want).abs().mean().item<double>();
  EXPECT_LT(error, 0.08) << "mean |H(s, a) - R(-90°)a|";
}

TEST(TaskPairTranslatorTest, ArtifactServesTheSameTranslations) {
  auto model = Make();
  std::mt19937 rng(2);
  for (int step = 0; step < 20; ++step)
    ASSERT_TRUE(model->TrainStep(Windows(64, rng, Alternate)).ok());
  v1::ModelInfo info;
  info.set_name("pair");
  info.set_version(3);
  auto artifact = model->ToArtifact(info);
  ASSERT_TRUE(artifact.ok()) << artifact.status();
  EXPECT_EQ(artifact->info.kind(), v1::PRIOR_KIND_ACTION_TRANSLATOR);
  EXPECT_EQ(artifact->info.context_dim(), 0);
  EXPECT_EQ(artifact->info.obs_dim(), kObs);
  EXPECT_EQ(artifact->info.action_dim(), kAct);
  EXPECT_THAT(artifact->info.methods(), ElementsAre("Translate"));
  for (const auto& [name, tensor] : artifact->tensors) {
    EXPECT_EQ(name.rfind("translator.", 0), 0u) << name << " should stay in the training state";
  }
  // through the bytes, as the prior server reads it
  auto bytes = SerializeModelArtifact(*artifact);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto parsed = ParseModelArtifact(*bytes, "test");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  auto served = TranslatorModel::FromArtifact(*parsed, "cpu");
  ASSERT_TRUE(served.ok()) << served.status();
  const WindowBatch batch = Windows(16, rng, Alternate);
  const at::Tensor s = batch.obs.select(1, 0), a = batch.actions.select(1, 0);
  const at::Tensor none = at::empty({16, 0});
  EXPECT_TRUE(at::equal((*served)->Translate(s, a, none, none), model->Translate(s, a)));
}

TEST(TaskPairTranslatorTest, RestoredTrainingStateContinuesBitIdentically) {
  auto model = Make();
  std::mt19937 rng(3);
  for (int step = 0; step < 5; ++step)
    ASSERT_TRUE(model->TrainStep(Windows(64, rng, Alternate)).ok());
  auto state = model->TrainingState(v1::ModelInfo());
  ASSERT_TRUE(state.ok()) << state.status();
  auto resumed = Make();
  ASSERT_TRUE(resumed->RestoreTrainingState(*state).ok());
  for (int step = 0; step < 3; ++step) {
    const WindowBatch batch = Windows(64, rng, Alternate);
    auto a = model->TrainStep(batch);
    auto b = resumed->TrainStep(batch);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(*a, *b) << "step " << step;
  }
  auto x = model->TrainingState(v1::ModelInfo());
  auto y = resumed->TrainingState(v1::ModelInfo());
  ASSERT_TRUE(x.ok() && y.ok());
  ASSERT_EQ(x->tensors.size(), y->tensors.size());
  for (size_t i = 0; i < x->tensors.size(); ++i) {
    EXPECT_EQ(x->tensors[i].first, y->tensors[i].first);
    EXPECT_EQ(x->tensors[i].second.bytes(), y->tensors[i].second.bytes()) << x->tensors[i].first;
  }
  // a served artifact holds no forward model: it cannot restore a training state
  auto served = model->ToArtifact(v1::ModelInfo());
  ASSERT_TRUE(served.ok());
  EXPECT_FALSE(Make()->RestoreTrainingState(*served).ok());
}

TEST(TaskPairTranslatorTest, BatchOfOneTaskReportsItsTermsOnly) {
  auto model = Make();
  std::mt19937 rng(4);
  auto losses = model->Evaluate(Windows(32, rng, SourceOnly));
  ASSERT_TRUE(losses.ok()) << losses.status();
  EXPECT_EQ(losses->count("forward_loss"), 0u);
  EXPECT_EQ(losses->count("translator_loss"), 1u);
  EXPECT_EQ(losses->count("identity_loss"), 1u);
  EXPECT_DOUBLE_EQ(losses->at("loss"), losses->at("translator_loss"));
  auto step = model->TrainStep(Windows(32, rng, SourceOnly));
  ASSERT_TRUE(step.ok()) << step.status();
}

TEST(TaskPairTranslatorTest, BadBatchesNameTheField) {
  auto model = Make();
  std::mt19937 rng(5);
  WindowBatch batch = Windows(8, rng, Alternate);

  WindowBatch no_task = batch;
  no_task.task = at::Tensor();
  EXPECT_THAT(model->TrainStep(no_task).status().message(), HasSubstr("batch.task"));

  WindowBatch other_task = batch;
  other_task.task = batch.task.clone();
  other_task.task[3] = 2;
  const absl::Status s = model->TrainStep(other_task).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("batch.task"));

  WindowBatch long_windows = batch;
  long_windows.obs = at::zeros({8, 3, kObs});
  EXPECT_THAT(model->Evaluate(long_windows).status().message(), HasSubstr("batch.obs"));

  WindowBatch nan = batch;
  nan.actions = batch.actions.clone();
  nan.actions[0][0][1] = NAN;
  EXPECT_THAT(model->TrainStep(nan).status().message(), HasSubstr("batch.actions"));

  TaskPairTranslatorOptions bad = SmallOptions();
  bad.act_dim = 0;
  EXPECT_THAT(TaskPairTranslator::Create(bad).status().message(), HasSubstr("options.act_dim"));
  bad = SmallOptions();
  bad.lr = -1;
  EXPECT_THAT(TaskPairTranslator::Create(bad).status().message(), HasSubstr("lr"));
}

}  // namespace
}  // namespace prl::models
