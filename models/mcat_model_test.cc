#include "models/mcat_model.h"

#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "ATen/CPUGeneratorImpl.h"
#include "ATen/Parallel.h"
#include "ATen/core/grad_mode.h"
#include "absl/status/status.h"
#include "common/tensor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/artifact.h"
#include "models/gemm.h"
#include "models/networks.h"
#include "proto/experiment.pb.h"
#include "proto/prior.pb.h"

namespace prl::models {
namespace {

using ::testing::HasSubstr;

// ---- a world of tasks that differ in how actions move the state ----
//
// s' = s + A_task·a + small noise, with A_0 = 0.3·I, A_1 = 0.3·R(90°) and A_2 = -0.3·I. A
// context encoder must read A from a few transitions; the translator from task 0 to task 1 must
// learn ã = R(-90°)·a, the action that moves the state on task 1 as `a` does on task 0.

constexpr int kObs = 2;
constexpr int kAct = 2;
constexpr int kContext = 2;
constexpr int kHistory = 4;  // K
constexpr int kHorizon = 3;  // M
constexpr int kWindow = kHistory + kHorizon;
constexpr float kNoise = 0.01f;

// A_task·a.
std::pair<float, float> Move(int task, float a0, float a1) {
  switch (task) {
    case 0:
      return {0.3f * a0, 0.3f * a1};
    case 1:
      return {-0.3f * a1, 0.3f * a0};
    default:
      return {-0.3f * a0, -0.3f * a1};
  }
}

// `rows` windows of tasks drawn from `tasks`; with `partial`, some windows begin with up to two
// transitions from before their episode (zeros, mask 0).
McatWindowBatch Windows(int rows, std::mt19937& rng, const std::vector<int>& tasks = {0, 1},
                        bool partial = true) {
  std::uniform_real_distribution<float> state(-1.0f, 1.0f), action(-0.8f, 0.8f);
  std::normal_distribution<float> noise(0.0f, kNoise);
  std::uniform_int_distribution<int> pick(0, static_cast<int>(tasks.size()) - 1);
  std::uniform_int_distribution<int> missing(0, partial ? 2 : 0);
  McatWindowBatch b;
  b.observations = at::zeros({rows, kWindow + 1, kObs}, at::kFloat);
  b.actions = at::zeros({rows, kWindow, kAct}, at::kFloat);
  b.mask = at::ones({rows, kWindow}, at::kFloat);
  b.task = at::zeros({rows}, at::kLong);
  auto o = b.observations.accessor<float, 3>();
  auto a = b.actions.accessor<float, 3>();
  auto m = b.mask.accessor<float, 2>();
  for (int r = 0; r < rows; ++r) {
    const int task = tasks[pick(rng)];
    b.task[r] = task;
    const int first = missing(rng);
    for (int j = 0; j < first; ++j) m[r][j] = 0;
    o[r][first][0] = state(rng);
    o[r][first][1] = state(rng);
    for (int j = first; j < kWindow; ++j) {
      a[r][j][0] = action(rng);
      a[r][j][1] = action(rng);
      const auto [d0, d1] = Move(task, a[r][j][0], a[r][j][1]);
      o[r][j + 1][0] = o[r][j][0] + d0 + noise(rng);
      o[r][j + 1][1] = o[r][j][1] + d1 + noise(rng);
    }
  }
  return b;
}

v1::NetworkSpec Network(std::vector<int> sizes) {
  v1::NetworkSpec n;
  for (int s : sizes) n.add_hidden_sizes(s);
  n.set_activation(v1::NetworkSpec::ACTIVATION_RELU);
  return n;
}

McatDims Dims() {
  McatDims d;
  d.obs_dim = kObs;
  d.action_dim = kAct;
  d.context_dim = kContext;
  d.context_history = kHistory;
  return d;
}

McatModelOptions SmallOptions(uint64_t seed = 3) {
  McatModelOptions o;
  o.dims = Dims();
  o.prediction_horizon = kHorizon;
  o.num_tasks = 2;
  o.network = Network({64, 64});
  o.model_lr = 3e-3;
  o.translator_lr = 3e-3;
  o.seed = seed;
  return o;
}

std::unique_ptr<McatModel> Make(const McatModelOptions& options) {
  absl::StatusOr<std::unique_ptr<McatModel>> model = McatModel::Create(options);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? *std::move(model) : nullptr;
}

// The tensors of a SaveState, by name.
std::map<std::string, at::Tensor> StateTensors(const std::string& bytes) {
  absl::StatusOr<ModelArtifact> state = ParseModelArtifact(bytes, "state");
  EXPECT_TRUE(state.ok()) << state.status();
  std::map<std::string, at::Tensor> named;
  if (!state.ok()) return named;
  for (const auto& [name, host] : state->tensors) {
    at::Tensor t = at::empty(host.shape(), at::kFloat);
    std::memcpy(t.data_ptr<float>(), host.bytes().data(), host.bytes().size());
    named[name] = t;
  }
  return named;
}

// Copies the tensors named like `block`'s parameters into it.
void Fill(ParameterBlock* block, const std::map<std::string, at::Tensor>& named) {
  at::NoGradGuard no_grad;
  for (int i = 0; i < block->size(); ++i) {
    auto it = named.find(block->name(i));
    ASSERT_NE(it, named.end()) << block->name(i);
    block->param(i).copy_(it->second);
  }
}

// F and C rebuilt in the test from a model's saved state.
struct Networks {
  Networks(const std::string& state, const McatDims& dims, const v1::NetworkSpec& network)
      : encoder(&block, "context_encoder", dims, network),
        forward(&block, "forward_model", dims, network) {
    block.Allocate(at::kCPU, /*requires_grad=*/false);
    Fill(&block, StateTensors(state));
  }
  ParameterBlock block;
  ContextEncoder encoder;
  ForwardModel forward;
};

double Softplus(double x) { return x > 20 ? x : std::log1p(std::exp(x)); }

// ---- the losses, by hand ----

// Rows 0 and 1 of task 0, row 2 of task 1, margin 2: the pairs (0,1), (1,0) pull with ‖d‖² = 25;
// (0,2), (2,0) push with max(0, 2 - 0.5) = 1.5; (1,2), (2,1) are farther than the margin.
TEST(ContrastiveLossTest, MatchesHandComputedValueAndGradient) {
  at::Tensor z = at::tensor({0.0f, 0.0f, 3.0f, 4.0f, 0.0f, 0.5f}).view({3, 2}).requires_grad_();
  at::Tensor task = at::tensor({0, 0, 1}, at::kLong);
  at::Tensor loss = ContrastiveLoss(z, task, 2.0);
  EXPECT_NEAR(loss.item<double>(), (2 * 25 + 2 * 1.5) / 6.0, 1e-5);
  loss.backward();
  // ∂/∂z_0: 2·2(z_0 - z_1)/6 from the positive pairs, 2·(z_2 - z_0)/‖z_2 - z_0‖/6 from the hinge
  at::Tensor g = z.grad();
  EXPECT_NEAR(g[0][0].item<double>(), 4 * -3.0 / 6, 1e-5);
  EXPECT_NEAR(g[0][1].item<double>(), 4 * -4.0 / 6 + 2 * 1.0 / 6, 1e-5);
  // ∂/∂z_2: only the hinge pairs with row 0
  EXPECT_NEAR(g[2][0].item<double>(), 0.0, 1e-5);
  EXPECT_NEAR(g[2][1].item<double>(), -2 * 1.0 / 6, 1e-5);
}

// Two tasks with the same context: the hinge is at its full margin and the gradient is finite.
TEST(ContrastiveLossTest, CoincidingContextsOfDifferentTasksStayFinite) {
  at::Tensor z = at::ones({2, 3}).requires_grad_();
  at::Tensor loss = ContrastiveLoss(z, at::tensor({0, 1}, at::kLong), 1.0);
  EXPECT_NEAR(loss.item<double>(), 1.0, 1e-5);
  loss.backward();
  EXPECT_TRUE(at::isfinite(z.grad()).all().item<bool>());
  EXPECT_EQ(
      ContrastiveLoss(z.detach().narrow(0, 0, 1), at::tensor({0}, at::kLong), 1.0).item<double>(),
      0.0);
}

// A forward model with one hidden layer of 3, its parameters drawn at random: LogProb equals the
// Gaussian log density of s' - s written out by hand, with the soft bounds on log σ (one row's
// log σ head is pushed far above 2 to exercise them).
TEST(ForwardModelTest, LogProbIsTheHandComputedGaussianLogDensity) {
  McatDims dims;
  dims.obs_dim = 2;
  dims.action_dim = 1;
  dims.context_dim = 1;
  const v1::NetworkSpec network = Network({3});
  ParameterBlock block;
  ForwardModel forward(&block, "forward_model", dims, network);
  block.Allocate(at::kCPU, /*requires_grad=*/false);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(7);
  block.Initialize(gen);
  std::map<std::string, at::Tensor> p;
  for (int i = 0; i < block.size(); ++i) p[block.name(i)] = block.param(i).to(at::kDouble);
  const int rows = 4;
  at::Tensor obs = at::randn({rows, 2}, gen);
  at::Tensor action = at::randn({rows, 1}, gen);
  at::Tensor z = at::randn({rows, 1}, gen);
  z[3][0] = 40.0f;  // drives the log σ head past its upper bound
  at::Tensor next = obs + at::randn({rows, 2}, gen) * 0.5;
  at::Tensor log_prob =
      forward.LogProb(block, obs, action, z, next, GemmBackend::kAten).to(at::kDouble);
  for (int b = 0; b < rows; ++b) {
    const double x[4] = {obs[b][0].item<double>(), obs[b][1].item<double>(),
                         action[b][0].item<double>(), z[b][0].item<double>()};
    double h[3];
    for (int j = 0; j < 3; ++j) {
      double v = p["forward_model.trunk.0.bias"][j].item<double>();
      for (int i = 0; i < 4; ++i)
        v += p["forward_model.trunk.0.weight"][j][i].item<double>() * x[i];
      h[j] = std::max(0.0, v);
    }
    double expected = 0;
    for (int d = 0; d < 2; ++d) {
      double mean = p["forward_model.mean.bias"][d].item<double>();
      double raw = p["forward_model.log_std.bias"][d].item<double>();
      for (int j = 0; j < 3; ++j) {
        mean += p["forward_model.mean.weight"][d][j].item<double>() * h[j];
        raw += p["forward_model.log_std.weight"][d][j].item<double>() * h[j];
      }
      double log_std = 2.0 - Softplus(2.0 - raw);
      log_std = -20.0 + Softplus(log_std + 20.0);
      const double delta = next[b][d].item<double>() - obs[b][d].item<double>();
      const double u = (delta - mean) / std::exp(log_std);
      expected += -0.5 * u * u - log_std - 0.5 * std::log(2 * M_PI);
    }
    EXPECT_NEAR(log_prob[b].item<double>(), expected, 1e-4 * std::max(1.0, std::abs(expected)))
        << "row " << b;
  }
}

// K = 2, one state and one action dimension, one hidden layer: C's input is
// [s_0, a_0, s_1 - s_0, s_1, a_1, s_2 - s_1], with the first transition zeroed when masked.
TEST(ContextEncoderTest, ReadsMaskedTransitionsAsStateActionAndDelta) {
  McatDims dims;
  dims.obs_dim = 1;
  dims.action_dim = 1;
  dims.context_dim = 2;
  dims.context_history = 2;
  ParameterBlock block;
  ContextEncoder encoder(&block, "context_encoder", dims, Network({4}));
  block.Allocate(at::kCPU, /*requires_grad=*/false);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(2);
  block.Initialize(gen);
  at::Tensor obs = at::tensor({0.5f, -0.2f, 0.9f, 0.1f, 0.4f, -0.7f}).view({2, 3, 1});
  at::Tensor act = at::tensor({0.3f, -0.6f, 0.8f, 0.2f}).view({2, 2, 1});
  at::Tensor mask = at::tensor({1.0f, 1.0f, 0.0f, 1.0f}).view({2, 2});
  at::Tensor z = encoder.Forward(block, obs, act, mask, GemmBackend::kAten).to(at::kDouble);
  at::Tensor w0 = block.param(0).to(at::kDouble), b0 = block.param(1).to(at::kDouble);
  at::Tensor w1 = block.param(2).to(at::kDouble), b1 = block.param(3).to(at::kDouble);
  ASSERT_EQ(block.name(2), "context_encoder.out.weight");
  for (int r = 0; r < 2; ++r) {
    double x[6];
    for (int j = 0; j < 2; ++j) {
      const double m = mask[r][j].item<double>();
      const double s = obs[r][j][0].item<double>(), s1 = obs[r][j + 1][0].item<double>();
      x[3 * j] = m * s;
      x[3 * j + 1] = m * act[r][j][0].item<double>();
      x[3 * j + 2] = m * (s1 - s);
    }
    double h[4];
    for (int k = 0; k < 4; ++k) {
      double v = b0[k].item<double>();
      for (int i = 0; i < 6; ++i) v += w0[k][i].item<double>() * x[i];
      h[k] = std::max(0.0, v);
    }
    for (int c = 0; c < 2; ++c) {
      double v = b1[c].item<double>();
      for (int k = 0; k < 4; ++k) v += w1[c][k].item<double>() * h[k];
      EXPECT_NEAR(z[r][c].item<double>(), v, 1e-5) << "row " << r;
    }
  }
}

// TrainContext reports, before its step, L_forw = mean over rows of -Σ_m log F over the M steps
// after the first K transitions (masked steps left out) and L_cont on z_t from those K, and
// model_loss = L_forw + w·L_cont — recomputed here step by step from the saved parameters.
TEST(McatModelTest, ContextLossesAreTheForwardNllAndContrastiveTerms) {
  McatModelOptions options = SmallOptions();
  options.contrastive_weight = 0.5;
  std::unique_ptr<McatModel> model = Make(options);
  ASSERT_NE(model, nullptr);
  std::mt19937 rng(5);
  McatWindowBatch batch = Windows(16, rng);
  // leave out a prediction step of row 0 (as if its episode began there)
  batch.mask[0].narrow(0, 0, kHistory + 1).zero_();
  absl::StatusOr<std::string> state = model->SaveState();
  ASSERT_TRUE(state.ok()) << state.status();
  Networks net(*state, options.dims, options.network);
  absl::StatusOr<std::map<std::string, double>> losses = model->TrainContext(batch);
  ASSERT_TRUE(losses.ok()) << losses.status();

  at::Tensor z = net.encoder.Forward(net.block, batch.observations.narrow(1, 0, kHistory + 1),
                                     batch.actions.narrow(1, 0, kHistory),
                                     batch.mask.narrow(1, 0, kHistory), GemmBackend::kAten);
  double forward_loss = 0;
  for (int m = 0; m < kHorizon; ++m) {
    const int j = kHistory + m;
    at::Tensor lp =
        net.forward.LogProb(net.block, batch.observations.select(1, j), batch.actions.select(1, j),
                            z, batch.observations.select(1, j + 1), GemmBackend::kAten);
    forward_loss -= (lp * batch.mask.select(1, j)).sum().item<double>();
  }
  forward_loss /= 16;
  const double contrastive =
      ContrastiveLoss(z, batch.task, options.contrastive_margin).item<double>();
  EXPECT_NEAR(losses->at("forward_loss"), forward_loss, 1e-4 * std::abs(forward_loss));
  EXPECT_NEAR(losses->at("contrastive_loss"), contrastive, 1e-5);
  EXPECT_NEAR(losses->at("model_loss"), forward_loss + 0.5 * contrastive,
              1e-4 * std::abs(forward_loss));
}

// Task features: the first batch of a task sets its feature to the batch's mean z_{t+1}; later
// ones move it by the rate; a task not in the batch keeps its feature (and stays unseen).
TEST(McatModelTest, TaskFeaturesAreAMovingAverageOfBatchMeans) {
  McatModelOptions options = SmallOptions();
  options.task_feature_rate = 0.25;
  std::unique_ptr<McatModel> model = Make(options);
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(model->task_seen(), (std::vector<bool>{false, false}));
  std::mt19937 rng(6);
  auto mean_next_context = [&](const McatWindowBatch& b) {
    return model->EncodeRows(b).second.mean(0);
  };
  McatWindowBatch first = Windows(8, rng, {0});
  ASSERT_TRUE(model->TrainContext(first).ok());
  EXPECT_EQ(model->task_seen(), (std::vector<bool>{true, false}));
  at::Tensor f1 = model->task_features();
  EXPECT_TRUE(at::allclose(f1[0], mean_next_context(first), 1e-5, 1e-6));
  EXPECT_EQ(at::count_nonzero(f1[1]).item<int64_t>(), 0);

  McatWindowBatch second = Windows(8, rng, {0});
  ASSERT_TRUE(model->TrainContext(second).ok());
  at::Tensor f2 = model->task_features();
  EXPECT_TRUE(at::allclose(f2[0], f1[0] * 0.75 + mean_next_context(second) * 0.25, 1e-5, 1e-6));
  EXPECT_EQ(model->task_seen(), (std::vector<bool>{true, false}));
  // a translator has nothing to translate between yet
  absl::StatusOr<std::map<std::string, double>> t = model->TrainTranslator(second);
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->empty());
}

// EncodeRows: z_t from transitions W-1-K .. W-2 and z_{t+1} from W-K .. W-1.
TEST(McatModelTest, EncodeRowsReadsTheKTransitionsBeforeAndEndingWithTheRow) {
  std::unique_ptr<McatModel> model = Make(SmallOptions());
  ASSERT_NE(model, nullptr);
  std::mt19937 rng(8);
  McatWindowBatch b = Windows(5, rng);
  auto [z_t, z_next] = model->EncodeRows(b);
  const int w = kWindow;
  at::Tensor want_t = model->Encode(b.observations.narrow(1, w - 1 - kHistory, kHistory + 1),
                                    b.actions.narrow(1, w - 1 - kHistory, kHistory),
                                    b.mask.narrow(1, w - 1 - kHistory, kHistory));
  at::Tensor want_next = model->Encode(b.observations.narrow(1, w - kHistory, kHistory + 1),
                                       b.actions.narrow(1, w - kHistory, kHistory),
                                       b.mask.narrow(1, w - kHistory, kHistory));
  EXPECT_TRUE(at::allclose(z_t, want_t, 1e-5, 1e-6));
  EXPECT_TRUE(at::allclose(z_next, want_next, 1e-5, 1e-6));
  EXPECT_EQ(z_t.sizes().vec(), (std::vector<int64_t>{5, kContext}));
}

// With two tasks each row's target is the other one, so TrainTranslator's loss (before its
// step) is -log F(s_{t+1} | s_t, H(s_t, a_t, z_src, z_tgt), z_tgt) under the saved F.
TEST(McatModelTest, TranslatorLossIsTheForwardNllAtTheTranslatedAction) {
  McatModelOptions options = SmallOptions();
  std::unique_ptr<McatModel> model = Make(options);
  ASSERT_NE(model, nullptr);
  std::mt19937 rng(9);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(model->TrainContext(Windows(16, rng)).ok());
  ASSERT_EQ(model->task_seen(), (std::vector<bool>{true, true}));
  absl::StatusOr<std::string> state = model->SaveState();
  ASSERT_TRUE(state.ok());
  Networks net(*state, options.dims, options.network);
  McatWindowBatch batch = Windows(16, rng);
  at::Tensor features = model->task_features();
  at::Tensor source = features.index_select(0, batch.task);
  at::Tensor target = features.index_select(0, 1 - batch.task);
  at::Tensor s = batch.observations.select(1, kWindow - 1);
  at::Tensor translated = model->Translate(s, batch.actions.select(1, kWindow - 1), source, target);
  EXPECT_LE(translated.abs().max().item<double>(), 1.0);
  const double expected = -net.forward
                               .LogProb(net.block, s, translated, target,
                                        batch.observations.select(1, kWindow), GemmBackend::kAten)
                               .mean()
                               .item<double>();
  absl::StatusOr<std::map<std::string, double>> losses = model->TrainTranslator(batch);
  ASSERT_TRUE(losses.ok()) << losses.status();
  EXPECT_NEAR(losses->at("translator_loss"), expected, 1e-4 * std::max(1.0, std::abs(expected)));
  // C and F did not move
  absl::StatusOr<std::string> after = model->SaveState();
  ASSERT_TRUE(after.ok());
  std::map<std::string, at::Tensor> before_t = StateTensors(*state), after_t = StateTensors(*after);
  for (const auto& [name, t] : before_t) {
    if (name.rfind("context_encoder.", 0) == 0 || name.rfind("forward_model.", 0) == 0) {
      EXPECT_TRUE(at::equal(t, after_t.at(name))) << name;
    }
  }
}

// ---- the autograd-free step against autograd ----

// ForwardNllWithGradient against LogProb's autograd, one state dimension per column of 4 rows,
// with log σ heads inside, near and far beyond both soft bounds (past softplus's threshold of
// 20); row 2 unused.
TEST(DirectMcatTermsTest, ForwardNllAndItsDerivativesMatchAutograd) {
  const std::vector<float> raws = {-45.0f, -21.0f, -19.5f, -3.0f, 0.0f, 1.9f, 2.5f, 30.0f};
  const int64_t rows = 4, dims = 2;
  at::Tensor raw = at::tensor(raws).view({rows, dims}).requires_grad_();
  at::Tensor mean = (at::arange(rows * dims, at::kFloat) * 0.3 - 1.0).view({rows, dims});
  mean.requires_grad_();
  const at::Tensor delta = at::linspace(-2.0, 2.5, rows * dims, at::kFloat).view({rows, dims});
  const at::Tensor use = at::tensor({1.0f, 1.0f, 0.0f, 1.0f});
  // LogProb's bounds and density, written with LibTorch ops as in ForwardModel::LogProb
  at::Tensor log_std = 2.0 - at::softplus(2.0 - raw);
  log_std = -20.0 + at::softplus(log_std + 20.0);
  const at::Tensor nll = (((delta - mean) * at::exp(-log_std)).square() * 0.5 + log_std).sum(1) +
                         dims * 0.5 * std::log(2 * M_PI);
  const at::Tensor loss = (nll * use).sum() * 0.25;
  loss.backward();
  std::vector<float> d_mean(rows * dims), d_raw(rows * dims);
  const at::Tensor rc = raw.detach().contiguous(), mc = mean.detach().contiguous();
  const double sum =
      ForwardNllWithGradient(delta.data_ptr<float>(), mc.data_ptr<float>(), rc.data_ptr<float>(),
                             use.data_ptr<float>(), rows, dims, 0.25f, d_mean.data(), d_raw.data());
  const double want = (nll * use).sum().item<double>();
  EXPECT_NEAR(sum, want, 1e-5 * std::abs(want));
  for (int64_t i = 0; i < rows * dims; ++i) {
    const double gm = mean.grad().view({-1})[i].item<double>();
    const double gr = raw.grad().view({-1})[i].item<double>();
    EXPECT_NEAR(d_mean[i], gm, 1e-5 * std::max(1.0, std::abs(gm))) << "raw " << raws[i];
    EXPECT_NEAR(d_raw[i], gr, 1e-5 * std::max(1.0, std::abs(gr))) << "raw " << raws[i];
  }
  EXPECT_EQ(d_mean[4], 0.0f);  // the unused row
  EXPECT_EQ(d_raw[5], 0.0f);
  EXPECT_NE(d_raw[0], 0.0f);
}

// ContrastiveLossWithGradient against ContrastiveLoss's autograd on 24 contexts of 3 tasks, some
// pairs of different tasks inside the margin and some beyond it.
TEST(DirectMcatTermsTest, ContrastiveLossAndGradientMatchAutograd) {
  at::manual_seed(4);
  const int64_t rows = 24, dim = 3;
  at::Tensor z = (at::randn({rows, dim}) * 0.6).requires_grad_();
  const at::Tensor task = at::arange(rows, at::kLong).remainder(3);
  const double margin = 1.0;
  const at::Tensor loss = ContrastiveLoss(z, task, margin);
  loss.backward();
  const at::Tensor zc = z.detach().contiguous();
  std::vector<float> grad(static_cast<size_t>(rows * dim));
  const double value = ContrastiveLossWithGradient(zc.data_ptr<float>(), task.data_ptr<int64_t>(),
                                                   rows, dim, margin, 0.5f, grad.data());
  EXPECT_NEAR(value, loss.item<double>(), 1e-5 * std::abs(loss.item<double>()));
  const at::Tensor want = z.grad() * 0.5;
  const double scale = want.abs().max().item<double>();
  ASSERT_GT(scale, 0);
  for (int64_t i = 0; i < rows * dim; ++i) {
    EXPECT_NEAR(grad[static_cast<size_t>(i)], want.view({-1})[i].item<double>(), 1e-5 * scale)
        << "entry " << i;
  }
  // the hinge: both kinds of different-task pairs occur
  const at::Tensor d = at::cdist(zc, zc);
  const at::Tensor other = task.unsqueeze(1) != task.unsqueeze(0);
  EXPECT_GT((d.lt(margin).logical_and(other)).sum().item<int64_t>(), 0);
  EXPECT_GT((d.gt(margin).logical_and(other)).sum().item<int64_t>(), 0);
}

// The largest entry of |a - b| relative to b's largest entry.
double RelativeDifference(const at::Tensor& a, const at::Tensor& b) {
  const double scale = b.abs().max().item<double>();
  return (a - b).abs().max().item<double>() / std::max(scale, 1e-30);
}

// Two models with the same seed, one on the autograd-free step and one on autograd, fed the same
// batches (3 tasks, windows that begin before their episode, a row whose own transition is
// masked): every step's losses and the gradients it stepped with agree, and so do all weights
// after six steps of C, F and H. The gradients are compared, not only the weights: Adam's
// normalisation would hide a gradient off by a constant factor. With 2 threads and 256 windows
// the forward model's rows are split into two shards.
void ExpectDirectMatchesAutograd(int threads, int rows) {
  const int threads_before = at::get_num_threads();
  at::set_num_threads(threads);
  McatModelOptions options = SmallOptions(/*seed=*/6);
  options.num_tasks = 3;
  options.contrastive_weight = 0.5;
  options.direct_cpu_step = true;
  std::unique_ptr<McatModel> direct = Make(options);
  options.direct_cpu_step = false;
  std::unique_ptr<McatModel> autograd = Make(options);
  ASSERT_NE(direct, nullptr);
  ASSERT_NE(autograd, nullptr);
  ASSERT_TRUE(direct->direct_step());
  ASSERT_FALSE(autograd->direct_step());
  std::mt19937 rng(12);
  for (int step = 0; step < 6; ++step) {
    McatWindowBatch batch = Windows(rows, rng, {0, 1, 2});
    batch.mask[3][kWindow - 1] = 0;  // row 3's own transition: no translator row
    absl::StatusOr<std::map<std::string, double>> a = direct->TrainContext(batch);
    absl::StatusOr<std::map<std::string, double>> b = autograd->TrainContext(batch);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    for (const char* name : {"forward_loss", "contrastive_loss", "model_loss"}) {
      EXPECT_NEAR(a->at(name), b->at(name), 1e-4 * std::max(1.0, std::abs(b->at(name))))
          << name << " at step " << step;
    }
    absl::StatusOr<std::map<std::string, double>> ta = direct->TrainTranslator(batch);
    absl::StatusOr<std::map<std::string, double>> tb = autograd->TrainTranslator(batch);
    ASSERT_TRUE(ta.ok()) << ta.status();
    ASSERT_TRUE(tb.ok()) << tb.status();
    ASSERT_EQ(ta->size(), tb->size());
    if (step > 0) {
      ASSERT_EQ(ta->count("translator_loss"), 1u) << "step " << step;
    }
    for (const auto& [name, value] : *tb) {
      EXPECT_NEAR(ta->at(name), value, 1e-4 * std::max(1.0, std::abs(value))) << name;
    }
    const auto [model_a, translator_a] = direct->last_gradients();
    const auto [model_b, translator_b] = autograd->last_gradients();
    EXPECT_LT(RelativeDifference(model_a, model_b), 1e-4) << "C and F's gradient, step " << step;
    if (!tb->empty()) {
      EXPECT_LT(RelativeDifference(translator_a, translator_b), 1e-4)
          << "H's gradient, step " << step;
    }
    EXPECT_TRUE(at::allclose(direct->task_features(), autograd->task_features(), 1e-4, 1e-5));
  }
  absl::StatusOr<std::string> sa = direct->SaveState(), sb = autograd->SaveState();
  ASSERT_TRUE(sa.ok());
  ASSERT_TRUE(sb.ok());
  const std::map<std::string, at::Tensor> wa = StateTensors(*sa), wb = StateTensors(*sb);
  for (const auto& [name, t] : wb) {
    if (name.rfind("training.generator", 0) == 0) continue;
    // Adam divides by the root of the second moment, so where a gradient is near zero the
    // rounding of sums taken in another order (two shards) moves a weight by up to a few
    // hundredths of lr (3e-5 seen on an AMD EPYC host); a wrong gradient moves it by about lr
    // (3e-3) per step
    EXPECT_LT((wa.at(name) - t).abs().max().item<double>(), 1e-4) << name;
  }
  at::set_num_threads(threads_before);
}

TEST(DirectMcatStepTest, LossesGradientsAndWeightsMatchTheAutogradStep) {
  if (!FastSgemmAvailable()) GTEST_SKIP() << "no oneDNN sgemm: only the autograd step exists";
  ExpectDirectMatchesAutograd(/*threads=*/1, /*rows=*/32);
}

TEST(DirectMcatStepTest, TwoShardsMatchTheAutogradStep) {
  if (!FastSgemmAvailable()) GTEST_SKIP() << "no oneDNN sgemm: only the autograd step exists";
  ExpectDirectMatchesAutograd(/*threads=*/2, /*rows=*/256);
}

// A non-finite loss on the autograd-free step is refused and moves no weight.
TEST(DirectMcatStepTest, NonFiniteLossIsRefusedAndChangesNothing) {
  std::unique_ptr<McatModel> model = Make(SmallOptions());
  ASSERT_NE(model, nullptr);
  if (!model->direct_step()) GTEST_SKIP() << "no oneDNN sgemm";
  std::mt19937 rng(2);
  McatWindowBatch batch = Windows(16, rng);
  // finite (inputs with NaN are refused before the step), but its square overflows
  batch.observations[0][kWindow][0] = 3e38f;
  absl::StatusOr<std::string> before = model->SaveState();
  ASSERT_TRUE(before.ok());
  absl::StatusOr<std::map<std::string, double>> result = model->TrainContext(batch);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(result.status().message(), HasSubstr("not updated"));
  absl::StatusOr<std::string> after = model->SaveState();
  ASSERT_TRUE(after.ok());
  const std::map<std::string, at::Tensor> was = StateTensors(*before), is = StateTensors(*after);
  ASSERT_EQ(was.size(), is.size());
  for (const auto& [name, t] : was) EXPECT_TRUE(at::equal(t, is.at(name))) << name;
}

// ---- learning ----

// Trained on the two-task world (1000 steps of C and F, 600 of H; about 2 s): contexts of one
// task lie about 10 times closer together than contexts of different tasks (checked at 5), and
// H learns the rotation, so the translated action moves the state on task 1 as the source
// action did on task 0 — under the true dynamics (about 200 times closer than the untranslated
// action) and under F.
class McatLearningTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = Make(SmallOptions(/*seed=*/11)).release();
    std::mt19937 rng(12);
    for (int i = 0; i < 1000; ++i) {
      absl::StatusOr<std::map<std::string, double>> l = model_->TrainContext(Windows(64, rng));
      ASSERT_TRUE(l.ok()) << l.status();
    }
    for (int i = 0; i < 600; ++i) {
      absl::StatusOr<std::map<std::string, double>> l = model_->TrainTranslator(Windows(64, rng));
      ASSERT_TRUE(l.ok()) << l.status();
    }
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
  }
  static McatModel* model_;
};

