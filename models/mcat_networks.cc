#include "models/mcat_networks.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "ATen/ATen.h"
#include "common/logging.h"

namespace prl::models {
namespace {

// F's log σ is squashed smoothly into [kForwardLogStdMin, kForwardLogStdMax] (the policy's
// range) with two softplus bounds rather than clamped: a clamp passes no gradient once a head
// leaves the range, so a forward model that overshot could never become less (or more) sure.
constexpr double kForwardLogStdMin = -20.0;
constexpr double kForwardLogStdMax = 2.0;
constexpr double kHalfLog2Pi = 0.91893853320467274178;  // ½·log 2π
// Inside the contrastive hinge ‖d‖ is sqrt(‖d‖² + kHingeEps): finite gradients where two
// contexts coincide (sqrt's derivative is infinite at 0), and a value within 1e-6 of ‖d‖.
constexpr double kHingeEps = 1e-12;

// PyTorch's nn.Linear initialisation: weight and bias U(-1/sqrt(in), 1/sqrt(in)).
ParameterBlock::Init LinearInit(int64_t fan_in) {
  return {ParameterBlock::Init::kUniform, 1.0 / std::sqrt(static_cast<double>(fan_in))};
}

// A parameter as a forward pass uses it: without gradient when `detach`.
at::Tensor Param(const ParameterBlock& block, int index, bool detach) {
  return detach ? block.param(index).detach() : block.param(index);
}

}  // namespace

// ---- the networks ----

ContextEncoder::ContextEncoder(ParameterBlock* block, const std::string& prefix,
                               const McatDims& dims, const v1::NetworkSpec& resolved)
    : dims_(dims),
      trunk_(block, prefix + ".trunk", dims.context_history * (2 * dims.obs_dim + dims.action_dim),
             resolved,
             /*ensemble=*/1) {
  const int64_t hidden = trunk_.output_dim();
  out_weight_ =
      block->Declare(prefix + ".out.weight", {dims.context_dim, hidden}, LinearInit(hidden));
  out_bias_ = block->Declare(prefix + ".out.bias", {dims.context_dim}, LinearInit(hidden));
}

at::Tensor ContextEncoder::Forward(const ParameterBlock& block, const at::Tensor& observations,
                                   const at::Tensor& actions, const at::Tensor& mask,
                                   GemmBackend gemm, bool detach) const {
  const int64_t k = dims_.context_history;
  PRL_CHECK(observations.dim() == 3 && observations.size(1) == k + 1 &&
            observations.size(2) == dims_.obs_dim)
      << "ContextEncoder: observations " << observations.sizes() << ", want [B, " << k + 1 << ", "
      << dims_.obs_dim << "]";
  const int64_t rows = observations.size(0);
  PRL_CHECK(actions.dim() == 3 && actions.size(0) == rows && actions.size(1) == k &&
            actions.size(2) == dims_.action_dim)
      << "ContextEncoder: actions " << actions.sizes() << ", want [" << rows << ", " << k << ", "
      << dims_.action_dim << "]";
  PRL_CHECK(mask.dim() == 2 && mask.size(0) == rows && mask.size(1) == k)
      << "ContextEncoder: mask " << mask.sizes() << ", want [" << rows << ", " << k << "]";
  // each transition as [s, a, s' - s], zeroed before the episode began, then flattened
  const at::Tensor s = observations.narrow(1, 0, k);
  const at::Tensor delta = observations.narrow(1, 1, k) - s;
  at::Tensor x = at::cat({s, actions, delta}, -1) * mask.unsqueeze(-1).to(s.scalar_type());
  at::Tensor h = trunk_.Forward(block, x.reshape({rows, -1}), gemm, detach);
  return Linear(h, Param(block, out_weight_, detach), Param(block, out_bias_, detach), gemm);
}

std::optional<dense::DenseMlp> ContextEncoder::Dense(const ParameterBlock& block) const {
  return trunk_.DenseWithHeads(block, {{out_weight_, out_bias_}});
}

ForwardModel::ForwardModel(ParameterBlock* block, const std::string& prefix, const McatDims& dims,
                           const v1::NetworkSpec& resolved)
    : dims_(dims),
      trunk_(block, prefix + ".trunk", dims.obs_dim + dims.action_dim + dims.context_dim, resolved,
             /*ensemble=*/1) {
  const int64_t hidden = trunk_.output_dim();
  mean_weight_ =
      block->Declare(prefix + ".mean.weight", {dims.obs_dim, hidden}, LinearInit(hidden));
  mean_bias_ = block->Declare(prefix + ".mean.bias", {dims.obs_dim}, LinearInit(hidden));
  log_std_weight_ =
      block->Declare(prefix + ".log_std.weight", {dims.obs_dim, hidden}, LinearInit(hidden));
  log_std_bias_ = block->Declare(prefix + ".log_std.bias", {dims.obs_dim}, LinearInit(hidden));
}

at::Tensor ForwardModel::LogProb(const ParameterBlock& block, const at::Tensor& obs,
                                 const at::Tensor& action, const at::Tensor& z,
                                 const at::Tensor& next_obs, GemmBackend gemm, bool detach) const {
  at::Tensor h = trunk_.Forward(block, at::cat({obs, action, z}, -1), gemm, detach);
  at::Tensor mean =
      Linear(h, Param(block, mean_weight_, detach), Param(block, mean_bias_, detach), gemm);
  at::Tensor raw =
      Linear(h, Param(block, log_std_weight_, detach), Param(block, log_std_bias_, detach), gemm);
  // the soft bounds: max - softplus(max - x), then min + softplus(· - min)
  at::Tensor log_std = kForwardLogStdMax - at::softplus(kForwardLogStdMax - raw);
  log_std = kForwardLogStdMin + at::softplus(log_std - kForwardLogStdMin);
  // log N(s' - s; μ, σ²), summed over the state dimensions
  at::Tensor normalized = (next_obs - obs - mean) * at::exp(-log_std);
  return (normalized.square() * -0.5 - log_std).sum(-1) - dims_.obs_dim * kHalfLog2Pi;
}

std::optional<dense::DenseMlp> ForwardModel::Dense(const ParameterBlock& block) const {
  return trunk_.DenseWithHeads(block,
                               {{mean_weight_, mean_bias_}, {log_std_weight_, log_std_bias_}});
}

ActionTranslator::ActionTranslator(ParameterBlock* block, const std::string& prefix,
                                   const McatDims& dims, const v1::NetworkSpec& resolved)
    : dims_(dims),
      trunk_(block, prefix + ".trunk", dims.obs_dim + dims.action_dim + 2 * dims.context_dim,
             resolved, /*ensemble=*/1) {
  const int64_t hidden = trunk_.output_dim();
  out_weight_ =
      block->Declare(prefix + ".out.weight", {dims.action_dim, hidden}, LinearInit(hidden));
  out_bias_ = block->Declare(prefix + ".out.bias", {dims.action_dim}, LinearInit(hidden));
}

at::Tensor ActionTranslator::Forward(const ParameterBlock& block, const at::Tensor& obs,
                                     const at::Tensor& source_action,
                                     const at::Tensor& source_context,
                                     const at::Tensor& target_context, GemmBackend gemm,
                                     bool detach) const {
  at::Tensor x = at::cat({obs, source_action, source_context, target_context}, -1);
  at::Tensor h = trunk_.Forward(block, x, gemm, detach);
  return at::tanh(
      Linear(h, Param(block, out_weight_, detach), Param(block, out_bias_, detach), gemm));
}

std::optional<dense::DenseMlp> ActionTranslator::Dense(const ParameterBlock& block) const {
  return trunk_.DenseWithHeads(block, {{out_weight_, out_bias_}});
}

at::Tensor ContrastiveLoss(const at::Tensor& z, const at::Tensor& task, double margin) {
  const int64_t rows = z.size(0);
  if (rows < 2) return z.sum() * 0.0;  // no pairs; still differentiable in z
  // all squared distances at once from the Gram matrix, ‖a‖² + ‖b‖² - 2a·b (clamped: rounding
  // can take a near-zero distance below 0); z·zᵀ as a linear layer, so that on the CPU the
  // product and its backward run on oneDNN, not the system BLAS (models/gemm.h)
  const at::Tensor norms = z.square().sum(-1);
  const at::Tensor gram = Linear(z, z, at::zeros({rows}, z.options()), GemmBackend::kOneDnn);
  const at::Tensor d2 = (norms.unsqueeze(1) + norms.unsqueeze(0) - 2.0 * gram).clamp_min(0.0);
  const at::Tensor same = task.unsqueeze(1) == task.unsqueeze(0);
  const at::Tensor hinge = at::relu(margin - at::sqrt(d2 + kHingeEps));
  // the diagonal (b = b') is no pair
  const at::Tensor off_diagonal = at::eye(rows, z.options().dtype(at::kBool)).logical_not();
  const at::Tensor per_pair = at::where(same, d2, hinge);
  return at::where(off_diagonal, per_pair, at::zeros_like(per_pair)).sum() /
         static_cast<double>(rows * (rows - 1));
}

namespace {

// at::softplus's derivative (β 1, threshold 20): the sigmoid, 1 above the threshold.
at::Tensor SoftplusSlope(const at::Tensor& x) {
  return at::where(x > 20.0, at::ones_like(x), at::sigmoid(x));
}

}  // namespace

double ForwardNllWithGradient(const float* delta, const float* mean, const float* raw,
                              const float* use, int64_t rows, int64_t obs_dim, float scale,
                              float* d_mean, float* d_raw) {
  if (rows == 0) return 0.0;
  const at::TensorOptions f = at::TensorOptions().dtype(at::kFloat);
  const auto view = [&](const float* p, int64_t cols) {
    return at::from_blob(const_cast<float*>(p), {rows, cols}, f);
  };
  const at::Tensor d = view(delta, obs_dim), mu = view(mean, obs_dim), u = view(raw, obs_dim);
  const at::Tensor keep = view(use, 1) > 0;  // [rows, 1]
  // ForwardModel::LogProb's soft bounds and density, operator for operator
  const at::Tensor upper = kForwardLogStdMax - u;
  const at::Tensor lower = (kForwardLogStdMax - at::softplus(upper)) - kForwardLogStdMin;
  const at::Tensor log_std = kForwardLogStdMin + at::softplus(lower);
  const at::Tensor inv_std = at::exp(-log_std);
  const at::Tensor n = (d - mu) * inv_std;
  const at::Tensor row_nll = (n.square() * 0.5 + log_std).sum(1, /*keepdim=*/true) +
                             static_cast<double>(obs_dim) * kHalfLog2Pi;
  const at::Tensor zero = at::zeros({1, 1}, f);
  const double sum = at::where(keep, row_nll, zero).to(at::kDouble).sum().item<double>();
  // ∂/∂mean = -n/σ; ∂/∂log σ = 1 - n², through both softplus bounds to the raw head
  const at::Tensor w = at::where(keep, at::full({1, 1}, scale, f), zero);
  at::Tensor g_mean = view(d_mean, obs_dim), g_raw = view(d_raw, obs_dim);
  at::mul_out(g_mean, n * inv_std, -w);
  at::mul_out(g_raw, (1.0 - n.square()) * SoftplusSlope(lower) * SoftplusSlope(upper), w);
  return sum;
}

double ContrastiveLossWithGradient(const float* z, const int64_t* task, int64_t rows, int64_t dim,
                                   double margin, float scale, float* grad) {
  std::fill_n(grad, rows * dim, 0.0f);
  if (rows < 2) return 0.0;
  const double pairs = static_cast<double>(rows * (rows - 1));
  // each unordered pair stands for two ordered ones: twice its term and twice its gradient
  const float pair_scale = 2.0f * scale / static_cast<float>(pairs);
  double sum = 0;
  for (int64_t i = 0; i < rows; ++i) {
    const float* zi = z + i * dim;
    for (int64_t j = i + 1; j < rows; ++j) {
      const float* zj = z + j * dim;
      float d2 = 0;
      for (int64_t c = 0; c < dim; ++c) d2 += (zi[c] - zj[c]) * (zi[c] - zj[c]);
      float slope;  // ∂term/∂d2
      if (task[i] == task[j]) {
        sum += 2.0 * d2;
        slope = 1.0f;
      } else {
        const float distance = std::sqrt(d2 + static_cast<float>(kHingeEps));
        const float hinge = static_cast<float>(margin) - distance;
        if (hinge <= 0) continue;
        sum += 2.0 * hinge;
        slope = -0.5f / distance;
      }
      // ∂d2/∂z_i = 2(z_i - z_j) = -∂d2/∂z_j
      const float g = pair_scale * slope * 2.0f;
      float* gi = grad + i * dim;
      float* gj = grad + j * dim;
      for (int64_t c = 0; c < dim; ++c) {
        const float v = g * (zi[c] - zj[c]);
        gi[c] += v;
        gj[c] -= v;
      }
    }
  }
  return sum / pairs;
}

}  // namespace prl::models
