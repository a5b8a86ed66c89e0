#include "models/networks.h"

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "ATen/CPUGeneratorImpl.h"
#include "ATen/Parallel.h"
#include "ATen/core/grad_mode.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "torch/csrc/autograd/autograd.h"

namespace prl::models {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

v1::NetworkSpec Resolved(std::vector<int> hidden) {
  v1::NetworkSpec spec;
  for (int h : hidden) spec.add_hidden_sizes(h);
  EXPECT_TRUE(ResolveNetworkSpec("network", &spec).ok());
  return spec;
}

TEST(ResolveNetworkSpecTest, FillsTheDocumentedDefaults) {
  v1::NetworkSpec spec;
  ASSERT_TRUE(ResolveNetworkSpec("algorithm.network", &spec).ok());
  EXPECT_THAT(spec.hidden_sizes(), ElementsAre(256, 256));
  EXPECT_EQ(spec.activation(), v1::NetworkSpec::ACTIVATION_RELU);
}

TEST(ResolveNetworkSpecTest, NamesTheFieldThatIsOutOfRange) {
  v1::NetworkSpec spec;
  spec.add_hidden_sizes(64);
  spec.add_hidden_sizes(0);
  const absl::Status s = ResolveNetworkSpec("algorithm.network", &spec);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("algorithm.network.hidden_sizes[1]: 0"));
}

TEST(LinearTest, OneLayerAndEnsembleMatchMatmulOnBothBackends) {
  at::manual_seed(3);
  const at::Tensor x = at::randn({5, 4});
  const at::Tensor w = at::randn({3, 4});
  const at::Tensor b = at::randn({3});
  const at::Tensor want = at::matmul(x, w.t()) + b;
  for (GemmBackend backend : {GemmBackend::kAten, GemmBackend::kOneDnn}) {
    EXPECT_TRUE(at::allclose(Linear(x, w, b, backend), want, 1e-5, 1e-5));
  }
  const at::Tensor we = at::randn({2, 3, 4});
  const at::Tensor be = at::randn({2, 3});
  const at::Tensor ye = Linear(x, we, be, GemmBackend::kOneDnn);
  ASSERT_EQ(ye.sizes(), (std::vector<int64_t>{2, 5, 3}));
  for (int k = 0; k < 2; ++k) {
    EXPECT_TRUE(at::allclose(ye[k], at::matmul(x, we[k].t()) + be[k], 1e-5, 1e-5));
  }
}

TEST(LinearTest, GradientsMatchTheAtenBackend) {
  at::manual_seed(4);
  std::vector<at::Tensor> grads[2];
  int i = 0;
  for (GemmBackend backend : {GemmBackend::kAten, GemmBackend::kOneDnn}) {
    at::manual_seed(4);
    at::Tensor x = at::randn({6, 3}).requires_grad_(true);
    at::Tensor w = at::randn({2, 3}).requires_grad_(true);
    at::Tensor b = at::randn({2}).requires_grad_(true);
    Linear(x, w, b, backend).pow(2).sum().backward();
    grads[i++] = {x.grad(), w.grad(), b.grad()};
  }
  for (int k = 0; k < 3; ++k) EXPECT_TRUE(at::allclose(grads[0][k], grads[1][k], 1e-5, 1e-5));
}

// The fused Linear+ReLU against relu(matmul + b) and its gradients on ATen, for one layer and
// ensembles with shared and per-member inputs, at sizes that split the epilogues into several
// chunks and on one and two threads.
TEST(LinearReluTest, ValuesAndGradientsMatchReluOfMatmul) {
  struct Case {
    std::vector<int64_t> x, w, b;
  };
  const std::vector<Case> cases = {
      {{7, 5}, {4, 5}, {4}},                // small: one chunk
      {{640, 24}, {128, 24}, {128}},        // 82k outputs: several chunks
      {{300, 8}, {2, 130, 8}, {2, 130}},    // ensemble, shared input
      {{2, 300, 8}, {2, 130, 8}, {2, 130}}  // ensemble, one input per member
  };
  const int threads_before = at::get_num_threads();
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    for (const Case& c : cases) {
      at::manual_seed(11);
      const at::Tensor x0 = at::randn(c.x), w0 = at::randn(c.w), b0 = at::randn(c.b);
      const at::Tensor upstream =
          at::randn(w0.dim() == 3 ? std::vector<int64_t>{c.w[0], c.x[c.x.size() - 2], c.w[1]}
                                  : std::vector<int64_t>{c.x[0], c.w[0]});
      std::vector<at::Tensor> out[2];
      int i = 0;
      for (GemmBackend backend : {GemmBackend::kAten, GemmBackend::kOneDnn}) {
        at::Tensor x = x0.clone().requires_grad_(true);
        at::Tensor w = w0.clone().requires_grad_(true);
        at::Tensor b = b0.clone().requires_grad_(true);
        const at::Tensor y = LinearRelu(x, w, b, backend);
        (y * upstream).sum().backward();
        out[i++] = {y.detach(), x.grad(), w.grad(), b.grad()};
      }
      for (int k = 0; k < 4; ++k) {
        EXPECT_TRUE(at::allclose(out[0][k], out[1][k], 1e-4, 1e-4))
            << "threads " << threads << ", x " << x0.sizes() << ", w " << w0.sizes() << ", term "
            << k;
      }
      EXPECT_GT((out[1][0] == 0).sum().item<int64_t>(), 0);  // the mask is exercised
    }
  }
  at::set_num_threads(threads_before);
}