McatModel* McatLearningTest::model_ = nullptr;

TEST_F(McatLearningTest, ContextEncoderSeparatesTheTasks) {
  ASSERT_NE(model_, nullptr);
  std::mt19937 rng(13);
  McatWindowBatch b = Windows(256, rng, {0, 1}, /*partial=*/false);
  at::Tensor z = model_->EncodeRows(b).second;
  at::Tensor d = at::cdist(z, z);
  at::Tensor same = (b.task.unsqueeze(1) == b.task.unsqueeze(0)).to(at::kFloat);
  at::Tensor off = 1 - at::eye(256);
  const double intra = (d * same * off).sum().item<double>() / (same * off).sum().item<double>();
  const double inter = (d * (1 - same)).sum().item<double>() / (1 - same).sum().item<double>();
  EXPECT_LT(intra, 0.2 * inter) << "intra " << intra << " inter " << inter;
  EXPECT_GT(inter, 0.5);
}

TEST_F(McatLearningTest, TranslatorReproducesTheSourceNextStateOnTheTargetTask) {
  ASSERT_NE(model_, nullptr);
  std::mt19937 rng(14);
  McatWindowBatch b = Windows(256, rng, {0}, /*partial=*/false);
  at::Tensor features = model_->task_features();
  at::Tensor s = b.observations.select(1, kWindow - 1);
  at::Tensor a = b.actions.select(1, kWindow - 1);
  at::Tensor next = b.observations.select(1, kWindow);
  at::Tensor z0 = features[0].expand({256, kContext});
  at::Tensor z1 = features[1].expand({256, kContext});
  at::Tensor translated = model_->Translate(s, a, z0, z1);
  // the true dynamics of task 1: s + 0.3·R(90°)·a
  auto on_task1 = [&](const at::Tensor& act) {
    return s + 0.3 * at::stack({-act.select(1, 1), act.select(1, 0)}, 1);
  };
  const double err_translated = (on_task1(translated) - next).square().sum(1).mean().item<double>();
  const double err_plain = (on_task1(a) - next).square().sum(1).mean().item<double>();
  EXPECT_LT(err_translated, 0.02 * err_plain)
      << "translated " << err_translated << " untranslated " << err_plain;
  // and under the learned F with the target context
  absl::StatusOr<std::string> state = model_->SaveState();
  ASSERT_TRUE(state.ok());
  const McatModelOptions& o = model_->options();
  Networks net(*state, o.dims, o.network);
  const double nll_translated =
      -net.forward.LogProb(net.block, s, translated, z1, next, GemmBackend::kAten)
           .mean()
           .item<double>();
  const double nll_plain =
      -net.forward.LogProb(net.block, s, a, z1, next, GemmBackend::kAten).mean().item<double>();
  EXPECT_LT(nll_translated, nll_plain - 50.0)
      << "translated " << nll_translated << " untranslated " << nll_plain;
}

