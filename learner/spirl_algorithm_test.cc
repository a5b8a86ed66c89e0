#include "learner/spirl_algorithm.h"

#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ATen/ATen.h"
#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "learner/model_store.h"
#include "models/cvae_model.h"
#include "models/policy_runner.h"
#include "models/real_nvp.h"
#include "models/skill_model.h"

namespace prl::learner {
namespace {

using ::testing::HasSubstr;

constexpr int kObs = 4;  // point_maze
constexpr int kAct = 2;

class SpirlAlgorithmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/spirl-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    store_ = ModelStore::Open(dir_).value();
  }

  void StoreSkills(const std::string& name, int obs_dim, int64_t seed) {
    models::SkillModelOptions options;
    options.obs_dim = obs_dim;
    options.act_dim = kAct;
    options.horizon = 5;
    options.latent_dim = 3;
    options.network.add_hidden_sizes(16);
    options.seed = seed;
    auto model = models::SkillModel::Create(options).value();
    v1::ModelInfo info;
    info.set_name(name);
    info.set_version(store_->Reserve(name).value());
    ASSERT_TRUE(store_->Write(model->ToArtifact(info).value()).ok());
  }

  void StoreFlow(const std::string& name) {
    models::RealNvpOptions options;
    options.obs_dim = kObs;
    options.act_dim = kAct;
    auto flow = models::RealNvpFlow::Create(options).value();
    v1::ModelInfo info;
    info.set_name(name);
    info.set_version(store_->Reserve(name).value());
    ASSERT_TRUE(store_->Write(flow->ToArtifact(info).value()).ok());
  }

  void StoreCvae(const std::string& name, int horizon, int64_t seed) {
    models::CvaeModelOptions options;
    options.obs_dim = kObs;
    options.act_dim = kAct;
    options.horizon = horizon;
    options.latent_dim = 3;
    options.learned_prior = horizon > 1;
    options.network.add_hidden_sizes(16);
    options.seed = seed;
    auto model = models::CvaeModel::Create(options).value();
    v1::ModelInfo info;
    info.set_name(name);
    info.set_version(store_->Reserve(name).value());
    ASSERT_TRUE(store_->Write(model->ToArtifact(info).value()).ok());
  }

  AlgorithmOptions Options(const std::string& prior, int64_t version) {
    AlgorithmOptions options;
    options.spec.mutable_algorithm()->mutable_spirl();
    options.spec.mutable_algorithm()->mutable_network()->add_hidden_sizes(32);
    options.spec.mutable_algorithm()->set_batch_size(8);
    options.spec.mutable_prior()->set_name(prior);
    options.spec.mutable_prior()->set_version(version);
    options.obs_dim = kObs;
    options.act_dim = kAct;
    options.device = "cpu";
    return options;
  }

  std::string dir_;
  std::unique_ptr<ModelStore> store_;
};

TEST_F(SpirlAlgorithmTest, ActsEveryHStepsWithTheResolvedPriorAndTrains) {
  StoreSkills("maze-skills", kObs, 1);
  StoreSkills("maze-skills", kObs, 2);
  SpirlContext context{store_.get(), "prior-server:50053"};
  auto algorithm = CreateSpirlAlgorithm(Options("maze-skills", 0), context);
  ASSERT_TRUE(algorithm.ok()) << algorithm.status();
  EXPECT_EQ((*algorithm)->name(), "spirl");

  const std::vector<TableSpec> tables = (*algorithm)->Tables();
  ASSERT_EQ(tables.size(), 1u);
  ASSERT_EQ(tables[0].signature.size(), 6u);
  EXPECT_EQ(tables[0].signature[1].name(), "action");
  EXPECT_EQ(tables[0].signature[1].shape(0), 3);  // z
  EXPECT_EQ(tables[0].signature[5].name(), "env_steps");
  EXPECT_EQ(tables[0].signature[5].dtype(), v1::Tensor::DTYPE_INT64);

  v1::Assignment assignment;
  (*algorithm)->DescribeActing(&assignment);
  EXPECT_EQ(assignment.decision_horizon(), 5);
  EXPECT_EQ(assignment.prior().name(), "maze-skills");
  EXPECT_EQ(assignment.prior().version(), 2);  // 0 resolved to the newest, then fixed
  EXPECT_EQ(assignment.prior_address(), "prior-server:50053");

  Batch batch;
  at::manual_seed(0);
  batch.columns["observation"] = at::randn({8, kObs});
  batch.columns["action"] = at::rand({8, 3}) * 4 - 2;
  batch.columns["reward"] = at::randn({8});
  batch.columns["discount"] = at::ones({8});
  batch.columns["next_observation"] = at::randn({8, kObs});
  batch.columns["env_steps"] = at::full({8}, 5, at::kLong);
  auto result = (*algorithm)->Update(batch);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->scalars.count("kl_to_prior"), 1u);
  EXPECT_EQ(result->scalars.count("alpha"), 1u);
  EXPECT_EQ(result->scalars.count("entropy"), 0u);

  v1::PolicyArchitecture architecture;
  std::vector<std::pair<std::string, HostTensor>> weights;
  ASSERT_TRUE((*algorithm)->ExportPolicy(&architecture, &weights).ok());
  EXPECT_EQ(architecture.output(), v1::PolicyArchitecture::OUTPUT_DECODED_LATENT);
}