// The fused CPU pass against the ATen operations (taken for non-contiguous tensors), over 50
// steps with gradients of mixed sign and scale, on one and two threads.
TEST(AdamStepInPlaceTest, FusedPassMatchesTheAtenOperations) {
  const int threads_before = at::get_num_threads();
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    at::manual_seed(5);
    const int64_t n = 70001;  // several 32k chunks and a tail
    at::Tensor fused = at::randn({n});
    // every other element of a [2n] buffer: the same values, not contiguous
    at::Tensor strided_storage = at::zeros({2 * n});
    at::Tensor strided = strided_storage.slice(0, 0, 2 * n, 2);
    strided.copy_(fused);
    at::Tensor m1 = at::zeros({n}), v1 = at::zeros({n});
    at::Tensor m2_storage = at::zeros({2 * n}), v2_storage = at::zeros({2 * n});
    at::Tensor m2 = m2_storage.slice(0, 0, 2 * n, 2), v2 = v2_storage.slice(0, 0, 2 * n, 2);
    for (int64_t step = 1; step <= 50; ++step) {
      const at::Tensor g = at::randn({n}) * at::exp(at::randn({n}) * 3);
      AdamStepInPlace(fused, m1, v1, g, 1e-3, 0.9, 0.999, 1e-8, step);
      AdamStepInPlace(strided, m2, v2, g, 1e-3, 0.9, 0.999, 1e-8, step);
    }
    // float32 rounding differs by an ulp where ATen's operations contract a multiply-add (and a
    // sum of opposite-signed terms can cancel to a small m): compare against each tensor's scale
    auto close = [](const at::Tensor& a, const at::Tensor& b) {
      return (a - b).abs().max().item<float>() <= 1e-5f * b.abs().max().item<float>();
    };
    EXPECT_TRUE(close(fused, strided)) << "threads " << threads;
    EXPECT_TRUE(close(m1, m2)) << "threads " << threads;
    EXPECT_TRUE(close(v1, v2)) << "threads " << threads;
  }
  at::set_num_threads(threads_before);
}

// One step by hand: m = 0.1·g, v = 0.001·g², p -= lr · m/0.1 / (√v/√0.001 + eps) = lr·sign(g).
TEST(AdamStepInPlaceTest, FirstStepMovesEachParameterByLrAgainstItsGradient) {
  at::Tensor p = at::zeros({3}), m = at::zeros({3}), v = at::zeros({3});
  const at::Tensor g = at::tensor({2.0f, -0.5f, 1e-3f});
  AdamStepInPlace(p, m, v, g, 0.01, 0.9, 0.999, 1e-8, 1);
  EXPECT_TRUE(at::allclose(p, at::tensor({-0.01f, 0.01f, -0.01f}), 1e-5, 1e-6)) << p;
  EXPECT_TRUE(at::allclose(m, g * 0.1));
  EXPECT_TRUE(at::allclose(v, g * g * 0.001));
}

// The fused pass rounds every operation on its own (its kernels are compiled without
// contraction into fused multiply-adds, which GCC's AVX-512 clone would otherwise use, so only
// an AVX-512 machine can catch a missing flag): each
// value equals the formula evaluated one float operation at a time, on any CPU, which is what
// the GPU's kernel computes too (models/cuda_kernels_test).
TEST(AdamStepInPlaceTest, FusedPassIsTheFormulaOneRoundedOperationAtATime) {
  at::manual_seed(9);
  const int64_t n = 5003;
  const at::Tensor p = at::randn({n}), m = at::randn({n}) * 1e-2, v = at::rand({n}) * 1e-4;
  const at::Tensor g = at::randn({n}) * at::exp(at::randn({n}) * 3);
  std::vector<float> pp(p.data_ptr<float>(), p.data_ptr<float>() + n);
  std::vector<float> mm(m.data_ptr<float>(), m.data_ptr<float>() + n);
  std::vector<float> vv(v.data_ptr<float>(), v.data_ptr<float>() + n);
  const int64_t step = 7;
  AdamStepInPlace(p, m, v, g, 1e-3, 0.9, 0.999, 1e-8, step);
  float scalars[kAdamStepScalars];
  AdamStepScalars(1e-3, 0.9, 0.999, step, scalars);
  const float b1 = 0.9f, c1 = static_cast<float>(1.0 - 0.9), b2 = 0.999f;
  const float c2 = static_cast<float>(1.0 - 0.999), eps = 1e-8f;
  int64_t differ = 0;
  for (int64_t i = 0; i < n; ++i) {
    // volatile: each product rounded before the sum, whatever this file's compiler contracts
    const float gi = g.data_ptr<float>()[i];
    volatile float t1 = mm[i] * b1, t2 = c1 * gi;
    const float mi = t1 + t2;
    volatile float t3 = vv[i] * b2, t4 = c2 * gi;
    volatile float t5 = t4 * gi;
    const float vi = t3 + t5;
    volatile float num = scalars[0] * mi, den = std::sqrt(vi) / scalars[1];
    volatile float quot = num / (den + eps);
    const float pi = pp[i] + quot;
    differ += (m.data_ptr<float>()[i] != mi) + (v.data_ptr<float>()[i] != vi) +
              (p.data_ptr<float>()[i] != pi);
  }
  EXPECT_EQ(differ, 0);
}

