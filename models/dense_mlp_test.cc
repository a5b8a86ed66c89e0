#include "models/dense_mlp.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "models/gemm.h"

namespace prl::models::dense {
namespace {

// A plain double-precision reference of the same network: y = x·Wᵀ + b, ReLU on the trunk.
struct Reference {
  std::vector<std::vector<double>> acts;  // acts[0] = x, then each trunk layer's output
  std::vector<std::vector<double>> heads;
};

std::vector<double> Linear(const std::vector<float>& p, const LinearSlot& s,
                           const std::vector<double>& x, int64_t rows, bool relu) {
  std::vector<double> y(static_cast<size_t>(rows * s.out));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < s.out; ++o) {
      double v = p[s.bias_offset + o];
      for (int64_t i = 0; i < s.in; ++i) v += x[r * s.in + i] * p[s.weight_offset + o * s.in + i];
      y[r * s.out + o] = relu ? std::max(v, 0.0) : v;
    }
  }
  return y;
}

// Lays out layers of the given widths (trunk: in → widths...; heads: last width → head_dims)
// in a flat buffer, weights then bias per layer.
void Layout(int64_t in, const std::vector<int64_t>& widths, const std::vector<int64_t>& head_dims,
            std::vector<LinearSlot>* trunk, std::vector<LinearSlot>* heads, int64_t* numel) {
  int64_t offset = 0;
  auto add = [&](int64_t from, int64_t to) {
    LinearSlot s{offset, offset + to * from, from, to};
    offset += to * from + to;
    return s;
  };
  for (int64_t w : widths) {
    trunk->push_back(add(in, w));
    in = w;
  }
  for (int64_t d : head_dims) heads->push_back(add(in, d));
  *numel = offset;
}

TEST(DenseMlpTest, ForwardAndBackwardMatchADoublePrecisionReference) {
  if (!FastSgemmAvailable()) GTEST_SKIP() << "no oneDNN sgemm in this process";
  const int64_t rows = 37, in = 5;
  std::vector<LinearSlot> trunk, heads;
  int64_t numel = 0;
  Layout(in, {16, 12}, {3, 2}, &trunk, &heads, &numel);
  std::mt19937 rng(4);
  std::uniform_real_distribution<float> u(-0.5f, 0.5f);
  std::vector<float> params(static_cast<size_t>(numel));
  for (float& p : params) p = u(rng);
  // the inputs sit in a wider buffer: row stride 7 (the first 5 columns are x)
  const int64_t ld_x = 7;
  std::vector<float> x(static_cast<size_t>(rows * ld_x));
  for (float& v : x) v = u(rng) * 4.0f;
  std::vector<double> x_ref(static_cast<size_t>(rows * in));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < in; ++i) x_ref[r * in + i] = x[r * ld_x + i];
  }

  DenseMlp net(trunk, heads);
  ASSERT_TRUE(net.Forward(params.data(), x.data(), ld_x, rows));
  std::vector<std::vector<double>> acts{x_ref};
  for (const LinearSlot& s : trunk) acts.push_back(Linear(params, s, acts.back(), rows, true));
  for (int h = 0; h < 2; ++h) {
    const std::vector<double> want = Linear(params, heads[h], acts.back(), rows, false);
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_NEAR(net.head(h)[i], want[i], 1e-4 * std::max(1.0, std::abs(want[i])))
          << h << " " << i;
    }
  }

  // the loss Σ c_h ⊙ head_h, so ∂loss/∂head_h = c_h; the reference's gradients by central
  // differences in double precision
  std::vector<std::vector<float>> c(2);
  for (int h = 0; h < 2; ++h) {
    c[h].resize(static_cast<size_t>(rows * heads[h].out));
    for (float& v : c[h]) v = u(rng);
  }
  auto loss = [&](const std::vector<float>& p, const std::vector<double>& xr) {
    std::vector<std::vector<double>> a{xr};
    for (const LinearSlot& s : trunk) a.push_back(Linear(p, s, a.back(), rows, true));
    double total = 0;
    for (int h = 0; h < 2; ++h) {
      const std::vector<double> y = Linear(p, heads[h], a.back(), rows, false);
      for (size_t i = 0; i < y.size(); ++i) total += c[h][i] * y[i];
    }
    return total;
  };
  std::vector<float> grads(static_cast<size_t>(numel), -7.0f);  // overwritten, every element
  const int64_t ld_gx = 9;
  std::vector<float> g_x(static_cast<size_t>(rows * ld_gx), 0.0f);
  ASSERT_TRUE(
      net.Backward(params.data(), {c[0].data(), c[1].data()}, grads.data(), g_x.data(), ld_gx));
  // the network is piecewise linear in each parameter: a step this small stays on one piece for
  // all 37 rows (at 1e-3, ReLU kinks crossed inside the step throw off a few dozen quotients), so
  // the difference quotient is exact up to rounding
  const float step = 1e-5f;
  for (int64_t k = 0; k < numel; ++k) {
    std::vector<float> plus = params, minus = params;
    plus[k] += step;
    minus[k] -= step;
    const double want = (loss(plus, x_ref) - loss(minus, x_ref)) /
                        (static_cast<double>(plus[k]) - static_cast<double>(minus[k]));
    EXPECT_NEAR(grads[k], want, 1e-3 * std::max(1.0, std::abs(want))) << "parameter " << k;
  }
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < in; ++i) {
      std::vector<double> plus = x_ref, minus = x_ref;
      plus[r * in + i] += 1e-4;
      minus[r * in + i] -= 1e-4;
      const double want = (loss(params, plus) - loss(params, minus)) / 2e-4;
      EXPECT_NEAR(g_x[r * ld_gx + i], want, 1e-3 * std::max(1.0, std::abs(want)))
          << "x[" << r << ", " << i << "]";
    }
    // the stride's padding is left alone
    for (int64_t i = in; i < ld_gx; ++i) EXPECT_EQ(g_x[r * ld_gx + i], 0.0f);
  }

  // without parameter gradients (grads null), the input's gradient is the same
  std::vector<float> g_x_only(static_cast<size_t>(rows * ld_gx), 0.0f);
  ASSERT_TRUE(
      net.Backward(params.data(), {c[0].data(), c[1].data()}, nullptr, g_x_only.data(), ld_gx));
  EXPECT_EQ(g_x_only, g_x);

  // a second, smaller batch through the same buffers gives that batch's values
  ASSERT_TRUE(net.Forward(params.data(), x.data(), ld_x, 3));
  const std::vector<double> want = Linear(
      params, heads[0],
      [&] {
        std::vector<std::vector<double>> a{
            std::vector<double>(x_ref.begin(), x_ref.begin() + 3 * in)};
        for (const LinearSlot& s : trunk) a.push_back(Linear(params, s, a.back(), 3, true));
        return a.back();
      }(),
      3, false);
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(net.head(0)[i], want[i], 1e-4 * std::max(1.0, std::abs(want[i])));
  }
}

}  // namespace
}  // namespace prl::models::dense
