#include "models/torch_acting_policy.h"

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "ATen/CPUGeneratorImpl.h"
#include "common/tensor.h"
#include "common/torch_tensor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/mcat_model.h"
#include "models/networks.h"

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

TEST(TorchActingPolicyTest, PlainPoliciesIgnoreTheContext) {
  auto policy = TorchActingPolicyFactory(/*seed=*/3)(SmallPolicy());
  auto same_seed = TorchActingPolicyFactory(/*seed=*/3)(SmallPolicy());
  ASSERT_TRUE(policy.ok() && same_seed.ok());
  EXPECT_EQ((*policy)->context_history(), 0);
  const std::vector<float> obs = {1, 2, 3, -1, -2, -3};
  const std::vector<int> task_index = {0, 1};
  std::vector<float> acted(4), in_context(4);
  std::vector<uint8_t> transferred = {7, 7};
  (*policy)->Act(obs, 2, /*deterministic=*/false, absl::MakeSpan(acted));
  (*same_seed)
      ->ActInContext(obs, 2, /*deterministic=*/false, ActingPolicy::Context{{}, {}, {}, task_index},
                     absl::MakeSpan(in_context), absl::MakeSpan(transferred));
  EXPECT_EQ(acted, in_context);
  EXPECT_EQ(transferred, (std::vector<uint8_t>{0, 0}));
}

// ---- MCAT's context-conditioned policies ----

constexpr int64_t kObs = 3, kAct = 2, kContext = 2, kHistory = 3;

at::Tensor Uniform(std::vector<int64_t> shape, double low, double high, uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::empty(shape, at::kFloat).uniform_(low, high, gen);
}