// ---- state, artifacts and errors ----

// A saved state put into a fresh model (another seed) continues bit-identically: the same
// batches give the same losses, parameters, features and target-task draws.
TEST(McatModelTest, SaveStateRestoreStateContinuesBitIdentically) {
  std::unique_ptr<McatModel> a = Make(SmallOptions(1));
  std::unique_ptr<McatModel> b = Make(SmallOptions(2));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::mt19937 rng(15);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(a->TrainContext(Windows(16, rng)).ok());
    ASSERT_TRUE(a->TrainTranslator(Windows(16, rng)).ok());
  }
  absl::StatusOr<std::string> bytes = a->SaveState();
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  ASSERT_TRUE(b->RestoreState(*bytes).ok());
  for (int i = 0; i < 3; ++i) {
    McatWindowBatch batch = Windows(16, rng);
    auto ca = a->TrainContext(batch), cb = b->TrainContext(batch);
    ASSERT_TRUE(ca.ok() && cb.ok());
    EXPECT_EQ(*ca, *cb);
    auto ta = a->TrainTranslator(batch), tb = b->TrainTranslator(batch);
    ASSERT_TRUE(ta.ok() && tb.ok());
    EXPECT_EQ(*ta, *tb);
  }
  std::map<std::string, at::Tensor> sa = StateTensors(*a->SaveState());
  std::map<std::string, at::Tensor> sb = StateTensors(*b->SaveState());
  ASSERT_EQ(sa.size(), sb.size());
  for (const auto& [name, t] : sa) EXPECT_TRUE(at::equal(t, sb.at(name))) << name;
  EXPECT_EQ(a->task_seen(), b->task_seen());
}