// The step scalars a captured step reads must be a float32 [2] on the parameters' device.
TEST(AdamStepInPlaceTest, StepScalarsOfTheWrongShapeAreRefusedNamingWhatIsWanted) {
  const at::Tensor p = at::zeros({4}), m = at::zeros({4}), v = at::zeros({4});
  const at::Tensor g = at::ones({4});
  try {
    AdamStepInPlaceWithStepScalars(p, m, v, g, 0.9, 0.999, 1e-8, at::zeros({3}));
    ADD_FAILURE() << "accepted step scalars of 3 values";
  } catch (const c10::Error& e) {
    EXPECT_THAT(e.what_without_backtrace(), ::testing::HasSubstr("want a contiguous float32 [2]"));
  }
  EXPECT_TRUE(at::equal(p, at::zeros({4})));  // nothing moved
}

// The fused TD loss (one node; on the CPU its passes, on a GPU their kernels) against LibTorch's
// composite: the gradient bit for bit (the order of operations LibTorch's autograd takes, with
// MeanBackward's division: a batch size that is not a power of two shows it), the per-row
// errors bit for bit, the loss and the mean of q (summed in double) to float rounding.
TEST(TwinTdLossTest, FusedMatchesTheCompositeAndItsGradientBitForBit) {
  at::Generator gen = at::detail::createCPUGenerator(5);
  for (const int64_t rows : {int64_t{256}, int64_t{100}, int64_t{37}, int64_t{1}}) {
    for (const int64_t members : {int64_t{2}, int64_t{3}}) {
      for (const bool weighted : {false, true}) {
        SCOPED_TRACE(testing::Message() << rows << " rows, " << members << " critics"
                                        << (weighted ? ", weighted" : ""));
        const at::Tensor q = (at::randn({members, rows}, gen) * 20).requires_grad_(true);
        const at::Tensor target = at::randn({rows}, gen) * 20;
        const at::Tensor weight = weighted ? at::rand({rows}, gen) + 0.25 : at::Tensor();
        const TdLoss fused = internal::FusedTwinTdLoss(q, target, weight);
        const TdLoss composite = TwinTdLossComposite(q, target, weight);
        EXPECT_EQ(fused.loss.dim(), 0);
        EXPECT_TRUE(fused.loss.requires_grad());
        EXPECT_FALSE(fused.td_error_abs.requires_grad());
        EXPECT_FALSE(fused.q_mean.requires_grad());
        EXPECT_NEAR(fused.loss.item<double>(), composite.loss.item<double>(),
                    2e-6 * composite.loss.item<double>());
        EXPECT_NEAR(fused.q_mean.item<double>(), composite.q_mean.item<double>(),
                    1e-6 * (1 + std::abs(composite.q_mean.item<double>())));
        EXPECT_TRUE(at::equal(fused.td_error_abs, composite.td_error_abs));
        // one, and loss gradients other than one, as when the loss is scaled
        for (const double scale : {1.0, 0.6029, 3.3}) {
          const at::Tensor g = at::full({}, scale);
          const at::Tensor g_fused =
              torch::autograd::grad({fused.loss}, {q}, {g}, /*retain_graph=*/true)[0];
          const at::Tensor g_composite =
              torch::autograd::grad({composite.loss}, {q}, {g}, /*retain_graph=*/true)[0];
          EXPECT_TRUE(at::equal(g_fused, g_composite))
              << "loss gradient " << scale << ": "
              << (g_fused - g_composite).abs().max().item<float>();
        }
      }
    }
  }
}

