#include "models/cpu_kernels.h"

#include <algorithm>
#include <cmath>

namespace prl::models::kernels {

// One clone per instruction set; the loops vectorise (BUILD: -fvect-cost-model=dynamic allows the
// runtime alias checks and scalar tails they need at -O2).
#define PRL_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

PRL_VECTOR_CLONES void BiasActivateRows(float* __restrict y, const float* __restrict b,
                                        int64_t rows, int64_t cols, bool relu) {
  for (int64_t r = 0; r < rows; ++r) {
    float* __restrict row = y + r * cols;
    if (relu) {
      for (int64_t j = 0; j < cols; ++j) row[j] = std::max(row[j] + b[j], 0.0f);
    } else {
      for (int64_t j = 0; j < cols; ++j) row[j] += b[j];
    }
  }
}

PRL_VECTOR_CLONES void BiasGradRows(const float* __restrict g, const float* __restrict y,
                                    float* __restrict masked, float* __restrict sum, int64_t rows,
                                    int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* __restrict gr = g + r * cols;
    if (y != nullptr) {
      const float* __restrict yr = y + r * cols;
      float* __restrict mr = masked + r * cols;
      for (int64_t j = 0; j < cols; ++j) {
        const float v = yr[j] <= 0.0f ? 0.0f : gr[j];  // a NaN passes, as in ATen's relu
        mr[j] = v;
        sum[j] += v;
      }
    } else {
      for (int64_t j = 0; j < cols; ++j) sum[j] += gr[j];
    }
  }
}

namespace {
// ATen's softplus with β = 1 and its default threshold 20.
inline float Softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }
constexpr float kLog2 = 0.693147180559945309f;
constexpr double kHalfLog2Pi = 0.918938533204672742;
}  // namespace

void SquashedGaussianForward(const float* __restrict mean, const float* __restrict log_std,
                             const float* __restrict noise, float* __restrict action,
                             float* __restrict log_prob, int64_t rows, int64_t dims) {
  const float constant = static_cast<float>(static_cast<double>(dims) * kHalfLog2Pi);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r * dims;
    float sum = 0.0f;
    for (int64_t j = 0; j < dims; ++j) {
      const float l = log_std[o + j], e = noise[o + j];
      const float u = mean[o + j] + std::exp(l) * e;
      action[o + j] = std::tanh(u);
      sum += e * e * -0.5f - l - (kLog2 - u - Softplus(u * -2.0f)) * 2.0f;
    }
    log_prob[r] = sum - constant;
  }
}

PRL_VECTOR_CLONES void SquashedGaussianBackward(
    const float* __restrict g_action, const float* __restrict g_log_prob,
    const float* __restrict log_std, const float* __restrict noise, const float* __restrict action,
    float* __restrict g_mean, float* __restrict g_log_std, int64_t rows, int64_t dims) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r * dims;
    const float glp = g_log_prob != nullptr ? g_log_prob[r] : 0.0f;
    for (int64_t j = 0; j < dims; ++j) {
      const float a = action[o + j];
      const float ga = g_action != nullptr ? g_action[o + j] : 0.0f;
      const float gu = ga * (1.0f - a * a) + glp * 2.0f * a;
      g_mean[o + j] = gu;
      g_log_std[o + j] = gu * std::exp(log_std[o + j]) * noise[o + j] - glp;
    }
  }
}

AdamScalars MakeAdamScalars(double lr, double beta1, double beta2, double eps, int64_t step) {
  const double t = static_cast<double>(step);
  const double bias_correction1 = 1.0 - std::pow(beta1, t);
  const double bias_correction2 = 1.0 - std::pow(beta2, t);
  return {static_cast<float>(beta1),
          static_cast<float>(1.0 - beta1),
          static_cast<float>(beta2),
          static_cast<float>(1.0 - beta2),
          static_cast<float>(std::sqrt(bias_correction2)),
          static_cast<float>(eps),
          static_cast<float>(-lr / bias_correction1)};
}

PRL_VECTOR_CLONES void AdamStep(float* __restrict p, float* __restrict m, float* __restrict v,
                                const float* __restrict g, int64_t n, const AdamScalars& s) {
  const float b1 = s.beta1, c1 = s.one_minus_beta1, b2 = s.beta2, c2 = s.one_minus_beta2;
  const float root_bc2 = s.sqrt_bias_correction2, eps = s.eps, step = s.neg_step_size;
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float mi = m[i] * b1 + c1 * gi;
    const float vi = v[i] * b2 + c2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] += step * mi / (std::sqrt(vi) / root_bc2 + eps);
  }
}

