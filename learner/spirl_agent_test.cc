#include "learner/spirl_agent.h"

#include <cmath>
#include <memory>
#include <utility>

#include "ATen/ATen.h"
#include "ATen/CPUGeneratorImpl.h"
#include "ATen/core/grad_mode.h"
#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "learner/agent_internal.h"
#include "learner/direct_update_test_util.h"
#include "models/cvae_model.h"
#include "models/gemm.h"
#include "models/skill_model.h"

namespace prl::learner {
namespace {

using internal::TwinCriticAgent;
using ::testing::HasSubstr;

constexpr int kObs = 3;
constexpr int kLatent = 2;

std::shared_ptr<const models::SkillModel> MakePrior(int64_t seed = 1) {
  models::SkillModelOptions options;
  options.obs_dim = kObs;
  options.act_dim = 2;
  options.horizon = 4;
  options.latent_dim = kLatent;
  options.network.add_hidden_sizes(16);
  options.network.add_hidden_sizes(16);
  options.seed = seed;
  return models::SkillModel::Create(options).value();
}

// EAP's prior: a CVAE with a learned state prior, same shapes.
std::shared_ptr<const models::CvaeModel> MakeEapPrior() {
  models::CvaeModelOptions options;
  options.obs_dim = kObs;
  options.act_dim = 2;
  options.horizon = 4;
  options.latent_dim = kLatent;
  options.learned_prior = true;
  options.network.add_hidden_sizes(16);
  options.network.add_hidden_sizes(16);
  options.seed = 5;
  return models::CvaeModel::Create(options).value();
}

AgentOptions SpirlOptions() {
  AgentOptions options;
  options.obs_dim = kObs;
  options.act_dim = kLatent;
  options.device = "cpu";
  options.seed = 3;
  options.algorithm.mutable_spirl();
  options.algorithm.mutable_network()->add_hidden_sizes(32);
  options.algorithm.set_batch_size(8);
  return options;
}

TransitionBatch RandomBatch(int b, int64_t seed) {
  at::manual_seed(seed);
  TransitionBatch batch;
  batch.obs = at::randn({b, kObs});
  batch.action = at::rand({b, kLatent}) * 4 - 2;
  batch.reward = at::randn({b});
  batch.next_obs = at::randn({b, kObs});
  batch.discount = at::ones({b});
  batch.discount[0] = 0;
  return batch;
}

TEST(SpirlDivergenceTest, AnalyticMatchesHandComputedValues) {
  // π = N([0, 1], diag([1, 2]²)), p = N(0, I): KL_0 = 0, KL_1 = log(1/2) + (4 + 1)/2 − ½
  const at::Tensor mean = at::tensor({0.0f, 1.0f}).view({1, 2});
  const at::Tensor log_std = at::tensor({0.0f, static_cast<float>(std::log(2.0))}).view({1, 2});
  const models::DiagonalGaussian prior{at::zeros({1, 2}), at::zeros({1, 2})};
  const at::Tensor d = SpirlDivergence(mean, log_std, prior, 0, at::Tensor());
  const double kl1 = std::log(0.5) + 2.5 - 0.5;
  EXPECT_NEAR(d.item<float>(), kl1 / 2, 1e-6);  // averaged over the 2 dims
}

TEST(SpirlDivergenceTest, MonteCarloEstimatesTheAnalyticValueAndBothClip) {
  at::manual_seed(0);
  const at::Tensor mean = at::randn({4, 3});
  const at::Tensor log_std = at::randn({4, 3}) * 0.3;
  const models::DiagonalGaussian prior{at::randn({4, 3}), at::randn({4, 3}) * 0.3};
  const at::Tensor analytic = SpirlDivergence(mean, log_std, prior, 0, at::Tensor());
  const at::Tensor mc = SpirlDivergence(mean, log_std, prior, 100, at::randn({100, 4, 3}));
  // with 100 draws the estimate is within a few standard errors
  EXPECT_TRUE(at::allclose(mc, analytic, 0.0, 0.5)) << mc << analytic;
  const models::DiagonalGaussian far{at::full({1, 1}, 1e4), at::zeros({1, 1})};
  EXPECT_FLOAT_EQ(
      SpirlDivergence(at::zeros({1, 1}), at::zeros({1, 1}), far, 0, at::Tensor()).item<float>(),
      100.0f);
}

TEST(SpirlAgentTest, ThePolicyStartsAsTheSkillPrior) {
  std::shared_ptr<const models::SkillModel> prior = MakePrior();
  auto agent = CreateSpirlAgent(SpirlOptions(), prior);
  ASSERT_TRUE(agent.ok()) << agent.status();
  TwinCriticAgent& internals = dynamic_cast<TwinCriticAgent&>(**agent);
  const at::Tensor obs = at::randn({5, kObs});
  at::NoGradGuard no_grad;
  const models::PolicyNetwork::Output out = internals.actor().Forward(obs);
  const models::DiagonalGaussian p = prior->Prior(obs).value();
  EXPECT_TRUE(at::allclose(out.mean, p.mean, 1e-5, 1e-6));
  EXPECT_TRUE(at::allclose(out.log_std, p.log_std, 1e-5, 1e-6));
  // the export: a decoded latent bounded by latent_bound, on the prior's architecture
  v1::PolicyArchitecture architecture;
  std::vector<std::pair<std::string, HostTensor>> weights;
  ASSERT_TRUE((*agent)->ExportPolicy(&architecture, &weights).ok());
  EXPECT_EQ(architecture.output(), v1::PolicyArchitecture::OUTPUT_DECODED_LATENT);
  EXPECT_DOUBLE_EQ(architecture.output_bound(), 2.0);
  EXPECT_EQ(architecture.output_dim(), kLatent);
  EXPECT_EQ(architecture.network().hidden_sizes_size(), 2);
  EXPECT_EQ(architecture.network().hidden_sizes(0), 16);
}

TEST(SpirlAgentTest, TheCriticRegressesOnTheKlRegularisedTarget) {
  std::shared_ptr<const models::SkillModel> prior = MakePrior();
  AgentOptions options = SpirlOptions();
  options.algorithm.mutable_spirl()->set_fixed_alpha(true);
  options.algorithm.mutable_spirl()->set_initial_alpha(0.7);
  options.algorithm.mutable_spirl()->set_random_policy_init(true);  // D far from 0
  options.algorithm.set_discount(0.9);
  options.algorithm.set_reward_scale(2.0);
  auto agent = CreateSpirlAgent(options, prior);
  ASSERT_TRUE(agent.ok()) << agent.status();
  TwinCriticAgent& a = dynamic_cast<TwinCriticAgent&>(**agent);
  const TransitionBatch batch = RandomBatch(8, 11);
  const at::Tensor noise = at::randn({2, 8, kLatent});

  // y by hand: r·2 + 0.9·d·(min_k Q'_k(s', 2·tanh(μ + σ·ε₁)) − 0.7·D(s'))
  at::Tensor expected_loss;
  {
    at::NoGradGuard no_grad;
    const models::PolicyNetwork::Output next = a.actor().Forward(batch.next_obs);
    const at::Tensor z_next = at::tanh(next.mean + next.log_std.exp() * noise[1]) * 2.0;
    const at::Tensor q_next = a.critic_target().Forward(batch.next_obs, z_next).amin(0);
    const models::DiagonalGaussian p = prior->Prior(batch.next_obs).value();
    const at::Tensor kl =
        (p.log_std - next.log_std +
         ((next.log_std * 2).exp() + (next.mean - p.mean).square()) / ((p.log_std * 2).exp() * 2) -
         0.5)
            .mean(-1);
    const at::Tensor y = batch.reward * 2.0 + 0.9 * batch.discount * (q_next - 0.7 * kl);
    const at::Tensor q = a.critic().Forward(batch.obs, batch.action);
    expected_loss = (q - y).square().sum(0).mean() * 0.5;
  }
  auto stats = a.UpdateWithNoise(batch, noise);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_NEAR(stats->critic_loss, expected_loss.item<double>(), 1e-4 * (1 + stats->critic_loss));
  EXPECT_DOUBLE_EQ(stats->alpha, static_cast<float>(0.7));
  EXPECT_GT(stats->entropy, 0.0);  // the divergence, in SAC's entropy slot
}

TEST(SpirlAgentTest, AlphaMovesTowardTheTargetDivergence) {
  std::shared_ptr<const models::SkillModel> prior = MakePrior();
  for (const double delta : {0.01, 50.0}) {
    AgentOptions options = SpirlOptions();
    options.algorithm.mutable_spirl()->set_target_divergence(delta);
    options.algorithm.mutable_spirl()->set_alpha_lr(0.05);
    options.algorithm.mutable_spirl()->set_random_policy_init(true);
    auto agent = CreateSpirlAgent(options, prior);
    ASSERT_TRUE(agent.ok()) << agent.status();
    double first = 0, last = 0;
    for (int i = 0; i < 30; ++i) {
      auto stats = (*agent)->Update(RandomBatch(8, 100 + i));
      ASSERT_TRUE(stats.ok()) << stats.status();
      if (i == 0) first = stats->alpha;
      last = stats->alpha;
    }
    // δ tiny: the divergence is above it, α grows; δ huge: below it, α shrinks
    if (delta < 1) {
      EXPECT_GT(last, first) << "δ " << delta;
    } else {
      EXPECT_LT(last, first) << "δ " << delta;
    }
  }
}

TEST(SpirlAgentTest, RefusesWhatDoesNotFitThePrior) {
  std::shared_ptr<const models::SkillModel> prior = MakePrior();
  AgentOptions options = SpirlOptions();
  options.act_dim = 5;
  absl::Status s = CreateSpirlAgent(options, prior).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("act_dim"));
  options = SpirlOptions();
  options.algorithm.mutable_spirl()->set_horizon(7);
  s = CreateSpirlAgent(options, prior).status();
  EXPECT_THAT(s.message(), HasSubstr("algorithm.spirl.horizon"));
  options = SpirlOptions();
  options.algorithm.mutable_spirl()->set_kl_samples(1000);
  s = CreateSpirlAgent(options, prior).status();
  EXPECT_THAT(s.message(), HasSubstr("algorithm.spirl.kl_samples"));
  // a checkpoint round trip keeps α and the policy
  auto agent = CreateSpirlAgent(SpirlOptions(), prior);
  ASSERT_TRUE(agent.ok());
  ASSERT_TRUE((*agent)->Update(RandomBatch(8, 1)).ok());
  auto state = (*agent)->SaveState();
  ASSERT_TRUE(state.ok());
  auto other = CreateSpirlAgent(SpirlOptions(), prior);
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE((*other)->RestoreState(*state).ok());
  EXPECT_EQ((*other)->updates(), 1);
}

// The direct CPU update with SPiRL's divergence (learner/direct_sac.h, SacRegularizer::kPriorKl)
// against the autograd update from the same weights, batches and noise: the same statistics,
// gradients and networks after five updates, towards a skill prior (spirl) and a CVAE's state
// prior (eap), on one and two threads (row ranges), from the prior-initialised policy (D near 0)
// and from a random one, with importance weights and clipping, and with rows far enough from
// the prior that their divergence is clipped at 100 (no gradient from it there).
class SpirlDirectUpdateTest : public ::testing::TestWithParam<bool> {};

TEST_P(SpirlDirectUpdateTest, MatchesTheAutogradUpdate) {
  if (!models::FastSgemmAvailable()) GTEST_SKIP() << "no oneDNN sgemm: no direct update";
  const std::shared_ptr<const models::LatentPriorModel> prior =
      GetParam() ? std::shared_ptr<const models::LatentPriorModel>(MakeEapPrior())
                 : std::shared_ptr<const models::LatentPriorModel>(MakePrior());
  constexpr int kRows = 256;
  for (bool random_init : {false, true}) {
    for (int threads : {1, 2}) {
      for (bool weighted_and_clipped : {false, true}) {
        SCOPED_TRACE(::testing::Message()
                     << "random init " << random_init << ", " << threads
                     << " threads, weighted and clipped " << weighted_and_clipped);
        AgentOptions options = SpirlOptions();
        options.algorithm.set_batch_size(kRows);
        options.num_threads = threads;
        options.algorithm.mutable_spirl()->set_random_policy_init(random_init);
        if (weighted_and_clipped) options.algorithm.set_max_grad_norm(0.5);
        options.direct_cpu_update = true;
        auto direct = CreateSpirlAgent(options, prior);
        options.direct_cpu_update = false;
        auto reference = CreateSpirlAgent(options, prior);
        ASSERT_TRUE(direct.ok()) << direct.status();
        ASSERT_TRUE(reference.ok()) << reference.status();
        TwinCriticAgent& d = dynamic_cast<TwinCriticAgent&>(**direct);
        TwinCriticAgent& r = dynamic_cast<TwinCriticAgent&>(**reference);
        ASSERT_TRUE(d.direct_update());
        ASSERT_FALSE(r.direct_update());
        at::Generator gen = at::detail::createCPUGenerator(97);
        for (int step = 0; step < 5; ++step) {
          SCOPED_TRACE(::testing::Message() << "step " << step);
          TransitionBatch b = RandomBatch(kRows, 30 + step);
          if (random_init) {
            // a quarter of the rows far out, where the two networks' Gaussians are far apart
            b.obs.narrow(0, 0, kRows / 4).mul_(300.0);
            b.next_obs.narrow(0, 0, kRows / 4).mul_(300.0);
          }
          if (weighted_and_clipped) b.weight = at::rand({kRows}, gen, at::kFloat) + 0.5;
          if (step == 0 && random_init) {
            // some rows' divergences are clipped and some are not
            at::NoGradGuard no_grad;
            const models::PolicyNetwork::Output out = r.actor().Forward(b.obs);
            const at::Tensor raw =
                models::DiagonalGaussianKl({out.mean, out.log_std}, prior->Prior(b.obs).value())
                    .mean(-1);
            const int64_t clipped = (raw > 100.0).sum().item<int64_t>();
            EXPECT_GT(clipped, 0);
            EXPECT_LT(clipped, kRows);
          }
          const at::Tensor noise = at::randn({2, kRows, kLatent}, gen, at::kFloat);
          auto x = d.UpdateWithNoise(b, noise);
          auto y = r.UpdateWithNoise(b, noise);
          ASSERT_TRUE(x.ok()) << x.status();
          ASSERT_TRUE(y.ok()) << y.status();
          direct_test::ExpectSameStats(*x, *y);
          direct_test::ExpectSameGradients(d, r, /*actor_stepped=*/true);
        }
        direct_test::ExpectSameNetworks(d, r);
        EXPECT_EQ(d.updates(), 5);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(SpirlAndEap, SpirlDirectUpdateTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Eap" : "Spirl";
                         });

// The Monte-Carlo divergence has no direct update: it stays on autograd.
TEST(SpirlMonteCarloTest, KeepsTheAutogradUpdate) {
  AgentOptions options = SpirlOptions();
  options.algorithm.mutable_spirl()->set_kl_samples(4);
  auto agent = CreateSpirlAgent(options, MakePrior());
  ASSERT_TRUE(agent.ok()) << agent.status();
  EXPECT_FALSE(dynamic_cast<TwinCriticAgent&>(**agent).direct_update());
  EXPECT_TRUE((*agent)->Update(RandomBatch(8, 2)).ok());
}

}  // namespace
}  // namespace prl::learner
