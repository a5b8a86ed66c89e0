#include "learner/direct_shards.h"

#include "ATen/ATen.h"
#include "ATen/Parallel.h"
#include "ATen/core/grad_mode.h"

namespace prl::learner::internal::direct {

int Shards(int64_t rows) {
  return static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows / kMinShardRows)));
}

bool RunShards(int shards, const std::function<bool(int)>& phase) {
  if (shards == 1) return phase(0);
  std::vector<char> ok(static_cast<size_t>(shards), 0);
  at::parallel_for(0, shards, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) ok[static_cast<size_t>(s)] = phase(static_cast<int>(s));
  });
  return std::all_of(ok.begin(), ok.end(), [](char v) { return v != 0; });
}

float* ShardGradient(int s, models::ParameterBlock* block, std::vector<float>* own) {
  if (s == 0) return block->flat_grad().data_ptr<float>();
  own->assign(static_cast<size_t>(block->numel()), 0.0f);
  return own->data();
}

void SumClipAndStep(const std::vector<float*>& parts, models::ParameterBlock* block, FlatAdam* adam,
                    double max_grad_norm) {
  at::NoGradGuard no_grad;
  float* total = block->flat_grad().data_ptr<float>();
  const int64_t numel = block->numel();
  for (size_t s = 1; s < parts.size(); ++s) {
    for (int64_t i = 0; i < numel; ++i) total[i] += parts[s][i];
  }
  if (max_grad_norm > 0) {
    // torch.nn.utils.clip_grad_norm_, as TwinCriticAgent::GradientStep computes it
    const at::Tensor norm = block->flat_grad().norm();
    block->flat_grad().mul_((norm + 1e-6).reciprocal_().mul_(max_grad_norm).clamp_max_(1.0));
  }
  adam->Step(block->flat_grad());
}

}  // namespace prl::learner::internal::direct