std::vector<float> Floats(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

// A context policy (obs 3, actions 2, z 2, K 3, one hidden layer of 8) with random weights,
// and the same networks built here, to compute what it must act.
class ContextPolicyTest : public ::testing::Test {
 protected:
  ContextPolicyTest() {
    spec_.add_hidden_sizes(8);
    spec_.set_activation(v1::NetworkSpec::ACTIVATION_RELU);
    EXPECT_TRUE(ResolveNetworkSpec("spec", &spec_).ok());
    const McatDims dims{kObs, kAct, kContext, kHistory};
    encoder_ = std::make_unique<ContextEncoder>(&mcat_, "context_encoder", dims, spec_);
    translator_ = std::make_unique<ActionTranslator>(&mcat_, "translator", dims, spec_);
    mcat_.Allocate(at::kCPU, /*requires_grad=*/false);
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(5);
    mcat_.Initialize(gen);
    PolicyNetwork pi(kObs + kContext, kAct, spec_, PolicyNetwork::Head::kDeterministic,
                     NetworkOptions{at::kCPU, /*trainable=*/false, GemmBackend::kAten});
    pi.params().Initialize(gen);
    for (const auto& [name, tensor] : pi.NamedParameters()) pi_[name] = tensor.clone();
  }

  v1::Policy Policy() const {
    v1::Policy policy;
    policy.set_version(3);
    v1::PolicyArchitecture* a = policy.mutable_architecture();
    a->set_head(v1::PolicyArchitecture::HEAD_DETERMINISTIC);
    a->set_output(v1::PolicyArchitecture::OUTPUT_ACTION);
    a->set_obs_dim(kObs);
    a->set_output_dim(kAct);
    a->set_action_dim(kAct);
    a->set_output_bound(1);
    a->set_exploration_noise(0.3);
    a->set_context_dim(kContext);
    a->set_context_history(kHistory);
    *a->mutable_network() = spec_;
    for (const auto& [name, tensor] : pi_) AddTorchWeight(name, tensor, &policy);
    for (int i = 0; i < mcat_.size(); ++i) AddTorchWeight(mcat_.name(i), mcat_.param(i), &policy);
    return policy;
  }

  // A plan over `contexts` [T, kContext] with `source_task`.
  static v1::TransferPlan Plan(const at::Tensor& contexts, std::vector<int> source_task) {
    v1::TransferPlan plan;
    TensorToProto(FromTorch(contexts.contiguous()).value().view(), plan.mutable_task_contexts());
    for (int s : source_task) plan.add_source_task(s);
    return plan;
  }

  static void AddTorchWeight(const std::string& name, const at::Tensor& tensor,
                             v1::Policy* policy) {
    v1::NamedTensor* w = policy->add_weights();
    w->set_name(name);
    TensorToProto(FromTorch(tensor.contiguous()).value().view(), w->mutable_tensor());
  }

  // tanh(π([s, z])) computed from the exported weights.
  at::Tensor Pi(const at::Tensor& obs, const at::Tensor& z) const {
    const at::Tensor h = at::relu(
        at::linear(at::cat({obs, z}, 1), pi_.at("trunk.0.weight"), pi_.at("trunk.0.bias")));
    return at::tanh(at::linear(h, pi_.at("mean.weight"), pi_.at("mean.bias")));
  }
  at::Tensor C(const at::Tensor& history_obs, const at::Tensor& history_actions,
               const at::Tensor& mask) const {
    return encoder_->Forward(mcat_, history_obs, history_actions, mask, GemmBackend::kAten);
  }
  at::Tensor H(const at::Tensor& obs, const at::Tensor& action, const at::Tensor& z_source,
               const at::Tensor& z_target) const {
    return translator_->Forward(mcat_, obs, action, z_source, z_target, GemmBackend::kAten);
  }

  // A batch of n envs: observations, histories (masked transitions zeroed) and masks.
  struct Batch {
    at::Tensor obs, history_obs, history_actions, mask;
    std::vector<float> obs_f, history_obs_f, history_actions_f, mask_f;
  };
  static Batch MakeBatch(int64_t n) {
    Batch b;
    b.mask = (Uniform({n, kHistory}, 0, 1, 11) < 0.7).to(at::kFloat);
    b.mask[0].fill_(1);
    b.mask[n - 1].fill_(0);
    b.history_obs = Uniform({n, kHistory + 1, kObs}, -1, 1, 12);
    b.history_obs.narrow(1, 0, kHistory).mul_(b.mask.unsqueeze(-1));
    b.history_actions = Uniform({n, kHistory, kAct}, -1, 1, 13) * b.mask.unsqueeze(-1);
    b.obs = b.history_obs.select(1, kHistory).contiguous();
    b.obs_f = Floats(b.obs);
    b.history_obs_f = Floats(b.history_obs);
    b.history_actions_f = Floats(b.history_actions);
    b.mask_f = Floats(b.mask);
    return b;
  }
  static ActingPolicy::Context ContextOf(const Batch& b, const std::vector<int>& task_index) {
    return ActingPolicy::Context{b.history_obs_f, b.history_actions_f, b.mask_f, task_index};
  }

  v1::NetworkSpec spec_;
  ParameterBlock mcat_;
  std::unique_ptr<ContextEncoder> encoder_;
  std::unique_ptr<ActionTranslator> translator_;
  std::map<std::string, at::Tensor> pi_;
};

void ExpectNear(const std::vector<float>& have, const at::Tensor& want) {
  const std::vector<float> w = Floats(want);
  ASSERT_EQ(have.size(), w.size());
  for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(have[i], w[i], 1e-5) << "element " << i;
}

TEST_F(ContextPolicyTest, ActsWithTheEncodedContext) {
  auto policy = TorchActingPolicyFactory(/*seed=*/1)(Policy());
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ((*policy)->context_history(), kHistory);
  EXPECT_EQ((*policy)->obs_dim(), kObs);
  const int n = 4;
  const Batch b = MakeBatch(n);
  const std::vector<int> task_index = {0, 1, 0, 1};
  std::vector<float> actions(n * kAct);
  std::vector<uint8_t> transferred(n, 7);
  (*policy)->ActInContext(b.obs_f, n, /*deterministic=*/true, ContextOf(b, task_index),
                          absl::MakeSpan(actions), absl::MakeSpan(transferred));
  ExpectNear(actions, Pi(b.obs, C(b.history_obs, b.history_actions, b.mask)));
  EXPECT_EQ(transferred, std::vector<uint8_t>(n, 0));

  // plain Act: the context of an empty history
  std::vector<float> plain(n * kAct);
  (*policy)->Act(b.obs_f, n, /*deterministic=*/true, absl::MakeSpan(plain));
  ExpectNear(plain, Pi(b.obs, C(b.history_obs, b.history_actions, at::zeros_like(b.mask))));

  // training: the mean plus clipped exploration noise, reproducibly
  std::vector<float> noisy(n * kAct), again(n * kAct);
  (*policy)->ActInContext(b.obs_f, n, /*deterministic=*/false, ContextOf(b, task_index),
                          absl::MakeSpan(noisy), absl::MakeSpan(transferred));
  auto same_seed = TorchActingPolicyFactory(/*seed=*/1)(Policy());
  ASSERT_TRUE(same_seed.ok());
  std::vector<float> discard(n * kAct);
  (*same_seed)
      ->ActInContext(b.obs_f, n, /*deterministic=*/true, ContextOf(b, task_index),
                     absl::MakeSpan(discard), absl::MakeSpan(transferred));
  (*same_seed)
      ->ActInContext(b.obs_f, n, /*deterministic=*/false, ContextOf(b, task_index),
                     absl::MakeSpan(again), absl::MakeSpan(transferred));
  EXPECT_EQ(noisy, again);
  EXPECT_NE(noisy, actions);
  for (float a : noisy) EXPECT_LE(std::abs(a), 1.0f);
}

TEST_F(ContextPolicyTest, TransferPlanTranslatesTheSourceTasksPolicy) {
  const at::Tensor contexts = Uniform({2, kContext}, -1, 1, 21);
  v1::Policy published = Policy();
  *published.mutable_transfer() = Plan(contexts, {-1, 0});  // task 1 follows task 0
  auto policy = TorchActingPolicyFactory(/*seed=*/1)(published);
  ASSERT_TRUE(policy.ok()) << policy.status();

  // task 2 is not in the plan: its own policy
  const int n = 5;
  const Batch b = MakeBatch(n);
  const std::vector<int> task_index = {0, 1, 1, 2, 0};
  std::vector<float> actions(n * kAct);
  std::vector<uint8_t> transferred(n, 7);
  (*policy)->ActInContext(b.obs_f, n, /*deterministic=*/true, ContextOf(b, task_index),
                          absl::MakeSpan(actions), absl::MakeSpan(transferred));
  EXPECT_EQ(transferred, (std::vector<uint8_t>{0, 1, 1, 0, 0}));

  const at::Tensor own = Pi(b.obs, C(b.history_obs, b.history_actions, b.mask));
  const at::Tensor z0 = contexts[0].expand({n, kContext});
  const at::Tensor z1 = contexts[1].expand({n, kContext});
  const at::Tensor moved = H(b.obs, Pi(b.obs, z0), z0, z1);
  at::Tensor want = own.clone();
  for (int64_t i : {1, 2}) want[i] = moved[i];
  ExpectNear(actions, want);
  // the translated rows differ from what the task's own policy would do
  EXPECT_FALSE(at::allclose(moved.narrow(0, 1, 2), own.narrow(0, 1, 2)));

  // no task indices (held-out evaluation tasks): every row its own policy, none flagged
  ActingPolicy::Context no_tasks = ContextOf(b, task_index);
  no_tasks.task_index = {};
  (*policy)->ActInContext(b.obs_f, n, /*deterministic=*/true, no_tasks, absl::MakeSpan(actions),
                          absl::MakeSpan(transferred));
  EXPECT_EQ(transferred, (std::vector<uint8_t>(n, 0)));
  ExpectNear(actions, own);

  // training noise keeps translated rows inside the bound and flagged
  (*policy)->ActInContext(b.obs_f, n, /*deterministic=*/false, ContextOf(b, task_index),
                          absl::MakeSpan(actions), absl::MakeSpan(transferred));
  EXPECT_EQ(transferred, (std::vector<uint8_t>{0, 1, 1, 0, 0}));
  for (float a : actions) EXPECT_LE(std::abs(a), 1.0f);
}

TEST_F(ContextPolicyTest, BadTransferPlansAreRefusedByField) {
  const at::Tensor contexts = Uniform({2, kContext}, -1, 1, 21);
  at::Tensor with_nan = contexts.clone();
  with_nan[1][0] = std::numeric_limits<float>::quiet_NaN();
  v1::TransferPlan int64_contexts = Plan(contexts, {-1, 0});
  TensorToProto(FromTorch(at::zeros({2, kContext}, at::kLong)).value().view(),
                int64_contexts.mutable_task_contexts());
  v1::TransferPlan no_contexts;
  no_contexts.add_source_task(-1);
  struct Case {
    v1::TransferPlan plan;
    std::string message;
  };
  const std::vector<Case> cases = {
      {Plan(Uniform({2, kContext + 1}, -1, 1, 1), {-1, 0}), "transfer.task_contexts"},
      {Plan(with_nan, {-1, 0}), "transfer.task_contexts"},
      {int64_contexts, "transfer.task_contexts"},
      {no_contexts, "transfer.task_contexts"},
      {Plan(contexts, {-1, 2}), "transfer.source_task[1]: 2"},
      {Plan(contexts, {-2, 0}), "transfer.source_task[0]: -2"},
      {Plan(contexts, {-1}), "transfer.source_task"},
  };
  for (const Case& c : cases) {
    v1::Policy published = Policy();
    *published.mutable_transfer() = c.plan;
    auto policy = TorchActingPolicyFactory(1)(published);
    ASSERT_FALSE(policy.ok()) << c.message;
    EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(policy.status().message(), HasSubstr(c.message));
  }

  // a plan needs a context
  v1::Policy plain = SmallPolicy();
  *plain.mutable_transfer() = Plan(contexts, {-1, 0});
  auto policy = TorchActingPolicyFactory(1)(plain);
  EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(policy.status().message(), HasSubstr("transfer"));
}

TEST_F(ContextPolicyTest, MissingExtraOrMisShapedContextWeightsAreRefused) {
  v1::Policy missing = Policy();
  for (int i = 0; i < missing.weights_size(); ++i) {
    if (missing.weights(i).name() == "context_encoder.out.bias") {
      missing.mutable_weights()->DeleteSubrange(i, 1);
    }
  }
  v1::Policy extra = Policy();
  AddWeight("translator.extra", {1}, {}, &extra);
  v1::Policy mis_shaped = Policy();
  for (v1::NamedTensor& w : *mis_shaped.mutable_weights()) {
    if (w.name() == "translator.out.weight") {
      TensorToProto(HostTensor::FromFloats({kAct, 9}, std::vector<float>(kAct * 9)).view(),
                    w.mutable_tensor());
    }
  }
  // a policy network over the observation alone
  v1::Policy no_context_input = Policy();
  for (v1::NamedTensor& w : *no_context_input.mutable_weights()) {
    if (w.name() == "trunk.0.weight") {
      TensorToProto(HostTensor::FromFloats({8, kObs}, std::vector<float>(8 * kObs)).view(),
                    w.mutable_tensor());
    }
  }
  const std::vector<std::pair<v1::Policy, std::string>> cases = {
      {missing, "missing \"context_encoder.out.bias\""},
      {extra, "unexpected name \"translator.extra\""},
      {mis_shaped, "weights[\"translator.out.weight\"]"},
      {no_context_input, "weights[\"trunk.0.weight\"]"},
  };
  for (const auto& [published, message] : cases) {
    auto policy = TorchActingPolicyFactory(1)(published);
    ASSERT_FALSE(policy.ok()) << message;
    EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(policy.status().message(), HasSubstr(message));
  }
}

TEST_F(ContextPolicyTest, BadContextArchitecturesAreRefused) {
  struct Case {
    std::function<void(v1::PolicyArchitecture*)> change;
    absl::StatusCode code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](v1::PolicyArchitecture* a) { a->set_context_history(0); },
       absl::StatusCode::kInvalidArgument, "architecture.context_history: 0"},
      {[](v1::PolicyArchitecture* a) { a->set_context_dim(-1); },
       absl::StatusCode::kInvalidArgument, "architecture.context_dim: -1"},
      {[](v1::PolicyArchitecture* a) { a->set_action_dim(3); }, absl::StatusCode::kInvalidArgument,
       "architecture.action_dim: 3"},
      {[](v1::PolicyArchitecture* a) {
         a->set_output(v1::PolicyArchitecture::OUTPUT_DECODED_LATENT);
       },
       absl::StatusCode::kUnimplemented, "architecture.output: OUTPUT_DECODED_LATENT"},
  };
  for (const Case& c : cases) {
    v1::Policy published = Policy();
    c.change(published.mutable_architecture());
    auto policy = TorchActingPolicyFactory(1)(published);
    ASSERT_FALSE(policy.ok()) << c.message;
    EXPECT_EQ(policy.status().code(), c.code);
    EXPECT_THAT(policy.status().message(), HasSubstr(c.message));
  }
}

}  // namespace
}  // namespace prl::models
