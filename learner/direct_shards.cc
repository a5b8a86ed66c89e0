#include "learner/direct_shards.h"

#include <cmath>

#include "ATen/ATen.h"
#include "ATen/Parallel.h"
#include "ATen/core/grad_mode.h"

namespace prl::learner::internal::direct {

int Shards(int64_t rows) {
  return static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows / kMinShardRows)));
}

bool ShardedStep(int shards, models::ParameterBlock* block, FlatAdam* adam, double max_grad_norm,
                 const std::function<std::vector<float>*(int)>& own,
                 const std::function<bool(int, float*)>& phase) {
  const int64_t numel = block->numel();
  std::vector<float*> grads(static_cast<size_t>(shards));
  for (int s = 0; s < shards; ++s) {
    if (s == 0) {
      grads[0] = block->flat_grad().data_ptr<float>();
    } else {
      std::vector<float>* buffer = own(s);
      buffer->assign(static_cast<size_t>(numel), 0.0f);
      grads[s] = buffer->data();
    }
  }
  bool ok = true;
  if (shards == 1) {
    ok = phase(0, grads[0]);
  } else {
    std::vector<char> done(static_cast<size_t>(shards), 0);
    at::parallel_for(0, shards, 1, [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s) done[s] = phase(static_cast<int>(s), grads[s]);
    });
    ok = std::all_of(done.begin(), done.end(), [](char v) { return v != 0; });
  }
  if (!ok) return false;
  at::NoGradGuard no_grad;
  for (int s = 1; s < shards; ++s) {
    for (int64_t i = 0; i < numel; ++i) grads[0][i] += grads[s][i];
  }
  if (max_grad_norm > 0) {
    // torch.nn.utils.clip_grad_norm_, as TwinCriticAgent::GradientStep computes it
    const at::Tensor norm = block->flat_grad().norm();
    block->flat_grad().mul_((norm + 1e-6).reciprocal_().mul_(max_grad_norm).clamp_max_(1.0));
  }
  adam->Step(block->flat_grad());
  return true;
}

bool TargetMinimum(std::vector<models::dense::DenseMlp>& target, const float* params,
                   const float* next_obs, int64_t o, const float* next_action, int64_t a, int64_t n,
                   std::vector<float>* x_next, float* y) {
  float* x = models::dense::Grow(x_next, n * (o + a));
  Concat(next_obs, o, next_action, a, n, x);
  for (size_t k = 0; k < target.size(); ++k) {
    if (!target[k].Forward(params, x, o + a, n)) return false;
    const float* q = target[k].head(0);
    for (int64_t i = 0; i < n; ++i) y[i] = k == 0 ? q[i] : NanMin(q[i], y[i]);
  }
  return true;
}

void RegressionRows(const float* q, const float* y, const float* weight, int64_t n, float inv_rows,
                    double* loss, double* q_sum, float* td, float* g) {
  for (int64_t i = 0; i < n; ++i) {
    const float e = q[i] - y[i];
    const float w = weight != nullptr ? weight[i] : 1.0f;
    *loss += static_cast<double>(e) * e * w;
    *q_sum += q[i];
    td[i] += std::abs(e);
    g[i] = w * e * inv_rows;
  }
}

}  // namespace prl::learner::internal::direct