TEST(McatModelTest, RestoreStateRefusesForeignOrMismatchedBytesAndChangesNothing) {
  std::unique_ptr<McatModel> model = Make(SmallOptions(1));
  ASSERT_NE(model, nullptr);
  std::mt19937 rng(16);
  ASSERT_TRUE(model->TrainContext(Windows(16, rng)).ok());
  const std::string before = *model->SaveState();
  auto unchanged = [&] {
    std::map<std::string, at::Tensor> now = StateTensors(*model->SaveState());
    for (const auto& [name, t] : StateTensors(before)) {
      EXPECT_TRUE(at::equal(t, now.at(name))) << name;
    }
  };

  absl::Status s = model->RestoreState("not a state");
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  unchanged();

  // an artifact, but not a state
  absl::StatusOr<ModelArtifact> artifact = model->TranslatorArtifact([] {
    v1::ModelInfo info;
    info.set_name("translator");
    info.set_version(1);
    return info;
  }());
  ASSERT_TRUE(artifact.ok());
  s = model->RestoreState(*SerializeModelArtifact(*artifact));
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;

  // a state of other dimensions
  McatModelOptions wider = SmallOptions(1);
  wider.dims.context_dim = kContext + 1;
  std::unique_ptr<McatModel> other = Make(wider);
  s = model->RestoreState(*other->SaveState());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("context_dim"));
  McatModelOptions three = SmallOptions(1);
  three.num_tasks = 3;
  s = model->RestoreState(*Make(three)->SaveState());
  EXPECT_THAT(std::string(s.message()), HasSubstr("num_tasks"));

  // a damaged state: the translator's Adam moments are missing
  absl::StatusOr<ModelArtifact> parsed = ParseModelArtifact(before, "state");
  ASSERT_TRUE(parsed.ok());
  ModelArtifact damaged = *parsed;
  std::vector<std::pair<std::string, HostTensor>> kept;
  for (auto& [name, t] : damaged.tensors) {
    if (name != "training.translator_adam.exp_avg") kept.emplace_back(name, t);
  }
  damaged.tensors = kept;
  // (its weights load before the moments are missed; this model must keep its own)
  ASSERT_TRUE(model->TrainContext(Windows(16, rng)).ok());
  const std::string trained = *model->SaveState();
  s = model->RestoreState(*SerializeModelArtifact(damaged));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("training.translator_adam.exp_avg"));
  std::map<std::string, at::Tensor> now = StateTensors(*model->SaveState());
  for (const auto& [name, t] : StateTensors(trained)) {
    EXPECT_TRUE(at::equal(t, now.at(name))) << name;
  }
}

