#include "learner/agent.h"

#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "ATen/CPUGeneratorImpl.h"
#include "ATen/core/grad_mode.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "learner/agent_internal.h"
#include "learner/direct_update_test_util.h"
#include "learner/flat_adam.h"
#include "models/gemm.h"
#include "models/networks.h"

namespace prl::learner {
namespace {

using direct_test::ExpectSameGradients;
using direct_test::ExpectSameNetworks;
using direct_test::ExpectSameStats;
using direct_test::MaxDiff;
using direct_test::Near;
using internal::TwinCriticAgent;
using ::testing::HasSubstr;

AgentOptions Options(bool td3, int obs_dim, int act_dim, std::vector<int> hidden) {
  AgentOptions options;
  options.obs_dim = obs_dim;
  options.act_dim = act_dim;
  if (td3) {
    options.algorithm.mutable_td3();
  } else {
    options.algorithm.mutable_sac();
  }
  for (int h : hidden) options.algorithm.mutable_network()->add_hidden_sizes(h);
  options.device = "cpu";
  options.seed = 1;
  options.num_threads = 1;
  return options;
}

std::unique_ptr<Agent> MustCreate(const AgentOptions& options) {
  auto agent = Agent::Create(options);
  EXPECT_TRUE(agent.ok()) << agent.status();
  return agent.ok() ? *std::move(agent) : nullptr;
}

TwinCriticAgent& Internals(Agent& agent) { return dynamic_cast<TwinCriticAgent&>(agent); }

at::Tensor Floats(std::vector<float> values, std::vector<int64_t> shape) {
  return at::tensor(values, at::kFloat).view(shape).clone();
}

// Sets the parameter `name` of `block` to `values` (row-major).
void SetParam(models::ParameterBlock& block, const std::string& name, std::vector<float> values) {
  for (int i = 0; i < block.size(); ++i) {
    if (block.name(i) != name) continue;
    at::NoGradGuard no_grad;
    block.param(i).copy_(Floats(values, block.param(i).sizes().vec()));
    return;
  }
  ADD_FAILURE() << "no parameter " << name;
}

// A random batch of `n` transitions.
TransitionBatch RandomBatch(int n, int obs_dim, int act_dim, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  TransitionBatch b;
  b.obs = at::randn({n, obs_dim}, gen, at::kFloat);
  b.action = at::rand({n, act_dim}, gen, at::kFloat) * 2 - 1;
  b.reward = at::randn({n}, gen, at::kFloat);
  b.next_obs = at::randn({n, obs_dim}, gen, at::kFloat);
  b.discount = (at::rand({n}, gen, at::kFloat) > 0.1).to(at::kFloat);
  return b;
}

// ---- squashed Gaussian ----

TEST(SquashedGaussianTest, LogProbMatchesFiniteDifferenceJacobian) {
  const double kHalfLog2Pi = 0.5 * std::log(2 * M_PI);
  for (double mean : {-1.5, 0.0, 0.3, 2.0}) {
    for (double log_std : {-3.0, -0.5, 0.7}) {
      for (double noise : {-1.2, 0.0, 0.8}) {
        models::SquashedSample s = models::SampleSquashedGaussian(Floats({float(mean)}, {1, 1}),
                                                                  Floats({float(log_std)}, {1, 1}),
                                                                  Floats({float(noise)}, {1, 1}));
        const double u = mean + std::exp(log_std) * noise;
        const double h = 1e-5;
        const double jacobian = (std::tanh(u + h) - std::tanh(u - h)) / (2 * h);
        const double want = -0.5 * noise * noise - log_std - kHalfLog2Pi - std::log(jacobian);
        EXPECT_NEAR(s.log_prob.item<double>(), want, 1e-4)
            << mean << " " << log_std << " " << noise;
        EXPECT_NEAR(s.action.item<double>(), std::tanh(u), 1e-6);
      }
    }
  }
}

TEST(SquashedGaussianTest, DensityIntegratesToOneOverActions) {
  // ∫ π(a) da over (-1, 1), midpoint rule in a: each a is reached with noise (atanh(a) - m)/σ
  const double mean = 0.3, log_std = -0.5, sigma = std::exp(log_std);
  const int n = 20000;
  std::vector<float> noise(n);
  for (int i = 0; i < n; ++i) {
    const double a = -1 + (i + 0.5) * 2.0 / n;
    noise[i] = static_cast<float>((std::atanh(a) - mean) / sigma);
  }
  models::SquashedSample s = models::SampleSquashedGaussian(
      at::full({n, 1}, mean), at::full({n, 1}, log_std), Floats(noise, {n, 1}));
  const double integral = s.log_prob.to(at::kDouble).exp().sum().item<double>() * 2.0 / n;
  EXPECT_NEAR(integral, 1.0, 1e-3);
}

TEST(SquashedGaussianTest, JacobianIsFiniteForLargeInputs) {
  at::Tensor u = Floats({-40, -15, 0, 15, 40}, {5});
  at::Tensor got = models::TanhLogDetJacobian(u);
  for (int i = 0; i < 5; ++i) {
    const double x = u[i].item<double>();
    // log(1 - tanh²x) = log 4 - 2|x| - 2·log(1 + e^{-2|x|})
    const double want =
        std::log(4.0) - 2 * std::abs(x) - 2 * std::log1p(std::exp(-2 * std::abs(x)));
    EXPECT_TRUE(std::isfinite(got[i].item<double>()));
    EXPECT_NEAR(got[i].item<double>(), want, 1e-4 * std::max(1.0, std::abs(want)));
  }
}

// ---- SAC against hand-derived values ----

// obs 1, act 1, one hidden unit. The actor ignores s: h = relu(0·s + 1) = 1, mean 0.5,
// log_std -1. Both critics see relu(s + a): Q_0 = relu(s + a), Q_1 = 2·relu(s + a).
void SetTinyWeights(TwinCriticAgent& agent, std::vector<float> critic_input_weights,
                    std::vector<float> critic_bias, float policy_mean) {
  models::ParameterBlock& actor = agent.actor().params();
  SetParam(actor, "trunk.0.weight", {0});
  SetParam(actor, "trunk.0.bias", {1});
  const bool gaussian = agent.actor().head() == models::PolicyNetwork::Head::kSquashedGaussian;
  SetParam(actor, "head.weight", gaussian ? std::vector<float>{0, 0} : std::vector<float>{0});
  SetParam(actor, "head.bias",
           gaussian ? std::vector<float>{policy_mean, -1} : std::vector<float>{policy_mean});
  if (agent.actor_target() != nullptr) {
    at::NoGradGuard no_grad;
    agent.actor_target()->params().flat().copy_(actor.flat());
  }
  models::ParameterBlock& critic = agent.critic().params();
  SetParam(critic, "trunk.0.weight", critic_input_weights);
  SetParam(critic, "trunk.0.bias", critic_bias);
  SetParam(critic, "out.weight", {1, 2});
  SetParam(critic, "out.bias", {0, 0});
  at::NoGradGuard no_grad;
  agent.critic_target().params().flat().copy_(critic.flat());
}

TEST(SacTest, CriticTemperatureAndActorLossesMatchHandComputation) {
  AgentOptions options = Options(false, 1, 1, {1});
  options.algorithm.mutable_sac()->set_initial_alpha(0.5);
  options.algorithm.set_discount(0.9);
  options.algorithm.set_reward_scale(2);
  options.algorithm.set_critic_lr(1e-9);  // critics barely move before the actor loss
  auto agent = MustCreate(options);
  TwinCriticAgent& sac = Internals(*agent);
  SetTinyWeights(sac, {1, 1, 1, 1}, {0, 0}, 0.5f);

  TransitionBatch b;
  b.obs = Floats({0.2f, 0.4f}, {2, 1});
  b.action = Floats({0.1f, -0.2f}, {2, 1});
  b.reward = Floats({1, 2}, {2});
  b.next_obs = Floats({0.3f, -1.0f}, {2, 1});
  b.discount = Floats({1, 0}, {2});
  b.weight = Floats({1, 0.5f}, {2});
  auto stats = sac.UpdateWithNoise(b, at::zeros({2, 2, 1}));
  ASSERT_TRUE(stats.ok()) << stats.status();

  // by hand: zero noise, so every sampled action is tanh(0.5) with the same log-probability
  const double alpha = 0.5, a_pi = std::tanh(0.5);
  const double log_pi = 1.0 - 0.5 * std::log(2 * M_PI) - std::log(1 - a_pi * a_pi);
  const double y[2] = {2 * 1 + 0.9 * (std::max(0.3 + a_pi, 0.0) - alpha * log_pi), 2 * 2};
  const double q[2][2] = {{0.3, 0.2}, {0.6, 0.4}};  // [critic][item]: k·relu(s + a)
  const double w[2] = {1, 0.5};
  double critic_loss = 0;
  for (int k = 0; k < 2; ++k) {
    for (int i = 0; i < 2; ++i) critic_loss += 0.5 * w[i] * std::pow(q[k][i] - y[i], 2) / 2;
  }
  EXPECT_NEAR(stats->critic_loss, critic_loss, 1e-5);
  ASSERT_EQ(stats->td_error_abs.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_NEAR(stats->td_error_abs[i], (std::abs(q[0][i] - y[i]) + std::abs(q[1][i] - y[i])) / 2,
                1e-5);
  }
  EXPECT_NEAR(stats->q_mean, (0.3 + 0.2 + 0.6 + 0.4) / 4, 1e-6);
  EXPECT_NEAR(stats->alpha, 0.5, 1e-7);
  EXPECT_NEAR(stats->entropy, -log_pi, 1e-5);
  // target entropy -|A| = -1
  EXPECT_NEAR(stats->alpha_loss, -std::log(alpha) * (log_pi - 1), 1e-5);
  const double min_q_pi = ((0.2 + a_pi) + (0.4 + a_pi)) / 2;
  EXPECT_NEAR(stats->actor_loss, alpha * log_pi - min_q_pi, 1e-5);
  EXPECT_TRUE(stats->actor_updated);

  // entropy (-0.32) is above the target (-1): Adam's first step lowers log α by exactly alpha_lr
  auto second = sac.UpdateWithNoise(b, at::zeros({2, 2, 1}));
  ASSERT_TRUE(second.ok());
  EXPECT_NEAR(second->alpha, 0.5 * std::exp(-3e-4), 1e-7);
  EXPECT_EQ(agent->updates(), 2);
}

TEST(SacTest, FixedAlphaKeepsTemperature) {
  AgentOptions options = Options(false, 3, 2, {16});
  options.algorithm.mutable_sac()->set_fixed_alpha(true);
  options.algorithm.mutable_sac()->set_initial_alpha(0.2);
  auto agent = MustCreate(options);
  for (int i = 0; i < 3; ++i) {
    auto stats = agent->Update(RandomBatch(8, 3, 2, i));
    ASSERT_TRUE(stats.ok());
    EXPECT_NEAR(stats->alpha, 0.2, 1e-7);
    EXPECT_EQ(stats->alpha_loss, 0);
  }
}

// ---- TD3 ----

TEST(Td3Test, TargetPolicySmoothingNoiseIsClipped) {
  AgentOptions options = Options(true, 1, 1, {1});
  options.algorithm.mutable_td3()->set_policy_noise(0.2);
  options.algorithm.mutable_td3()->set_noise_clip(0.3);
  options.algorithm.set_discount(0.5);
  auto agent = MustCreate(options);
  TwinCriticAgent& td3 = Internals(*agent);
  // the target actor outputs tanh(0) = 0; Q_0 = relu(1 + a), Q_1 = 2·relu(1 + a)
  SetTinyWeights(td3, {0, 1, 0, 1}, {1, 1}, 0.0f);

  TransitionBatch b;
  b.obs = at::zeros({2, 1});
  b.action = at::zeros({2, 1});
  b.reward = at::zeros({2});
  b.next_obs = at::zeros({2, 1});
  b.discount = at::ones({2});
  // 0.2 · ±100 = ±20 is clipped to ±0.3, so a' = ±0.3 and y = 0.5·(1 + a')
  auto stats = td3.UpdateWithNoise(b, Floats({100, -100}, {1, 2, 1}));
  ASSERT_TRUE(stats.ok()) << stats.status();
  const double y[2] = {0.5 * 1.3, 0.5 * 0.7};
  ASSERT_EQ(stats->td_error_abs.size(), 2u);
  double critic_loss = 0;
  for (int i = 0; i < 2; ++i) {
    EXPECT_NEAR(stats->td_error_abs[i], (std::abs(1 - y[i]) + std::abs(2 - y[i])) / 2, 1e-6);
    critic_loss += 0.5 * (std::pow(1 - y[i], 2) + std::pow(2 - y[i], 2)) / 2;
  }
  EXPECT_NEAR(stats->critic_loss, critic_loss, 1e-6);
  EXPECT_FALSE(stats->actor_updated);  // policy_delay 2
  EXPECT_EQ(stats->alpha, 0);
}

TEST(Td3Test, ActorAndTargetsUpdateEveryPolicyDelay) {
  AgentOptions options = Options(true, 3, 2, {16});
  options.algorithm.mutable_td3()->set_policy_delay(3);
  auto agent = MustCreate(options);
  TwinCriticAgent& td3 = Internals(*agent);
  for (int i = 1; i <= 6; ++i) {
    const at::Tensor actor = td3.actor().params().flat().clone();
    const at::Tensor actor_target = td3.actor_target()->params().flat().clone();
    const at::Tensor critic = td3.critic().params().flat().clone();
    const at::Tensor critic_target = td3.critic_target().params().flat().clone();
    auto stats = agent->Update(RandomBatch(8, 3, 2, i));
    ASSERT_TRUE(stats.ok());
    const bool actor_step = i % 3 == 0;
    EXPECT_EQ(stats->actor_updated, actor_step) << "update " << i;
    EXPECT_FALSE(td3.critic().params().flat().equal(critic)) << "update " << i;
    EXPECT_EQ(!td3.actor().params().flat().equal(actor), actor_step) << "update " << i;
    EXPECT_EQ(!td3.actor_target()->params().flat().equal(actor_target), actor_step);
    EXPECT_EQ(!td3.critic_target().params().flat().equal(critic_target), actor_step);
    if (!actor_step) {
      EXPECT_EQ(stats->actor_loss, 0);
    }
  }
}

TEST(Td3Test, SelfImitationTermIsTheLowerBoundLossOnItsRows) {
  auto agent = MustCreate(Options(true, 3, 2, {16}));
  TwinCriticAgent& td3 = Internals(*agent);
  TransitionBatch b = RandomBatch(8, 3, 2, 11);
  b.sil_obs = at::randn({6, 3});
  b.sil_action = at::rand({6, 2}) * 2 - 1;
  // two rows far above any fresh critic value, two far below, two in between
  b.sil_return = Floats({50, -50, 40, -40, 0.01f, -0.01f}, {6});
  b.sil_weight = Floats({1, 1, 0.5f, 0.5f, 1, 1}, {6});
  b.self_imitation_weight = 0.5;
  // by hand, from the critic before the update: ½ Σ_k mean_i w_i ((R_i - Q_k)_+)²
  const at::Tensor q = td3.critic().Forward(b.sil_obs, b.sil_action, /*detach=*/true);  // [2, 6]
  const at::Tensor gap = (b.sil_return - q).clamp_min(0);
  const double want = (gap.square() * b.sil_weight).sum(0).mean().item<double>() * 0.5;
  const std::vector<float> want_advantage = [&] {
    const at::Tensor a = gap.amax(0).contiguous();
    return std::vector<float>(a.data_ptr<float>(), a.data_ptr<float>() + a.numel());
  }();

  absl::StatusOr<UpdateStats> stats = agent->Update(b);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_NEAR(stats->sil_loss, want, 1e-4 * std::max(1.0, want));
  ASSERT_EQ(stats->sil_advantage.size(), 6u);
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(stats->sil_advantage[i], want_advantage[i], 1e-4);
  // high returns have a large gap (high priority); returns below the critic have none
  EXPECT_GT(stats->sil_advantage[0], 40);
  EXPECT_EQ(stats->sil_advantage[1], 0);
  EXPECT_EQ(stats->sil_advantage[3], 0);

  // the term lifts Q at the high-return rows more than a step without it does
  auto plain = MustCreate(Options(true, 3, 2, {16}));
  TransitionBatch without = b;
  without.sil_obs = at::Tensor();
  ASSERT_TRUE(plain->Update(without).ok());
  const at::Tensor q_with = td3.critic().Forward(b.sil_obs, b.sil_action, true);
  const at::Tensor q_without = Internals(*plain).critic().Forward(b.sil_obs, b.sil_action, true);
  EXPECT_GT((q_with - q_without).select(1, 0).mean().item<double>(), 0);

  // bad rows are named
  TransitionBatch bad = b;
  bad.sil_action = at::zeros({5, 2});
  EXPECT_THAT(agent->Update(bad).status().message(), HasSubstr("sil_action"));
  bad = b;
  bad.self_imitation_weight = -1;
  EXPECT_THAT(agent->Update(bad).status().message(), HasSubstr("self_imitation_weight"));
}

// ---- checkpoints ----

class StateTest : public ::testing::TestWithParam<bool> {};

TEST_P(StateTest, RestoreContinuesIdentically) {
  const bool td3 = GetParam();
  AgentOptions options = Options(td3, 3, 2, {32, 32});
  options.algorithm.set_max_grad_norm(1.0);
  auto a = MustCreate(options);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(a->Update(RandomBatch(16, 3, 2, i)).ok());
  auto saved = a->SaveState();
  ASSERT_TRUE(saved.ok()) << saved.status();

  options.seed = 77;  // different initial weights and random streams
  auto b = MustCreate(options);
  ASSERT_TRUE(b->RestoreState(*saved).ok());
  EXPECT_EQ(b->updates(), 5);
  for (int i = 5; i < 8; ++i) {
    const TransitionBatch batch = RandomBatch(16, 3, 2, i);
    auto sa = a->Update(batch);
    auto sb = b->Update(batch);
    ASSERT_TRUE(sa.ok() && sb.ok());
    EXPECT_EQ(sa->critic_loss, sb->critic_loss);
    EXPECT_EQ(sa->actor_loss, sb->actor_loss);
    EXPECT_EQ(sa->alpha, sb->alpha);
    EXPECT_EQ(sa->td_error_abs, sb->td_error_abs);
  }
  at::Tensor obs = at::randn({4, 3});
  at::Tensor act_a, act_b;
  a->Act(obs, /*deterministic=*/false, &act_a);
  b->Act(obs, /*deterministic=*/false, &act_b);
  EXPECT_TRUE(act_a.equal(act_b));
  EXPECT_EQ(*a->SaveState(), *b->SaveState());
}

INSTANTIATE_TEST_SUITE_P(SacAndTd3, StateTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Td3" : "Sac"; });

class UpdateManyTest : public ::testing::TestWithParam<bool> {};

TEST_P(UpdateManyTest, IsTheSameAsOneUpdatePerBatch) {
  const AgentOptions options = Options(GetParam(), 3, 2, {32, 32});
  auto one = MustCreate(options);
  AgentOptions grouped = options;
  grouped.updates_per_graph = 4;  // CUDA graphs only: the CPU's updates run one by one as before
  auto many = MustCreate(grouped);
  std::vector<TransitionBatch> batches;
  for (int i = 0; i < 7; ++i) batches.push_back(RandomBatch(16, 3, 2, i));
  batches[3].weight = at::rand({16}) + 0.5;  // a weighted batch among them
  std::vector<UpdateStats> expected;
  for (const TransitionBatch& b : batches) {
    auto stats = one->Update(b);
    ASSERT_TRUE(stats.ok()) << stats.status();
    expected.push_back(*stats);
  }
  auto stats = many->UpdateMany(batches);
  ASSERT_TRUE(stats.ok()) << stats.status();
  ASSERT_EQ(stats->size(), batches.size());
  for (size_t i = 0; i < batches.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ((*stats)[i].critic_loss, expected[i].critic_loss);
    EXPECT_EQ((*stats)[i].actor_loss, expected[i].actor_loss);
    EXPECT_EQ((*stats)[i].alpha, expected[i].alpha);
    EXPECT_EQ((*stats)[i].actor_updated, expected[i].actor_updated);
    EXPECT_EQ((*stats)[i].td_error_abs, expected[i].td_error_abs);
  }
  EXPECT_EQ(many->updates(), 7);
  EXPECT_EQ(*many->SaveState(), *one->SaveState());
  auto none = many->UpdateMany({});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_P(UpdateManyTest, ABadBatchIsNamedAndNothingChanges) {
  auto agent = MustCreate(Options(GetParam(), 3, 2, {32, 32}));
  ASSERT_TRUE(agent->Update(RandomBatch(16, 3, 2, 0)).ok());
  const std::string before = *agent->SaveState();
  std::vector<TransitionBatch> batches = {RandomBatch(16, 3, 2, 1), RandomBatch(16, 3, 2, 2),
                                          RandomBatch(16, 3, 2, 3)};
  batches[2].action = at::zeros({16, 5});
  auto stats = agent->UpdateMany(batches);
  ASSERT_FALSE(stats.ok());
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(stats.status().message(), HasSubstr("batches[2]: batch.action"));
  EXPECT_EQ(agent->updates(), 1);
  EXPECT_EQ(*agent->SaveState(), before);
}

INSTANTIATE_TEST_SUITE_P(SacAndTd3, UpdateManyTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Td3" : "Sac"; });

TEST(StateTest, MismatchedOrCorruptCheckpointsAreRefusedWithoutChanges) {
  auto sac = MustCreate(Options(false, 3, 2, {32, 32}));
  const std::string before = *sac->SaveState();
  const std::string td3_state = *MustCreate(Options(true, 3, 2, {32, 32}))->SaveState();
  const std::string other_net = *MustCreate(Options(false, 3, 2, {64}))->SaveState();
  const std::string other_act = *MustCreate(Options(false, 3, 4, {32, 32}))->SaveState();

  struct Case {
    std::string bytes;
    absl::StatusCode code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"hello", absl::StatusCode::kDataLoss, "not an agent checkpoint"},
      {before.substr(0, before.size() / 2), absl::StatusCode::kDataLoss, "truncated"},
      {before + "x", absl::StatusCode::kDataLoss, "trailing"},
      {td3_state, absl::StatusCode::kInvalidArgument, "algorithm td3; this agent has sac"},
      {other_net, absl::StatusCode::kInvalidArgument, "network hidden_sizes [64]"},
      {other_act, absl::StatusCode::kInvalidArgument, "act_dim 4; this agent has 2"},
  };
  for (const Case& c : cases) {
    absl::Status status = sac->RestoreState(c.bytes);
    EXPECT_EQ(status.code(), c.code) << status;
    EXPECT_THAT(status.message(), HasSubstr(c.message));
  }
  EXPECT_EQ(*sac->SaveState(), before);
}

TEST_P(StateTest, InitializeFromTakesTheLearnedNetworksAndKeepsFreshOptimisers) {
  const bool td3 = GetParam();
  AgentOptions options = Options(td3, 3, 2, {32, 32});
  auto trained = MustCreate(options);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(trained->Update(RandomBatch(16, 3, 2, i)).ok());

  options.seed = 77;
  auto fresh = MustCreate(options);  // what a new run starts as
  auto tuned = MustCreate(options);  // the same, then fine-tuned
  ASSERT_TRUE(tuned->InitializeFrom(*trained->SaveState()).ok());
  EXPECT_EQ(tuned->updates(), 0);
  TwinCriticAgent& t = Internals(*tuned);
  TwinCriticAgent& src = Internals(*trained);
  EXPECT_TRUE(t.actor().params().flat().equal(src.actor().params().flat()));
  EXPECT_TRUE(t.critic().params().flat().equal(src.critic().params().flat()));
  EXPECT_TRUE(t.critic_target().params().flat().equal(src.critic_target().params().flat()));
  if (td3) {
    EXPECT_TRUE(t.actor_target()->params().flat().equal(src.actor_target()->params().flat()));
  }
  // the policy acts as the trained one does (deterministic: no random stream involved)
  const at::Tensor obs = at::randn({5, 3});
  at::Tensor act_tuned, act_trained;
  tuned->Act(obs, /*deterministic=*/true, &act_tuned);
  trained->Act(obs, /*deterministic=*/true, &act_trained);
  EXPECT_TRUE(act_tuned.equal(act_trained));
  // SAC's temperature comes along: the first update uses the trained α, not α's initial value
  const TransitionBatch batch = RandomBatch(16, 3, 2, 100);
  auto s_tuned = tuned->Update(batch);
  auto s_trained = trained->Update(batch);
  auto s_fresh = fresh->Update(batch);
  ASSERT_TRUE(s_tuned.ok() && s_trained.ok() && s_fresh.ok());
  EXPECT_EQ(s_tuned->alpha, s_trained->alpha);
  if (!td3) {
    EXPECT_NE(s_tuned->alpha, s_fresh->alpha);
  }
  // optimisers and counters start fresh: the counter restarted, and the same batch moves the
  // critics differently from the trained agent's own Adam, which carries momentum
  EXPECT_EQ(tuned->updates(), 1);
  EXPECT_FALSE(t.critic().params().flat().equal(src.critic().params().flat()));
  EXPECT_NE(*tuned->SaveState(), *trained->SaveState());
}

TEST(StateTest, InitializeFromRefusesMismatchesWithoutChanges) {
  auto sac = MustCreate(Options(false, 3, 2, {32, 32}));
  const std::string before = *sac->SaveState();
  struct Case {
    std::string bytes;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"hello", "not an agent checkpoint"},
      {*MustCreate(Options(true, 3, 2, {32, 32}))->SaveState(), "algorithm td3"},
      {*MustCreate(Options(false, 3, 2, {64}))->SaveState(), "network hidden_sizes [64]"},
      {*MustCreate(Options(false, 5, 2, {32, 32}))->SaveState(), "obs_dim 5; this agent has 3"},
  };
  for (const Case& c : cases) {
    absl::Status status = sac->InitializeFrom(c.bytes);
    EXPECT_FALSE(status.ok());
    EXPECT_THAT(status.message(), HasSubstr(c.message));
  }
  EXPECT_EQ(*sac->SaveState(), before);
}

// ---- options ----

TEST(OptionsTest, BadValuesNameTheirField) {
  struct Case {
    std::function<void(AgentOptions*)> change;
    absl::StatusCode code;
    std::string message;
  };
  using Code = absl::StatusCode;
  const Code kBad = Code::kInvalidArgument;
  const std::vector<Case> cases = {
      {[](AgentOptions* o) { o->obs_dim = 0; }, kBad, "obs_dim: 0 is not allowed"},
      {[](AgentOptions* o) { o->act_dim = -1; }, kBad, "act_dim: -1 is not allowed"},
      {[](AgentOptions* o) { o->num_threads = -2; }, kBad, "num_threads: -2"},
      {[](AgentOptions* o) { o->updates_per_graph = 0; }, kBad,
       "updates_per_graph: 0 is not allowed; it must be in 1..16"},
      {[](AgentOptions* o) { o->updates_per_graph = 17; }, kBad, "updates_per_graph: 17"},
      {[](AgentOptions* o) { o->device = "tpu"; }, kBad,
       "device: \"tpu\" is not allowed; it must be auto, cpu, cuda or cuda:N"},
      {[](AgentOptions* o) { o->device = "cuda:x"; }, kBad, "device: \"cuda:x\""},
      {[](AgentOptions* o) { o->algorithm.clear_algorithm(); }, kBad, "algorithm: not set"},
      {[](AgentOptions* o) { o->algorithm.mutable_spirl(); }, Code::kUnimplemented,
       "algorithm.spirl"},
      {[](AgentOptions* o) { o->algorithm.mutable_eap(); }, Code::kUnimplemented, "algorithm.eap"},
      {[](AgentOptions* o) { o->algorithm.mutable_parrot()->set_latent_bound(-1); }, kBad,
       "algorithm.parrot.latent_bound: -1"},
      {[](AgentOptions* o) { o->algorithm.mutable_mcat(); }, Code::kUnimplemented,
       "algorithm.mcat"},
      {[](AgentOptions* o) { o->algorithm.set_discount(1.5); }, kBad,
       "algorithm.discount: 1.5 is not allowed; it must be in (0, 1]"},
      {[](AgentOptions* o) { o->algorithm.set_discount(-0.1); }, kBad, "algorithm.discount"},
      {[](AgentOptions* o) { o->algorithm.set_tau(2); }, kBad, "algorithm.tau: 2"},
      {[](AgentOptions* o) { o->algorithm.set_target_update_period(-1); }, kBad,
       "algorithm.target_update_period: -1"},
      {[](AgentOptions* o) { o->algorithm.set_batch_size(-5); }, kBad, "algorithm.batch_size"},
      {[](AgentOptions* o) { o->algorithm.set_actor_lr(-1); }, kBad, "algorithm.actor_lr: -1"},
      {[](AgentOptions* o) { o->algorithm.set_critic_lr(NAN); }, kBad, "algorithm.critic_lr"},
      {[](AgentOptions* o) { o->algorithm.set_reward_scale(-2); }, kBad, "algorithm.reward_scale"},
      {[](AgentOptions* o) { o->algorithm.set_max_grad_norm(-1); }, kBad,
       "algorithm.max_grad_norm"},
      {[](AgentOptions* o) { o->algorithm.mutable_network()->add_hidden_sizes(0); }, kBad,
       "algorithm.network.hidden_sizes[0]: 0 is not allowed; it must be in 1..4096"},
      {[](AgentOptions* o) {
         for (int i = 0; i < 9; ++i) o->algorithm.mutable_network()->add_hidden_sizes(8);
       },
       kBad, "algorithm.network.hidden_sizes: 9 layers"},
      {[](AgentOptions* o) {
         o->algorithm.mutable_network()->set_activation(
             static_cast<v1::NetworkSpec::Activation>(42));
       },
       kBad, "algorithm.network.activation: 42"},
      {[](AgentOptions* o) { o->algorithm.mutable_sac()->set_initial_alpha(-1); }, kBad,
       "algorithm.sac.initial_alpha"},
      {[](AgentOptions* o) { o->algorithm.mutable_sac()->set_alpha_lr(-1); }, kBad,
       "algorithm.sac.alpha_lr"},
      {[](AgentOptions* o) { o->algorithm.mutable_sac()->set_target_entropy(INFINITY); }, kBad,
       "algorithm.sac.target_entropy"},
      {[](AgentOptions* o) { o->algorithm.mutable_td3()->set_policy_noise(-0.1); }, kBad,
       "algorithm.td3.policy_noise"},
      {[](AgentOptions* o) { o->algorithm.mutable_td3()->set_noise_clip(-1); }, kBad,
       "algorithm.td3.noise_clip"},
      {[](AgentOptions* o) { o->algorithm.mutable_td3()->set_policy_delay(-1); }, kBad,
       "algorithm.td3.policy_delay"},
      {[](AgentOptions* o) { o->algorithm.mutable_td3()->set_exploration_noise(-1); }, kBad,
       "algorithm.td3.exploration_noise"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    AgentOptions options = Options(false, 3, 2, {});
    cases[i].change(&options);
    auto agent = Agent::Create(options);
    ASSERT_FALSE(agent.ok()) << "case " << i;
    EXPECT_EQ(agent.status().code(), cases[i].code) << agent.status();
    EXPECT_THAT(agent.status().message(), HasSubstr(cases[i].message)) << "case " << i;
  }
}

TEST(OptionsTest, DefaultsAreResolved) {
  auto config = internal::ResolveAgentOptions(Options(false, 17, 6, {}));
  ASSERT_TRUE(config.ok());
  const v1::AlgorithmSpec& a = config->algorithm;
  EXPECT_EQ(a.discount(), 0.99);
  EXPECT_EQ(a.tau(), 0.005);
  EXPECT_EQ(a.target_update_period(), 1);
  EXPECT_EQ(a.actor_lr(), 3e-4);
  EXPECT_EQ(a.critic_lr(), 3e-4);
  EXPECT_EQ(a.reward_scale(), 1.0);
  EXPECT_EQ(a.sac().initial_alpha(), 1.0);
  EXPECT_EQ(a.sac().alpha_lr(), 3e-4);
  EXPECT_EQ(a.sac().target_entropy(), -6);
  EXPECT_THAT(a.network().hidden_sizes(), ::testing::ElementsAre(256, 256));
  EXPECT_EQ(a.network().activation(), v1::NetworkSpec::ACTIVATION_RELU);
  auto td3 = internal::ResolveAgentOptions(Options(true, 17, 6, {}));
  ASSERT_TRUE(td3.ok());
  EXPECT_EQ(td3->algorithm.td3().policy_noise(), 0.2);
  EXPECT_EQ(td3->algorithm.td3().noise_clip(), 0.5);
  EXPECT_EQ(td3->algorithm.td3().policy_delay(), 2);
  EXPECT_EQ(td3->algorithm.td3().exploration_noise(), 0.1);
}

TEST(UpdateTest, BadBatchNamesTheField) {
  auto agent = MustCreate(Options(false, 3, 2, {8}));
  TransitionBatch b = RandomBatch(4, 3, 2, 0);
  b.next_obs = at::zeros({4, 5});
  auto stats = agent->Update(b);
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(stats.status().message(), HasSubstr("batch.next_obs: shape [4, 5]"));
  b = RandomBatch(4, 3, 2, 0);
  b.reward = b.reward.to(at::kDouble);
  EXPECT_THAT(agent->Update(b).status().message(), HasSubstr("batch.reward: dtype"));
  EXPECT_EQ(agent->updates(), 0);
}

// ---- learning ----

// One-step episodes with reward -(a - 0.5)²: the best action is 0.5 in every state.
class ToyLearningTest : public ::testing::TestWithParam<bool> {};

TEST_P(ToyLearningTest, LearnsTheBestAction) {
  AgentOptions options = Options(GetParam(), 1, 1, {32, 32});
  options.algorithm.set_actor_lr(3e-3);
  options.algorithm.set_critic_lr(3e-3);
  if (!GetParam()) options.algorithm.mutable_sac()->set_alpha_lr(3e-3);
  auto agent = MustCreate(options);
  at::Generator gen = at::detail::createCPUGenerator(5);
  for (int i = 0; i < 400; ++i) {
    TransitionBatch b;
    b.obs = at::rand({64, 1}, gen, at::kFloat) * 2 - 1;
    b.action = at::rand({64, 1}, gen, at::kFloat) * 2 - 1;
    b.reward = -(b.action.squeeze(1) - 0.5).square();
    b.next_obs = b.obs;
    b.discount = at::zeros({64});
    ASSERT_TRUE(agent->Update(b).ok());
  }
  at::Tensor action;
  agent->Act(Floats({-0.8f, 0.0f, 0.7f}, {3, 1}), /*deterministic=*/true, &action);
  // TD3 follows Q_1 alone, whose maximum sits further from 0.5 near the edge of the data
  const double tolerance = GetParam() ? 0.15 : 0.1;
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(action[i][0].item<double>(), 0.5, tolerance);
}

INSTANTIATE_TEST_SUITE_P(SacAndTd3, ToyLearningTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Td3" : "Sac"; });

// The path CUDA graphs capture: the step size and bias correction read from a tensor that
// NextStepScalars fills before each step, instead of computed on the host: the same step, bit
// for bit.
TEST(FlatAdamTest, DeviceScalarsStepLikeTheHostPath) {
  at::Generator gen = at::detail::createCPUGenerator(5);
  const at::Tensor start = at::randn({1000}, gen, at::kFloat);
  at::Tensor host_param = start.clone();
  at::Tensor device_param = start.clone();
  FlatAdam host(host_param, FlatAdam::Options{1e-2});
  FlatAdam device(device_param, FlatAdam::Options{1e-2});
  const at::Tensor scalars = at::zeros({FlatAdam::kDeviceScalars}, at::kFloat);
  device.UseDeviceScalars(scalars);
  for (int step = 1; step <= 20; ++step) {
    const at::Tensor grad = at::randn({1000}, gen, at::kFloat);
    float next[FlatAdam::kDeviceScalars];
    device.NextStepScalars(next);
    EXPECT_FLOAT_EQ(next[0], -1e-2 / (1 - std::pow(0.9, step)));
    EXPECT_FLOAT_EQ(next[1], std::sqrt(1 - std::pow(0.999, step)));
    scalars.copy_(at::tensor({next[0], next[1]}, at::kFloat));
    host.Step(grad);
    device.Step(grad);
  }
  EXPECT_EQ(device.steps(), 20);
  EXPECT_TRUE(at::equal(host_param, device_param));
  EXPECT_TRUE(at::equal(host.exp_avg_sq(), device.exp_avg_sq()));
  EXPECT_GT((host_param - start).abs().max().item<float>(), 0.1);  // it did move
  device.UseDeviceScalars(at::Tensor());                           // back to the host path
  const at::Tensor grad = at::randn({1000}, gen, at::kFloat);
  host.Step(grad);
  device.Step(grad);
  EXPECT_TRUE(at::equal(host_param, device_param));
}

// Where the fused pass does not apply (here a strided parameter), the device scalars drive
// LibTorch's operations: the same step up to rounding.
TEST(FlatAdamTest, DeviceScalarsOnStridedTensorsTakeTheTensorOperations) {
  at::Generator gen = at::detail::createCPUGenerator(6);
  const at::Tensor start = at::randn({1000, 2}, gen, at::kFloat);
  at::Tensor host_param = start.clone().select(1, 0);
  at::Tensor device_param = start.clone().select(1, 0);
  FlatAdam host(host_param, FlatAdam::Options{1e-2});
  FlatAdam device(device_param, FlatAdam::Options{1e-2});
  const at::Tensor scalars = at::zeros({FlatAdam::kDeviceScalars}, at::kFloat);
  device.UseDeviceScalars(scalars);
  for (int step = 1; step <= 5; ++step) {
    const at::Tensor grad = at::randn({1000}, gen, at::kFloat);
    float next[FlatAdam::kDeviceScalars];
    device.NextStepScalars(next);
    scalars.copy_(at::tensor({next[0], next[1]}, at::kFloat));
    host.Step(grad);
    device.Step(grad);
  }
  EXPECT_LT((host_param - device_param).abs().max().item<float>(), 1e-6);
  EXPECT_GT((host_param - start.select(1, 0)).abs().max().item<float>(), 0.01);
}

TEST(GemmTest, OneDnnAndAtenAgentsAgree) {
  AgentOptions options = Options(false, 3, 2, {32, 32});
  // LayerNorm and SiLU through the ensemble critics too
  options.algorithm.mutable_network()->set_layer_norm(true);
  options.algorithm.mutable_network()->set_activation(v1::NetworkSpec::ACTIVATION_SILU);
  auto fast = MustCreate(options);
  options.fast_cpu_gemm = false;
  auto aten = MustCreate(options);
  for (int i = 0; i < 4; ++i) {
    const int rows = i == 3 ? 1 : 16;  // one row: the bias must not alias the GEMM's output
    auto a = fast->Update(RandomBatch(rows, 3, 2, i));
    auto b = aten->Update(RandomBatch(rows, 3, 2, i));
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_NEAR(a->critic_loss, b->critic_loss, 1e-4 * std::max(1.0, std::abs(b->critic_loss)));
    EXPECT_NEAR(a->actor_loss, b->actor_loss, 1e-4 * std::max(1.0, std::abs(b->actor_loss)));
  }
}

// An agent on the direct CPU update and its autograd reference from the same options; nulls
// (after a failed expectation) when either cannot be built or takes the wrong path.
std::pair<std::unique_ptr<Agent>, std::unique_ptr<Agent>> DirectAndReference(AgentOptions options) {
  options.direct_cpu_update = true;
  auto direct = MustCreate(options);
  options.direct_cpu_update = false;
  auto reference = MustCreate(options);
  if (direct == nullptr || reference == nullptr) return {nullptr, nullptr};
  EXPECT_TRUE(Internals(*direct).direct_update());
  EXPECT_FALSE(Internals(*reference).direct_update());
  if (!Internals(*direct).direct_update() || Internals(*reference).direct_update()) {
    return {nullptr, nullptr};
  }
  return {std::move(direct), std::move(reference)};
}

// The direct CPU update (learner/direct_sac.h) and the autograd one from the same weights, batches
// and noise: the same statistics and the same trained networks up to float rounding, on one and
// two threads (one and two row ranges), with and without importance weights and clipping.
// PARROT's SAC over a flow's latent goes the same way: z = b·tanh(u / s), scaled or not, with the
// entropy or the KL to N(0, I) as the regulariser.
enum class Variant { kSac, kParrotScaledKl, kParrotUnscaled };

TEST(DirectSacTest, MatchesTheAutogradUpdate) {
  for (Variant variant : {Variant::kSac, Variant::kParrotScaledKl, Variant::kParrotUnscaled}) {
    for (int threads : {1, 2}) {
      for (bool weighted_and_clipped : {false, true}) {
        SCOPED_TRACE(::testing::Message()
                     << "variant " << static_cast<int>(variant) << ", " << threads
                     << " threads, weighted and clipped " << weighted_and_clipped);
        AgentOptions options = Options(false, 5, 3, {64, 64});
        if (variant != Variant::kSac) {
          v1::ParrotConfig* parrot = options.algorithm.mutable_parrot();
          parrot->set_latent_bound(3.0);
          parrot->set_random_policy_init(true);  // a zero head would leave nothing to compare
          if (variant == Variant::kParrotScaledKl) {
            parrot->set_latent_squash(v1::ParrotConfig::LATENT_SQUASH_SCALED);
            parrot->set_regularizer(v1::ParrotConfig::REGULARIZER_KL_TO_BASE);
          } else {
            parrot->set_latent_squash(v1::ParrotConfig::LATENT_SQUASH_UNSCALED);
          }
        }
        options.num_threads = threads;
        if (weighted_and_clipped) options.algorithm.set_max_grad_norm(0.5);
        if (!models::FastSgemmAvailable()) GTEST_SKIP() << "no oneDNN sgemm: no direct update";
        auto [direct, reference] = DirectAndReference(options);
        ASSERT_TRUE(direct != nullptr && reference != nullptr);
        at::Generator gen = at::detail::createCPUGenerator(99);
        for (int step = 0; step < 5; ++step) {
          TransitionBatch b = RandomBatch(256, 5, 3, 10 + step);
          if (weighted_and_clipped) b.weight = at::rand({256}, gen, at::kFloat) + 0.5;
          const at::Tensor noise = at::randn({2, 256, 3}, gen, at::kFloat);
          SCOPED_TRACE(::testing::Message() << "step " << step);
          auto x = Internals(*direct).UpdateWithNoise(b, noise);
          auto y = Internals(*reference).UpdateWithNoise(b, noise);
          ASSERT_TRUE(x.ok()) << x.status();
          ASSERT_TRUE(y.ok()) << y.status();
          ExpectSameStats(*x, *y);
          ExpectSameGradients(Internals(*direct), Internals(*reference), /*actor_stepped=*/true);
        }
        ExpectSameNetworks(Internals(*direct), Internals(*reference));
        EXPECT_EQ(direct->updates(), 5);
      }
    }
  }
}

// TD3's direct CPU update (learner/direct_td3.h) against its autograd update on the same batches
// and noise, with MCAT's self-imitation rows or without, on one and two threads, with and without
// importance weights and clipping: the same statistics, the same gradients at every Adam step
// (the actor's on the updates that step it: policy_delay 2) and the same networks, targets
// included, after six updates.
TEST(DirectTd3Test, MatchesTheAutogradUpdate) {
  for (bool self_imitation : {false, true}) {
    for (int threads : {1, 2}) {
      for (bool weighted_and_clipped : {false, true}) {
        SCOPED_TRACE(::testing::Message()
                     << "self-imitation " << self_imitation << ", " << threads
                     << " threads, weighted and clipped " << weighted_and_clipped);
        AgentOptions options = Options(true, 5, 3, {64, 64});
        options.num_threads = threads;
        if (weighted_and_clipped) options.algorithm.set_max_grad_norm(0.5);
        if (!models::FastSgemmAvailable()) GTEST_SKIP() << "no oneDNN sgemm: no direct update";
        auto [direct, reference] = DirectAndReference(options);
        ASSERT_TRUE(direct != nullptr && reference != nullptr);
        at::Generator gen = at::detail::createCPUGenerator(98);
        for (int step = 0; step < 6; ++step) {
          SCOPED_TRACE(::testing::Message() << "step " << step);
          TransitionBatch b = RandomBatch(256, 5, 3, 20 + step);
          if (weighted_and_clipped) b.weight = at::rand({256}, gen, at::kFloat) + 0.5;
          if (self_imitation) {
            // returns around the critics' values, so some rows push and some do not
            TransitionBatch sil = RandomBatch(96, 5, 3, 40 + step);
            b.sil_obs = sil.obs;
            b.sil_action = sil.action;
            b.sil_return = at::randn({96}, gen, at::kFloat) * 0.5;
            if (weighted_and_clipped) b.sil_weight = at::rand({96}, gen, at::kFloat) + 0.5;
            b.self_imitation_weight = 0.7;
          }
          const at::Tensor noise = at::randn({1, 256, 3}, gen, at::kFloat);
          auto x = Internals(*direct).UpdateWithNoise(b, noise);
          auto y = Internals(*reference).UpdateWithNoise(b, noise);
          ASSERT_TRUE(x.ok()) << x.status();
          ASSERT_TRUE(y.ok()) << y.status();
          EXPECT_PRED2(Near, x->critic_loss, y->critic_loss) << "step " << step;
          EXPECT_PRED2(Near, x->actor_loss, y->actor_loss) << "step " << step;
          EXPECT_PRED2(Near, x->q_mean, y->q_mean) << "step " << step;
          EXPECT_PRED2(Near, x->sil_loss, y->sil_loss) << "step " << step;
          EXPECT_EQ(x->actor_updated, y->actor_updated) << "step " << step;
          EXPECT_EQ(x->actor_updated, step % 2 == 1);
          ASSERT_EQ(x->td_error_abs.size(), y->td_error_abs.size());
          ASSERT_EQ(x->sil_advantage.size(), y->sil_advantage.size());
          EXPECT_EQ(x->sil_advantage.size(), self_imitation ? 96u : 0u);
          size_t mismatched = 0, pushing = 0;
          for (size_t i = 0; i < y->td_error_abs.size(); ++i) {
            mismatched += Near(x->td_error_abs[i], y->td_error_abs[i]) ? 0 : 1;
          }
          for (size_t i = 0; i < y->sil_advantage.size(); ++i) {
            mismatched += Near(x->sil_advantage[i], y->sil_advantage[i]) ? 0 : 1;
            pushing += y->sil_advantage[i] > 0 ? 1 : 0;
          }
          EXPECT_EQ(mismatched, 0u) << "rows whose TD errors or advantages differ, step " << step;
          if (self_imitation) {
            EXPECT_GT(pushing, 0u);
            EXPECT_LT(pushing, 96u);
          }
          ExpectSameGradients(Internals(*direct), Internals(*reference), x->actor_updated);
        }
        ExpectSameNetworks(Internals(*direct), Internals(*reference));
        EXPECT_GT(MaxDiff(Internals(*direct).actor_target()->params(),
                          Internals(*direct).actor().params()),
                  0);
        EXPECT_EQ(direct->updates(), 6);
      }
    }
  }
}

}  // namespace
}  // namespace prl::learner
