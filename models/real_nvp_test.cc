#include "models/real_nvp.h"

#include <algorithm>
#include <cmath>
#include <iostream>
#include <limits>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "ATen/CPUGeneratorImpl.h"
#include "ATen/Parallel.h"
#include "ATen/core/grad_mode.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/artifact.h"

namespace prl::models {
namespace {

using ::testing::HasSubstr;

constexpr double kHalfLog2Pi = 0.91893853320467274178;

RealNvpOptions SmallOptions(int obs_dim, int act_dim, int64_t seed = 1) {
  RealNvpOptions options;
  options.obs_dim = obs_dim;
  options.act_dim = act_dim;
  options.network.add_hidden_sizes(32);
  options.network.add_hidden_sizes(32);
  options.seed = seed;
  return options;
}

std::unique_ptr<RealNvpFlow> MakeFlow(const RealNvpOptions& options) {
  absl::StatusOr<std::unique_ptr<RealNvpFlow>> flow = RealNvpFlow::Create(options);
  EXPECT_TRUE(flow.ok()) << flow.status();
  return flow.ok() ? *std::move(flow) : nullptr;
}

at::Generator Rng(int64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

WindowBatch Batch(const at::Tensor& obs, const at::Tensor& actions) {
  return {obs.unsqueeze(1), actions.unsqueeze(1)};
}

double MaxAbsDiff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

TEST(RealNvpFlowTest, DefaultsArePARROTs) {
  RealNvpOptions options;
  options.obs_dim = 4;
  options.act_dim = 2;
  EXPECT_EQ(options.num_coupling_layers, 4);
  EXPECT_EQ(options.lr, 1e-4);
  EXPECT_EQ(kRealNvpDefaultBatchSize, 128);
  std::unique_ptr<RealNvpFlow> flow = MakeFlow(options);
  ASSERT_NE(flow, nullptr);
  EXPECT_EQ(flow->kind(), v1::PRIOR_KIND_REAL_NVP_FLOW);
  EXPECT_EQ(flow->horizon(), 1);
  EXPECT_THAT(flow->options().network.hidden_sizes(), ::testing::ElementsAre(256, 256));
  // 4 layers × (2 trunk Linear + log_scale + shift) × (weight, bias)
  EXPECT_EQ(flow->params().size(), 4 * 4 * 2);
  EXPECT_EQ(flow->params().name(0), "coupling.0.trunk.0.weight");
  // layer 0 keeps dim 0 and reads [a_0, s]: 1 + 4 inputs; it transforms dim 1
  EXPECT_THAT(flow->params().param(0).sizes().vec(), ::testing::ElementsAre(256, 5));
  EXPECT_EQ(flow->params().name(4), "coupling.0.log_scale.weight");
  EXPECT_THAT(flow->params().param(4).sizes().vec(), ::testing::ElementsAre(1, 256));
  EXPECT_EQ(flow->params().name(6), "coupling.0.shift.weight");
}

class RealNvpInvertibilityTest : public ::testing::TestWithParam<int> {};

TEST_P(RealNvpInvertibilityTest, ForwardAndInverseInvertEachOther) {
  const int act_dim = GetParam();
  std::unique_ptr<RealNvpFlow> flow = MakeFlow(SmallOptions(5, act_dim, /*seed=*/11));
  ASSERT_NE(flow, nullptr);
  at::Generator rng = Rng(3);
  const at::Tensor state = at::randn({256, 5}, rng);

  // f⁻¹(f(z)) = z, and the two log-determinants are each other's negatives
  const at::Tensor z = at::randn({256, act_dim}, rng);
  absl::StatusOr<RealNvpFlow::Result> forward = flow->Forward(z, state);
  ASSERT_TRUE(forward.ok()) << forward.status();
  EXPECT_LT(forward->value.abs().max().item<double>(), 1.0);
  absl::StatusOr<RealNvpFlow::Result> back = flow->Inverse(forward->value, state);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_LT(MaxAbsDiff(back->value, z), 1e-4);
  EXPECT_LT(MaxAbsDiff(back->log_det, -forward->log_det), 1e-4);
  // the (randomly initialised) coupling layers did move z: f is far from tanh
  EXPECT_GT(MaxAbsDiff(forward->value, at::tanh(z)), 0.3);

  // f(f⁻¹(a)) = a
  const at::Tensor a = at::rand({256, act_dim}, rng) * 1.98 - 0.99;
  absl::StatusOr<RealNvpFlow::Result> inverse = flow->Inverse(a, state);
  ASSERT_TRUE(inverse.ok()) << inverse.status();
  absl::StatusOr<RealNvpFlow::Result> again = flow->Forward(inverse->value, state);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_LT(MaxAbsDiff(again->value, a), 1e-5);
  EXPECT_LT(MaxAbsDiff(again->log_det, -inverse->log_det), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(ActionDims, RealNvpInvertibilityTest, ::testing::Values(1, 2, 3, 6));

// log|det ∂a/∂z| and log|det ∂z/∂a| against central differences of Forward and Inverse.
TEST(RealNvpFlowTest, LogDetMatchesNumericalJacobian) {
  constexpr int kDims = 3;
  constexpr int kRows = 8;
  // a smooth activation: finite differences across a ReLU's kink are not derivatives
  RealNvpOptions options = SmallOptions(4, kDims, /*seed=*/5);
  options.network.set_activation(v1::NetworkSpec::ACTIVATION_TANH);
  std::unique_ptr<RealNvpFlow> flow = MakeFlow(options);
  ASSERT_NE(flow, nullptr);
  at::NoGradGuard no_grad;
  at::Generator rng = Rng(9);
  const at::Tensor state = at::randn({kRows, 4}, rng);
  const at::Tensor z = at::randn({kRows, kDims}, rng) * 0.7;

  // The numerical Jacobian of Forward (or Inverse) at x, [kRows, kDims (out), kDims (in)]:
  // central differences with steps `h` [kRows, kDims], Richardson-extrapolated from h and h/2
  // so the error is O(h⁴); the determinant is taken in double precision.
  const auto jacobian = [&](const at::Tensor& x, const at::Tensor& h, bool forward) {
    const auto f = [&](const at::Tensor& in) {
      return (forward ? flow->Forward(in, state) : flow->Inverse(in, state))->value.to(at::kDouble);
    };
    // divided by the step actually taken: x ± step is rounded to float
    const auto central = [&](int j, const at::Tensor& e, const at::Tensor& step) {
      const at::Tensor plus = x + e * step;
      const at::Tensor minus = x - e * step;
      const at::Tensor taken = (plus - minus).select(1, j).unsqueeze(1).to(at::kDouble);
      return (f(plus) - f(minus)) / taken;
    };
    std::vector<at::Tensor> columns;
    for (int j = 0; j < kDims; ++j) {
      const at::Tensor e = at::one_hot(at::full({kRows}, j, at::kLong), kDims).to(at::kFloat);
      const at::Tensor step = h.select(1, j).unsqueeze(1);
      columns.push_back((central(j, e, step * 0.5) * 4 - central(j, e, step)) / 3);
    }
    return at::stack(columns, 2);
  };

  absl::StatusOr<RealNvpFlow::Result> forward = flow->Forward(z, state);
  ASSERT_TRUE(forward.ok()) << forward.status();
  const at::Tensor numeric_forward =
      std::get<1>(at::slogdet(jacobian(z, at::full({kRows, kDims}, 2e-2), true)));
  EXPECT_LT(MaxAbsDiff(forward->log_det.to(at::kDouble), numeric_forward), 2e-4)
      << forward->log_det << numeric_forward;
  // the flow is far from volume-preserving here, so the check has teeth
  EXPECT_GT(forward->log_det.abs().max().item<double>(), 1.0);

  // steps in a shrink with 1 − a² (a step of 2e-2 in u = atanh(a)), so none crosses ±1
  const at::Tensor a = forward->value;
  absl::StatusOr<RealNvpFlow::Result> inverse = flow->Inverse(a, state);
  ASSERT_TRUE(inverse.ok()) << inverse.status();
  const at::Tensor numeric_inverse =
      std::get<1>(at::slogdet(jacobian(a, (1 - a.square()) * 2e-2, false)));
  EXPECT_LT(MaxAbsDiff(inverse->log_det.to(at::kDouble), numeric_inverse), 2e-4)
      << inverse->log_det << numeric_inverse;
}

// a = tanh(W s + σ(s) ⊙ ε): a state-dependent mean and a state-dependent spread.
struct Synthetic {
  at::Tensor obs, actions, true_log_prob;
};

Synthetic MakeData(int64_t n, at::Generator& rng) {
  const at::Tensor w = at::tensor({0.9f, -0.6f, 0.3f, -0.4f, 0.2f, 0.8f}).view({2, 3});
  Synthetic d;
  d.obs = at::rand({n, 3}, rng) * 2 - 1;
  const at::Tensor mean = at::matmul(d.obs, w.t());
  const at::Tensor std = (0.05 + 0.25 * (d.obs.narrow(1, 0, 1) + 1) / 2).expand({n, 2});
  const at::Tensor u = mean + std * at::randn({n, 2}, rng);
  d.actions = at::tanh(u);
  const at::Tensor noise = (u - mean) / std;
  d.true_log_prob =
      (noise.square() * -0.5 - std.log() - kHalfLog2Pi - at::log1p(-d.actions.square())).sum(1);
  return d;
}

TEST(RealNvpFlowTest, TrainingBeatsADiagonalGaussianOnStateDependentData) {
  at::Generator data_rng = Rng(21);
  const Synthetic train = MakeData(8192, data_rng);
  const Synthetic held_out = MakeData(4096, data_rng);

  // the diagonal Gaussian fitted (maximum likelihood) to the training actions
  const at::Tensor mu = train.actions.mean(0);
  const at::Tensor var = train.actions.var(0, /*unbiased=*/false);
  const double gaussian_nll =
      ((held_out.actions - mu).square() / (2 * var) + 0.5 * var.log() + kHalfLog2Pi)
          .sum(1)
          .mean()
          .item<double>();
  const double true_nll = -held_out.true_log_prob.mean().item<double>();

  RealNvpOptions options = SmallOptions(3, 2, /*seed=*/4);
  options.lr = 1e-3;
  std::unique_ptr<RealNvpFlow> flow = MakeFlow(options);
  ASSERT_NE(flow, nullptr);
  const WindowBatch validation = Batch(held_out.obs, held_out.actions);
  absl::StatusOr<Losses> before = flow->Evaluate(validation);
  ASSERT_TRUE(before.ok()) << before.status();

  at::Generator batch_rng = Rng(8);
  for (int step = 0; step < 1500; ++step) {
    const at::Tensor rows = at::randint(8192, {128}, batch_rng);
    absl::StatusOr<Losses> losses = flow->TrainStep(
        Batch(train.obs.index_select(0, rows), train.actions.index_select(0, rows)));
    ASSERT_TRUE(losses.ok()) << losses.status();
  }
  absl::StatusOr<Losses> after = flow->Evaluate(validation);
  ASSERT_TRUE(after.ok()) << after.status();
  const double nll = after->at("nll");
  RecordProperty("gaussian_nll", std::to_string(gaussian_nll));
  RecordProperty("flow_nll", std::to_string(nll));
  RecordProperty("true_nll", std::to_string(true_nll));
  std::cout << "held-out NLL: initial " << before->at("nll") << ", flow " << nll
            << ", diagonal Gaussian " << gaussian_nll << ", true " << true_nll << "\n";
  EXPECT_EQ(after->at("loss"), nll);
  EXPECT_LT(nll, gaussian_nll - 1.0);
  EXPECT_LT(nll, true_nll + 0.25);

  // LogProb is the same likelihood
  absl::StatusOr<at::Tensor> log_prob = flow->LogProb(held_out.actions, held_out.obs);
  ASSERT_TRUE(log_prob.ok()) << log_prob.status();
  EXPECT_NEAR(-log_prob->mean().item<double>(), nll, 1e-4);
}

TEST(RealNvpFlowTest, ArtifactRoundTripIsBitIdentical) {
  std::unique_ptr<RealNvpFlow> flow = MakeFlow(SmallOptions(4, 3, /*seed=*/2));
  ASSERT_NE(flow, nullptr);
  at::Generator rng = Rng(5);
  for (int i = 0; i < 3; ++i) {  // moves the weights off their initialisation
    ASSERT_TRUE(flow->TrainStep(Batch(at::randn({16, 4}, rng), at::rand({16, 3}, rng) - 0.5)).ok());
  }
  v1::ModelInfo info;
  info.set_name("parrot-prior");
  info.set_version(2);
  info.set_latent_dim(99);  // overwritten
  absl::StatusOr<ModelArtifact> artifact = flow->ToArtifact(info);
  ASSERT_TRUE(artifact.ok()) << artifact.status();
  EXPECT_EQ(artifact->info.kind(), v1::PRIOR_KIND_REAL_NVP_FLOW);
  EXPECT_EQ(artifact->info.obs_dim(), 4);
  EXPECT_EQ(artifact->info.action_dim(), 3);
  EXPECT_EQ(artifact->info.latent_dim(), 3);
  EXPECT_EQ(artifact->info.horizon(), 1);
  EXPECT_THAT(artifact->info.methods(), ::testing::ElementsAre("Forward", "Inverse"));
  EXPECT_EQ(artifact->hyperparameters.at("num_coupling_layers"), 4);
  EXPECT_EQ(artifact->hyperparameters.at("network.hidden_sizes.1"), 32);
  ASSERT_NE(artifact->Find("coupling.3.shift.bias"), nullptr);

  const std::string path = ::testing::TempDir() + "/real_nvp.prl";
  ASSERT_TRUE(WriteModelArtifact(path, *artifact).ok());
  absl::StatusOr<ModelArtifact> read = ReadModelArtifact(path);
  ASSERT_TRUE(read.ok()) << read.status();
  absl::StatusOr<std::unique_ptr<RealNvpFlow>> loaded = RealNvpFlow::FromArtifact(*read, at::kCPU);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(at::equal((*loaded)->params().flat(), flow->params().flat()));

  const at::Tensor state = at::randn({32, 4}, rng);
  const at::Tensor z = at::randn({32, 3}, rng);
  const at::Tensor a = at::rand({32, 3}, rng) * 2 - 1;
  auto forward = flow->Forward(z, state);
  auto forward_loaded = (*loaded)->Forward(z, state);
  auto inverse = flow->Inverse(a, state);
  auto inverse_loaded = (*loaded)->Inverse(a, state);
  ASSERT_TRUE(forward.ok() && forward_loaded.ok() && inverse.ok() && inverse_loaded.ok());
  EXPECT_TRUE(at::equal(forward->value, forward_loaded->value));
  EXPECT_TRUE(at::equal(forward->log_det, forward_loaded->log_det));
  EXPECT_TRUE(at::equal(inverse->value, inverse_loaded->value));
  EXPECT_TRUE(at::equal(inverse->log_det, inverse_loaded->log_det));
}

TEST(RealNvpFlowTest, FromArtifactRefusesWhatIsNotThisFlow) {
  std::unique_ptr<RealNvpFlow> flow = MakeFlow(SmallOptions(4, 3));
  ASSERT_NE(flow, nullptr);
  v1::ModelInfo info;
  info.set_name("parrot-prior");
  info.set_version(1);
  const ModelArtifact good = *flow->ToArtifact(info);
  ASSERT_TRUE(RealNvpFlow::FromArtifact(good, at::kCPU).ok());

  const auto refused = [](const ModelArtifact& artifact, const std::string& field) {
    absl::StatusOr<std::unique_ptr<RealNvpFlow>> loaded =
        RealNvpFlow::FromArtifact(artifact, at::kCPU);
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_THAT(loaded.status().message(), HasSubstr(field));
  };
  ModelArtifact a = good;
  a.info.set_kind(v1::PRIOR_KIND_SKILL_VAE);
  refused(a, "info.kind");
  a = good;
  a.info.set_horizon(10);
  refused(a, "info.horizon");
  a = good;
  a.info.set_latent_dim(2);
  refused(a, "info.latent_dim");
  a = good;
  a.hyperparameters.erase("num_coupling_layers");
  refused(a, "hyperparameters[\"num_coupling_layers\"]: missing");
  a = good;
  a.hyperparameters["log_scale_bound"] = 5;
  refused(a, "hyperparameters[\"log_scale_bound\"]");
  a = good;
  a.tensors.erase(a.tensors.begin() + 5);
  refused(a, "tensors[\"");
  a = good;
  a.tensors.emplace_back("coupling.9.shift.bias", HostTensor::FromFloats({1}, {0.0f}));
  refused(a, "tensors[\"coupling.9.shift.bias\"]");
  a = good;
  a.tensors[0].second = HostTensor::FromFloats({1}, {0.0f});
  refused(a, "tensors[\"coupling.0.trunk.0.weight\"]: float32 [1] is not allowed");
}

TEST(RealNvpFlowTest, CreateRefusesBadOptionsNamingTheField) {
  const auto refused = [](const RealNvpOptions& options, const std::string& message) {
    absl::StatusOr<std::unique_ptr<RealNvpFlow>> flow = RealNvpFlow::Create(options);
    EXPECT_EQ(flow.status().code(), absl::StatusCode::kInvalidArgument) << message;
    EXPECT_THAT(flow.status().message(), HasSubstr(message));
  };
  RealNvpOptions o = SmallOptions(4, 2);
  o.obs_dim = 0;
  refused(o, "options.obs_dim: 0 is not allowed");
  o = SmallOptions(4, 2);
  o.act_dim = -1;
  refused(o, "options.act_dim: -1 is not allowed");
  o = SmallOptions(4, 2);
  o.num_coupling_layers = 1;
  refused(o, "options.num_coupling_layers: 1 is not allowed; it must be in 2..32");
  o.num_coupling_layers = 33;
  refused(o, "options.num_coupling_layers: 33 is not allowed");
  o = SmallOptions(4, 2);
  o.network.set_hidden_sizes(1, 0);
  refused(o, "options.network.hidden_sizes[1]: 0 is not allowed");
  o = SmallOptions(4, 2);
  o.lr = 0;
  refused(o, "options.lr: 0 is not allowed");
  o.lr = std::numeric_limits<double>::quiet_NaN();
  refused(o, "options.lr: nan is not allowed");
  o = SmallOptions(4, 2);
  o.device = at::Device(at::kMeta);
  refused(o, "options.device: meta is not allowed");
  if (!at::hasCUDA()) {
    o.device = at::Device(at::kCUDA, 0);
    EXPECT_EQ(RealNvpFlow::Create(o).status().code(), absl::StatusCode::kFailedPrecondition);
  }
}

TEST(RealNvpFlowTest, BadBatchesAndInputsAreRefusedNamingTheField) {
  std::unique_ptr<RealNvpFlow> flow = MakeFlow(SmallOptions(4, 2));
  ASSERT_NE(flow, nullptr);
  const auto refused = [&](const WindowBatch& batch, const std::string& message) {
    absl::StatusOr<Losses> train = flow->TrainStep(batch);
    EXPECT_EQ(train.status().code(), absl::StatusCode::kInvalidArgument) << message;
    EXPECT_THAT(train.status().message(), HasSubstr(message));
    EXPECT_THAT(flow->Evaluate(batch).status().message(), HasSubstr(message));
  };
  const at::Tensor obs = at::zeros({8, 1, 4});
  const at::Tensor actions = at::zeros({8, 1, 2});
  const at::Tensor before = flow->params().flat().clone();
  refused({at::zeros({8, 10, 4}), at::zeros({8, 10, 2})},
          "batch.obs: shape [8, 10, 4] is not allowed; it must be [B, 1, 4] (a real NVP flow "
          "trains on horizon 1)");
  refused({obs, at::zeros({8, 10, 2})}, "batch.actions: shape [8, 10, 2] is not allowed");
  refused({obs, at::zeros({7, 1, 2})},
          "batch.actions: shape [7, 1, 2] is not allowed; it must "
          "be [8, 1, 2]");
  refused({at::zeros({8, 1, 5}), actions}, "batch.obs: shape [8, 1, 5]");
  refused({at::zeros({0, 1, 4}), at::zeros({0, 1, 2})}, "batch.obs: shape [0, 1, 4]");
  refused({obs, at::Tensor()}, "batch.actions: not set");
  refused({obs.to(at::kDouble), actions}, "batch.obs: dtype Double is not allowed");
  refused({obs, at::full({8, 1, 2}, 1.5)},
          "batch.actions: a value of magnitude 1.5 is not "
          "allowed; it must be in [-1, 1]");
  refused({obs, at::full({8, 1, 2}, NAN)}, "batch.actions: a value of magnitude nan");
  refused({at::full({8, 1, 4}, INFINITY), actions}, "batch.obs: a non-finite value");
  EXPECT_TRUE(at::equal(flow->params().flat(), before));  // no step was taken
  // actions exactly on the boundary are allowed (clamped inside)
  EXPECT_TRUE(flow->TrainStep({obs, at::ones({8, 1, 2})}).ok());

  EXPECT_THAT(flow->Forward(at::zeros({3, 3}), at::zeros({3, 4})).status().message(),
              HasSubstr("z: shape [3, 3] is not allowed; it must be [B, 2]"));
  EXPECT_THAT(flow->Forward(at::zeros({3, 2}), at::zeros({2, 4})).status().message(),
              HasSubstr("state: shape [2, 4] is not allowed; it must be [3, 4]"));
  EXPECT_THAT(flow->Inverse(at::zeros({3, 2}, at::kInt), at::zeros({3, 4})).status().message(),
              HasSubstr("actions: dtype Int is not allowed"));
  EXPECT_THAT(flow->LogProb(at::zeros({3, 2}), at::Tensor()).status().message(),
              HasSubstr("state: not set"));
}

TEST(RealNvpFlowTest, SeededDeterminism) {
  const auto train = [](int64_t seed) {
    std::unique_ptr<RealNvpFlow> flow = MakeFlow(SmallOptions(4, 3, seed));
    std::vector<double> losses;
    at::Generator rng = Rng(17);
    for (int i = 0; i < 5; ++i) {
      absl::StatusOr<Losses> l =
          flow->TrainStep(Batch(at::randn({32, 4}, rng), at::rand({32, 3}, rng) * 1.8 - 0.9));
      EXPECT_TRUE(l.ok()) << l.status();
      losses.push_back(l.ok() ? l->at("loss") : 0.0);
    }
    return std::make_pair(flow->params().flat().clone(), losses);
  };
  const auto [params_a, losses_a] = train(3);
  const auto [params_b, losses_b] = train(3);
  const auto [params_c, losses_c] = train(4);
  EXPECT_TRUE(at::equal(params_a, params_b));
  EXPECT_EQ(losses_a, losses_b);
  EXPECT_FALSE(at::equal(params_a, params_c));
  EXPECT_NE(losses_a, losses_c);
}

// On 2 threads a step of 640 rows splits into two row shards run concurrently
// (prior_util::ShardedGradient): the same as one thread up to rounding, and deterministic.
TEST(RealNvpFlowTest, ShardedStepsMatchOneThreadAndAreDeterministic) {
  const int saved = at::get_num_threads();
  const auto train = [](int threads) {
    at::set_num_threads(threads);
    std::unique_ptr<RealNvpFlow> flow = MakeFlow(SmallOptions(4, 3, /*seed=*/3));
    std::vector<Losses> losses;
    at::Generator rng = Rng(21);
    for (int i = 0; i < 5; ++i) {
      absl::StatusOr<Losses> l =
          flow->TrainStep(Batch(at::randn({640, 4}, rng), at::rand({640, 3}, rng) * 1.8 - 0.9));
      EXPECT_TRUE(l.ok()) << l.status();
      losses.push_back(l.ok() ? *l : Losses());
    }
    return std::make_pair(flow->params().flat().clone(), losses);
  };
  const auto [params_one, losses_one] = train(1);
  const auto [params_two, losses_two] = train(2);
  const bool two_threads = at::get_num_threads() == 2;
  const auto [params_again, losses_again] = train(2);
  at::set_num_threads(saved);
  if (!two_threads) GTEST_SKIP() << "this LibTorch cannot run 2 intra-op threads";
  EXPECT_TRUE(at::equal(params_two, params_again));
  EXPECT_EQ(losses_two, losses_again);
  for (size_t i = 0; i < losses_one.size(); ++i) {
    for (const auto& [name, value] : losses_one[i]) {
      EXPECT_NEAR(losses_two[i].at(name), value, 1e-4 * std::max(1.0, std::abs(value)))
          << name << " at step " << i;
    }
  }
}

// A flow's training state (weights, Adam's moments and steps) put into a fresh flow continues
// bit-identically.
TEST(RealNvpFlowTest, TrainingStateRestoresTrainingExactly) {
  std::unique_ptr<RealNvpFlow> a = MakeFlow(SmallOptions(4, 3, /*seed=*/3));
  std::unique_ptr<RealNvpFlow> b = MakeFlow(SmallOptions(4, 3, /*seed=*/8));
  at::Generator rng = Rng(17);
  const auto batch = [&rng]() {
    return Batch(at::randn({32, 4}, rng), at::rand({32, 3}, rng) * 1.8 - 0.9);
  };
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(a->TrainStep(batch()).ok());
  v1::ModelInfo info;
  info.set_name("flow");
  info.set_version(1);
  absl::StatusOr<ModelArtifact> state = a->TrainingState(info);
  ASSERT_TRUE(state.ok()) << state.status();
  ASSERT_TRUE(b->RestoreTrainingState(*state).ok());
  for (int i = 0; i < 3; ++i) {
    const WindowBatch w = batch();
    ASSERT_TRUE(a->TrainStep(w).ok());
    ASSERT_TRUE(b->TrainStep(w).ok());
  }
  EXPECT_TRUE(at::equal(a->params().flat(), b->params().flat()));
  // another architecture's state does not fit
  std::unique_ptr<RealNvpFlow> other = MakeFlow(SmallOptions(4, 2));
  EXPECT_EQ(other->RestoreTrainingState(*state).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace prl::models
