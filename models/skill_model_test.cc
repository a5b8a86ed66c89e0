#include "models/skill_model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "ATen/ATen.h"
#include "ATen/Parallel.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/torch_tensor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/artifact.h"
#include "models/prior_model_util.h"
#include "proto/prior.pb.h"

namespace prl::models {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// ---- a tiny world with four skills ----
//
// The state is (x, y, t/H): a point that each action moves by kStepSize·a, and a clock. The
// dataset's H-step windows start anywhere away from the axes, and which of four fixed action
// sequences (a rotating unit-ish vector, starting at angle k·90°) a window holds is decided by
// the quadrant of its first state. So the posterior should tell the four sequences apart, the
// closed-loop decoder should replay them, and the prior should learn quadrant → skill.

constexpr int kObsDim = 3;
constexpr int kActDim = 2;
constexpr int kHorizon = 10;
constexpr int kLatent = 4;
constexpr int kSkills = 4;
constexpr float kStepSize = 0.05f;

float SkillAction(int skill, int t, int i) {
  const double angle = M_PI / 2 * skill + 0.6 * t;
  return static_cast<float>(0.8 * (i == 0 ? std::cos(angle) : std::sin(angle)));
}

int Quadrant(float x, float y) { return (x >= 0 ? 1 : 0) + (y >= 0 ? 2 : 0); }

// Start states of `n` windows, each coordinate ±U(0.2, 1).
std::vector<std::pair<float, float>> Starts(int n, std::mt19937& rng) {
  std::uniform_real_distribution<float> magnitude(0.2f, 1.0f);
  std::bernoulli_distribution sign;
  std::vector<std::pair<float, float>> starts;
  for (int i = 0; i < n; ++i) {
    const float x = magnitude(rng) * (sign(rng) ? 1 : -1);
    const float y = magnitude(rng) * (sign(rng) ? 1 : -1);
    starts.emplace_back(x, y);
  }
  return starts;
}

// The windows that start at `starts`, each playing its quadrant's skill.
WindowBatch Windows(const std::vector<std::pair<float, float>>& starts) {
  const int64_t n = static_cast<int64_t>(starts.size());
  at::Tensor obs = at::empty({n, kHorizon, kObsDim}, at::kFloat);
  at::Tensor actions = at::empty({n, kHorizon, kActDim}, at::kFloat);
  auto o = obs.accessor<float, 3>();
  auto a = actions.accessor<float, 3>();
  for (int64_t b = 0; b < n; ++b) {
    float x = starts[b].first, y = starts[b].second;
    const int skill = Quadrant(x, y);
    for (int t = 0; t < kHorizon; ++t) {
      o[b][t][0] = x;
      o[b][t][1] = y;
      o[b][t][2] = static_cast<float>(t) / kHorizon;
      a[b][t][0] = SkillAction(skill, t, 0);
      a[b][t][1] = SkillAction(skill, t, 1);
      x += kStepSize * a[b][t][0];
      y += kStepSize * a[b][t][1];
    }
  }
  return {obs, actions};
}

WindowBatch RandomWindows(int n, std::mt19937& rng) { return Windows(Starts(n, rng)); }

SkillModelOptions SmallOptions(int64_t seed) {
  SkillModelOptions o;
  o.obs_dim = kObsDim;
  o.act_dim = kActDim;
  o.horizon = kHorizon;
  o.latent_dim = kLatent;
  o.network.add_hidden_sizes(64);
  o.network.add_hidden_sizes(64);
  o.seed = seed;
  return o;
}

std::unique_ptr<SkillModel> MakeModel(const SkillModelOptions& options) {
  absl::StatusOr<std::unique_ptr<SkillModel>> model = SkillModel::Create(options);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? *std::move(model) : nullptr;
}

at::Tensor Row(const std::vector<float>& values) {
  return at::tensor(values, at::kFloat).unsqueeze(0);
}

// ---- the loss terms by hand ----

TEST(SkillLossTest, DiagonalGaussianKlMatchesHandComputedValues) {
  const double log2 = std::log(2.0);
  // q = N([0.5, -1], diag[1, 4]) against N(0, I), dimension by dimension:
  //   log σ_p - log σ_q + (σ_q² + (μ_q - μ_p)²) / (2σ_p²) - ½
  //   dim 0: 0 + (1 + 0.25)/2 - 0.5 = 0.125;  dim 1: -log 2 + (4 + 1)/2 - 0.5 = 2 - log 2
  DiagonalGaussian q{at::tensor({0.5, -1.0}), at::tensor({0.0, log2})};
  DiagonalGaussian unit{at::zeros({2}, at::kDouble), at::zeros({2}, at::kDouble)};
  at::Tensor kl = DiagonalGaussianKl(q, unit);
  ASSERT_EQ(kl.numel(), 2);
  EXPECT_NEAR(kl[0].item<double>(), 0.125, 1e-12);
  EXPECT_NEAR(kl[1].item<double>(), 2.0 - log2, 1e-12);
  // a wider p: KL(N(1, 1) ‖ N(0, 4)) = log 2 + (1 + 1)/8 - 0.5
  DiagonalGaussian q1{at::tensor({1.0}), at::tensor({0.0})};
  DiagonalGaussian p1{at::tensor({0.0}), at::tensor({log2})};
  EXPECT_NEAR(DiagonalGaussianKl(q1, p1).item<double>(), log2 - 0.25, 1e-12);
  // and zero between equal distributions
  EXPECT_NEAR(DiagonalGaussianKl(p1, p1).item<double>(), 0.0, 1e-12);
}

TEST(SkillLossTest, ElboAndPriorTermsMatchHandComputedValues) {
  const double log2 = std::log(2.0);
  // one window of H = 2 one-dimensional actions, latent 2
  at::Tensor reconstruction = at::tensor({0.5, -0.5}).view({1, 2, 1});
  at::Tensor actions = at::tensor({1.0, 0.0}).view({1, 2, 1});
  DiagonalGaussian posterior{at::tensor({0.5, -1.0}).view({1, 2}).requires_grad_(),
                             at::tensor({0.0, log2}).view({1, 2}).requires_grad_()};
  DiagonalGaussian prior{at::tensor({0.5, 0.0}).view({1, 2}).requires_grad_(),
                         at::zeros({1, 2}, at::kDouble).requires_grad_()};
  const double beta = 0.1;
  SkillLossTerms t = ComputeSkillLoss(reconstruction, actions, posterior, prior, beta);

  const double mse = (0.25 + 0.25) / 2;
  const double kl = (0.125 + (2.0 - log2)) / 2;  // per dimension, see the test above
  // KL(q ‖ prior): dim 0 equal means and scales → 0; dim 1 as against N(0, 1)
  const double prior_kl = (0.0 + (2.0 - log2)) / 2;
  EXPECT_NEAR(t.reconstruction_loss.item<double>(), mse, 1e-12);
  EXPECT_NEAR(t.kl_loss.item<double>(), kl, 1e-12);
  EXPECT_NEAR(t.prior_loss.item<double>(), prior_kl, 1e-12);
  EXPECT_NEAR(t.elbo_loss.item<double>(), mse + beta * kl, 1e-12);
  EXPECT_NEAR(t.loss.item<double>(), mse + beta * kl + prior_kl, 1e-12);

  // the prior loss trains the prior only: the posterior gets no gradient from it
  t.prior_loss.backward();
  EXPECT_FALSE(posterior.mean.grad().defined());
  EXPECT_FALSE(posterior.log_std.grad().defined());
  ASSERT_TRUE(prior.log_std.grad().defined());
  // d/d log σ_p of [log σ_p + (σ_q² + Δ²)/(2σ_p²)] / 2 at dim 1: (1 - 5)/2 = -2
  EXPECT_NEAR(prior.log_std.grad()[0][1].item<double>(), -2.0, 1e-12);
}

// ---- learning the four skills ----

// The average of `values` over each run of `n`.
std::vector<double> RunningMeans(const std::vector<double>& values, int n) {
  std::vector<double> means;
  for (size_t i = 0; i + n <= values.size(); i += n) {
    double sum = 0;
    for (int j = 0; j < n; ++j) sum += values[i + j];
    means.push_back(sum / n);
  }
  return means;
}

// `artifact` with the prior's tensors replaced by those of `other`.
ModelArtifact WithPriorOf(ModelArtifact artifact, const ModelArtifact& other) {
  for (auto& [name, tensor] : artifact.tensors) {
    if (name.rfind("prior.", 0) == 0) tensor = *other.Find(name);
  }
  return artifact;
}

class SkillLearningTest : public ::testing::TestWithParam<int64_t> {};

TEST_P(SkillLearningTest, LearnsSkillsAndTheirStateConditionedPrior) {
  const SkillModelOptions options = SmallOptions(/*seed=*/GetParam());
  std::unique_ptr<SkillModel> model = MakeModel(options);
  ASSERT_NE(model, nullptr);
  std::mt19937 rng(42);
  constexpr int kSteps = 600;
  std::vector<double> prior_losses;
  for (int step = 0; step < kSteps; ++step) {
    absl::StatusOr<Losses> losses = model->TrainStep(RandomWindows(64, rng));
    ASSERT_TRUE(losses.ok()) << losses.status();
    prior_losses.push_back(losses->at("prior_loss"));
  }

  // the prior loss: it first grows while the posterior spreads the skills apart, then falls
  // as the prior catches up
  const std::vector<double> curve = RunningMeans(prior_losses, 10);
  EXPECT_LT(curve.back(), 0.3 * *std::max_element(curve.begin(), curve.end()));
  // against the learned posterior, the trained prior scores far better than the prior this
  // model started with (swapped in through an artifact) and than itself given the wrong states
  absl::StatusOr<ModelArtifact> trained = model->ToArtifact(v1::ModelInfo());
  ASSERT_TRUE(trained.ok()) << trained.status();
  std::unique_ptr<SkillModel> fresh = MakeModel(options);
  absl::StatusOr<ModelArtifact> initial = fresh->ToArtifact(v1::ModelInfo());
  ASSERT_TRUE(initial.ok()) << initial.status();
  absl::StatusOr<std::unique_ptr<SkillModel>> untrained_prior =
      SkillModel::FromArtifact(WithPriorOf(*trained, *initial));
  ASSERT_TRUE(untrained_prior.ok()) << untrained_prior.status();
  WindowBatch eval = RandomWindows(256, rng);
  WindowBatch wrong_states{eval.obs.roll(1, 0), eval.actions};
  absl::StatusOr<Losses> after = model->Evaluate(eval);
  absl::StatusOr<Losses> before = (*untrained_prior)->Evaluate(eval);
  absl::StatusOr<Losses> mismatched = model->Evaluate(wrong_states);
  ASSERT_TRUE(after.ok() && before.ok() && mismatched.ok());
  EXPECT_LT(after->at("prior_loss"), 0.15 * before->at("prior_loss"));
  EXPECT_GT(mismatched->at("prior_loss"), 10 * after->at("prior_loss"));
  EXPECT_LT(after->at("reconstruction_loss"), 0.02);

  // one window per quadrant: its posterior mean and the prior at its first state
  const std::vector<std::pair<float, float>> starts = {
      {-0.5f, -0.6f}, {0.6f, -0.5f}, {-0.4f, 0.7f}, {0.5f, 0.5f}};
  WindowBatch windows = Windows(starts);
  absl::StatusOr<DiagonalGaussian> posterior = model->Encode(windows.actions);
  ASSERT_TRUE(posterior.ok()) << posterior.status();
  absl::StatusOr<DiagonalGaussian> prior = model->Prior(windows.obs.select(1, 0));
  ASSERT_TRUE(prior.ok()) << prior.status();
  for (int k = 0; k < kSkills; ++k) {
    SCOPED_TRACE(::testing::Message() << "skill " << k);
    ASSERT_EQ(Quadrant(starts[k].first, starts[k].second), k);
    const at::Tensor z = posterior->mean[k].unsqueeze(0);
    const at::Tensor other_z = posterior->mean[(k + 1) % kSkills].unsqueeze(0);
    // closed-loop replay from the posterior mean: decode at the current state, step, repeat;
    // and, open loop along the same states, another skill's z
    float x = starts[k].first, y = starts[k].second;
    double squared_error = 0, other_squared_error = 0;
    for (int t = 0; t < kHorizon; ++t) {
      const at::Tensor s = Row({x, y, static_cast<float>(t) / kHorizon});
      absl::StatusOr<at::Tensor> a = model->Decode(s, z);
      absl::StatusOr<at::Tensor> other = model->Decode(s, other_z);
      ASSERT_TRUE(a.ok() && other.ok());
      for (int i = 0; i < kActDim; ++i) {
        squared_error += std::pow((*a)[0][i].item<double>() - SkillAction(k, t, i), 2);
        other_squared_error += std::pow((*other)[0][i].item<double>() - SkillAction(k, t, i), 2);
      }
      x += kStepSize * (*a)[0][0].item<float>();
      y += kStepSize * (*a)[0][1].item<float>();
    }
    EXPECT_LT(squared_error / (kHorizon * kActDim), 0.02);
    // the decoder relies on z, not on the quadrant alone
    EXPECT_GT(other_squared_error / (kHorizon * kActDim), 0.1);
    // the prior's mean sits by this skill's posterior mean, far from the others'
    double nearest_other = std::numeric_limits<double>::infinity();
    for (int j = 0; j < kSkills; ++j) {
      if (j == k) continue;
      nearest_other = std::min(nearest_other, (posterior->mean[j] - z[0]).norm().item<double>());
    }
    EXPECT_LT((prior->mean[k] - z[0]).norm().item<double>(), 0.25 * nearest_other);
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, SkillLearningTest, ::testing::Values(1, 2, 3));

// ---- artifacts ----

v1::ModelInfo Info() {
  v1::ModelInfo info;
  info.set_name("quadrant-skills");
  info.set_version(2);
  info.set_dataset("quadrants");
  return info;
}

// A model with a non-default network, trained a few steps.
std::unique_ptr<SkillModel> TrainedModel(int64_t seed) {
  SkillModelOptions options = SmallOptions(seed);
  options.network.clear_hidden_sizes();
  options.network.add_hidden_sizes(32);
  options.network.add_hidden_sizes(48);
  options.network.add_hidden_sizes(16);
  options.network.set_activation(v1::NetworkSpec::ACTIVATION_TANH);
  options.network.set_layer_norm(true);
  options.beta = 5e-4;
  std::unique_ptr<SkillModel> model = MakeModel(options);
  std::mt19937 rng(seed);
  for (int step = 0; model != nullptr && step < 5; ++step) {
    EXPECT_TRUE(model->TrainStep(RandomWindows(16, rng)).ok());
  }
  return model;
}

TEST(SkillModelArtifactTest, RoundTripGivesBitIdenticalPriorAndDecode) {
  std::unique_ptr<SkillModel> model = TrainedModel(/*seed=*/3);
  ASSERT_NE(model, nullptr);
  absl::StatusOr<ModelArtifact> artifact = model->ToArtifact(Info());
  ASSERT_TRUE(artifact.ok()) << artifact.status();
  const v1::ModelInfo& info = artifact->info;
  EXPECT_EQ(info.name(), "quadrant-skills");
  EXPECT_EQ(info.dataset(), "quadrants");
  EXPECT_EQ(info.kind(), v1::PRIOR_KIND_SKILL_VAE);
  EXPECT_EQ(info.obs_dim(), kObsDim);
  EXPECT_EQ(info.action_dim(), kActDim);
  EXPECT_EQ(info.latent_dim(), kLatent);
  EXPECT_EQ(info.horizon(), kHorizon);
  EXPECT_TRUE(info.state_conditioned_decoder());
  EXPECT_THAT(info.methods(), ElementsAre("Decode", "Prior"));
  EXPECT_EQ(artifact->hyperparameters.at("network.hidden_layers"), 3);
  EXPECT_EQ(artifact->hyperparameters.at("network.hidden_sizes.1"), 48);
  EXPECT_EQ(artifact->hyperparameters.at("network.activation"), v1::NetworkSpec::ACTIVATION_TANH);
  EXPECT_EQ(artifact->hyperparameters.at("network.layer_norm"), 1);
  EXPECT_EQ(artifact->hyperparameters.at("beta_x1e9"), 500000);
  std::vector<std::string> names;
  for (const auto& [name, tensor] : artifact->tensors) names.push_back(name);
  // nn.Sequential indices: Linear 0, LayerNorm 1, activation 2, Linear 3, ...
  EXPECT_THAT(names, Contains("encoder.trunk.0.weight"));
  EXPECT_THAT(names, Contains("encoder.trunk.1.bias"));
  EXPECT_THAT(names, Contains("encoder.log_std.weight"));
  EXPECT_THAT(names, Contains("decoder.trunk.6.weight"));
  EXPECT_THAT(names, Contains("decoder.mean.bias"));
  EXPECT_THAT(names, Contains("prior.mean.weight"));
  // the decoder reads [state, z]
  EXPECT_THAT(artifact->Find("decoder.trunk.0.weight")->shape(),
              ElementsAre(32, kObsDim + kLatent));
  EXPECT_THAT(artifact->Find("encoder.trunk.0.weight")->shape(),
              ElementsAre(32, kHorizon * kActDim));

  const std::string path = ::testing::TempDir() + "/skills.prl";
  ASSERT_TRUE(WriteModelArtifact(path, *artifact).ok());
  absl::StatusOr<ModelArtifact> read = ReadModelArtifact(path);
  ASSERT_TRUE(read.ok()) << read.status();
  absl::StatusOr<std::unique_ptr<SkillModel>> loaded = SkillModel::FromArtifact(*read);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->horizon(), kHorizon);
  EXPECT_EQ((*loaded)->options().network.layer_norm(), true);
  EXPECT_DOUBLE_EQ((*loaded)->options().beta, 5e-4);

  std::mt19937 rng(11);
  WindowBatch windows = RandomWindows(32, rng);
  const at::Tensor obs = windows.obs.select(1, 0);
  const at::Tensor z = at::randn({32, kLatent});
  absl::StatusOr<DiagonalGaussian> want_prior = model->Prior(obs);
  absl::StatusOr<DiagonalGaussian> got_prior = (*loaded)->Prior(obs);
  absl::StatusOr<at::Tensor> want_action = model->Decode(obs, z);
  absl::StatusOr<at::Tensor> got_action = (*loaded)->Decode(obs, z);
  ASSERT_TRUE(want_prior.ok() && got_prior.ok() && want_action.ok() && got_action.ok());
  EXPECT_TRUE(at::equal(want_prior->mean, got_prior->mean));
  EXPECT_TRUE(at::equal(want_prior->log_std, got_prior->log_std));
  EXPECT_TRUE(at::equal(*want_action, *got_action));
  EXPECT_THAT(got_action->sizes().vec(), ElementsAre(32, kActDim));
  EXPECT_THAT(got_prior->mean.sizes().vec(), ElementsAre(32, kLatent));
  // and the same losses
  absl::StatusOr<Losses> want_losses = model->Evaluate(windows);
  absl::StatusOr<Losses> got_losses = (*loaded)->Evaluate(windows);
  ASSERT_TRUE(want_losses.ok() && got_losses.ok());
  EXPECT_EQ(*want_losses, *got_losses);
}

// FromArtifact's status for `artifact` changed by `edit`.
template <typename Edit>
absl::Status LoadEdited(const ModelArtifact& artifact, Edit edit) {
  ModelArtifact edited = artifact;
  edit(edited);
  return SkillModel::FromArtifact(edited).status();
}

TEST(SkillModelArtifactTest, RefusesOtherKindsAndMismatchedTensorsNamingThem) {
  std::unique_ptr<SkillModel> model = TrainedModel(/*seed=*/4);
  ASSERT_NE(model, nullptr);
  absl::StatusOr<ModelArtifact> artifact = model->ToArtifact(Info());
  ASSERT_TRUE(artifact.ok()) << artifact.status();
  auto refused = [&](auto edit, const std::string& field) {
    absl::Status status = LoadEdited(*artifact, edit);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << field << ": " << status;
    EXPECT_THAT(status.message(), HasSubstr(field));
  };
  refused([](ModelArtifact& a) { a.info.set_kind(v1::PRIOR_KIND_CVAE); }, "info.kind");
  refused([](ModelArtifact& a) { a.info.set_state_conditioned_decoder(false); },
          "info.state_conditioned_decoder");
  refused([](ModelArtifact& a) { a.info.set_horizon(0); }, "info.horizon");
  refused([](ModelArtifact& a) { a.hyperparameters.erase("network.hidden_layers"); },
          "hyperparameters[\"network.hidden_layers\"]");
  refused([](ModelArtifact& a) { a.hyperparameters["network.hidden_sizes.2"] = 0; },
          "hyperparameters[\"network.hidden_sizes.2\"]");
  // dimensions that disagree with the weights: the first mismatched tensor, with both shapes
  refused([](ModelArtifact& a) { a.info.set_obs_dim(kObsDim + 1); },
          "tensors[\"decoder.trunk.0.weight\"]");
  refused(
      [](ModelArtifact& a) {
        for (auto& [name, tensor] : a.tensors) {
          if (name == "prior.mean.bias") tensor = HostTensor::FromFloats({2}, {0, 0});
        }
      },
      "tensors[\"prior.mean.bias\"]");
  refused([](ModelArtifact& a) { a.tensors.pop_back(); },
          "tensors[\"prior.log_std.bias\"]: missing");
  refused(
      [](ModelArtifact& a) {
        a.tensors.emplace_back("prior.extra", HostTensor::FromFloats({1}, {0}));
      },
      "tensors[\"prior.extra\"]");
  absl::Status shape = LoadEdited(*artifact, [](ModelArtifact& a) {
    for (auto& [name, tensor] : a.tensors) {
      if (name == "prior.mean.bias") tensor = HostTensor::FromFloats({2}, {0, 0});
    }
  });
  EXPECT_THAT(shape.message(), HasSubstr("[2]"));
  EXPECT_THAT(shape.message(), HasSubstr(absl::StrCat(kLatent)));
}

// ---- refusals ----

TEST(SkillModelOptionsTest, RefusesBadOptionsNamingTheField) {
  auto refused = [](auto edit, const std::string& field) {
    SkillModelOptions options = SmallOptions(0);
    edit(options);
    absl::Status status = SkillModel::Create(options).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << field << ": " << status;
    EXPECT_THAT(status.message(), HasSubstr(field + ":"));
  };
  refused([](SkillModelOptions& o) { o.obs_dim = 0; }, "options.obs_dim");
  refused([](SkillModelOptions& o) { o.act_dim = -1; }, "options.act_dim");
  refused([](SkillModelOptions& o) { o.horizon = 0; }, "options.horizon");
  refused([](SkillModelOptions& o) { o.horizon = kSkillMaxHorizon + 1; }, "options.horizon");
  refused([](SkillModelOptions& o) { o.latent_dim = 0; }, "options.latent_dim");
  refused([](SkillModelOptions& o) { o.beta = -1; }, "options.beta");
  refused([](SkillModelOptions& o) { o.beta = std::nan(""); }, "options.beta");
  refused([](SkillModelOptions& o) { o.lr = 0; }, "options.lr");
  refused([](SkillModelOptions& o) { o.lr = std::numeric_limits<double>::infinity(); },
          "options.lr");
  refused([](SkillModelOptions& o) { o.network.set_hidden_sizes(1, 0); },
          "options.network.hidden_sizes[1]");
  refused([](SkillModelOptions& o) { o.network.set_activation(v1::NetworkSpec::Activation(99)); },
          "options.network.activation");
  if (!at::hasCUDA()) {
    refused([](SkillModelOptions& o) { o.device = c10::Device(c10::kCUDA, 0); }, "options.device");
  }
}

TEST(SkillModelOptionsTest, DefaultsAreSpirls) {
  SkillModelOptions options;
  options.obs_dim = 4;
  options.act_dim = 2;
  absl::StatusOr<std::unique_ptr<SkillModel>> model = SkillModel::Create(options);
  ASSERT_TRUE(model.ok()) << model.status();
  const SkillModelOptions& o = (*model)->options();
  EXPECT_EQ(o.horizon, 10);
  EXPECT_EQ(o.latent_dim, 10);
  EXPECT_DOUBLE_EQ(o.beta, 1e-2);
  EXPECT_DOUBLE_EQ(o.lr, 1e-3);
  EXPECT_THAT(o.network.hidden_sizes(), ElementsAre(128, 128, 128, 128, 128));
  EXPECT_EQ(o.network.activation(), v1::NetworkSpec::ACTIVATION_RELU);
  EXPECT_EQ((*model)->kind(), v1::PRIOR_KIND_SKILL_VAE);
  EXPECT_EQ((*model)->horizon(), 10);
}

TEST(SkillModelBatchTest, RefusesBadBatchesAndInputsNamingTheField) {
  std::unique_ptr<SkillModel> model = MakeModel(SmallOptions(0));
  ASSERT_NE(model, nullptr);
  std::mt19937 rng(5);
  const WindowBatch good = RandomWindows(8, rng);
  auto refused = [&](const WindowBatch& batch, const std::string& field) {
    for (bool train : {true, false}) {
      absl::Status status =
          train ? model->TrainStep(batch).status() : model->Evaluate(batch).status();
      EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << field << ": " << status;
      EXPECT_THAT(status.message(), HasSubstr(field + ":"));
    }
  };
  refused({good.obs.narrow(1, 0, kHorizon - 1), good.actions}, "batch.obs");       // H - 1 steps
  refused({good.obs.narrow(2, 0, kObsDim - 1), good.actions}, "batch.obs");        // obs_dim - 1
  refused({good.obs.narrow(0, 0, 0), good.actions.narrow(0, 0, 0)}, "batch.obs");  // B = 0
  refused({good.obs.to(at::kDouble), good.actions}, "batch.obs");
  refused({at::Tensor(), good.actions}, "batch.obs");
  refused({good.obs, good.actions.narrow(0, 0, 4)}, "batch.actions");  // B differs
  refused({good.obs, good.actions.unsqueeze(0)}, "batch.actions");
  at::Tensor nan_actions = good.actions.clone();
  nan_actions[3][2][1] = std::nanf("");
  refused({good.obs, nan_actions}, "batch.actions");
  // a refused batch leaves the model as it was
  absl::StatusOr<Losses> before = model->Evaluate(good);
  absl::StatusOr<Losses> after = model->Evaluate(good);
  ASSERT_TRUE(before.ok() && after.ok());
  EXPECT_EQ(*before, *after);

  const at::Tensor obs = good.obs.select(1, 0);
  const at::Tensor z = at::zeros({8, kLatent});
  EXPECT_THAT(model->Prior(obs.narrow(1, 0, 2)).status().message(), HasSubstr("obs:"));
  EXPECT_THAT(model->Prior(good.obs).status().message(), HasSubstr("obs:"));
  EXPECT_THAT(model->Decode(obs, z.narrow(0, 0, 7)).status().message(), HasSubstr("z:"));
  EXPECT_THAT(model->Decode(obs, z.narrow(1, 0, 3)).status().message(), HasSubstr("z:"));
  EXPECT_THAT(model->Decode(obs.to(at::kDouble), z).status().message(), HasSubstr("obs:"));
  EXPECT_THAT(model->Encode(good.obs).status().message(), HasSubstr("actions:"));
}

// ---- determinism ----

// Every tensor of the two models' artifacts is bit-identical.
void ExpectIdenticalWeights(const SkillModel& a, const SkillModel& b) {
  absl::StatusOr<ModelArtifact> wa = a.ToArtifact(Info());
  absl::StatusOr<ModelArtifact> wb = b.ToArtifact(Info());
  ASSERT_TRUE(wa.ok() && wb.ok());
  ASSERT_EQ(wa->tensors.size(), wb->tensors.size());
  for (size_t i = 0; i < wa->tensors.size(); ++i) {
    EXPECT_EQ(wa->tensors[i].second.bytes(), wb->tensors[i].second.bytes()) << wa->tensors[i].first;
  }
}

TEST(SkillModelDeterminismTest, SameSeedAndBatchesGiveIdenticalLosses) {
  std::unique_ptr<SkillModel> a = MakeModel(SmallOptions(/*seed=*/7));
  std::unique_ptr<SkillModel> b = MakeModel(SmallOptions(/*seed=*/7));
  std::unique_ptr<SkillModel> c = MakeModel(SmallOptions(/*seed=*/8));
  ASSERT_TRUE(a != nullptr && b != nullptr && c != nullptr);
  std::mt19937 rng(3);
  for (int step = 0; step < 20; ++step) {
    const WindowBatch batch = RandomWindows(32, rng);
    absl::StatusOr<Losses> la = a->TrainStep(batch);
    absl::StatusOr<Losses> lb = b->TrainStep(batch);
    absl::StatusOr<Losses> lc = c->TrainStep(batch);
    ASSERT_TRUE(la.ok() && lb.ok() && lc.ok());
    EXPECT_EQ(*la, *lb) << "step " << step;
    EXPECT_NE(la->at("loss"), lc->at("loss")) << "step " << step;
  }
  // the trained weights agree bit for bit too
  ExpectIdenticalWeights(*a, *b);
  // Evaluate draws the same ε every call
  std::mt19937 eval_rng(9);
  const WindowBatch batch = RandomWindows(32, eval_rng);
  absl::StatusOr<Losses> first = a->Evaluate(batch);
  absl::StatusOr<Losses> second = a->Evaluate(batch);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(*first, *second);
}

// ---- data-parallel steps on several threads ----

// Sets the intra-op thread count for a scope.
class ThreadCount {
 public:
  explicit ThreadCount(int threads) : saved_(at::get_num_threads()) {
    at::set_num_threads(threads);
  }
  ~ThreadCount() { at::set_num_threads(saved_); }