// TranslatorArtifact → file → TranslatorModel translates exactly as the model does.
TEST(McatModelTest, TranslatorArtifactRoundTripTranslatesIdentically) {
  std::unique_ptr<McatModel> model = Make(SmallOptions(4));
  ASSERT_NE(model, nullptr);
  std::mt19937 rng(17);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(model->TrainContext(Windows(16, rng)).ok());
    ASSERT_TRUE(model->TrainTranslator(Windows(16, rng)).ok());
  }
  v1::ModelInfo info;
  info.set_name("mcat_translator");
  info.set_version(2);
  absl::StatusOr<ModelArtifact> artifact = model->TranslatorArtifact(info);
  ASSERT_TRUE(artifact.ok()) << artifact.status();
  EXPECT_EQ(artifact->info.kind(), v1::PRIOR_KIND_ACTION_TRANSLATOR);
  EXPECT_EQ(artifact->info.obs_dim(), kObs);
  EXPECT_EQ(artifact->info.action_dim(), kAct);
  EXPECT_EQ(artifact->info.context_dim(), kContext);
  EXPECT_EQ(artifact->info.latent_dim(), 0);
  EXPECT_EQ(artifact->info.horizon(), 1);
  ASSERT_EQ(artifact->info.methods_size(), 1);
  EXPECT_EQ(artifact->info.methods(0), "Translate");
  for (const auto& [name, t] : artifact->tensors) {
    EXPECT_EQ(name.rfind("translator.", 0), 0u) << name;
  }
  const std::string path = ::testing::TempDir() + "/mcat_translator_v2.prl";
  ASSERT_TRUE(WriteModelArtifact(path, *artifact).ok());
  absl::StatusOr<ModelArtifact> read = ReadModelArtifact(path);
  ASSERT_TRUE(read.ok()) << read.status();
  absl::StatusOr<std::unique_ptr<TranslatorModel>> loaded =
      TranslatorModel::FromArtifact(*read, "cpu");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->dims().context_dim, kContext);
  at::Tensor s = at::randn({8, kObs}), a = at::rand({8, kAct}) * 2 - 1;
  at::Tensor zs = at::randn({8, kContext}), zt = at::randn({8, kContext});
  EXPECT_TRUE(at::equal(model->Translate(s, a, zs, zt), (*loaded)->Translate(s, a, zs, zt)));
}

