#include "models/torch_acting_policy.h"

#include <cmath>
#include <vector>

#include "common/tensor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl::models {
namespace {

using ::testing::HasSubstr;

void AddWeight(const std::string& name, std::vector<int64_t> shape, std::vector<float> values,
               v1::Policy* policy) {
  if (values.empty()) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    values.assign(n, 0.0f);
  }
  v1::NamedTensor* w = policy->add_weights();
  w->set_name(name);
  TensorToProto(HostTensor::FromFloats(std::move(shape), values).view(), w->mutable_tensor());
}

// obs 3 -> hidden 4 -> 2 actions; every weight 0 except the mean's bias.
v1::Policy SmallPolicy() {
  v1::Policy policy;
  policy.set_experiment_id("e");
  policy.set_version(7);
  v1::PolicyArchitecture* a = policy.mutable_architecture();
  a->set_head(v1::PolicyArchitecture::HEAD_SQUASHED_GAUSSIAN);
  a->set_output(v1::PolicyArchitecture::OUTPUT_ACTION);
  a->set_obs_dim(3);
  a->set_output_dim(2);
  a->set_action_dim(2);
  a->set_output_bound(1);
  a->mutable_network()->add_hidden_sizes(4);
  AddWeight("trunk.0.weight", {4, 3}, {}, &policy);
  AddWeight("trunk.0.bias", {4}, {}, &policy);
  AddWeight("mean.weight", {2, 4}, {}, &policy);
  AddWeight("mean.bias", {2}, {0.5f, -1.0f}, &policy);
  AddWeight("log_std.weight", {2, 4}, {}, &policy);
  AddWeight("log_std.bias", {2}, {}, &policy);
  return policy;
}

TEST(TorchActingPolicyTest, ActsWithThePublishedNetwork) {
  auto policy = TorchActingPolicyFactory(/*seed=*/1)(SmallPolicy());
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ((*policy)->version(), 7);
  EXPECT_EQ((*policy)->obs_dim(), 3);
  EXPECT_EQ((*policy)->action_dim(), 2);

  const std::vector<float> obs = {1, 2, 3, -1, -2, -3};
  std::vector<float> mean(4);
  (*policy)->Act(obs, 2, /*deterministic=*/true, absl::MakeSpan(mean));
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_NEAR(mean[2 * i], std::tanh(0.5f), 1e-6);
    EXPECT_NEAR(mean[2 * i + 1], std::tanh(-1.0f), 1e-6);
  }
  // sampling: σ = 1, so samples spread around the mean, inside the bound, reproducibly.
  std::vector<float> sample(4), again(4);
  (*policy)->Act(obs, 2, /*deterministic=*/false, absl::MakeSpan(sample));
  auto same_seed = TorchActingPolicyFactory(/*seed=*/1)(SmallPolicy());
  ASSERT_TRUE(same_seed.ok());
  (*same_seed)->Act(obs, 2, /*deterministic=*/false, absl::MakeSpan(again));
  EXPECT_EQ(sample, again);
  EXPECT_NE(sample, mean);
  for (float a : sample) EXPECT_LT(std::abs(a), 1.0f);
}

TEST(TorchActingPolicyTest, RefusesBadWeightsAndLatentOutputs) {
  v1::Policy missing = SmallPolicy();
  missing.mutable_weights()->RemoveLast();
  auto bad = TorchActingPolicyFactory(1)(missing);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("log_std.bias"));

  // latents (spirl's decoded, parrot's flow) are the policy's output like actions
  v1::Policy latent = SmallPolicy();
  latent.mutable_architecture()->set_output(v1::PolicyArchitecture::OUTPUT_DECODED_LATENT);
  EXPECT_TRUE(TorchActingPolicyFactory(1)(latent).ok());
  latent.mutable_architecture()->set_output(v1::PolicyArchitecture::OUTPUT_FLOW_LATENT);
  EXPECT_TRUE(TorchActingPolicyFactory(1)(latent).ok());
}

}  // namespace
}  // namespace prl::models
