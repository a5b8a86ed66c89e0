// The arithmetic of PRL's CUDA kernels (models/cuda_kernels.cu) on the host, against the CPU's
// kernels (models/cpu_kernels.cc): the per-element functions the kernels run are __host__
// __device__, so nvcc compiles them here for the CPU too. Needs nvcc, not a GPU: a check of the
// formulas and their order of operations on any machine with the toolkit; what the device makes
// of them (its rounding, launch shapes, strides) is cuda_kernels_test's, on a GPU.
//
//   scripts/cuda_build.sh runs it (its check step); by hand:
//   nvcc -O2 -std=c++17 -I. -Xcompiler -ffp-contract=off,-fno-math-errno \
//       models/cuda_kernels_host_check.cu models/cpu_kernels.cc -o /tmp/check && /tmp/check
//
// Exit status 0 when every family agrees: Adam, the bias/ReLU epilogue, the TD loss's gradient
// and per-row errors and the actor loss's gradients bit for bit, the squashed Gaussian's forward
// and backward within 1e-6 (the host's and glibc's vector expf and tanhf round differently), TD3's
// target action equal to its formula.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "models/cpu_kernels.h"
#include "models/cuda_kernels.cu"  // the element functions live in its anonymous namespace

namespace prl::models {
namespace {

std::vector<float> Normal(std::mt19937& rng, int64_t n, float scale) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = normal(rng) * scale;
  return v;
}

int64_t Differ(const std::vector<float>& a, const std::vector<float>& b) {
  int64_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += a[i] != b[i];
  return n;
}

double RelativeGap(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0, scale = 1;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return worst / scale;
}

bool CheckAdam(std::mt19937& rng) {
  const int64_t n = 100003;
  std::vector<float> p = Normal(rng, n, 1.0f), m = Normal(rng, n, 1e-2f), v = Normal(rng, n, 1e-2f);
  for (float& x : v) x *= x;
  std::vector<float> p2 = p, m2 = m, v2 = v;
  for (int step = 1; step <= 20; ++step) {
    std::vector<float> g = Normal(rng, n, 1.0f);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    for (float& x : g) x *= std::exp(normal(rng));  // gradients of mixed scales
    const kernels::AdamScalars s = kernels::MakeAdamScalars(1e-3, 0.9, 0.999, 1e-8, step);
    kernels::AdamStep(p.data(), m.data(), v.data(), g.data(), n, s);
    const cuda_kernels::AdamConstants c{s.beta1, s.one_minus_beta1, s.beta2, s.one_minus_beta2,
                                        s.eps};
    for (int64_t i = 0; i < n; ++i) {
      cuda_kernels::AdamElement(i, p2.data(), m2.data(), v2.data(), g.data(), c, s.neg_step_size,
                                s.sqrt_bias_correction2);
    }
  }
  const int64_t differ = Differ(p, p2) + Differ(m, m2) + Differ(v, v2);
  std::printf("Adam: %lld of %lld values differ from the CPU pass after 20 steps (allowed 0)\n",
              static_cast<long long>(differ), static_cast<long long>(3 * n));
  return differ == 0;
}

bool CheckBiasRelu(std::mt19937& rng) {
  const int64_t members = 2, rows = 37, cols = 41;
  const std::vector<float> y = Normal(rng, members * rows * cols, 1.0f);
  const std::vector<float> b = Normal(rng, members * cols, 1.0f);
  std::vector<float> cpu = y, host = y;
  for (int64_t e = 0; e < members; ++e) {
    kernels::BiasActivateRows(cpu.data() + e * rows * cols, b.data() + e * cols, rows, cols, true);
  }
  for (int64_t i = 0; i < members * rows * cols; ++i) {
    cuda_kernels::BiasReluElement(i, host.data(), b.data(), rows, cols);
  }
  const int64_t differ = Differ(cpu, host);
  std::printf("bias/ReLU: %lld of %lld values differ from the CPU pass (allowed 0)\n",
              static_cast<long long>(differ), static_cast<long long>(cpu.size()));
  return differ == 0;
}

// The squashed Gaussian from a policy head's layout, [mean | log σ] rows of 2·dims, against the
// CPU kernels on the halves: as two views (log σ in range, no clamp in the kernels, the
// gradients in two tensors) and from the head itself (log σ below, on the edge of and above
// [-20, 2] and NaN, clamped in the kernels; the gradient in one tensor, none where the clamp
// passes none).
bool CheckSquashedGaussian(std::mt19937& rng, bool from_head) {
  const int64_t rows = 301, dims = 6, width = 2 * dims;
  const float lo = from_head ? -20.0f : -INFINITY, hi = from_head ? 2.0f : INFINITY;
  std::vector<float> head = Normal(rng, rows * width, from_head ? 2.0f : 1.5f);
  for (int64_t r = 0; r < rows; ++r) {
    float* l = head.data() + r * width + dims;
    if (!from_head) {
      for (int64_t j = 0; j < dims; ++j) l[j] = std::min(std::max(l[j], -5.0f), 2.0f);
      continue;
    }
    if (r % 7 == 0) l[0] = -25.0f;          // below the range
    if (r % 11 == 0) l[1] = hi;             // on its edge: passes
    if (r % 13 == 0) l[2] = std::nanf("");  // NaN: no gradient
  }
  auto passes = [&](float l) { return !from_head || (l >= lo && l <= hi); };
  std::vector<float> mean(rows * dims), log_std(rows * dims);  // the CPU's contiguous halves
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < dims; ++j) {
      const float l = head[r * width + dims + j];
      mean[r * dims + j] = head[r * width + j];
      log_std[r * dims + j] = std::isnan(l) ? l : std::min(std::max(l, lo), hi);
    }
  }
  const std::vector<float> noise = Normal(rng, rows * dims, 1.0f);
  std::vector<float> action(rows * dims), log_prob(rows), action2(rows * dims), log_prob2(rows);
  kernels::SquashedGaussianForward(mean.data(), log_std.data(), noise.data(), action.data(),
                                   log_prob.data(), rows, dims);
  const float constant = static_cast<float>(static_cast<double>(dims) * cuda_kernels::kHalfLog2Pi);
  for (int64_t r = 0; r < rows; ++r) {
    cuda_kernels::ForwardRow(r, head.data(), width, head.data() + dims, width, noise.data(),
                             action2.data(), log_prob2.data(), dims, constant, lo, hi);
  }
  const std::vector<float> g_action = Normal(rng, rows * dims, 1.0f);
  const std::vector<float> g_log_prob = Normal(rng, rows, 1.0f);
  std::vector<float> g_mean(rows * dims), g_log_std(rows * dims), g_head(rows * width),
      g_head2(rows * width);
  kernels::SquashedGaussianBackward(g_action.data(), g_log_prob.data(), log_std.data(),
                                    noise.data(), action.data(), g_mean.data(), g_log_std.data(),
                                    rows, dims);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < dims; ++j) {
      g_head[r * width + j] = g_mean[r * dims + j];
      g_head[r * width + dims + j] =
          passes(head[r * width + dims + j]) ? g_log_std[r * dims + j] : 0.0f;
    }
  }
  // the kernels' gradient: into the head's layout, or into two tensors of rows `dims` apart
  std::vector<float> g_mean2(rows * dims), g_log_std2(rows * dims);
  for (int64_t i = 0; i < rows * dims; ++i) {
    cuda_kernels::BackwardElement(i, g_action.data(), g_log_prob.data(), head.data() + dims, width,
                                  noise.data(), action.data(),
                                  from_head ? g_head2.data() : g_mean2.data(),
                                  from_head ? g_head2.data() + dims : g_log_std2.data(),
                                  from_head ? width : dims, dims, lo, hi);
  }
  if (!from_head) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < dims; ++j) {
        g_head2[r * width + j] = g_mean2[r * dims + j];
        g_head2[r * width + dims + j] = g_log_std2[r * dims + j];
      }
    }
  }
  // NaNs must sit in the same places (counted), then are left out; the rest within 1e-6
  int64_t nan_differ = 0;
  double worst = 0;
  for (const auto& [kernel, cpu] : {std::pair{&action2, &action}, std::pair{&log_prob2, &log_prob},
                                    std::pair{&g_head2, &g_head}}) {
    std::vector<float> x = *kernel, y = *cpu;
    for (size_t i = 0; i < x.size(); ++i) {
      nan_differ += std::isnan(x[i]) != std::isnan(y[i]);
      if (std::isnan(x[i]) || std::isnan(y[i])) x[i] = y[i] = 0.0f;
    }
    worst = std::max(worst, RelativeGap(x, y));
  }
  std::printf(
      "squashed Gaussian %s: largest relative difference %.2e from the CPU kernels (allowed "
      "1e-6), %lld NaNs in other places (allowed 0)\n",
      from_head ? "from the head (log sigma clamped in the kernels)" : "from two views", worst,
      static_cast<long long>(nan_differ));
  return worst <= 1e-6 && nan_differ == 0;
}