TEST(McatModelTest, DamagedTranslatorArtifactsAreRefusedNamingTheField) {
  std::unique_ptr<McatModel> model = Make(SmallOptions());
  ASSERT_NE(model, nullptr);
  v1::ModelInfo info;
  info.set_name("t");
  info.set_version(1);
  absl::StatusOr<ModelArtifact> good = model->TranslatorArtifact(info);
  ASSERT_TRUE(good.ok());
  auto refused = [&](auto damage, const std::string& what, const std::string& device = "cpu") {
    ModelArtifact a = *good;
    damage(a);
    absl::StatusOr<std::unique_ptr<TranslatorModel>> loaded =
        TranslatorModel::FromArtifact(a, device);
    ASSERT_FALSE(loaded.ok()) << what;
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument) << loaded.status();
    EXPECT_THAT(std::string(loaded.status().message()), HasSubstr(what));
  };
  refused([](ModelArtifact& a) { a.info.set_kind(v1::PRIOR_KIND_CVAE); }, "info.kind");
  refused([](ModelArtifact& a) { a.info.set_horizon(4); }, "info.horizon");
  refused([](ModelArtifact& a) { a.hyperparameters.erase("network.hidden_layers"); },
          "network.hidden_layers");
  refused(
      [](ModelArtifact& a) {
        std::vector<std::pair<std::string, HostTensor>> kept;
        for (auto& [name, t] : a.tensors) {
          if (name != "translator.out.weight") kept.emplace_back(name, t);
        }
        a.tensors = kept;
      },
      "tensors[\"translator.out.weight\"]: missing");
  refused(
      [](ModelArtifact& a) {
        for (auto& [name, t] : a.tensors) {
          if (name == "translator.trunk.0.weight") t = *HostTensor::Zeros(DType::kFloat32, {64, 3});
        }
      },
      "tensors[\"translator.trunk.0.weight\"]");
  // a wider context than the weights were trained for
  refused([](ModelArtifact& a) { a.info.set_context_dim(kContext + 1); },
          "translator.trunk.0.weight");
  refused([](ModelArtifact&) {}, "device", "tpu");
}

