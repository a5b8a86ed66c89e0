#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "learner/agent.h"
#include "models/policy_runner.h"

namespace prl::learner {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using Weights = std::vector<std::pair<std::string, HostTensor>>;

struct Exported {
  std::unique_ptr<Agent> agent;
  v1::PolicyArchitecture architecture;
  Weights weights;
};

Exported Export(bool td3, int obs_dim, int act_dim, const v1::NetworkSpec& network) {
  AgentOptions options;
  options.obs_dim = obs_dim;
  options.act_dim = act_dim;
  if (td3) {
    options.algorithm.mutable_td3();
  } else {
    options.algorithm.mutable_sac();
  }
  *options.algorithm.mutable_network() = network;
  options.device = "cpu";
  options.seed = 3;
  options.num_threads = 1;
  Exported e;
  auto agent = Agent::Create(options);
  EXPECT_TRUE(agent.ok()) << agent.status();
  e.agent = *std::move(agent);
  EXPECT_TRUE(e.agent->ExportPolicy(&e.architecture, &e.weights).ok());
  return e;
}

v1::NetworkSpec Network(std::vector<int> hidden, v1::NetworkSpec::Activation activation,
                        bool layer_norm) {
  v1::NetworkSpec spec;
  for (int h : hidden) spec.add_hidden_sizes(h);
  spec.set_activation(activation);
  spec.set_layer_norm(layer_norm);
  return spec;
}

std::vector<float> RandomObs(int n, int dim, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> obs(n * dim);
  for (float& x : obs) x = normal(rng);
  return obs;
}

// (algorithm, network) cases: both heads, every activation, with and without LayerNorm.
class PolicyRunnerMatchTest
    : public ::testing::TestWithParam<std::tuple<bool, v1::NetworkSpec::Activation, bool>> {};

TEST_P(PolicyRunnerMatchTest, DeterministicActionsMatchAgentAct) {
  const auto [td3, activation, layer_norm] = GetParam();
  const int n = 5, obs_dim = 7, act_dim = 3;
  Exported e = Export(td3, obs_dim, act_dim, Network({16, 12}, activation, layer_norm));
  auto runner = models::PolicyRunner::Create(e.architecture, e.weights);
  ASSERT_TRUE(runner.ok()) << runner.status();

  const std::vector<float> obs = RandomObs(n, obs_dim, 1);
  std::vector<float> actions(n * act_dim);
  std::mt19937_64 rng(0);
  (*runner)->Act(obs, n, /*deterministic=*/true, absl::MakeSpan(actions), rng);

  at::Tensor want;
  e.agent->Act(at::tensor(obs).view({n, obs_dim}), /*deterministic=*/true, &want);
  for (int i = 0; i < n * act_dim; ++i) {
    EXPECT_NEAR(actions[i], want.view({-1})[i].item<float>(), 1e-5) << i;
  }
}

TEST_P(PolicyRunnerMatchTest, OneRowAtATimeMatchesTheBatch) {
  // actors with one env act on batches of one row
  const auto [td3, activation, layer_norm] = GetParam();
  const int n = 4, obs_dim = 17, act_dim = 6;
  Exported e = Export(td3, obs_dim, act_dim, Network({64, 64}, activation, layer_norm));
  auto runner = models::PolicyRunner::Create(e.architecture, e.weights);
  ASSERT_TRUE(runner.ok()) << runner.status();
  const std::vector<float> obs = RandomObs(n, obs_dim, 2);
  std::vector<float> batch(n * act_dim), single(act_dim);
  std::mt19937_64 rng(0);
  (*runner)->Act(obs, n, /*deterministic=*/true, absl::MakeSpan(batch), rng);
  for (int r = 0; r < n; ++r) {
    (*runner)->Act(absl::MakeConstSpan(obs).subspan(r * obs_dim, obs_dim), 1,
                   /*deterministic=*/true, absl::MakeSpan(single), rng);
    for (int k = 0; k < act_dim; ++k) {
      EXPECT_NEAR(single[k], batch[r * act_dim + k], 1e-5) << "row " << r << " dim " << k;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    HeadsAndNetworks, PolicyRunnerMatchTest,
    ::testing::Combine(::testing::Bool(),
                       ::testing::Values(v1::NetworkSpec::ACTIVATION_RELU,
                                         v1::NetworkSpec::ACTIVATION_TANH,
                                         v1::NetworkSpec::ACTIVATION_ELU,
                                         v1::NetworkSpec::ACTIVATION_LEAKY_RELU,
                                         v1::NetworkSpec::ACTIVATION_SILU),
                       ::testing::Bool()));

TEST(PolicyRunnerTest, ExportedNamesAndShapesArePyTorchs) {
  Exported e = Export(false, 17, 6, v1::NetworkSpec());
  EXPECT_EQ(e.architecture.head(), v1::PolicyArchitecture::HEAD_SQUASHED_GAUSSIAN);
  EXPECT_EQ(e.architecture.output(), v1::PolicyArchitecture::OUTPUT_ACTION);
  EXPECT_EQ(e.architecture.output_bound(), 1.0);
  EXPECT_THAT(e.architecture.network().hidden_sizes(), ElementsAre(256, 256));
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  for (const auto& [name, tensor] : e.weights) shapes.emplace_back(name, tensor.shape());
  using V = std::vector<int64_t>;
  EXPECT_THAT(shapes, ElementsAre(Pair("trunk.0.weight", V{256, 17}), Pair("trunk.0.bias", V{256}),
                                  Pair("trunk.2.weight", V{256, 256}), Pair("trunk.2.bias", V{256}),
                                  Pair("mean.weight", V{6, 256}), Pair("mean.bias", V{6}),
                                  Pair("log_std.weight", V{6, 256}), Pair("log_std.bias", V{6})));

  Exported ln = Export(true, 4, 2, Network({8}, v1::NetworkSpec::ACTIVATION_RELU, true));
  EXPECT_EQ(ln.architecture.head(), v1::PolicyArchitecture::HEAD_DETERMINISTIC);
  EXPECT_EQ(ln.architecture.exploration_noise(), 0.1);
  std::vector<std::string> names;
  for (const auto& [name, tensor] : ln.weights) names.push_back(name);
  EXPECT_THAT(names, ElementsAre("trunk.0.weight", "trunk.0.bias", "trunk.1.weight", "trunk.1.bias",
                                 "mean.weight", "mean.bias"));
}

TEST(PolicyRunnerTest, FromProtoLoadsAPublishedPolicy) {
  Exported e = Export(false, 5, 2, Network({8}, v1::NetworkSpec::ACTIVATION_RELU, false));
  v1::Policy policy;
  *policy.mutable_architecture() = e.architecture;
  for (const auto& [name, tensor] : e.weights) {
    v1::NamedTensor* named = policy.add_weights();
    named->set_name(name);
    TensorToProto(tensor.view(), named->mutable_tensor());
  }
  auto runner = models::PolicyRunner::FromProto(policy);
  ASSERT_TRUE(runner.ok()) << runner.status();
  EXPECT_EQ((*runner)->obs_dim(), 5);
  EXPECT_EQ((*runner)->output_dim(), 2);

  policy.mutable_weights(0)->mutable_tensor()->mutable_data()->resize(3);
  auto bad = models::PolicyRunner::FromProto(policy);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("policy.weights[0]"));
}

TEST(PolicyRunnerTest, SamplingIsBoundedSeededAndScaled) {
  Exported e = Export(false, 3, 2, Network({8}, v1::NetworkSpec::ACTIVATION_RELU, false));
  auto runner = models::PolicyRunner::Create(e.architecture, e.weights);
  ASSERT_TRUE(runner.ok());
  const int n = 64;
  const std::vector<float> obs = RandomObs(n, 3, 2);
  std::vector<float> a(n * 2), b(n * 2), mean(n * 2);
  std::mt19937_64 rng_a(9), rng_b(9);
  (*runner)->Act(obs, n, false, absl::MakeSpan(a), rng_a);
  (*runner)->Act(obs, n, false, absl::MakeSpan(b), rng_b);
  (*runner)->Act(obs, n, true, absl::MakeSpan(mean), rng_b);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, mean);
  for (float x : a) EXPECT_TRUE(x > -1 && x < 1) << x;

  // a latent policy with output_bound 2 is the same network scaled by 2
  v1::PolicyArchitecture latent = e.architecture;
  latent.set_output(v1::PolicyArchitecture::OUTPUT_FLOW_LATENT);
  latent.set_output_bound(2.0);
  auto scaled = models::PolicyRunner::Create(latent, e.weights);
  ASSERT_TRUE(scaled.ok());
  std::vector<float> doubled(n * 2);
  (*scaled)->Act(obs, n, true, absl::MakeSpan(doubled), rng_a);
  for (int i = 0; i < n * 2; ++i) EXPECT_NEAR(doubled[i], 2 * mean[i], 1e-6);
}

TEST(PolicyRunnerTest, DeterministicHeadAddsClippedExplorationNoise) {
  Exported e = Export(true, 3, 2, Network({8}, v1::NetworkSpec::ACTIVATION_RELU, false));
  e.architecture.set_exploration_noise(5.0);  // large: most noisy actions hit the bound
  auto runner = models::PolicyRunner::Create(e.architecture, e.weights);
  ASSERT_TRUE(runner.ok());
  const int n = 64;
  const std::vector<float> obs = RandomObs(n, 3, 4);
  std::vector<float> noisy(n * 2), mean(n * 2);
  std::mt19937_64 rng(1);
  (*runner)->Act(obs, n, false, absl::MakeSpan(noisy), rng);
  (*runner)->Act(obs, n, true, absl::MakeSpan(mean), rng);
  int at_bound = 0;
  for (int i = 0; i < n * 2; ++i) {
    EXPECT_TRUE(noisy[i] >= -1 && noisy[i] <= 1) << noisy[i];
    at_bound += std::abs(noisy[i]) == 1.0f;
  }
  EXPECT_GT(at_bound, n / 2);
  EXPECT_NE(noisy, mean);
}

TEST(PolicyRunnerTest, BadWeightsAreRefusedByName) {
  Exported e = Export(false, 3, 2, Network({8}, v1::NetworkSpec::ACTIVATION_RELU, false));
  auto replace = [&](const std::string& name, HostTensor tensor) {
    Weights w = e.weights;
    for (auto& [n, t] : w) {
      if (n == name) t = std::move(tensor);
    }
    return w;
  };
  Weights missing = e.weights;
  missing.pop_back();  // log_std.bias
  Weights extra = e.weights;
  extra.emplace_back("trunk.9.weight", HostTensor::FromFloats({1}, std::vector<float>{0}));
  Weights twice = e.weights;
  twice.push_back(e.weights[0]);
  std::vector<float> nan_values(8 * 3, 0.0f);
  nan_values[5] = NAN;

  struct Case {
    Weights weights;
    std::string message;
  };
  const std::vector<Case> cases = {
      {missing, "weights: missing \"log_std.bias\""},
      {extra, "weights: unexpected name \"trunk.9.weight\""},
      {twice, "\"trunk.0.weight\" appears twice"},
      {replace("trunk.0.weight", HostTensor::FromFloats({8, 4}, std::vector<float>(32))),
       "weights[\"trunk.0.weight\"]"},
      {replace("mean.bias", *HostTensor::Zeros(DType::kInt64, {2})), "weights[\"mean.bias\"]"},
      {replace("trunk.0.weight", HostTensor::FromFloats({8, 3}, nan_values)),
       "weights[\"trunk.0.weight\"]"},
  };
  for (const Case& c : cases) {
    auto runner = models::PolicyRunner::Create(e.architecture, c.weights);
    ASSERT_FALSE(runner.ok()) << c.message;
    EXPECT_EQ(runner.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(runner.status().message(), HasSubstr(c.message));
  }
}

TEST(PolicyRunnerTest, BadArchitecturesAreRefused) {
  Exported e = Export(false, 3, 2, Network({8}, v1::NetworkSpec::ACTIVATION_RELU, false));
  struct Case {
    std::function<void(v1::PolicyArchitecture*)> change;
    absl::StatusCode code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](v1::PolicyArchitecture* a) { a->clear_head(); }, absl::StatusCode::kInvalidArgument,
       "architecture.head: HEAD_UNSPECIFIED is not allowed"},
      {[](v1::PolicyArchitecture* a) { a->clear_output(); }, absl::StatusCode::kInvalidArgument,
       "architecture.output"},
      {[](v1::PolicyArchitecture* a) { a->set_obs_dim(0); }, absl::StatusCode::kInvalidArgument,
       "architecture.obs_dim: 0"},
      {[](v1::PolicyArchitecture* a) { a->set_output_bound(0); },
       absl::StatusCode::kInvalidArgument, "architecture.output_bound"},
      {[](v1::PolicyArchitecture* a) { a->set_squash_scale(-2); },
       absl::StatusCode::kInvalidArgument, "architecture.squash_scale: -2"},
      {[](v1::PolicyArchitecture* a) { a->set_squash_scale(std::nan("")); },
       absl::StatusCode::kInvalidArgument, "architecture.squash_scale: nan"},
      {[](v1::PolicyArchitecture* a) { a->mutable_network()->set_hidden_sizes(0, 9000); },
       absl::StatusCode::kInvalidArgument, "architecture.network.hidden_sizes[0]: 9000"},
      {[](v1::PolicyArchitecture* a) { a->set_context_dim(4); }, absl::StatusCode::kInvalidArgument,
       "architecture.context_history: 0"},
  };
  for (const Case& c : cases) {
    v1::PolicyArchitecture architecture = e.architecture;
    c.change(&architecture);
    auto runner = models::PolicyRunner::Create(architecture, e.weights);
    ASSERT_FALSE(runner.ok()) << c.message;
    EXPECT_EQ(runner.status().code(), c.code);
    EXPECT_THAT(runner.status().message(), HasSubstr(c.message));
  }
}

}  // namespace
}  // namespace prl::learner