bool CheckTdLoss(std::mt19937& rng) {
  int64_t differ = 0, values = 0;
  double worst = 0;
  for (const int64_t rows : {int64_t{256}, int64_t{100}, int64_t{37}}) {
    for (const bool weighted : {false, true}) {
      const int64_t members = 2;
      const std::vector<float> q = Normal(rng, members * rows, 20.0f);
      const std::vector<float> target = Normal(rng, rows, 20.0f);
      std::vector<float> weight = Normal(rng, rows, 1.0f);
      for (float& w : weight) w = std::abs(w) + 0.25f;
      const float* w = weighted ? weight.data() : nullptr;
      std::vector<float> td_abs(rows), td_abs2(rows);
      const kernels::TdLossStats stats =
          kernels::TdLossForward(q.data(), target.data(), w, members, rows, td_abs.data());
      double loss = 0, q_sum = 0;
      for (int64_t b = 0; b < rows; ++b) {
        loss += cuda_kernels::TdLossRow(b, q.data(), target.data(), w, members, rows,
                                        td_abs2.data(), &q_sum);
      }
      const double n = static_cast<double>(rows);
      worst = std::max(worst, std::abs(loss / n * 0.5 - stats.loss) / stats.loss);
      worst = std::max(worst, std::abs(q_sum / (n * members) - stats.q_mean) /
                                  (1.0 + std::abs(static_cast<double>(stats.q_mean))));
      for (const float g : {1.0f, 0.6029f, 3.3f}) {
        std::vector<float> g_q(members * rows), g_q2(members * rows);
        kernels::TdLossBackward(g, q.data(), target.data(), w, members, rows, g_q.data());
        for (int64_t i = 0; i < members * rows; ++i) {
          const int64_t b = i % rows;
          g_q2[i] = cuda_kernels::TdLossGradElement(cuda_kernels::TdLossRowScale(g, rows, w, b),
                                                    q[i], target[b]);
        }
        differ += Differ(g_q, g_q2);
        values += static_cast<int64_t>(g_q.size());
      }
      differ += Differ(td_abs, td_abs2);
      values += rows;
    }
  }
  std::printf(
      "TD loss: %lld of %lld gradient and per-row values differ from the CPU pass (allowed 0); "
      "loss and mean q within %.2e (allowed 1e-6)\n",
      static_cast<long long>(differ), static_cast<long long>(values), worst);
  return differ == 0 && worst <= 1e-6;
}