// SAC's actor loss (one node) against LibTorch's composite (α·R − q.amin(0)).mean(): the
// gradients of R and q bit for bit, rows whose critics tie at the minimum included (amin shares
// the gradient among them), the loss to float rounding.
TEST(SacActorLossTest, FusedMatchesTheCompositeAndItsGradientsBitForBit) {
  at::Generator gen = at::detail::createCPUGenerator(8);
  for (const int64_t rows : {int64_t{256}, int64_t{100}, int64_t{37}, int64_t{1}}) {
    for (const int64_t members : {int64_t{2}, int64_t{3}}) {
      SCOPED_TRACE(testing::Message() << rows << " rows, " << members << " critics");
      at::Tensor q = at::randn({members, rows}, gen) * 20;
      // every third row the first two critics tie; with three, every fifth row the last two tie
      // at the minimum and every seventh all three tie; and a NaN in row 1 (the row's gradients
      // are NaN in both)
      const at::Tensor index = at::arange(rows);
      q.select(0, 1).copy_(at::where(index.remainder(3) == 0, q.select(0, 0), q.select(0, 1)));
      if (members == 3) {
        const at::Tensor low = q.select(0, 0).abs().neg() - 50;
        q.select(0, 1).copy_(at::where(index.remainder(5) == 1, low, q.select(0, 1)));
        q.select(0, 2).copy_(at::where(index.remainder(5) == 1, low, q.select(0, 2)));
        for (int64_t k = 0; k < 3; ++k) {
          q.select(0, k).copy_(at::where(index.remainder(7) == 2, low, q.select(0, k)));
        }
      }
      if (rows > 1) q.select(0, members - 1).select(0, 1).fill_(std::nanf(""));
      q.requires_grad_(true);
      const at::Tensor regularizer = (at::randn({rows}, gen) * 3).requires_grad_(true);
      const at::Tensor alpha = at::full({}, 0.2137);
      const at::Tensor fused = internal::FusedSacActorLoss(alpha, regularizer, q);
      const at::Tensor composite = SacActorLossComposite(alpha, regularizer, q);
      EXPECT_EQ(fused.dim(), 0);
      if (rows > 1) {  // a NaN in q: the loss is NaN in both
        EXPECT_TRUE(std::isnan(fused.item<double>()));
        EXPECT_TRUE(std::isnan(composite.item<double>()));
      } else {
        EXPECT_NEAR(fused.item<double>(), composite.item<double>(),
                    2e-6 * (1 + std::abs(composite.item<double>())));
      }
      for (const double scale : {1.0, 0.6029, 3.3}) {
        const at::Tensor g = at::full({}, scale);
        const auto g_fused =
            torch::autograd::grad({fused}, {regularizer, q}, {g}, /*retain_graph=*/true);
        const auto g_composite =
            torch::autograd::grad({composite}, {regularizer, q}, {g}, /*retain_graph=*/true);
        // equal, NaNs in the same places (at::equal: NaN is not equal to itself)
        for (int k = 0; k < 2; ++k) {
          const at::Tensor a = g_fused[k], c = g_composite[k];
          EXPECT_TRUE(at::equal(a.isnan(), c.isnan())) << "input " << k << ", scale " << scale;
          EXPECT_TRUE(at::equal(at::nan_to_num(a, 7.0), at::nan_to_num(c, 7.0)))
              << "input " << k << ", scale " << scale;
        }
      }
    }
  }
  EXPECT_THROW(internal::FusedSacActorLoss(at::full({}, 0.2), at::zeros({5}), at::zeros({2, 4})),
               c10::Error);
}

// The TD target's pass against LibTorch's composite r·s + γ·d·(q.amin(0) − α·R): equal where
// the composite's addcmul rounds its product before the sum (a contracted multiply-add may
// differ in the last bit), a NaN among a row's critics giving a NaN target in both, with and
// without the α·R term and a reward scale; on the CPU TwinTdTarget is the composite.
// TD3's target action on hand values: the smoothing clamped to ±c, the action to ±1.
TEST(Td3TargetActionTest, SmoothsAndClampsTheTargetAction) {
  const at::Tensor mean = at::tensor({0.0f, 10.0f, -10.0f, 0.5f, 0.0f}).view({1, 5});
  const at::Tensor noise = at::tensor({100.0f, 0.0f, 0.0f, -1.0f, -0.5f}).view({1, 5});
  const at::Tensor out = Td3TargetAction(mean, noise, /*policy_noise=*/0.2, /*noise_clip=*/0.5);
  const float want[] = {0.5f, 1.0f, -1.0f, std::tanh(0.5f) - 0.2f, -0.1f};
  ASSERT_EQ(out.sizes(), mean.sizes());
  for (int j = 0; j < 5; ++j) EXPECT_NEAR(out[0][j].item<float>(), want[j], 1e-6) << j;
  EXPECT_TRUE(at::equal(out, Td3TargetActionComposite(mean, noise, 0.2, 0.5)));
}

TEST(TwinTdTargetTest, FusedMatchesTheComposite) {
  at::Generator gen = at::detail::createCPUGenerator(9);
  for (const int64_t rows : {int64_t{256}, int64_t{37}, int64_t{1}}) {
    for (const int64_t members : {int64_t{2}, int64_t{3}}) {
      at::Tensor q = at::randn({members, rows}, gen) * 20;
      const at::Tensor index = at::arange(rows);
      q.select(0, 1).copy_(at::where(index.remainder(3) == 0, q.select(0, 0), q.select(0, 1)));
      if (rows > 1) q.select(0, members - 1).select(0, 1).fill_(std::nanf(""));
      const at::Tensor regularizer = at::randn({rows}, gen) * 3;
      const at::Tensor reward = at::randn({rows}, gen);
      const at::Tensor discount =
          at::where(index.remainder(5) == 4, at::zeros({rows}), at::rand({rows}, gen));
      const at::Tensor alpha = at::full({}, 0.2137);
      for (const bool soft : {true, false}) {
        for (const double scale : {1.0, 5.1}) {
          SCOPED_TRACE(testing::Message() << rows << " rows, " << members << " critics, soft "
                                          << soft << ", reward scale " << scale);
          const at::Tensor a = soft ? alpha : at::Tensor(), r = soft ? regularizer : at::Tensor();
          const at::Tensor fused =
              internal::FusedTwinTdTarget(q, a, r, reward, discount, scale, 0.99);
          const at::Tensor composite =
              TwinTdTargetComposite(q, a, r, reward, discount, scale, 0.99);
          const at::Tensor dispatched = TwinTdTarget(q, a, r, reward, discount, scale, 0.99);
          EXPECT_TRUE(at::equal(at::nan_to_num(dispatched, 0.0), at::nan_to_num(composite, 0.0)));
          ASSERT_EQ(fused.sizes(), composite.sizes());
          EXPECT_TRUE(at::equal(fused.isnan(), composite.isnan()));
          EXPECT_EQ(fused.isnan().sum().item<int64_t>(), rows > 1 ? 1 : 0);
          const at::Tensor f = at::nan_to_num(fused, 0.0), c = at::nan_to_num(composite, 0.0);
          EXPECT_LE((f - c).abs().max().item<double>(), 2e-7 * (1 + c.abs().max().item<double>()));
        }
      }
    }
  }
  // the minimum over the critics, then the term: a hand-computed row
  const at::Tensor q = at::tensor({3.0f, -1.0f, 2.0f, 4.0f}).reshape({2, 2});
  const at::Tensor y =
      internal::FusedTwinTdTarget(q, at::full({}, 0.5), at::tensor({2.0f, -2.0f}),
                                  at::tensor({1.0f, 0.0f}), at::tensor({1.0f, 0.5f}), 2.0, 0.5);
  // row 0: 2 + 0.5·1·(2 − 1) = 2.5; row 1: 0 + 0.5·0.5·(−1 + 1) = 0
  EXPECT_TRUE(at::equal(y, at::tensor({2.5f, 0.0f})));
  EXPECT_THROW(internal::FusedTwinTdTarget(at::zeros({2, 4}), at::full({}, 0.2), at::Tensor(),
                                           at::zeros({4}), at::zeros({4}), 1.0, 0.99),
               c10::Error);
  EXPECT_THROW(internal::FusedTwinTdTarget(at::zeros({2, 4}), at::Tensor(), at::Tensor(),
                                           at::zeros({5}), at::zeros({5}), 1.0, 0.99),
               c10::Error);
}

