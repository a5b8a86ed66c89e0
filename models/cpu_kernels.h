// Fused elementwise kernels for the CPU training path: the bias and ReLU epilogues of the linear
// layers (models/networks.cc) and one Adam step over a flat parameter buffer (the FlatAdams of
// learner/ and models/). Each is one pass over memory where LibTorch would take several, each
// compiled for AVX-512, AVX2 and the baseline and chosen when the process loads.
// No LibTorch headers here. Thread-compatible (callers split rows across threads).
#ifndef PRL_MODELS_CPU_KERNELS_H_
#define PRL_MODELS_CPU_KERNELS_H_

#include <cstdint>

namespace prl::models::kernels {

// y[r, j] = relu?(y[r, j] + b[j]) for r < rows, j < cols (row-major, row stride cols).
void BiasActivateRows(float* y, const float* b, int64_t rows, int64_t cols, bool relu);

// The backward of BiasActivateRows: with `y` (its output) non-null, masked[r, j] = 0 where
// y[r, j] ≤ 0, else g[r, j] (a NaN passes, as in ATen's relu); sum[j] += Σ_r masked[r, j] (g
// itself when y is null; masked is then unused).
void BiasGradRows(const float* g, const float* y, float* masked, float* sum, int64_t rows,
                  int64_t cols);

// torch.optim.Adam's update (no weight decay, no AMSGrad) over n elements, in place:
//   m ← β1·m + (1-β1)·g;  v ← β2·v + (1-β2)·g·g;  p ← p - step_size · m / (√v / √bc2 + eps)
// with step_size = lr / bc1, bc_i = 1 - β_i^t, as its single-tensor path evaluates it.
struct AdamScalars {
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float sqrt_bias_correction2, eps, neg_step_size;
};
AdamScalars MakeAdamScalars(double lr, double beta1, double beta2, double eps, int64_t step);
void AdamStep(float* p, float* m, float* v, const float* g, int64_t n, const AdamScalars& s);

// The reparameterised squashed-Gaussian sample of a SAC policy and its log-probability (see
// models::SampleSquashedGaussian), `rows` rows of `dims` values each (row-major, contiguous):
//   u = mean + exp(log_std)·noise,  action = tanh(u),
//   log_prob[r] = Σ_j (−noise²/2 − log_std − 2·(log 2 − u − softplus(−2u))) − dims·½·log 2π
void SquashedGaussianForward(const float* mean, const float* log_std, const float* noise,
                             float* action, float* log_prob, int64_t rows, int64_t dims);
// Its backward with respect to mean and log_std (noise is a constant), from the forward's
// `action` and the upstream gradients of action and log_prob (either may be null: zero):
//   g_u = g_action·(1 − action²) + g_log_prob·2·action
//   g_mean = g_u,  g_log_std = g_u·exp(log_std)·noise − g_log_prob
void SquashedGaussianBackward(const float* g_action, const float* g_log_prob, const float* log_std,
                              const float* noise, const float* action, float* g_mean,
                              float* g_log_std, int64_t rows, int64_t dims);

// The twin critics' regression loss, 0.5 · mean_b Σ_k w_b·(q[k, b] − t_b)², over `members`
// critics of `rows` values (q row-major [members, rows]; weight null: all 1), with what the
// learner reports: td_abs[b] = Σ_k |q[k, b] − t_b| / members (written) and the mean of q. The
// loss and the mean are summed in double; each row's terms in k's order, as LibTorch's sum(0).
struct TdLossStats {
  float loss = 0;
  float q_mean = 0;
};
TdLossStats TdLossForward(const float* q, const float* target, const float* weight, int64_t members,
                          int64_t rows, float* td_abs);
// Its gradient with respect to q for the loss's gradient g:
//   g_q[k, b] = c_b · (2·(q[k, b] − t_b)),  c_b = ((g · 0.5) / rows) · w_b,
// every operation rounded on its own, in the order LibTorch's autograd takes through
// (Σ_k w·(q − t)²).mean() · 0.5 (MulBackward, MeanBackward's division, the weight's MulBackward,
// PowBackward): the same bits as the composite's gradient.
void TdLossBackward(float g, const float* q, const float* target, const float* weight,
                    int64_t members, int64_t rows, float* g_q);

// SAC's actor loss, mean_b (α·R_b − min_k q[k, b]) over `members` critics of `rows` values (q
// row-major [members, rows]), summed in double.
float ActorLossForward(float alpha, const float* regularizer, const float* q, int64_t members,
                       int64_t rows);
// Its gradients for the loss's gradient g, each operation rounded on its own in the order
// LibTorch's autograd takes through (α·R − q.amin(0)).mean() (MeanBackward's division, the
// product's and the difference's backward, AminBackward's share among tied minima):
//   m = g / rows,  g_reg[b] = m·α,  g_q[k, b] = (−m / n_b)·[q[k, b] = min_k q[·, b]]
// with n_b the number of critics at row b's minimum (a masked-out value is (−m / n_b)·0). A NaN
// among a row's q is its minimum, as in LibTorch's amin (no critic then equals it: the row's
// gradients are NaN, as LibTorch's).
void ActorLossBackward(float g, float alpha, const float* q, int64_t members, int64_t rows,
                       float* g_reg, float* g_q);

// The critics' regression target, without gradient, for `rows` transitions:
//   target[b] = r_b·s + γ·d_b·(min_k q[k, b] − α·R_b)
// with q row-major [members, rows] (the target critics at the next state), R null for no α·R
// term (TD3) and s = 1 for r_b itself, each operation rounded on its own in this order
// (LibTorch's amin, mul, sub and addcmul without a contracted multiply-add; the minimum's NaN
// wins as in amin).
void TdTarget(const float* q, int64_t members, int64_t rows, float alpha, const float* regularizer,
              const float* reward, const float* discount, float reward_scale, float gamma,
              float* target);

// SAC's temperature terms from its regulariser R (`rows` values) and log α: the batch mean m
// (summed in double), the loss −log α·(m + target), its gradient −(m + target) with respect to
// log α, and the reported entropy (−m where `negate_entropy`, else m), into out[0..3] in that
// order; after the mean each operation rounded on its own, in the order LibTorch's composite
// takes.
void TemperatureTerms(const float* regularizer, int64_t rows, float log_alpha, float target,
                      bool negate_entropy, float* out);

}  // namespace prl::models::kernels

#endif  // PRL_MODELS_CPU_KERNELS_H_