bool CheckActorLoss(std::mt19937& rng) {
  int64_t differ = 0, values = 0;
  for (const int64_t rows : {int64_t{256}, int64_t{100}, int64_t{37}}) {
    const int64_t members = 2;
    std::vector<float> q = Normal(rng, members * rows, 20.0f);
    for (int64_t b = 0; b < rows; b += 3) q[rows + b] = q[b];  // ties
    const std::vector<float> regularizer = Normal(rng, rows, 3.0f);
    for (const float g : {1.0f, 0.6029f, 3.3f}) {
      const float alpha = 0.2137f;
      std::vector<float> g_reg(rows), g_q(members * rows), g_reg2(rows), g_q2(members * rows);
      kernels::ActorLossBackward(g, alpha, q.data(), members, rows, g_reg.data(), g_q.data());
      const float m = cuda_kernels::Div(g, static_cast<float>(rows));
      for (int64_t b = 0; b < rows; ++b) {
        cuda_kernels::ActorLossBackwardRow(b, m, alpha, q.data(), members, rows, g_reg2.data(),
                                           g_q2.data());
      }
      differ += Differ(g_reg, g_reg2) + Differ(g_q, g_q2);
      values += static_cast<int64_t>(g_reg.size() + g_q.size());
    }
  }
  std::printf("actor loss: %lld of %lld gradient values differ from the CPU pass (allowed 0)\n",
              static_cast<long long>(differ), static_cast<long long>(values));
  return differ == 0;
}

