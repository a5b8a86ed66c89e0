// Fused CUDA kernels for the GPU training path, compiled by nvcc in CUDA builds only
// (models/BUILD; PRL_WITH_CUDA defined). The counterparts of models/cpu_kernels.h: one kernel
// where LibTorch's composite would launch a dozen, which is what a CUDA-graph update is made of
// (docs/learner.md). No CUDA or LibTorch headers here; `stream` is a cudaStream_t, the return
// value a cudaError_t (0: launched).
#ifndef PRL_MODELS_CUDA_KERNELS_H_
#define PRL_MODELS_CUDA_KERNELS_H_

#include <cstdint>

namespace prl::models::cuda_kernels {

// kernels::SquashedGaussianForward and Backward on the device: `rows` rows of `dims` values;
// mean and log_std rows start `*_row_stride` floats apart (the policy head's halves: 2·dims),
// noise, action and log_prob are contiguous. log σ is clamped to [log_std_min, log_std_max] as it
// is read (±∞: as given). The backward (g_action or g_log_prob may be null: zero) writes g_mean
// and g_log_std rows `g_row_stride` apart (2·dims: the head's gradient in one tensor) and gives
// log σ the clamp's gradient: zero where the given value was outside the range, or NaN, as
// LibTorch's clamp_backward (with ±∞ bounds every value passes, NaN included).
int SquashedGaussianForward(const float* mean, int64_t mean_row_stride, const float* log_std,
                            int64_t log_std_row_stride, const float* noise, float* action,
                            float* log_prob, int64_t rows, int64_t dims, float log_std_min,
                            float log_std_max, void* stream);
int SquashedGaussianBackward(const float* g_action, const float* g_log_prob, const float* log_std,
                             int64_t log_std_row_stride, const float* noise, const float* action,
                             float* g_mean, float* g_log_std, int64_t g_row_stride, int64_t rows,
                             int64_t dims, float log_std_min, float log_std_max, void* stream);

// kernels::AdamStep on the device over `n` contiguous floats: the same arithmetic in the same
// order, every operation rounded on its own as on the CPU (no fused multiply-adds; the CPU kernels
// are compiled without contraction), so that a step is bit for bit the CPU's for the same
// inputs. The constants are kernels::AdamScalars's; the two that change with the step count come
// from `step_scalars`, two floats on the device {neg_step_size, sqrt_bias_correction2} read when
// the kernel runs (what a captured CUDA graph replays), or, where it is null, from the arguments.
struct AdamConstants {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, eps;
};
int AdamStep(float* param, float* exp_avg, float* exp_avg_sq, const float* grad, int64_t n,
             const AdamConstants& constants, const float* step_scalars, float neg_step_size,
             float sqrt_bias_correction2, void* stream);

// The epilogue of a ReLU layer's product, in place: y[e, r, j] = max(y[e, r, j] + b[e, j], 0) for
// `members` blocks of `rows`×`cols` (row-major; members 1 for a plain layer), as
// kernels::BiasActivateRows per member.
int BiasRelu(float* y, const float* b, int64_t members, int64_t rows, int64_t cols, void* stream);

// Its backward: masked[e, r, j] = 0 where y[e, r, j] ≤ 0, else g[e, r, j], and gb[e, j] (written,
// not added to) = Σ_r masked[e, r, j], summed in a fixed order of the kernel's own (the same
// result every run; not the CPU's order). One block per 32 columns of a member (members ≤
// 65,535): meant for up to a few thousand rows.
int ReluBiasBackward(const float* g, const float* y, float* masked, float* gb, int64_t members,
                     int64_t rows, int64_t cols, void* stream);

// kernels::TdLossForward on the device, in one block (the rows of a batch, up to some thousands):
// td_abs[b] as the CPU's, and into out_loss and out_q_mean (one float each) the loss and the
// mean of q, summed in double in a fixed order of the kernel's own (the same result every run;
// not the CPU's order).
int TdLossForward(const float* q, const float* target, const float* weight, int64_t members,
                  int64_t rows, float* td_abs, float* out_loss, float* out_q_mean, void* stream);
// kernels::TdLossBackward on the device, bit for bit the CPU's, with the loss's gradient read
// from `g` (one float on the device) when the kernel runs.
int TdLossBackward(const float* g, const float* q, const float* target, const float* weight,
                   int64_t members, int64_t rows, float* g_q, void* stream);
// kernels::ActorLossForward on the device, in one block, into out_loss (one float); α (one
// float) read on the device; summed in double in a fixed order of the kernel's own.
int ActorLossForward(const float* alpha, const float* regularizer, const float* q, int64_t members,
                     int64_t rows, float* out_loss, void* stream);
// kernels::ActorLossBackward on the device, bit for bit the CPU's, with g and α read on the
// device.
int ActorLossBackward(const float* g, const float* alpha, const float* q, int64_t members,
                      int64_t rows, float* g_reg, float* g_q, void* stream);
// kernels::TdTarget on the device, bit for bit the CPU's, with α (one float; null for no α·R
// term, as regularizer) read on the device.
int TdTarget(const float* q, int64_t members, int64_t rows, const float* alpha,
             const float* regularizer, const float* reward, const float* discount,
             float reward_scale, float gamma, float* target, void* stream);
// TD3's target action with target-policy smoothing, out = clamp(tanh(mean) + clamp(noise·σ, −c,
// c), −1, 1) over `rows` rows of `dims` values (mean's rows `mean_row_stride` apart; noise and out
// contiguous): one kernel, in the order of operations of models::Td3TargetActionComposite.
int Td3TargetAction(const float* mean, int64_t mean_row_stride, const float* noise, int64_t rows,
                    int64_t dims, float policy_noise, float noise_clip, float* out, void* stream);
// kernels::TemperatureTerms on the device, in one block, with log α (one float) read on the
// device: out[0..3] as the CPU's, the mean summed in double in a fixed order of the kernel's own
// (the same result every run; not the CPU's order), the rest bit for bit the CPU's from it.
int TemperatureTerms(const float* regularizer, int64_t rows, const float* log_alpha, float target,
                     bool negate_entropy, float* out, void* stream);
// The CUDA runtime's text for a code the functions above returned.
const char* ErrorString(int code);

}  // namespace prl::models::cuda_kernels

#endif  // PRL_MODELS_CUDA_KERNELS_H_
