// PRL's GPU kernels (models/cuda_kernels.h): the squashed-Gaussian sample's against LibTorch's
// composite on the same GPU and against the CPU's fused kernels, values and gradients, for the
// policy head's layout (mean and log σ side by side in one row), from its two views and from the
// head itself (log σ clamped in the kernel); Adam's against the CPU's pass,
// bit for bit, with the step's scalars from the host and from the device; the TD loss's against
// the CPU's pass (its gradient bit for bit) and the composite. Skipped where this
// process sees no CUDA device (every CPU build); scripts/cuda_build.sh builds it for a GPU
// machine.
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/networks.h"
#include "torch/csrc/autograd/autograd.h"
#include "torch/csrc/autograd/function.h"

namespace prl::models {
namespace {

bool HasGpu() { return at::hasCUDA() && at::getNumGPUs() > 0; }

struct Sampled {
  at::Tensor action, log_prob, grad_head;
  std::string node;   // the autograd node of the action
  std::string input;  // the node behind its first input: the head's or the mean view's
};

// A sample through `sample` from a policy's output on `device` (a head [rows, 2·dims], log σ on
// both sides of the clamp's range), and the head's gradient for fixed upstream gradients.
template <typename Fn>
Sampled SampleOn(Fn sample, int64_t rows, int64_t dims, const at::Device& device) {
  at::manual_seed(3);
  at::Tensor head_cpu = at::randn({rows, 2 * dims}) * 3.0;
  head_cpu.narrow(1, dims, dims).narrow(0, 0, (rows + 6) / 7).fill_(-25.0);  // below -20
  const at::Tensor noise_cpu = at::randn({rows, dims});
  const at::Tensor g_action_cpu = at::randn({rows, dims});
  const at::Tensor g_log_prob_cpu = at::randn({rows});
  const at::Tensor head = head_cpu.to(device).requires_grad_(true);
  const PolicyNetwork::Output policy{
      head.narrow(1, 0, dims), head.narrow(1, dims, dims).clamp(kPolicyLogStdMin, kPolicyLogStdMax),
      head};
  const SquashedSample s = sample(policy, noise_cpu.to(device));
  Sampled out;
  if (s.action.grad_fn() != nullptr) {
    out.node = s.action.grad_fn()->name();
    const torch::autograd::Edge& edge = s.action.grad_fn()->next_edge(0);
    out.input = edge.function != nullptr ? edge.function->name() : "";
  }
  out.grad_head = torch::autograd::grad({s.action, s.log_prob}, {head},
                                        {g_action_cpu.to(device), g_log_prob_cpu.to(device)})[0]
                      .cpu();
  out.action = s.action.detach().cpu();
  out.log_prob = s.log_prob.detach().cpu();
  return out;
}

SquashedSample TwoViews(const PolicyNetwork::Output& out, const at::Tensor& noise) {
  return SampleSquashedGaussian(out.mean, out.log_std, noise);
}
SquashedSample Composite(const PolicyNetwork::Output& out, const at::Tensor& noise) {
  return SampleSquashedGaussianComposite(out.mean, out.log_std, noise);
}
SquashedSample FromHead(const PolicyNetwork::Output& out, const at::Tensor& noise) {
  return SampleSquashedGaussian(out, noise);
}

double RelativeDifference(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / (1.0 + b.abs().max().item<double>());
}

class SquashedGaussianCudaTest : public ::testing::TestWithParam<std::pair<int64_t, int64_t>> {};

TEST_P(SquashedGaussianCudaTest, FusedKernelsMatchTheCompositeAndTheCpu) {
  if (!HasGpu()) GTEST_SKIP() << "no CUDA device";
  const auto [rows, dims] = GetParam();
  const at::Device gpu(at::kCUDA, 0);
  const Sampled fused = SampleOn(&TwoViews, rows, dims, gpu);
  const Sampled from_head = SampleOn(&FromHead, rows, dims, gpu);
  const Sampled composite = SampleOn(&Composite, rows, dims, gpu);
  const Sampled cpu = SampleOn(&TwoViews, rows, dims, at::Device(at::kCPU));
  const Sampled cpu_from_head = SampleOn(&FromHead, rows, dims, at::Device(at::kCPU));
  // the GPU took the fused node (its check against the composite passed), from the head with
  // the head itself behind it; the CPU takes the node from the two views for both calls
  for (const Sampled* sampled : {&fused, &from_head, &cpu, &cpu_from_head}) {
    EXPECT_THAT(sampled->node, ::testing::HasSubstr("SquashedGaussianFunction"));
  }
  EXPECT_THAT(composite.node, ::testing::Not(::testing::HasSubstr("SquashedGaussian")));
  EXPECT_THAT(from_head.input, ::testing::HasSubstr("AccumulateGrad"));
  for (const Sampled* sampled : {&fused, &cpu, &cpu_from_head}) {
    EXPECT_THAT(sampled->input, ::testing::HasSubstr("Slice"));
  }
  for (const Sampled* sampled : {&fused, &from_head}) {
    for (const Sampled* reference : {&composite, &cpu}) {
      EXPECT_LE(RelativeDifference(sampled->action, reference->action), 1e-5);
      EXPECT_LE(RelativeDifference(sampled->log_prob, reference->log_prob), 1e-5);
      EXPECT_LE(RelativeDifference(sampled->grad_head, reference->grad_head), 1e-5);
    }
  }
  // the clamp's gradient: none for log σ outside [-20, 2] (the first rows' -25 among them),
  // where the composite has none
  const at::Tensor g_log_std = from_head.grad_head.narrow(1, dims, dims);
  EXPECT_TRUE(g_log_std.narrow(0, 0, (rows + 6) / 7).eq(0).all().item<bool>());
  EXPECT_TRUE(g_log_std.eq(0).equal(composite.grad_head.narrow(1, dims, dims).eq(0)));
}

INSTANTIATE_TEST_SUITE_P(Shapes, SquashedGaussianCudaTest,
                         ::testing::Values(std::pair<int64_t, int64_t>{1, 1},
                                           std::pair<int64_t, int64_t>{256, 6},
                                           std::pair<int64_t, int64_t>{4096, 6},
                                           std::pair<int64_t, int64_t>{300, 33}));

// A ReLU layer on the GPU (LinearRelu: one EpilogueLinearReluFunction node) against Linear then
// relu on the same GPU: values and the gradients of x, W and b, for a plain layer and an
// ensemble of two with a shared input or its own, at SAC's batch sizes (both sides of the
// batched-product and fused-backward row limits), weights or inputs without gradient as the
// actor loss's critic pass has them.
struct LayerCase {
  int64_t rows, in, out;
  int members;  // 1: a plain layer
  bool shared_input;
  bool weight_grad;
  bool input_grad = true;  // false: the first layer, on observations
};

class LinearReluCudaTest : public ::testing::TestWithParam<LayerCase> {};

TEST_P(LinearReluCudaTest, FusedLayerMatchesLinearThenRelu) {
  if (!HasGpu()) GTEST_SKIP() << "no CUDA device";
  const LayerCase c = GetParam();
  const at::Device gpu(at::kCUDA, 0);
  at::manual_seed(17);
  std::vector<int64_t> x_shape = {c.rows, c.in}, w_shape = {c.out, c.in}, b_shape = {c.out};
  if (c.members > 1) {
    if (!c.shared_input) x_shape.insert(x_shape.begin(), c.members);
    w_shape.insert(w_shape.begin(), c.members);
    b_shape.insert(b_shape.begin(), c.members);
  }
  const at::Tensor x = at::randn(x_shape).to(gpu).requires_grad_(c.input_grad);
  const at::Tensor w = (at::randn(w_shape) / std::sqrt(c.in)).to(gpu).requires_grad_(c.weight_grad);
  const at::Tensor b = (at::randn(b_shape) * 0.1).to(gpu).requires_grad_(c.weight_grad);
  const at::Tensor fused = LinearRelu(x, w, b, GemmBackend::kAten);
  const at::Tensor composite = at::relu(Linear(x, w, b, GemmBackend::kAten));
  ASSERT_NE(fused.grad_fn(), nullptr);
  EXPECT_THAT(fused.grad_fn()->name(), ::testing::HasSubstr("EpilogueLinearReluFunction"));
  EXPECT_LE(RelativeDifference(fused.detach().cpu(), composite.detach().cpu()), 1e-5);
  const at::Tensor g = at::randn(fused.sizes()).to(gpu);
  std::vector<at::Tensor> inputs;
  if (c.input_grad) inputs.push_back(x);
  if (c.weight_grad) inputs.insert(inputs.end(), {w, b});
  const auto want = torch::autograd::grad({composite}, inputs, {g});
  const auto got = torch::autograd::grad({fused}, inputs, {g});
  for (size_t k = 0; k < inputs.size(); ++k) {
    EXPECT_LE(RelativeDifference(got[k].cpu(), want[k].cpu()), 1e-5) << "gradient " << k;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Layers, LinearReluCudaTest,
    ::testing::Values(
        LayerCase{256, 17, 256, 1, true, true}, LayerCase{4096, 256, 256, 1, true, true},
        LayerCase{256, 23, 256, 2, true, true}, LayerCase{256, 256, 256, 2, false, true},
        LayerCase{256, 256, 256, 2, false, false}, LayerCase{4096, 23, 256, 2, true, true},
        LayerCase{4096, 256, 256, 2, false, true},
        // a partial block of 32 columns, odd rows, no input gradient
        LayerCase{301, 23, 40, 2, true, true, false},
        LayerCase{301, 23, 40, 1, true, true, false}));

// Adam on a network's worth of parameters (and an odd count, for the kernel's partial block):
// every step of the GPU's kernel equals the CPU's pass, bit for bit, whether the step's scalars
// come from the host (eager updates) or are read on the device (captured graphs).
class AdamCudaTest : public ::testing::TestWithParam<int64_t> {};

TEST_P(AdamCudaTest, KernelStepsEqualTheCpuPassBitForBit) {
  if (!HasGpu()) GTEST_SKIP() << "no CUDA device";
  const int64_t n = GetParam();
  const at::Device gpu(at::kCUDA, 0);
  at::manual_seed(11);
  const at::Tensor start = at::randn({n});
  // the CPU's pass, the GPU's with host scalars, the GPU's with device scalars
  std::vector<at::Tensor> params = {start.clone(), start.to(gpu), start.to(gpu)};
  std::vector<at::Tensor> m, v;
  for (const at::Tensor& p : params) {
    m.push_back(at::zeros_like(p));
    v.push_back(at::zeros_like(p));
  }
  const at::Tensor step_scalars = at::zeros({kAdamStepScalars}, at::kFloat).to(gpu);
  constexpr double kLr = 1e-3, kBeta1 = 0.9, kBeta2 = 0.999, kEps = 1e-8;
  for (int64_t step = 1; step <= 10; ++step) {
    // gradients of mixed scales, some zero, as a network's are
    const at::Tensor grad = at::randn({n}) * at::pow(10.0, at::randint(-6, 2, {n}).to(at::kFloat)) *
                            at::bernoulli(at::full({n}, 0.9));
    AdamStepInPlace(params[0], m[0], v[0], grad, kLr, kBeta1, kBeta2, kEps, step);
    AdamStepInPlace(params[1], m[1], v[1], grad.to(gpu), kLr, kBeta1, kBeta2, kEps, step);
    float scalars[kAdamStepScalars];
    AdamStepScalars(kLr, kBeta1, kBeta2, step, scalars);
    step_scalars.copy_(at::tensor({scalars[0], scalars[1]}, at::kFloat));
    AdamStepInPlaceWithStepScalars(params[2], m[2], v[2], grad.to(gpu), kBeta1, kBeta2, kEps,
                                   step_scalars);
    for (int k = 1; k < 3; ++k) {
      EXPECT_TRUE(at::equal(params[k].cpu(), params[0])) << "step " << step << ", case " << k;
      EXPECT_TRUE(at::equal(m[k].cpu(), m[0])) << "step " << step << ", case " << k;
      EXPECT_TRUE(at::equal(v[k].cpu(), v[0])) << "step " << step << ", case " << k;
    }
  }
  EXPECT_GT((params[0] - start).abs().max().item<double>(), 1e-3);  // it moved
}

INSTANTIATE_TEST_SUITE_P(Sizes, AdamCudaTest, ::testing::Values(1, 4099, 140545, 1 << 20));

// The TD loss's kernels (TwinTdLoss on a GPU) against the CPU's fused pass, whose gradient is
// bit for bit LibTorch's composite on the CPU (networks_test): the gradient and the per-row
// errors equal, the loss and the mean of q to float rounding (summed in another order); and
// against the composite on the GPU. Batch sizes of SAC's updates and one that is not a power of
// two; the loss gradient read on the device.
class TdLossCudaTest : public ::testing::TestWithParam<int64_t> {};

TEST_P(TdLossCudaTest, KernelsMatchTheCpuPassAndTheComposite) {
  if (!HasGpu()) GTEST_SKIP() << "no CUDA device";
  const int64_t rows = GetParam();
  const at::Device gpu(at::kCUDA, 0);
  at::manual_seed(13);
  for (const bool weighted : {false, true}) {
    SCOPED_TRACE(weighted ? "weighted" : "plain");
    const at::Tensor q_cpu = (at::randn({2, rows}) * 20).requires_grad_(true);
    const at::Tensor target = at::randn({rows}) * 20;
    const at::Tensor weight = weighted ? at::rand({rows}) + 0.25 : at::Tensor();
    const at::Tensor q_gpu = q_cpu.detach().to(gpu).requires_grad_(true);
    const at::Tensor w_gpu = weighted ? weight.to(gpu) : at::Tensor();
    const TdLoss cpu = internal::FusedTwinTdLoss(q_cpu, target, weight);
    const TdLoss fused = internal::FusedTwinTdLoss(q_gpu, target.to(gpu), w_gpu);
    const TdLoss composite = TwinTdLossComposite(q_gpu, target.to(gpu), w_gpu);
    EXPECT_TRUE(at::equal(fused.td_error_abs.cpu(), cpu.td_error_abs));
    EXPECT_NEAR(fused.loss.item<double>(), cpu.loss.item<double>(), 1e-6 * cpu.loss.item<double>());
    EXPECT_NEAR(fused.q_mean.item<double>(), cpu.q_mean.item<double>(),
                1e-6 * (1 + std::abs(cpu.q_mean.item<double>())));
    EXPECT_NEAR(fused.loss.item<double>(), composite.loss.item<double>(),
                1e-5 * composite.loss.item<double>());
    for (const double scale : {1.0, 0.6029}) {
      const at::Tensor g_cpu = torch::autograd::grad({cpu.loss}, {q_cpu}, {at::full({}, scale)},
                                                     /*retain_graph=*/true)[0];
      const at::Tensor g_fused =
          torch::autograd::grad({fused.loss}, {q_gpu}, {at::full({}, scale).to(gpu)},
                                /*retain_graph=*/true)[0];
      const at::Tensor g_composite =
          torch::autograd::grad({composite.loss}, {q_gpu}, {at::full({}, scale).to(gpu)},
                                /*retain_graph=*/true)[0];
      EXPECT_TRUE(at::equal(g_fused.cpu(), g_cpu)) << "loss gradient " << scale;
      EXPECT_TRUE(at::allclose(g_fused, g_composite, 1e-6, 1e-9)) << "loss gradient " << scale;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(BatchSizes, TdLossCudaTest, ::testing::Values(1, 100, 256, 4096));

// SAC's actor loss kernels (SacActorLoss on a GPU) against the CPU's fused pass, whose gradients
// are bit for bit LibTorch's composite on the CPU (networks_test), with tied minima; and against
// the composite on the GPU. α and the loss gradient read on the device.
class ActorLossCudaTest : public ::testing::TestWithParam<int64_t> {};

TEST_P(ActorLossCudaTest, KernelsMatchTheCpuPassAndTheComposite) {
  if (!HasGpu()) GTEST_SKIP() << "no CUDA device";
  const int64_t rows = GetParam();
  const at::Device gpu(at::kCUDA, 0);
  at::manual_seed(17);
  at::Tensor q = at::randn({2, rows}) * 20;
  q.select(0, 1).copy_(
      at::where(at::arange(rows).remainder(3) == 0, q.select(0, 0), q.select(0, 1)));
  const at::Tensor regularizer = at::randn({rows}) * 3;
  const at::Tensor alpha = at::full({}, 0.2137);
  const at::Tensor q_cpu = q.clone().requires_grad_(true);
  const at::Tensor r_cpu = regularizer.clone().requires_grad_(true);
  const at::Tensor q_gpu = q.to(gpu).requires_grad_(true);
  const at::Tensor r_gpu = regularizer.to(gpu).requires_grad_(true);
  const at::Tensor cpu = internal::FusedSacActorLoss(alpha, r_cpu, q_cpu);
  const at::Tensor fused = internal::FusedSacActorLoss(alpha.to(gpu), r_gpu, q_gpu);
  const at::Tensor composite = SacActorLossComposite(alpha.to(gpu), r_gpu, q_gpu);
  EXPECT_NEAR(fused.item<double>(), cpu.item<double>(), 1e-6 * (1 + std::abs(cpu.item<double>())));
  EXPECT_NEAR(fused.item<double>(), composite.item<double>(),
              1e-5 * (1 + std::abs(composite.item<double>())));
  for (const double scale : {1.0, 0.6029}) {
    const auto g_cpu =
        torch::autograd::grad({cpu}, {r_cpu, q_cpu}, {at::full({}, scale)}, /*retain_graph=*/true);
    const auto g_fused = torch::autograd::grad(
        {fused}, {r_gpu, q_gpu}, {at::full({}, scale).to(gpu)}, /*retain_graph=*/true);
    const auto g_composite = torch::autograd::grad(
        {composite}, {r_gpu, q_gpu}, {at::full({}, scale).to(gpu)}, /*retain_graph=*/true);
    for (int k = 0; k < 2; ++k) {
      EXPECT_TRUE(at::equal(g_fused[k].cpu(), g_cpu[k])) << "input " << k << ", scale " << scale;
      EXPECT_TRUE(at::allclose(g_fused[k], g_composite[k], 1e-6, 1e-9))
          << "input " << k << ", scale " << scale;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(BatchSizes, ActorLossCudaTest, ::testing::Values(1, 100, 256, 4096));

// The TD target's kernel (TwinTdTarget on a GPU) against the CPU's pass, bit for bit (α read on
// the device), with and without the α·R term and a reward scale; and against the composite on
// the GPU, whose addcmul contracts a multiply-add.
class TdTargetCudaTest : public ::testing::TestWithParam<int64_t> {};

TEST_P(TdTargetCudaTest, KernelMatchesTheCpuPassAndTheComposite) {
  if (!HasGpu()) GTEST_SKIP() << "no CUDA device";
  const int64_t rows = GetParam();
  const at::Device gpu(at::kCUDA, 0);
  at::manual_seed(19);
  at::Tensor q = at::randn({2, rows}) * 20;
  q.select(0, 1).copy_(
      at::where(at::arange(rows).remainder(3) == 0, q.select(0, 0), q.select(0, 1)));
  const at::Tensor regularizer = at::randn({rows}) * 3, reward = at::randn({rows});
  const at::Tensor discount = at::rand({rows});
  const at::Tensor alpha = at::full({}, 0.2137);
  for (const bool soft : {true, false}) {
    for (const double scale : {1.0, 5.1}) {
      SCOPED_TRACE(testing::Message() << "soft " << soft << ", reward scale " << scale);
      const at::Tensor a = soft ? alpha : at::Tensor(), r = soft ? regularizer : at::Tensor();
      const at::Tensor a_gpu = soft ? alpha.to(gpu) : at::Tensor();
      const at::Tensor r_gpu = soft ? regularizer.to(gpu) : at::Tensor();
      const at::Tensor cpu = internal::FusedTwinTdTarget(q, a, r, reward, discount, scale, 0.99);
      const at::Tensor fused = internal::FusedTwinTdTarget(q.to(gpu), a_gpu, r_gpu, reward.to(gpu),
                                                           discount.to(gpu), scale, 0.99);
      const at::Tensor composite = TwinTdTargetComposite(q.to(gpu), a_gpu, r_gpu, reward.to(gpu),
                                                         discount.to(gpu), scale, 0.99);
      EXPECT_TRUE(at::equal(fused.cpu(), cpu));
      // the composite rounds in another order (its addcmul contracts, or multiplies d·v first):
      // a few ulps of the terms, which may cancel
      const at::Tensor term = soft ? q.abs().amax(0) + regularizer.abs() : q.abs().amax(0);
      const at::Tensor terms = reward.abs() * scale + discount * term;
      EXPECT_TRUE(((fused.cpu() - composite.cpu()).abs() <= (terms + 1) * 1e-6).all().item<bool>());
      // and TwinTdTarget takes the kernel once its family has passed its check
      EXPECT_TRUE(at::equal(
          TwinTdTarget(q.to(gpu), a_gpu, r_gpu, reward.to(gpu), discount.to(gpu), scale, 0.99)
              .cpu(),
          cpu));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(BatchSizes, TdTargetCudaTest, ::testing::Values(1, 100, 256, 4096));

// TD3's target action (Td3TargetAction on a GPU: one kernel) against the composite on the GPU
// and on the CPU, the smoothing and the action clamped and not, the mean read from a wider
// head's rows.
class Td3TargetActionCudaTest : public ::testing::TestWithParam<int64_t> {};

TEST_P(Td3TargetActionCudaTest, KernelMatchesTheComposite) {
  if (!HasGpu()) GTEST_SKIP() << "no CUDA device";
  const int64_t rows = GetParam(), dims = 6;
  const at::Device gpu(at::kCUDA, 0);
  at::manual_seed(23);
  const at::Tensor head = at::randn({rows, dims + 3}) * 2;
  const at::Tensor noise = at::randn({rows, dims}) * 3;
  const at::Tensor mean = head.narrow(1, 0, dims);
  const at::Tensor mean_gpu = head.to(gpu).narrow(1, 0, dims);
  const at::Tensor fused = Td3TargetAction(mean_gpu, noise.to(gpu), 0.2, 0.5).cpu();
  const at::Tensor composite = Td3TargetActionComposite(mean_gpu, noise.to(gpu), 0.2, 0.5).cpu();
  const at::Tensor cpu = Td3TargetAction(mean, noise, 0.2, 0.5);
  EXPECT_LE((fused - composite).abs().max().item<double>(), 1e-6);
  EXPECT_LE((fused - cpu).abs().max().item<double>(), 1e-6);
  EXPECT_LE(fused.abs().max().item<double>(), 1.0);
}

INSTANTIATE_TEST_SUITE_P(BatchSizes, Td3TargetActionCudaTest, ::testing::Values(1, 100, 256, 4096));

// SAC's temperature kernel (SacTemperatureTerms on a GPU) against the CPU's pass and the
// composite on the GPU: the mean summed in another order, the rest the same arithmetic from it.
class TemperatureCudaTest : public ::testing::TestWithParam<int64_t> {};

TEST_P(TemperatureCudaTest, KernelMatchesTheCpuPassAndTheComposite) {
  if (!HasGpu()) GTEST_SKIP() << "no CUDA device";
  const int64_t rows = GetParam();
  const at::Device gpu(at::kCUDA, 0);
  at::manual_seed(23);
  const at::Tensor regularizer = at::randn({rows}) * 3 - 1;
  const at::Tensor log_alpha = at::full({1}, -1.3);
  for (const bool negate : {true, false}) {
    SCOPED_TRACE(testing::Message() << "negate " << negate);
    const TemperatureTerms cpu =
        internal::FusedSacTemperatureTerms(regularizer, log_alpha, -6.0, negate);
    const TemperatureTerms fused =
        internal::FusedSacTemperatureTerms(regularizer.to(gpu), log_alpha.to(gpu), -6.0, negate);
    const TemperatureTerms composite =
        SacTemperatureTermsComposite(regularizer.to(gpu), log_alpha.to(gpu), -6.0, negate);
    const TemperatureTerms dispatched =
        SacTemperatureTerms(regularizer.to(gpu), log_alpha.to(gpu), -6.0, negate);
    for (const auto& [a, c] :
         {std::pair{fused.mean, cpu.mean}, std::pair{fused.loss, cpu.loss},
          std::pair{fused.grad, cpu.grad}, std::pair{fused.entropy, cpu.entropy},
          std::pair{fused.mean, composite.mean}, std::pair{fused.loss, composite.loss},
          std::pair{fused.grad, composite.grad}, std::pair{fused.entropy, composite.entropy}}) {
      EXPECT_TRUE(a.is_cuda());
      EXPECT_NEAR(a.cpu().item<double>(), c.cpu().item<double>(),
                  1e-6 * (1 + std::abs(c.cpu().item<double>())));
    }
    // the kernel's own terms from its mean are the CPU's arithmetic
    const float m = fused.mean.cpu().item<float>();
    EXPECT_EQ(fused.loss.cpu().item<float>(), -(-1.3f * (m + -6.0f)));
    EXPECT_EQ(fused.entropy.cpu().item<float>(), negate ? -m : m);
    // and SacTemperatureTerms takes the kernel once its family has passed its check
    EXPECT_TRUE(at::equal(dispatched.loss, fused.loss));
    EXPECT_TRUE(at::equal(dispatched.grad, fused.grad));
  }
}

INSTANTIATE_TEST_SUITE_P(BatchSizes, TemperatureCudaTest, ::testing::Values(1, 100, 256, 4096));

}  // namespace
}  // namespace prl::models
