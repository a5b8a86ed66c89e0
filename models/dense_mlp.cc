#include "models/dense_mlp.h"

#include <algorithm>
#include <utility>

#include "models/cpu_kernels.h"
#include "models/gemm.h"

namespace prl::models::dense {

DenseMlp::DenseMlp(std::vector<LinearSlot> trunk, std::vector<LinearSlot> heads)
    : trunk_(std::move(trunk)),
      heads_(std::move(heads)),
      trunk_out_(trunk_.size()),
      head_out_(heads_.size()) {}

bool DenseMlp::Forward(const float* params, const float* x, int64_t ld_x, int64_t rows) {
  x_ = x;
  ld_x_ = ld_x;
  rows_ = rows;
  const float* h = x;
  int64_t ld_h = ld_x;
  for (size_t l = 0; l < trunk_.size(); ++l) {
    const LinearSlot& s = trunk_[l];
    float* y = Grow(&trunk_out_[l], rows * s.out);
    if (!FastSgemm(false, true, rows, s.out, s.in, 1.0f, h, ld_h, params + s.weight_offset, s.in,
                   0.0f, y, s.out)) {
      return false;
    }
    kernels::BiasActivateRows(y, params + s.bias_offset, rows, s.out, /*relu=*/true);
    h = y;
    ld_h = s.out;
  }
  for (size_t i = 0; i < heads_.size(); ++i) {
    const LinearSlot& s = heads_[i];
    float* y = Grow(&head_out_[i], rows * s.out);
    if (!FastSgemm(false, true, rows, s.out, s.in, 1.0f, h, ld_h, params + s.weight_offset, s.in,
                   0.0f, y, s.out)) {
      return false;
    }
    kernels::BiasActivateRows(y, params + s.bias_offset, rows, s.out, /*relu=*/false);
  }
  return true;
}

bool DenseMlp::Backward(const float* params, const std::vector<const float*>& g_heads, float* grads,
                        float* g_x, int64_t ld_gx) {
  const int64_t rows = rows_;
  int64_t width = 0;
  for (const LinearSlot& s : trunk_) width = std::max(width, s.out);
  float* g = Grow(&g_a_, rows * width);       // the gradient at a trunk layer's output
  float* masked = Grow(&g_b_, rows * width);  // the same before its ReLU
  // the heads: their parameters' gradients, and the sum of their gradients at the trunk's output
  const float* h_last = trunk_out_.back().data();
  const int64_t h_dim = trunk_.back().out;
  // where a layer's bias gradient goes: into `grads`, or a scratch row when none is wanted
  const auto bias_sum = [&](const LinearSlot& s) {
    float* sum = grads != nullptr ? grads + s.bias_offset : Grow(&bias_scratch_, s.out);
    std::fill_n(sum, s.out, 0.0f);
    return sum;
  };
  for (size_t i = 0; i < heads_.size(); ++i) {
    const LinearSlot& s = heads_[i];
    const float* gh = g_heads[i];
    if (grads != nullptr) {
      if (!FastSgemm(true, false, s.out, s.in, rows, 1.0f, gh, s.out, h_last, h_dim, 0.0f,
                     grads + s.weight_offset, s.in)) {
        return false;
      }
      kernels::BiasGradRows(gh, nullptr, nullptr, bias_sum(s), rows, s.out);
    }
    if (!FastSgemm(false, false, rows, s.in, s.out, 1.0f, gh, s.out, params + s.weight_offset, s.in,
                   i == 0 ? 0.0f : 1.0f, g, s.in)) {
      return false;
    }
  }
  // the trunk, last layer first
  for (size_t l = trunk_.size(); l-- > 0;) {
    const LinearSlot& s = trunk_[l];
    kernels::BiasGradRows(g, trunk_out_[l].data(), masked, bias_sum(s), rows, s.out);
    const float* in = l == 0 ? x_ : trunk_out_[l - 1].data();
    const int64_t ld_in = l == 0 ? ld_x_ : s.in;
    if (grads != nullptr && !FastSgemm(true, false, s.out, s.in, rows, 1.0f, masked, s.out, in,
                                       ld_in, 0.0f, grads + s.weight_offset, s.in)) {
      return false;
    }
    if (l > 0) {
      if (!FastSgemm(false, false, rows, s.in, s.out, 1.0f, masked, s.out, params + s.weight_offset,
                     s.in, 0.0f, g, s.in)) {
        return false;
      }
    } else if (g_x != nullptr) {
      if (!FastSgemm(false, false, rows, s.in, s.out, 1.0f, masked, s.out, params + s.weight_offset,
                     s.in, 0.0f, g_x, ld_gx)) {
        return false;
      }
    }
  }
  return true;
}

}  // namespace prl::models::dense