 private:
  int saved_;
};

TEST(SkillModelShardingTest, StepsSplitTheBatchPerThreadWhileShardsKeepEnoughRows) {
  const c10::Device cpu(at::kCPU);
  {
    ThreadCount threads(1);
    EXPECT_EQ(prior_util::TrainingShards(128, kHorizon, cpu), 1);
  }
  ThreadCount threads(2);
  if (at::get_num_threads() != 2) GTEST_SKIP() << "this LibTorch cannot run 2 intra-op threads";
  // 128 windows of 10 steps: two shards of 640 decoder rows
  EXPECT_EQ(prior_util::TrainingShards(128, kHorizon, cpu), 2);
  EXPECT_EQ(prior_util::TrainingShards(64, kHorizon, cpu), 2);
  EXPECT_EQ(prior_util::TrainingShards(63, kHorizon, cpu), 1);
  // a flow's or CVAE's rows are single passes: 128 of them stay on one thread
  EXPECT_EQ(prior_util::TrainingShards(128, 1, cpu), 1);
  EXPECT_EQ(prior_util::TrainingShards(2 * prior_util::kMinShardNetworkRows, 1, cpu), 2);
}

TEST(SkillModelShardingTest, ShardedStepsMatchOneThreadAndAreDeterministic) {
  // the same model and batches trained on 1 thread (one shard) and twice on 2 (two shards of 64
  // windows): the sharded runs agree bit for bit, and with the unsharded one up to rounding
  std::unique_ptr<SkillModel> single = MakeModel(SmallOptions(/*seed=*/5));
  std::unique_ptr<SkillModel> sharded = MakeModel(SmallOptions(/*seed=*/5));
  std::unique_ptr<SkillModel> again = MakeModel(SmallOptions(/*seed=*/5));
  ASSERT_TRUE(single != nullptr && sharded != nullptr && again != nullptr);
  std::mt19937 rng(11);
  const WindowBatch held_out = RandomWindows(128, rng);
  absl::StatusOr<Losses> before = sharded->Evaluate(held_out);
  ASSERT_TRUE(before.ok()) << before.status();
  for (int step = 0; step < 15; ++step) {
    const WindowBatch batch = RandomWindows(128, rng);
    absl::StatusOr<Losses> one;
    {
      ThreadCount threads(1);
      one = single->TrainStep(batch);
    }
    ThreadCount threads(2);
    if (at::get_num_threads() != 2) GTEST_SKIP() << "this LibTorch cannot run 2 intra-op threads";
    ASSERT_EQ(prior_util::TrainingShards(128, kHorizon, c10::Device(at::kCPU)), 2);
    absl::StatusOr<Losses> two = sharded->TrainStep(batch);
    absl::StatusOr<Losses> two_again = again->TrainStep(batch);
    ASSERT_TRUE(one.ok() && two.ok() && two_again.ok()) << two.status();
    EXPECT_EQ(*two, *two_again) << "step " << step;
    ASSERT_EQ(one->size(), two->size());
    for (const auto& [name, value] : *one) {
      EXPECT_NEAR(two->at(name), value, 1e-4 * std::max(1.0, std::abs(value)))
          << name << " at step " << step;
    }
  }
  absl::StatusOr<Losses> after = sharded->Evaluate(held_out);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_LT(after->at("loss"), before->at("loss")) << "the sharded steps should train the model";
  ExpectIdenticalWeights(*sharded, *again);
}

// ---- the autograd-free CPU step ----

// `model` with its encoder's and prior's log σ biases set to `value` in every other latent
// dimension (its Adam state and generator kept), so those heads sit beyond a clamp.
void PushLogStdBiases(SkillModel* model, float value) {
  absl::StatusOr<ModelArtifact> state = model->TrainingState(Info());
  ASSERT_TRUE(state.ok()) << state.status();
  for (auto& [name, tensor] : state->tensors) {
    if (name != "encoder.log_std.bias" && name != "prior.log_std.bias") continue;
    at::Tensor bias = ToTorch(tensor.view()).clone();
    for (int64_t j = 0; j < bias.size(0); j += 2) bias[j] = value;
    absl::StatusOr<HostTensor> host = FromTorch(bias);
    ASSERT_TRUE(host.ok());
    tensor = *std::move(host);
  }
  ASSERT_TRUE(model->RestoreTrainingState(*state).ok());
}

// The two paths' gradients and terms on the same weights, ε and batch agree up to float
// rounding, at 1 and 2 threads (one and two shards), also where the log σ clamps stop the
// gradient; and training with the direct path lowers the loss like the autograd path.
TEST(SkillModelDirectStepTest, GradientMatchesAutogradIncludingClampedHeads) {
  if (!prior_util::DirectStepAvailable(c10::Device(at::kCPU))) {
    GTEST_SKIP() << "no oneDNN sgemm in this process: the direct step does not apply";
  }
  for (int threads : {1, 2}) {
    for (float push : {0.0f, 3.0f, -11.0f}) {
      SCOPED_TRACE(absl::StrCat(threads, " threads, log σ biases ", push));
      ThreadCount scope(threads);
      SkillModelOptions options = SmallOptions(/*seed=*/13);
      std::unique_ptr<SkillModel> direct = MakeModel(options);
      options.direct_cpu_step = false;
      std::unique_ptr<SkillModel> reference = MakeModel(options);
      ASSERT_TRUE(direct != nullptr && reference != nullptr);
      if (push != 0.0f) {
        PushLogStdBiases(direct.get(), push);
        PushLogStdBiases(reference.get(), push);
      }
      std::mt19937 rng(17);
      for (int step = 0; step < 3; ++step) {
        const WindowBatch batch = RandomWindows(128, rng);
        at::Tensor g_direct, g_reference;
        absl::StatusOr<Losses> l_direct = direct->Gradient(batch, &g_direct);
        absl::StatusOr<Losses> l_reference = reference->Gradient(batch, &g_reference);
        ASSERT_TRUE(l_direct.ok()) << l_direct.status();
        ASSERT_TRUE(l_reference.ok()) << l_reference.status();
        ASSERT_EQ(l_direct->size(), l_reference->size());
        for (const auto& [name, value] : *l_reference) {
          EXPECT_NEAR(l_direct->at(name), value, 1e-5 * std::max(1.0, std::abs(value))) << name;
        }
        const double scale = g_reference.abs().max().item<double>();
        ASSERT_GT(scale, 0.0);
        EXPECT_LE((g_direct - g_reference).abs().max().item<double>(), 1e-4 * scale)
            << "step " << step;
        // where a clamp holds, neither path has a gradient for that head's bias
        if (push != 0.0f) {
          EXPECT_EQ((g_direct == 0).sum().item<int64_t>(),
                    (g_reference == 0).sum().item<int64_t>());
        }
        ASSERT_TRUE(direct->TrainStep(batch).ok());
        ASSERT_TRUE(reference->TrainStep(batch).ok());
      }
    }
  }
}

}  // namespace
}  // namespace prl::models