// SAC's temperature terms (one pass, the mean summed in double) against LibTorch's composite:
// the mean to float rounding, the rest the composite's arithmetic from it; a hand-computed case;
// on the CPU SacTemperatureTerms is the composite.
TEST(SacTemperatureTermsTest, FusedMatchesTheComposite) {
  at::Generator gen = at::detail::createCPUGenerator(10);
  for (const int64_t rows : {int64_t{256}, int64_t{37}, int64_t{1}}) {
    const at::Tensor regularizer = (at::randn({rows}, gen) * 3).requires_grad_(true);
    const at::Tensor log_alpha = at::full({1}, -1.7);
    for (const bool negate : {true, false}) {
      SCOPED_TRACE(testing::Message() << rows << " rows, negate " << negate);
      const TemperatureTerms fused =
          internal::FusedSacTemperatureTerms(regularizer, log_alpha, -6.0, negate);
      const TemperatureTerms composite =
          SacTemperatureTermsComposite(regularizer, log_alpha, -6.0, negate);
      const TemperatureTerms dispatched = SacTemperatureTerms(regularizer, log_alpha, -6.0, negate);
      EXPECT_EQ(fused.mean.dim(), 0);
      EXPECT_EQ(fused.loss.dim(), 0);
      EXPECT_EQ(fused.grad.sizes(), (std::vector<int64_t>{1}));
      EXPECT_EQ(fused.entropy.dim(), 0);
      for (const auto& [a, c] :
           {std::pair{fused.mean, composite.mean}, std::pair{fused.loss, composite.loss},
            std::pair{fused.grad, composite.grad}, std::pair{fused.entropy, composite.entropy}}) {
        EXPECT_FALSE(a.requires_grad());
        EXPECT_NEAR(a.item<double>(), c.item<double>(), 1e-6 * (1 + std::abs(c.item<double>())));
      }
      // from its own mean, the composite's operations in float
      const float m = fused.mean.item<float>();
      const float gap = m + -6.0f;
      EXPECT_EQ(fused.loss.item<float>(), -(-1.7f * gap));
      EXPECT_EQ(fused.grad.item<float>(), -gap);
      EXPECT_EQ(fused.entropy.item<float>(), negate ? -m : m);
      EXPECT_TRUE(at::equal(dispatched.loss, composite.loss));
      EXPECT_TRUE(at::equal(dispatched.entropy, composite.entropy));
    }
  }
  const TemperatureTerms t = internal::FusedSacTemperatureTerms(
      at::tensor({1.0f, 2.0f, 3.0f, 6.0f}), at::full({1}, 0.5), -6.0, /*negate_entropy=*/true);
  EXPECT_EQ(t.mean.item<float>(), 3.0f);
  EXPECT_EQ(t.loss.item<float>(), 1.5f);  // −0.5·(3 − 6)
  EXPECT_EQ(t.grad.item<float>(), 3.0f);
  EXPECT_EQ(t.entropy.item<float>(), -3.0f);
  EXPECT_THROW(internal::FusedSacTemperatureTerms(at::zeros({4, 1}), at::zeros({1}), -6.0, true),
               c10::Error);
  EXPECT_THROW(internal::FusedSacTemperatureTerms(at::zeros({4}), at::zeros({2}), -6.0, true),
               c10::Error);
}

