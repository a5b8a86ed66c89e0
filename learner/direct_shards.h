// What the autograd-free CPU updates (learner/direct_sac.h, learner/direct_td3.h) share: the
// batch split into one row range per intra-op thread, each range's gradient computed on its own
// core into its own buffer (the first range into the block's flat gradient), and the sum of the
// ranges' gradients in range order, clipped as torch.nn.utils.clip_grad_norm_, then one Adam
// step.
#ifndef PRL_LEARNER_DIRECT_SHARDS_H_
#define PRL_LEARNER_DIRECT_SHARDS_H_

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "ATen/core/Tensor.h"
#include "learner/flat_adam.h"
#include "models/dense_mlp.h"
#include "models/networks.h"

namespace prl::learner::internal::direct {

// The fewest rows a range computes: below, the products' fixed costs outweigh a second core.
inline constexpr int64_t kMinShardRows = 64;

// How many row ranges a batch of `rows` rows is split into: one per intra-op thread while each
// keeps kMinShardRows rows.
int Shards(int64_t rows);

// One sharded gradient step of `block`: runs phase(s, grad_s) for s = 0 .. shards - 1, one per
// thread of at::parallel_for (inside which oneDNN's products run single-threaded), where grad_s
// is range s's gradient buffer (the block's flat gradient for s = 0, else *own(s), resized to the
// block and zeroed: a network's backward writes only its own parameters); then adds the buffers
// in range order, scales the sum to max_grad_norm when that is > 0 and the norm exceeds it, and
// steps `adam`. False, without a step, when a phase returned false.
bool ShardedStep(int shards, models::ParameterBlock* block, FlatAdam* adam, double max_grad_norm,
                 const std::function<std::vector<float>*(int)>& own,
                 const std::function<bool(int, float*)>& phase);

// [x_a | x_b] row by row into out [n, da + db].
inline void Concat(const float* a, int64_t da, const float* b, int64_t db, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    std::copy_n(a + i * da, da, out + i * (da + db));
    std::copy_n(b + i * db, db, out + i * (da + db) + da);
  }
}

// min(a, b) that passes a NaN on, as at::amin does.
inline float NanMin(float a, float b) { return a < b || a != a ? a : b; }

// y [n] = min_k Q'_k([s', a']) over the target critics `target` (their parameters at `params`)
// on rows next_obs [n, o] and next_action [n, a], the inputs concatenated into x_next. False
// when a product failed.
bool TargetMinimum(std::vector<models::dense::DenseMlp>& target, const float* params,
                   const float* next_obs, int64_t o, const float* next_action, int64_t a, int64_t n,
                   std::vector<float>* x_next, float* y);

// One critic's TD regression on n rows, ½·mean_B w·(q − y)² (B = the whole batch's rows): adds
// w·e² to *loss (halved and averaged by the caller), q to *q_sum, |e| to td, and writes the
// gradient w·e/B into g, with e = q − y and w = weight[i] (1 without weights).
void RegressionRows(const float* q, const float* y, const float* weight, int64_t n, float inv_rows,
                    double* loss, double* q_sum, float* td, float* g);

// A float tensor's data, or null for an undefined one.
inline const float* Data(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<float>() : nullptr;
}

}  // namespace prl::learner::internal::direct

#endif  // PRL_LEARNER_DIRECT_SHARDS_H_
