// A ReLU MLP with linear heads, trained without autograd: the forward and backward passes of a
// network on raw float buffers, with oneDNN's sgemm (models/gemm.h) for the products and the fused
// epilogues of models/cpu_kernels.h, every activation and gradient kept in buffers reused from
// step to step (no allocation once warm, no operator dispatch, no autograd graph).
//
// The CPU fast path of prior training (models/skill_model.cc): a step there is a few hundred
// small operators, and at 128-wide layers LibTorch's per-operator costs are a third of the step.
// The autograd path stays the reference it is tested against (skill_model_test).
//
// No LibTorch headers here. Thread-compatible: one DenseMlp per thread (its buffers are its own);
// the parameters may be shared read-only.
#ifndef PRL_MODELS_DENSE_MLP_H_
#define PRL_MODELS_DENSE_MLP_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace prl::models::dense {

// One linear layer y = x·Wᵀ + b with W [out, in] and b [out] at these offsets of a flat parameter
// buffer (PyTorch's nn.Linear layout); its gradients sit at the same offsets of a flat gradient
// buffer.
struct LinearSlot {
  int64_t weight_offset = 0;
  int64_t bias_offset = 0;
  int64_t in = 0;
  int64_t out = 0;
};

class DenseMlp {
 public:
  // `trunk`: the hidden layers, each followed by ReLU, each layer's `in` the previous one's
  // `out`; `heads`: linear layers (no activation) on the trunk's output. At least one of each.
  DenseMlp(std::vector<LinearSlot> trunk, std::vector<LinearSlot> heads);

  int64_t input_dim() const { return trunk_.front().in; }
  int64_t head_dim(int i) const { return heads_[i].out; }

  // The forward pass of `rows` inputs x [rows, input_dim] (row stride ld_x; x must stay valid
  // until Backward) with the parameters at `params`. Returns false when the product failed
  // (oneDNN unavailable or erring).
  bool Forward(const float* params, const float* x, int64_t ld_x, int64_t rows);
  // Head i's output [rows, head_dim(i)] of the last Forward.
  const float* head(int i) const { return head_out_[i].data(); }

  // The backward pass of the last Forward, given the loss's gradient with respect to each head's
  // output (g_heads[i]: [rows, head_dim(i)], row stride head_dim(i)): writes the gradient of every
  // parameter of this network into `grads` (overwriting; each parameter is used once per pass;
  // null: no parameter gradients, e.g. for the gradient with respect to the input alone) and,
  // when `g_x` is non-null, the gradient with respect to x [rows, input_dim] (row stride
  // ld_gx). Returns false when a product failed.
  bool Backward(const float* params, const std::vector<const float*>& g_heads, float* grads,
                float* g_x, int64_t ld_gx);

 private:
  std::vector<LinearSlot> trunk_, heads_;
  const float* x_ = nullptr;
  int64_t ld_x_ = 0, rows_ = 0;
  std::vector<std::vector<float>> trunk_out_;  // per trunk layer: [rows, out], after ReLU
  std::vector<std::vector<float>> head_out_;   // per head: [rows, out]
  std::vector<float> g_a_, g_b_;               // the backward's running gradient, ping-pong
  std::vector<float> bias_scratch_;            // bias sums when no parameter gradient is wanted
};

// Grows `v` to at least n elements (never shrinks: a step's buffers settle at their largest
// batch) and returns its data.
inline float* Grow(std::vector<float>* v, int64_t n) {
  if (static_cast<int64_t>(v->size()) < n) v->resize(static_cast<size_t>(n));
  return v->data();
}

// The mean squared error of n predictions against their targets: writes
// scale · ∂(mean (pred − target)²)/∂pred = scale · 2·(pred − target)/n into `grad` and returns
// Σ (pred − target)² (accumulated in double).
inline double SquaredErrorWithGradient(const float* pred, const float* target, int64_t n,
                                       float scale, float* grad) {
  const float g = scale * 2.0f / static_cast<float>(n);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float d = pred[i] - target[i];
    sum += static_cast<double>(d) * d;
    grad[i] = g * d;
  }
  return sum;
}

// KL(q ‖ p) of two one-dimensional Gaussians given by mean and log σ (models/prior_model.h's
// DiagonalGaussianKl, element by element) and its partial derivatives.
struct GaussianKl {
  float kl, d_mean_q, d_log_std_q, d_mean_p, d_log_std_p;
};
inline GaussianKl GaussianKlWithGradient(float mean_q, float log_std_q, float mean_p,
                                         float log_std_p) {
  // ½·exp(2(l_q − l_p)) + ½·(μ_q − μ_p)²·exp(−2 l_p) − (l_q − l_p) − ½
  const float ratio = std::exp((log_std_q - log_std_p) * 2.0f);
  const float inv_var_p = std::exp(log_std_p * -2.0f);
  const float diff = mean_q - mean_p;
  const float scaled_diff_sq = diff * diff * inv_var_p;
  GaussianKl k;
  k.kl = (ratio + scaled_diff_sq) * 0.5f - (log_std_q - log_std_p) - 0.5f;
  k.d_mean_q = diff * inv_var_p;
  k.d_mean_p = -k.d_mean_q;
  k.d_log_std_q = ratio - 1.0f;
  k.d_log_std_p = 1.0f - ratio - scaled_diff_sq;
  return k;
}

// log σ as the priors' Gaussian heads clamp it (to [lo, hi]), and whether the clamp passes the
// gradient there (lo <= raw <= hi: at::clamp's backward).
inline float Clamp(float raw, float lo, float hi) { return std::min(std::max(raw, lo), hi); }
inline bool ClampPasses(float raw, float lo, float hi) { return raw >= lo && raw <= hi; }

}  // namespace prl::models::dense

#endif  // PRL_MODELS_DENSE_MLP_H_