bool CheckTdTarget(std::mt19937& rng) {
  int64_t differ = 0, values = 0;
  for (const int64_t rows : {int64_t{256}, int64_t{37}}) {
    for (const int64_t members : {int64_t{2}, int64_t{3}}) {
      std::vector<float> q = Normal(rng, members * rows, 20.0f);
      for (int64_t b = 0; b < rows; b += 5) q[rows + b] = q[b];  // ties
      const std::vector<float> regularizer = Normal(rng, rows, 3.0f);
      const std::vector<float> reward = Normal(rng, rows, 2.0f);
      std::vector<float> discount = Normal(rng, rows, 1.0f);
      // ends of episodes, and discounts other than 0 and 1 (where the products' order shows)
      for (float& d : discount) d = d < -1.0f ? 0.0f : std::fmin(std::fabs(d), 1.0f);
      for (const bool soft : {true, false}) {
        for (const float scale : {1.0f, 5.1f}) {
          const float alpha = 0.2137f, gamma = 0.99f;
          const float* r = soft ? regularizer.data() : nullptr;
          std::vector<float> cpu(rows), host(rows);
          kernels::TdTarget(q.data(), members, rows, alpha, r, reward.data(), discount.data(),
                            scale, gamma, cpu.data());
          for (int64_t b = 0; b < rows; ++b) {
            host[b] = cuda_kernels::TdTargetRow(b, q.data(), members, rows, alpha, r, reward.data(),
                                                discount.data(), scale, gamma);
          }
          differ += Differ(cpu, host);
          values += rows;
        }
      }
    }
  }
  std::printf("TD target: %lld of %lld values differ from the CPU pass (allowed 0)\n",
              static_cast<long long>(differ), static_cast<long long>(values));
  return differ == 0;
}

// TD3's target action: the kernel's element function against the formula in plain float
// operations (LibTorch's composite has no CPU kernel of PRL's to compare with), the smoothing and
// the action on both sides of their clamps.
bool CheckTd3TargetAction(std::mt19937& rng) {
  const int64_t n = 4099;
  const std::vector<float> mean = Normal(rng, n, 2.0f), noise = Normal(rng, n, 3.0f);
  const float sigma = 0.2f, clip = 0.5f;
  int64_t differ = 0, smoothing_clamped = 0, action_clamped = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float e = noise[i] * sigma;
    const float smoothing = std::min(std::max(e, -clip), clip);
    const float sum = std::tanh(mean[i]) + smoothing;
    const float want = std::min(std::max(sum, -1.0f), 1.0f);
    differ += cuda_kernels::Td3TargetActionElement(mean[i], noise[i], sigma, clip) != want;
    smoothing_clamped += smoothing != e;
    action_clamped += want != sum;
  }
  std::printf(
      "TD3 target action: %lld of %lld values differ from the formula (allowed 0; smoothing "
      "clamped in %lld, the action in %lld)\n",
      static_cast<long long>(differ), static_cast<long long>(n),
      static_cast<long long>(smoothing_clamped), static_cast<long long>(action_clamped));
  return differ == 0 && smoothing_clamped > 0 && action_clamped > 0;
}

bool CheckTemperatureTerms(std::mt19937& rng) {
  int64_t differ = 0, values = 0;
  for (const int64_t rows : {int64_t{256}, int64_t{37}, int64_t{1}}) {
    const std::vector<float> regularizer = Normal(rng, rows, 3.0f);
    for (const float log_alpha : {-1.7f, 0.31f}) {
      for (const bool negate : {true, false}) {
        std::vector<float> cpu(4), host(4);
        kernels::TemperatureTerms(regularizer.data(), rows, log_alpha, -6.0f, negate, cpu.data());
        // the tail from the CPU's mean (the kernel sums in another order)
        cuda_kernels::TemperatureTail(cpu[0], log_alpha, -6.0f, negate, host.data());
        differ += Differ(cpu, host);
        values += 4;
      }
    }
  }
  std::printf("temperature terms: %lld of %lld values differ from the CPU pass (allowed 0)\n",
              static_cast<long long>(differ), static_cast<long long>(values));
  return differ == 0;
}

}  // namespace
}  // namespace prl::models

int main() {
  std::mt19937 rng(1);
  bool ok = prl::models::CheckAdam(rng);
  ok = prl::models::CheckBiasRelu(rng) && ok;
  ok = prl::models::CheckSquashedGaussian(rng, /*from_head=*/false) && ok;
  ok = prl::models::CheckSquashedGaussian(rng, /*from_head=*/true) && ok;
  ok = prl::models::CheckTdLoss(rng) && ok;
  ok = prl::models::CheckActorLoss(rng) && ok;
  ok = prl::models::CheckTdTarget(rng) && ok;
  ok = prl::models::CheckTemperatureTerms(rng) && ok;
  ok = prl::models::CheckTd3TargetAction(rng) && ok;
  std::printf("%s\n", ok ? "cuda_kernels_host_check: ok" : "cuda_kernels_host_check: FAILED");
  return ok ? 0 : 1;
}