TEST(McatModelTest, BadOptionsAndBatchesNameTheField) {
  auto create_error = [](auto change) {
    McatModelOptions o = SmallOptions();
    change(o);
    return std::string(McatModel::Create(o).status().message());
  };
  EXPECT_THAT(create_error([](McatModelOptions& o) { o.dims.context_dim = 0; }),
              HasSubstr("options.dims.context_dim"));
  EXPECT_THAT(create_error([](McatModelOptions& o) { o.dims.context_history = 0; }),
              HasSubstr("options.dims.context_history"));
  EXPECT_THAT(create_error([](McatModelOptions& o) { o.prediction_horizon = 0; }),
              HasSubstr("options.prediction_horizon"));
  EXPECT_THAT(create_error([](McatModelOptions& o) { o.num_tasks = 0; }),
              HasSubstr("options.num_tasks"));
  EXPECT_THAT(create_error([](McatModelOptions& o) { o.network.set_hidden_sizes(0, 0); }),
              HasSubstr("options.network.hidden_sizes[0]"));
  EXPECT_THAT(create_error([](McatModelOptions& o) { o.contrastive_margin = NAN; }),
              HasSubstr("options.contrastive_margin"));
  EXPECT_THAT(create_error([](McatModelOptions& o) { o.model_lr = 0; }),
              HasSubstr("options.model_lr"));
  EXPECT_THAT(create_error([](McatModelOptions& o) { o.translator_lr = -1; }),
              HasSubstr("options.translator_lr"));
  EXPECT_THAT(create_error([](McatModelOptions& o) { o.task_feature_rate = 0; }),
              HasSubstr("options.task_feature_rate"));
  EXPECT_THAT(create_error([](McatModelOptions& o) { o.device = "tpu"; }),
              HasSubstr("options.device"));

  std::unique_ptr<McatModel> model = Make(SmallOptions());
  ASSERT_NE(model, nullptr);
  std::mt19937 rng(18);
  auto train_error = [&](auto change) {
    McatWindowBatch b = Windows(4, rng);
    change(b);
    absl::StatusOr<std::map<std::string, double>> l = model->TrainContext(b);
    EXPECT_EQ(l.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(l.status().message());
  };
  EXPECT_THAT(train_error([](McatWindowBatch& b) {
                b.observations = b.observations.narrow(1, 0, kWindow).contiguous();
              }),
              HasSubstr("batch.observations"));
  EXPECT_THAT(train_error([](McatWindowBatch& b) { b.actions[0][0][0] = NAN; }),
              HasSubstr("batch.actions"));
  EXPECT_THAT(train_error([](McatWindowBatch& b) { b.mask = b.mask.narrow(0, 0, 3); }),
              HasSubstr("batch.mask"));
  EXPECT_THAT(train_error([](McatWindowBatch& b) { b.task[1] = 2; }), HasSubstr("batch.task"));
  EXPECT_THAT(train_error([](McatWindowBatch& b) { b.task = b.task.to(at::kFloat); }),
              HasSubstr("batch.task"));
  EXPECT_EQ(model->task_seen(), (std::vector<bool>{false, false}));
}

TEST(McatModelTest, ActingParametersAreTheEncoderAndTranslatorUnderTheirNames) {
  std::unique_ptr<McatModel> model = Make(SmallOptions());
  ASSERT_NE(model, nullptr);
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& [name, t] : model->ActingParameters()) {
    EXPECT_TRUE(t.device().is_cpu());
    EXPECT_EQ(t.scalar_type(), at::kFloat);
    shapes[name] = t.sizes().vec();
  }
  const int64_t encoder_in = kHistory * (2 * kObs + kAct);
  EXPECT_EQ(shapes["context_encoder.trunk.0.weight"], (std::vector<int64_t>{64, encoder_in}));
  EXPECT_EQ(shapes["context_encoder.out.weight"], (std::vector<int64_t>{kContext, 64}));
  EXPECT_EQ(shapes["context_encoder.out.bias"], (std::vector<int64_t>{kContext}));
  EXPECT_EQ(shapes["translator.trunk.0.weight"],
            (std::vector<int64_t>{64, kObs + kAct + 2 * kContext}));
  EXPECT_EQ(shapes["translator.out.weight"], (std::vector<int64_t>{kAct, 64}));
  for (const auto& [name, shape] : shapes) {
    EXPECT_NE(name.rfind("forward_model.", 0), 0u) << name;
  }
  EXPECT_EQ(shapes.size(), 12u);  // two trunk layers (4) + out (2), for each network
}

}  // namespace
}  // namespace prl::models