TEST_F(SpirlAlgorithmTest, ParrotActsThroughTheFlowAndStartsAtItsBase) {
  StoreFlow("maze-flow");
  AlgorithmOptions options = Options("maze-flow", 0);
  options.spec.mutable_algorithm()->mutable_parrot();
  SpirlContext context{store_.get(), "prior:1"};
  auto algorithm = CreateParrotAlgorithm(options, context);
  ASSERT_TRUE(algorithm.ok()) << algorithm.status();
  EXPECT_EQ((*algorithm)->name(), "parrot");
  v1::Assignment assignment;
  (*algorithm)->DescribeActing(&assignment);
  EXPECT_EQ(assignment.decision_horizon(), 1);
  EXPECT_EQ(assignment.prior().version(), 1);
  EXPECT_EQ(assignment.signature_size(), 5);  // no env_steps column
  v1::PolicyArchitecture architecture;
  std::vector<std::pair<std::string, HostTensor>> weights;
  ASSERT_TRUE((*algorithm)->ExportPolicy(&architecture, &weights).ok());
  EXPECT_EQ(architecture.output(), v1::PolicyArchitecture::OUTPUT_FLOW_LATENT);
  EXPECT_DOUBLE_EQ(architecture.output_bound(), 3.0);
  EXPECT_DOUBLE_EQ(architecture.squash_scale(), 3.0);  // z = 3·tanh(u / 3)
  // π(z|s) starts at the base N(0, I): the head is zero
  for (const auto& [name, tensor] : weights) {
    if (name.rfind("mean.", 0) == 0 || name.rfind("log_std.", 0) == 0) {
      for (float v : tensor.data<float>()) EXPECT_EQ(v, 0.0f) << name;
    }
  }
  // ... so actors acting with the first policy draw latents close to N(0, I): the std of
  // 3·tanh(u / 3) for u ~ N(0, 1) is 0.91 (3·tanh(u), the unscaled squash, would give 1.9)
  auto latent_std = [&](const v1::PolicyArchitecture& a,
                        const std::vector<std::pair<std::string, HostTensor>>& w) {
    auto runner = models::PolicyRunner::Create(a, w);
    EXPECT_TRUE(runner.ok()) << runner.status();
    constexpr int kN = 4000;
    std::vector<float> obs(static_cast<size_t>(kN) * kObs, 0.5f), z(kN * kAct);
    std::mt19937_64 rng(1);
    (*runner)->Act(obs, kN, /*deterministic=*/false, absl::MakeSpan(z), rng);
    double sum = 0, sq = 0;
    for (float v : z) {
      sum += v;
      sq += v * v;
    }
    const double mean = sum / z.size();
    return std::sqrt(sq / z.size() - mean * mean);
  };
  EXPECT_NEAR(latent_std(architecture, weights), 0.91, 0.05);
  options.spec.mutable_algorithm()->mutable_parrot()->set_latent_squash(
      v1::ParrotConfig::LATENT_SQUASH_UNSCALED);
  auto unscaled = CreateParrotAlgorithm(options, context);
  ASSERT_TRUE(unscaled.ok()) << unscaled.status();
  v1::PolicyArchitecture unscaled_architecture;
  std::vector<std::pair<std::string, HostTensor>> unscaled_weights;
  ASSERT_TRUE((*unscaled)->ExportPolicy(&unscaled_architecture, &unscaled_weights).ok());
  EXPECT_EQ(unscaled_architecture.squash_scale(), 0.0);
  EXPECT_NEAR(latent_std(unscaled_architecture, unscaled_weights), 1.9, 0.1);
  // a skill model is not a flow
  StoreSkills("skills", kObs, 1);
  options = Options("skills", 0);
  options.spec.mutable_algorithm()->mutable_parrot();
  absl::Status s = CreateParrotAlgorithm(options, context).status();
  EXPECT_THAT(s.message(), HasSubstr("PRIOR_KIND_REAL_NVP_FLOW"));
}