TEST(TwinTdLossTest, OnTheCpuTwinTdLossIsTheComposite) {
  at::Generator gen = at::detail::createCPUGenerator(6);
  const at::Tensor q = at::randn({2, 64}, gen).requires_grad_(true);
  const at::Tensor target = at::randn({64}, gen);
  const TdLoss loss = TwinTdLoss(q, target, at::Tensor());
  const TdLoss composite = TwinTdLossComposite(q, target, at::Tensor());
  EXPECT_TRUE(at::equal(loss.loss, composite.loss));
  EXPECT_TRUE(at::equal(loss.q_mean, composite.q_mean));
  EXPECT_THROW(internal::FusedTwinTdLoss(q, at::randn({63}), at::Tensor()), c10::Error);
  EXPECT_THROW(internal::FusedTwinTdLoss(q, target, at::ones({64}, at::kDouble)), c10::Error);
  // a target that needs a gradient takes the composite, which gives it one
  const at::Tensor learned_target = target.clone().requires_grad_(true);
  const TdLoss through = TwinTdLoss(q, learned_target, at::Tensor());
  EXPECT_TRUE(torch::autograd::grad({through.loss}, {learned_target})[0].defined());
}

// The ReLU layer a GPU takes (internal::EpilogueLinearRelu), run here with the CPU's passes in
// place of the GPU's kernels: its values and the gradients of x, W and b against Linear then
// relu, for a plain layer and an ensemble with a shared input or its own, on both sides of the
// row limits where it changes how it computes (1,024), with and without weight gradients.
TEST(EpilogueLinearReluTest, MatchesLinearThenReluForwardAndBackward) {
  at::manual_seed(21);
  for (const int64_t rows : {37, 1100}) {
    for (const int members : {1, 2}) {
      for (const bool shared : {true, false}) {
        for (const bool weight_grad : {true, false}) {
          if (members == 1 && !shared) continue;
          SCOPED_TRACE(::testing::Message()
                       << "rows " << rows << ", members " << members << ", shared " << shared
                       << ", weight grad " << weight_grad);
          const int64_t in = 19, out = 33;
          std::vector<int64_t> x_shape = {rows, in}, w_shape = {out, in}, b_shape = {out};
          if (members > 1) {
            if (!shared) x_shape.insert(x_shape.begin(), members);
            w_shape.insert(w_shape.begin(), members);
            b_shape.insert(b_shape.begin(), members);
          }
          const at::Tensor x = at::randn(x_shape).requires_grad_(true);
          const at::Tensor w = (at::randn(w_shape) * 0.3).requires_grad_(weight_grad);
          const at::Tensor b = (at::randn(b_shape) * 0.3).requires_grad_(weight_grad);
          const at::Tensor got = internal::EpilogueLinearRelu(x, w, b);
          const at::Tensor want = at::relu(Linear(x, w, b, GemmBackend::kAten));
          ASSERT_EQ(got.sizes(), want.sizes());
          // products summed in another order: compared at each tensor's scale
          auto close = [](const at::Tensor& a, const at::Tensor& b) {
            return (a - b).abs().max().item<double>() <=
                   1e-5 * (1.0 + b.abs().max().item<double>());
          };
          EXPECT_TRUE(close(got, want));
          EXPECT_GT((want > 0).sum().item<int64_t>(), 0);   // some units on
          EXPECT_GT((want == 0).sum().item<int64_t>(), 0);  // and some off
          const at::Tensor g = at::randn(got.sizes());
          std::vector<at::Tensor> inputs = {x};
          if (weight_grad) inputs.insert(inputs.end(), {w, b});
          const auto got_g = torch::autograd::grad({got}, inputs, {g});
          const auto want_g = torch::autograd::grad({want}, inputs, {g});
          for (size_t k = 0; k < inputs.size(); ++k) {
            ASSERT_EQ(got_g[k].sizes(), want_g[k].sizes()) << "gradient " << k;
            EXPECT_TRUE(close(got_g[k], want_g[k])) << "gradient " << k;
          }
        }
      }
    }
  }
}

TEST(EpilogueLinearReluTest, RefusesShapesItDoesNotTake) {
  const at::Tensor x = at::zeros({3, 4, 5}), w = at::zeros({6, 5}), b = at::zeros({6});
  try {
    internal::EpilogueLinearRelu(x, w, b);  // a plain layer on a [T, B, in] input
    ADD_FAILURE() << "accepted a 3-d input to a plain layer";
  } catch (const c10::Error& e) {
    EXPECT_THAT(e.what_without_backtrace(), ::testing::HasSubstr("not a float32 layer's shapes"));
  }
}

TEST(TanhLogDetJacobianTest, MatchesTheNaiveFormulaAndStaysFinite) {
  const at::Tensor u = at::linspace(-3, 3, 13);
  EXPECT_TRUE(at::allclose(TanhLogDetJacobian(u), at::log(1 - at::tanh(u).pow(2)), 1e-4, 1e-4));
  const at::Tensor extreme = TanhLogDetJacobian(at::full({2}, 100.0));
  EXPECT_TRUE(at::isfinite(extreme).all().item<bool>());
}