TdLossStats TdLossForward(const float* __restrict q, const float* __restrict target,
                          const float* __restrict weight, int64_t members, int64_t rows,
                          float* __restrict td_abs) {
  double loss = 0, q_sum = 0;
  for (int64_t b = 0; b < rows; ++b) {
    float squared = 0.0f, absolute = 0.0f;
    for (int64_t k = 0; k < members; ++k) {
      const float qk = q[k * rows + b];
      const float e = qk - target[b];
      const float s = e * e;
      squared += weight != nullptr ? s * weight[b] : s;
      absolute += std::fabs(e);
      q_sum += qk;
    }
    td_abs[b] = absolute / static_cast<float>(members);
    loss += squared;
  }
  const double n = static_cast<double>(rows);
  return {static_cast<float>(loss / n * 0.5), static_cast<float>(q_sum / (n * members))};
}

void TdLossBackward(float g, const float* __restrict q, const float* __restrict target,
                    const float* __restrict weight, int64_t members, int64_t rows,
                    float* __restrict g_q) {
  const float mean_grad = g * 0.5f / static_cast<float>(rows);
  for (int64_t b = 0; b < rows; ++b) {
    const float c = weight != nullptr ? mean_grad * weight[b] : mean_grad;
    const float t = target[b];
    for (int64_t k = 0; k < members; ++k) {
      const int64_t i = k * rows + b;
      g_q[i] = c * (2.0f * (q[i] - t));
    }
  }
}

namespace {
// One step of min over a row as LibTorch's amin takes it: a NaN wins (and stays).
inline float RowMinStep(float low, float v) { return (v < low || v != v) ? v : low; }
}  // namespace

float ActorLossForward(float alpha, const float* __restrict regularizer, const float* __restrict q,
                       int64_t members, int64_t rows) {
  double sum = 0;
  for (int64_t b = 0; b < rows; ++b) {
    float low = q[b];
    for (int64_t k = 1; k < members; ++k) low = RowMinStep(low, q[k * rows + b]);
    sum += alpha * regularizer[b] - low;
  }
  return static_cast<float>(sum / static_cast<double>(rows));
}

void ActorLossBackward(float g, float alpha, const float* __restrict q, int64_t members,
                       int64_t rows, float* __restrict g_reg, float* __restrict g_q) {
  const float m = g / static_cast<float>(rows);
  for (int64_t b = 0; b < rows; ++b) {
    g_reg[b] = m * alpha;
    float low = q[b];
    for (int64_t k = 1; k < members; ++k) low = RowMinStep(low, q[k * rows + b]);
    int64_t ties = 0;
    for (int64_t k = 0; k < members; ++k) ties += q[k * rows + b] == low ? 1 : 0;
    const float share = -m / static_cast<float>(ties);
    for (int64_t k = 0; k < members; ++k) {
      g_q[k * rows + b] = share * (q[k * rows + b] == low ? 1.0f : 0.0f);
    }
  }
}

void TdTarget(const float* __restrict q, int64_t members, int64_t rows, float alpha,
              const float* __restrict regularizer, const float* __restrict reward,
              const float* __restrict discount, float reward_scale, float gamma,
              float* __restrict target) {
  for (int64_t b = 0; b < rows; ++b) {
    float value = q[b];
    for (int64_t k = 1; k < members; ++k) value = RowMinStep(value, q[k * rows + b]);
    if (regularizer != nullptr) value = value - alpha * regularizer[b];
    const float r = reward_scale != 1.0f ? reward[b] * reward_scale : reward[b];
    target[b] = r + gamma * discount[b] * value;
  }
}

void TemperatureTerms(const float* __restrict regularizer, int64_t rows, float log_alpha,
                      float target, bool negate_entropy, float* __restrict out) {
  double sum = 0;
  for (int64_t b = 0; b < rows; ++b) sum += regularizer[b];
  const float mean = static_cast<float>(sum / static_cast<double>(rows));
  const float gap = mean + target;
  out[0] = mean;
  out[1] = -(log_alpha * gap);
  out[2] = -gap;
  out[3] = negate_entropy ? -mean : mean;
}

#undef PRL_VECTOR_CLONES

}  // namespace prl::models::kernels