// PARROT regularised by the KL to the flow's base instead of the entropy: the divergence is
// reported (near 0 for the initial policy, which is the base up to the squashing) and α falls
// while it is below δ.
TEST_F(SpirlAlgorithmTest, ParrotWithTheKlToTheBaseReportsItAndTunesAlphaTowardsDelta) {
  StoreFlow("maze-flow");
  SpirlContext context{store_.get(), "prior:1"};
  const auto run = [&](v1::ParrotConfig::Regularizer regularizer, int updates) {
    AlgorithmOptions options = Options("maze-flow", 0);
    v1::ParrotConfig* parrot = options.spec.mutable_algorithm()->mutable_parrot();
    parrot->set_regularizer(regularizer);
    parrot->mutable_sac()->set_alpha_lr(0.05);
    auto algorithm = CreateParrotAlgorithm(options, context);
    EXPECT_TRUE(algorithm.ok()) << algorithm.status();
    std::vector<UpdateResult> results;
    at::manual_seed(0);
    for (int i = 0; i < updates; ++i) {
      Batch batch;
      batch.columns["observation"] = at::randn({256, kObs});
      batch.columns["action"] = at::rand({256, kAct}) * 2 - 1;
      batch.columns["reward"] = at::zeros({256});
      batch.columns["discount"] = at::ones({256});
      batch.columns["next_observation"] = at::randn({256, kObs});
      auto result = (*algorithm)->Update(batch);
      EXPECT_TRUE(result.ok()) << result.status();
      if (result.ok()) results.push_back(*result);
    }
    return results;
  };
  const std::vector<UpdateResult> kl = run(v1::ParrotConfig::REGULARIZER_KL_TO_BASE, 10);
  ASSERT_EQ(kl.size(), 10u);
  EXPECT_EQ(kl[0].scalars.count("entropy"), 0u);
  ASSERT_EQ(kl[0].scalars.count("kl_to_base"), 1u);
  // the first update's policy is the base, squashed by 3·tanh(u / 3): the one-sample estimate
  // averages to about 0 (it is O(u⁴/b²) per dimension), far from the entropy's ≈ 2.8
  EXPECT_LT(std::abs(kl[0].scalars.at("kl_to_base")), 0.2);
  EXPECT_DOUBLE_EQ(kl[0].scalars.at("alpha"), 1.0);
  // below δ = 1, α falls
  EXPECT_LT(kl.back().scalars.at("alpha"), 0.9);

  const std::vector<UpdateResult> entropy = run(v1::ParrotConfig::REGULARIZER_ENTROPY, 1);
  ASSERT_EQ(entropy[0].scalars.count("entropy"), 1u);
  EXPECT_NEAR(entropy[0].scalars.at("entropy"), 2.8, 0.3);  // of N(0, I) in 2-D: 2.84
}

// EAP: the spirl agent over a CVAE's state prior; one row per k-step decision, the policy a copy
// of π_state, the KL to it reported.
TEST_F(SpirlAlgorithmTest, EapActsEveryKStepsAndStartsAsTheStatePrior) {
  StoreCvae("maze-eap", 4, 1);
  AlgorithmOptions options = Options("maze-eap", 0);
  options.spec.mutable_algorithm()->mutable_eap();
  options.spec.mutable_algorithm()->mutable_network()->clear_hidden_sizes();
  options.spec.mutable_algorithm()->mutable_network()->add_hidden_sizes(16);
  SpirlContext context{store_.get(), "prior:1"};
  auto algorithm = CreateEapAlgorithm(options, context);
  ASSERT_TRUE(algorithm.ok()) << algorithm.status();
  EXPECT_EQ((*algorithm)->name(), "eap");
  v1::Assignment assignment;
  (*algorithm)->DescribeActing(&assignment);
  EXPECT_EQ(assignment.decision_horizon(), 4);
  EXPECT_EQ(assignment.signature_size(), 6);  // with env_steps
  EXPECT_EQ(assignment.signature(1).shape(0), 3);
  v1::PolicyArchitecture architecture;
  std::vector<std::pair<std::string, HostTensor>> weights;
  ASSERT_TRUE((*algorithm)->ExportPolicy(&architecture, &weights).ok());
  EXPECT_EQ(architecture.output(), v1::PolicyArchitecture::OUTPUT_DECODED_LATENT);
  // the policy is the state prior's network, weight for weight
  models::ModelArtifact prior = store_->Read("maze-eap", 1).value();
  int compared = 0;
  for (const auto& [name, tensor] : weights) {
    const HostTensor* source = prior.Find("prior." + name);
    ASSERT_NE(source, nullptr) << name;
    EXPECT_EQ(tensor.bytes(), source->bytes()) << name;
    ++compared;
  }
  EXPECT_GT(compared, 0);
  Batch batch;
  at::manual_seed(0);
  batch.columns["observation"] = at::randn({8, kObs});
  batch.columns["action"] = at::rand({8, 3}) * 4 - 2;
  batch.columns["reward"] = at::randn({8});
  batch.columns["discount"] = at::ones({8});
  batch.columns["next_observation"] = at::randn({8, kObs});
  batch.columns["env_steps"] = at::full({8}, 4, at::kLong);
  auto result = (*algorithm)->Update(batch);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->scalars.count("kl_to_prior"), 1u);

  // a horizon-1 CVAE has no learned state prior: not an EAP prior
  StoreCvae("generator", 1, 1);
  options.spec.mutable_prior()->set_name("generator");
  absl::Status s = CreateEapAlgorithm(options, context).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("learned state prior"));
}