// Values and gradients of SampleSquashedGaussian's fused CPU node against the composite of
// LibTorch operations, with gradients flowing into the action, the log-probability, or both.
TEST(SampleSquashedGaussianTest, FusedNodeMatchesTheCompositeForwardAndBackward) {
  at::manual_seed(3);
  // [B, A] views of one head output, as PolicyNetwork::Forward returns them (not contiguous),
  // with means large enough that tanh saturates in some rows
  const at::Tensor head = at::randn({64, 12}) * 3.0;
  const at::Tensor noise = at::randn({64, 6});
  const at::Tensor weights = at::randn({64, 6});
  const at::Tensor log_prob_weights = at::randn({64});
  for (int mode = 0; mode < 3; ++mode) {
    SCOPED_TRACE(mode == 0 ? "action and log_prob" : mode == 1 ? "action only" : "log_prob only");
    at::Tensor fused_head = head.clone().requires_grad_(true);
    at::Tensor composite_head = head.clone().requires_grad_(true);
    const auto run = [&](const at::Tensor& h, bool fused) {
      const at::Tensor mean = h.narrow(1, 0, 6);
      const at::Tensor log_std = h.narrow(1, 6, 6).clamp(-20.0, 2.0);
      const SquashedSample s = fused ? SampleSquashedGaussian(mean, log_std, noise)
                                     : SampleSquashedGaussianComposite(mean, log_std, noise);
      at::Tensor loss = at::zeros({});
      if (mode != 2) loss = loss + (s.action * weights).sum();
      if (mode != 1) loss = loss + (s.log_prob * log_prob_weights).sum();
      loss.backward();
      return s;
    };
    const SquashedSample fused = run(fused_head, true);
    const SquashedSample composite = run(composite_head, false);
    EXPECT_TRUE(at::allclose(fused.action, composite.action, 1e-6, 1e-6));
    EXPECT_TRUE(at::allclose(fused.log_prob, composite.log_prob, 1e-5, 1e-5))
        << (fused.log_prob - composite.log_prob).abs().max().item<float>();
    EXPECT_TRUE(at::allclose(fused_head.grad(), composite_head.grad(), 1e-5, 1e-5))
        << (fused_head.grad() - composite_head.grad()).abs().max().item<float>();
    EXPECT_GT(fused_head.grad().abs().sum().item<float>(), 1.0f);
  }
  // the log-probability of a sample deep in the tails stays finite
  const SquashedSample far =
      SampleSquashedGaussian(at::full({1, 2}, 40.0), at::zeros({1, 2}), at::zeros({1, 2}));
  EXPECT_TRUE(at::isfinite(far.log_prob).all().item<bool>());
  EXPECT_FLOAT_EQ(far.action[0][0].item<float>(), 1.0f);
}

TEST(ParameterBlockTest, ParametersAreViewsOfOneFlatTensorAndGradientsLandInFlatGrad) {
  ParameterBlock block;
  const int w = block.Declare("w", {2, 3}, {ParameterBlock::Init::kUniform, 0.5});
  const int b = block.Declare("b", {2}, {ParameterBlock::Init::kConstant, 0.25});
  block.Allocate(at::kCPU, /*requires_grad=*/true);
  at::Generator gen = at::detail::createCPUGenerator(7);
  block.Initialize(gen);
  EXPECT_EQ(block.numel(), 8);
  EXPECT_TRUE(at::all(block.param(w).abs() <= 0.5).item<bool>());
  EXPECT_TRUE(at::allclose(block.param(b), at::full({2}, 0.25)));
  {
    at::NoGradGuard no_grad;
    block.flat().fill_(1.0);
  }
  EXPECT_TRUE(at::allclose(block.param(w), at::ones({2, 3})));
  (block.param(w).sum() * 2 + block.param(b).sum()).backward();
  EXPECT_TRUE(at::allclose(block.flat_grad().slice(0, 0, 6), at::full({6}, 2.0)));
  EXPECT_TRUE(at::allclose(block.flat_grad().slice(0, 6, 8), at::ones({2})));
  block.ZeroGrad();
  EXPECT_EQ(block.flat_grad().abs().sum().item<float>(), 0.0f);
}

TEST(ParameterBlockTest, GradientIntoReplacesFlatGradWithTheLossGradient) {
  ParameterBlock block;
  const int w = block.Declare("w", {3, 4}, {ParameterBlock::Init::kUniform, 0.5});
  const int unused = block.Declare("unused", {2}, {ParameterBlock::Init::kConstant, 1.0});
  const int b = block.Declare("b", {3}, {ParameterBlock::Init::kUniform, 0.5});
  block.Allocate(at::kCPU, /*requires_grad=*/true);
  at::Generator gen = at::detail::createCPUGenerator(11);
  block.Initialize(gen);
  const at::Tensor x = at::randn({5, 4}, gen);
  // a network-like loss: a product (its weight gradient a transposed product), a bias, a
  // nonlinearity, a reduction
  auto loss = [&] {
    return at::relu(at::addmm(block.param(b), x, block.param(w).t())).square().mean();
  };
  loss().backward();  // the reference: accumulated into zeroed .grad views
  const at::Tensor expected = block.flat_grad().clone();
  block.flat_grad().fill_(7.0);  // stale contents, the unused parameter's slot included
  block.GradientInto(loss());
  EXPECT_TRUE(at::equal(block.flat_grad(), expected))
      << block.flat_grad() << " against " << expected;
  EXPECT_TRUE(at::equal(block.flat_grad().slice(0, 12, 14), at::zeros({2})));
  EXPECT_GT(block.flat_grad().abs().sum().item<float>(), 0.0f);
  // the parameters' .grad stay views of flat_grad() (autograd replaced none of them)
  EXPECT_EQ(block.param(w).grad().data_ptr(), block.flat_grad().data_ptr());
  EXPECT_TRUE(at::equal(block.param(unused).grad(), at::zeros({2})));
  EXPECT_TRUE(at::equal(block.param(b).grad(), expected.slice(0, 14, 17)));
}