// Latent SAC: parrot over a horizon-1 CVAE — SAC over its latent, actors decode a = g(s, z).
TEST_F(SpirlAlgorithmTest, ParrotOverAOneStepCvaeIsLatentSac) {
  StoreCvae("generator", 1, 1);
  AlgorithmOptions options = Options("generator", 0);
  options.spec.mutable_algorithm()->mutable_parrot();
  SpirlContext context{store_.get(), "prior:1"};
  auto algorithm = CreateParrotAlgorithm(options, context);
  ASSERT_TRUE(algorithm.ok()) << algorithm.status();
  const std::vector<TableSpec> tables = (*algorithm)->Tables();
  EXPECT_EQ(tables[0].signature[1].shape(0), 3);  // z of the CVAE's latent_dim
  v1::Assignment assignment;
  (*algorithm)->DescribeActing(&assignment);
  EXPECT_EQ(assignment.decision_horizon(), 1);
  v1::PolicyArchitecture architecture;
  std::vector<std::pair<std::string, HostTensor>> weights;
  ASSERT_TRUE((*algorithm)->ExportPolicy(&architecture, &weights).ok());
  EXPECT_EQ(architecture.output(), v1::PolicyArchitecture::OUTPUT_DECODED_LATENT);
  // an EAP CVAE (k = 4) is not a one-step generator
  StoreCvae("maze-eap", 4, 1);
  options.spec.mutable_prior()->set_name("maze-eap");
  absl::Status s = CreateParrotAlgorithm(options, context).status();
  EXPECT_THAT(s.message(), HasSubstr("PRIOR_KIND_CVAE of horizon 1"));
}

TEST_F(SpirlAlgorithmTest, RefusesPriorsThatDoNotFit) {
  SpirlContext context{store_.get(), ""};
  absl::Status s = CreateSpirlAlgorithm(Options("absent", 0), context).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);

  StoreSkills("wrong-dims", kObs + 1, 1);
  s = CreateSpirlAlgorithm(Options("wrong-dims", 0), context).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("the env has 4 and 2"));

  models::RealNvpOptions flow_options;
  flow_options.obs_dim = kObs;
  flow_options.act_dim = kAct;
  auto flow = models::RealNvpFlow::Create(flow_options).value();
  v1::ModelInfo info;
  info.set_name("a-flow");
  info.set_version(1);
  ASSERT_TRUE(store_->Write(flow->ToArtifact(info).value()).ok());
  s = CreateSpirlAlgorithm(Options("a-flow", 1), context).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("PRIOR_KIND_SKILL_VAE"));
}

TEST_F(SpirlAlgorithmTest, ARestoreKeepsThePriorVersionTheRunStartedWith) {
  StoreSkills("maze-skills", kObs, 1);
  SpirlContext context{store_.get(), ""};
  auto first = CreateSpirlAlgorithm(Options("maze-skills", 0), context);
  ASSERT_TRUE(first.ok()) << first.status();
  auto state = (*first)->SaveState();
  ASSERT_TRUE(state.ok()) << state.status();

  // a newer prior appears; the restarted run resolves version 0 to it, then restores
  StoreSkills("maze-skills", kObs, 2);
  auto second = CreateSpirlAlgorithm(Options("maze-skills", 0), context);
  ASSERT_TRUE(second.ok()) << second.status();
  v1::Assignment before;
  (*second)->DescribeActing(&before);
  EXPECT_EQ(before.prior().version(), 2);
  ASSERT_TRUE((*second)->RestoreState(*state).ok());
  v1::Assignment after;
  (*second)->DescribeActing(&after);
  EXPECT_EQ(after.prior().version(), 1);  // pinned to what the checkpoint was trained with

  EXPECT_EQ((*second)->RestoreState("not a state").code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace prl::learner