TEST(ParameterBlockTest, GradientShardsShareTheWeightsButKeepTheirOwnGradients) {
  ParameterBlock block;
  const int w = block.Declare("w", {2, 3}, {ParameterBlock::Init::kConstant, 1.0});
  block.Allocate(at::kCPU, /*requires_grad=*/true);
  at::Generator gen = at::detail::createCPUGenerator(7);
  block.Initialize(gen);
  ParameterBlock& shard = block.GradientShard(1);
  EXPECT_EQ(&block.GradientShard(1), &shard);  // kept, not rebuilt
  EXPECT_EQ(shard.size(), block.size());
  EXPECT_EQ(shard.name(w), "w");
  // the same storage: an update through the block is what the shard computes with
  {
    at::NoGradGuard no_grad;
    block.flat().mul_(3.0);
  }
  EXPECT_TRUE(at::allclose(shard.param(w), at::full({2, 3}, 3.0)));
  // backward through each lands in its own flat gradient only
  (block.param(w).sum() * 2).backward();
  (shard.param(w).sum() * 5).backward();
  EXPECT_TRUE(at::allclose(block.flat_grad(), at::full({6}, 2.0)));
  EXPECT_TRUE(at::allclose(shard.flat_grad(), at::full({6}, 5.0)));
  shard.ZeroGrad();
  EXPECT_EQ(shard.flat_grad().abs().sum().item<float>(), 0.0f);
  EXPECT_TRUE(at::allclose(block.flat_grad(), at::full({6}, 2.0)));
  // a second shard is a third set of leaves
  ParameterBlock& second = block.GradientShard(2);
  EXPECT_NE(&second, &shard);
  EXPECT_EQ(second.flat().data_ptr(), block.flat().data_ptr());
  EXPECT_NE(second.flat_grad().data_ptr(), shard.flat_grad().data_ptr());
}

TEST(QEnsembleTest, EachMemberAloneMatchesItsRowOfTheBatchedForward) {
  QEnsemble q(/*obs_dim=*/4, /*action_dim=*/2, Resolved({8, 8}), /*ensemble=*/3,
              NetworkOptions{at::kCPU, /*trainable=*/false, GemmBackend::kAten});
  at::Generator gen = at::detail::createCPUGenerator(11);
  q.params().Initialize(gen);
  const at::Tensor obs = at::randn({5, 4});
  const at::Tensor act = at::rand({5, 2}) * 2 - 1;
  const at::Tensor all = q.Forward(obs, act);
  ASSERT_EQ(all.sizes(), (std::vector<int64_t>{3, 5}));
  for (int k = 0; k < 3; ++k) {
    EXPECT_TRUE(at::allclose(q.ForwardMember(k, obs, act), all[k], 1e-5, 1e-5));
  }
  // distinct members: their initialisations differ
  EXPECT_FALSE(at::allclose(all[0], all[1]));
}

TEST(PolicyNetworkTest, NamedParametersArePyTorchsNamesAndShapes) {
  PolicyNetwork pi(/*input_dim=*/5, /*output_dim=*/2, Resolved({16}),
                   PolicyNetwork::Head::kSquashedGaussian,
                   NetworkOptions{at::kCPU, /*trainable=*/false, GemmBackend::kAten});
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  for (const auto& [name, t] : pi.NamedParameters()) {
    shapes.emplace_back(name, t.sizes().vec());
  }
  EXPECT_THAT(
      shapes,
      ElementsAre(Pair("trunk.0.weight", ElementsAre(16, 5)), Pair("trunk.0.bias", ElementsAre(16)),
                  Pair("mean.weight", ElementsAre(2, 16)), Pair("mean.bias", ElementsAre(2)),
                  Pair("log_std.weight", ElementsAre(2, 16)),
                  Pair("log_std.bias", ElementsAre(2))));
  const PolicyNetwork::Output out = pi.Forward(at::randn({3, 5}));
  EXPECT_EQ(out.mean.sizes(), (std::vector<int64_t>{3, 2}));
  EXPECT_TRUE(at::all(out.log_std >= -20).item<bool>());
  EXPECT_TRUE(at::all(out.log_std <= 2).item<bool>());
  // mean and log σ (before its clamp) are the halves of `head`, which the sampler's GPU node
  // reads; on the CPU the Output call is the two-tensor call
  ASSERT_TRUE(out.head.defined());
  EXPECT_EQ(out.head.sizes(), (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(out.mean.data_ptr(), out.head.data_ptr());
  EXPECT_TRUE(at::equal(out.log_std, out.head.narrow(1, 2, 2).clamp(-20, 2)));
  const at::Tensor noise = at::randn({3, 2});
  const SquashedSample from_output = SampleSquashedGaussian(out, noise);
  const SquashedSample from_views = SampleSquashedGaussian(out.mean, out.log_std, noise);
  EXPECT_TRUE(at::equal(from_output.action, from_views.action));
  EXPECT_TRUE(at::equal(from_output.log_prob, from_views.log_prob));
}

}  // namespace
}  // namespace prl::models
