#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "models/cuda_kernels.h"

namespace prl::models::cuda_kernels {
namespace {

constexpr int kThreads = 128;
constexpr float kLog2 = 0.693147180559945309f;
constexpr double kHalfLog2Pi = 0.918938533204672742;

// ATen's softplus with beta 1 and its default threshold 20.
__host__ __device__ inline float Softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

// ATen's clamp: NaN stays NaN.
__host__ __device__ inline float Clamp(float x, float lo, float hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

// Row r of the forward (one thread per row: the row's log-probability is a sum over its few
// dims); host and device, so the same code runs on the CPU too, where
// models/cuda_kernels_host_check.cu compares it with kernels::SquashedGaussianForward (as the
// other element functions here with their CPU counterparts). log σ is clamped to [lo, hi] as it
// is read (±∞: as given).
__host__ __device__ inline void ForwardRow(int64_t r, const float* __restrict__ mean,
                                           int64_t mean_stride, const float* __restrict__ log_std,
                                           int64_t log_std_stride, const float* __restrict__ noise,
                                           float* __restrict__ action, float* __restrict__ log_prob,
                                           int64_t dims, float constant, float lo, float hi) {
  const float* m = mean + r * mean_stride;
  const float* l = log_std + r * log_std_stride;
  const float* e = noise + r * dims;
  float* a = action + r * dims;
  float sum = 0.0f;
  for (int64_t j = 0; j < dims; ++j) {
    const float lj = Clamp(l[j], lo, hi), ej = e[j];
    const float u = m[j] + expf(lj) * ej;
    a[j] = tanhf(u);
    sum += ej * ej * -0.5f - lj - (kLog2 - u - Softplus(u * -2.0f)) * 2.0f;
  }
  log_prob[r] = sum - constant;
}

__global__ void ForwardKernel(const float* __restrict__ mean, int64_t mean_stride,
                              const float* __restrict__ log_std, int64_t log_std_stride,
                              const float* __restrict__ noise, float* __restrict__ action,
                              float* __restrict__ log_prob, int64_t rows, int64_t dims,
                              float constant, float lo, float hi) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  ForwardRow(r, mean, mean_stride, log_std, log_std_stride, noise, action, log_prob, dims, constant,
             lo, hi);
}

// Element i of the backward (one thread per element). g_mean and g_log_std rows start
// `g_stride` floats apart (dims: their own tensors; 2·dims: the halves of the head's gradient).
// With the clamp to [lo, hi] in the forward, log σ's gradient is the clamp's: zero where the
// given value was outside [lo, hi] (or NaN), as LibTorch's clamp_backward.
__host__ __device__ inline void BackwardElement(
    int64_t i, const float* __restrict__ g_action, const float* __restrict__ g_log_prob,
    const float* __restrict__ log_std, int64_t log_std_stride, const float* __restrict__ noise,
    const float* __restrict__ action, float* __restrict__ g_mean, float* __restrict__ g_log_std,
    int64_t g_stride, int64_t dims, float lo, float hi) {
  const int64_t r = i / dims, j = i - r * dims;
  const float glp = g_log_prob != nullptr ? g_log_prob[r] : 0.0f;
  const float a = action[i];
  const float ga = g_action != nullptr ? g_action[i] : 0.0f;
  const float gu = ga * (1.0f - a * a) + glp * 2.0f * a;
  const float l = log_std[r * log_std_stride + j];
  // no clamp (±∞) passes every value, NaN included
  const bool passes = (l >= lo && l <= hi) || (lo == -INFINITY && hi == INFINITY);
  g_mean[r * g_stride + j] = gu;
  g_log_std[r * g_stride + j] = passes ? gu * expf(l) * noise[i] - glp : 0.0f;
}

__global__ void BackwardKernel(const float* __restrict__ g_action,
                               const float* __restrict__ g_log_prob,
                               const float* __restrict__ log_std, int64_t log_std_stride,
                               const float* __restrict__ noise, const float* __restrict__ action,
                               float* __restrict__ g_mean, float* __restrict__ g_log_std,
                               int64_t g_stride, int64_t rows, int64_t dims, float lo, float hi) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * dims) return;
  BackwardElement(i, g_action, g_log_prob, log_std, log_std_stride, noise, action, g_mean,
                  g_log_std, g_stride, dims, lo, hi);
}

// Single float operations rounded to nearest, never contracted into a fused multiply-add (nvcc
// contracts a·b + c by default): the CPU's rounding, on the device and, for checks, on the host.
__host__ __device__ inline float Mul(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
__host__ __device__ inline float Add(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
__host__ __device__ inline float Div(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
__host__ __device__ inline float Sqrt(float a) {
#ifdef __CUDA_ARCH__
  return __fsqrt_rn(a);
#else
  return sqrtf(a);
#endif
}

// Element i of kernels::AdamStep, in its order of operations.
__host__ __device__ inline void AdamElement(int64_t i, float* __restrict__ p, float* __restrict__ m,
                                            float* __restrict__ v, const float* __restrict__ g,
                                            const AdamConstants& c, float step, float root_bc2) {
  const float gi = g[i];
  const float mi = Add(Mul(m[i], c.beta1), Mul(c.one_minus_beta1, gi));
  const float vi = Add(Mul(v[i], c.beta2), Mul(Mul(c.one_minus_beta2, gi), gi));
  m[i] = mi;
  v[i] = vi;
  p[i] = Add(p[i], Div(Mul(step, mi), Add(Div(Sqrt(vi), root_bc2), c.eps)));
}

__global__ void AdamKernel(float* __restrict__ p, float* __restrict__ m, float* __restrict__ v,
                           const float* __restrict__ g, int64_t n, AdamConstants c,
                           const float* __restrict__ step_scalars, float step, float root_bc2) {
  if (step_scalars != nullptr) {
    step = step_scalars[0];
    root_bc2 = step_scalars[1];
  }
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    AdamElement(i, p, m, v, g, c, step, root_bc2);
  }
}

// Element i of BiasRelu (std::max's NaN handling, as the CPU's pass).
__host__ __device__ inline void BiasReluElement(int64_t i, float* __restrict__ y,
                                                const float* __restrict__ b, int64_t rows,
                                                int64_t cols) {
  const int64_t j = i % cols, e = i / (rows * cols);
  const float v = Add(y[i], b[e * cols + j]);
  y[i] = v < 0.0f ? 0.0f : v;
}

__global__ void BiasReluKernel(float* __restrict__ y, const float* __restrict__ b, int64_t n,
                               int64_t rows, int64_t cols) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    BiasReluElement(i, y, b, rows, cols);
  }
}

// ReluBiasBackward: block (kColumns, kRowLanes) over columns [blockIdx.x·kColumns, +kColumns) of
// member blockIdx.y; lane t sums rows t, t + kRowLanes, ... in order, then lane 0 adds the
// lanes' sums in order.
constexpr int kColumns = 32;
constexpr int kRowLanes = 16;

__global__ void ReluBiasBackwardKernel(const float* __restrict__ g, const float* __restrict__ y,
                                       float* __restrict__ masked, float* __restrict__ gb,
                                       int64_t rows, int64_t cols) {
  __shared__ float partial[kRowLanes][kColumns + 1];
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kColumns + threadIdx.x;
  const int64_t base = static_cast<int64_t>(blockIdx.y) * rows * cols;
  float sum = 0.0f;
  if (j < cols) {
    for (int64_t r = threadIdx.y; r < rows; r += kRowLanes) {
      const int64_t i = base + r * cols + j;
      const float v = y[i] <= 0.0f ? 0.0f : g[i];  // a NaN passes, as in ATen's relu
      masked[i] = v;
      sum = Add(sum, v);
    }
  }
  partial[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && j < cols) {
    float total = partial[0][threadIdx.x];
    for (int t = 1; t < kRowLanes; ++t) total = Add(total, partial[t][threadIdx.x]);
    gb[static_cast<int64_t>(blockIdx.y) * cols + j] = total;
  }
}

__host__ __device__ inline float Sub(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

// Row b of kernels::TdLossForward: writes td_abs[b], adds the row's q to *q_sum and returns the
// row's Σ_k w_b·(q − t)², each in k's order.
__host__ __device__ inline float TdLossRow(int64_t b, const float* __restrict__ q,
                                           const float* __restrict__ target,
                                           const float* __restrict__ weight, int64_t members,
                                           int64_t rows, float* __restrict__ td_abs,
                                           double* q_sum) {
  float squared = 0.0f, absolute = 0.0f;
  for (int64_t k = 0; k < members; ++k) {
    const float qk = q[k * rows + b];
    const float e = Sub(qk, target[b]);
    const float s = Mul(e, e);
    squared = Add(squared, weight != nullptr ? Mul(s, weight[b]) : s);
    absolute = Add(absolute, fabsf(e));
    *q_sum += qk;
  }
  td_abs[b] = Div(absolute, static_cast<float>(members));
  return squared;
}

// kernels::TdLossBackward's c_b = ((g · 0.5) / rows) · w_b.
__host__ __device__ inline float TdLossRowScale(float g, int64_t rows,
                                                const float* __restrict__ weight, int64_t b) {
  const float mean_grad = Div(Mul(g, 0.5f), static_cast<float>(rows));
  return weight != nullptr ? Mul(mean_grad, weight[b]) : mean_grad;
}

// Element (k, b) of kernels::TdLossBackward: c_b · (2·(q − t)).
__host__ __device__ inline float TdLossGradElement(float c, float q, float t) {
  return Mul(c, Mul(2.0f, Sub(q, t)));
}

constexpr int kTdLossThreads = 256;

__global__ void TdLossForwardKernel(const float* __restrict__ q, const float* __restrict__ target,
                                    const float* __restrict__ weight, int64_t members, int64_t rows,
                                    float* __restrict__ td_abs, float* __restrict__ out_loss,
                                    float* __restrict__ out_q_mean) {
  __shared__ double loss_part[kTdLossThreads];
  __shared__ double q_part[kTdLossThreads];
  double loss = 0, q_sum = 0;
  for (int64_t b = threadIdx.x; b < rows; b += kTdLossThreads) {
    loss += TdLossRow(b, q, target, weight, members, rows, td_abs, &q_sum);
  }
  loss_part[threadIdx.x] = loss;
  q_part[threadIdx.x] = q_sum;
  __syncthreads();
  for (int half = kTdLossThreads / 2; half > 0; half /= 2) {  // a fixed tree: the same each run
    if (threadIdx.x < half) {
      loss_part[threadIdx.x] += loss_part[threadIdx.x + half];
      q_part[threadIdx.x] += q_part[threadIdx.x + half];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const double n = static_cast<double>(rows);
    *out_loss = static_cast<float>(loss_part[0] / n * 0.5);
    *out_q_mean = static_cast<float>(q_part[0] / (n * static_cast<double>(members)));
  }
}

__global__ void TdLossBackwardKernel(const float* __restrict__ g, const float* __restrict__ q,
                                     const float* __restrict__ target,
                                     const float* __restrict__ weight, int64_t members,
                                     int64_t rows, float* __restrict__ g_q) {
  const int64_t n = members * rows;
  const float grad = *g;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const int64_t b = i % rows;
    g_q[i] = TdLossGradElement(TdLossRowScale(grad, rows, weight, b), q[i], target[b]);
  }
}

// min_k q[k, b] in k's order, a NaN winning (LibTorch's amin; as the CPU's pass).
__host__ __device__ inline float ActorLossRowMin(int64_t b, const float* __restrict__ q,
                                                 int64_t members, int64_t rows) {
  float low = q[b];
  for (int64_t k = 1; k < members; ++k) {
    const float v = q[k * rows + b];
    low = (v < low || v != v) ? v : low;  // a NaN wins, as in LibTorch's amin
  }
  return low;
}

// Row b of kernels::ActorLossBackward, with m = g / rows.
__host__ __device__ inline void ActorLossBackwardRow(int64_t b, float m, float alpha,
                                                     const float* __restrict__ q, int64_t members,
                                                     int64_t rows, float* __restrict__ g_reg,
                                                     float* __restrict__ g_q) {
  g_reg[b] = Mul(m, alpha);
  const float low = ActorLossRowMin(b, q, members, rows);
  int64_t ties = 0;
  for (int64_t k = 0; k < members; ++k) ties += q[k * rows + b] == low ? 1 : 0;
  const float share = Div(-m, static_cast<float>(ties));
  for (int64_t k = 0; k < members; ++k) {
    g_q[k * rows + b] = Mul(share, q[k * rows + b] == low ? 1.0f : 0.0f);
  }
}

__global__ void ActorLossForwardKernel(const float* __restrict__ alpha,
                                       const float* __restrict__ regularizer,
                                       const float* __restrict__ q, int64_t members, int64_t rows,
                                       float* __restrict__ out_loss) {
  __shared__ double part[kTdLossThreads];
  const float a = *alpha;
  double sum = 0;
  for (int64_t b = threadIdx.x; b < rows; b += kTdLossThreads) {
    sum += Sub(Mul(a, regularizer[b]), ActorLossRowMin(b, q, members, rows));
  }
  part[threadIdx.x] = sum;
  __syncthreads();
  for (int half = kTdLossThreads / 2; half > 0; half /= 2) {  // a fixed tree: the same each run
    if (threadIdx.x < half) part[threadIdx.x] += part[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out_loss = static_cast<float>(part[0] / static_cast<double>(rows));
}

__global__ void ActorLossBackwardKernel(const float* __restrict__ g,
                                        const float* __restrict__ alpha,
                                        const float* __restrict__ q, int64_t members, int64_t rows,
                                        float* __restrict__ g_reg, float* __restrict__ g_q) {
  const float m = Div(*g, static_cast<float>(rows));
  const float a = *alpha;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < rows;
       b += stride) {
    ActorLossBackwardRow(b, m, a, q, members, rows, g_reg, g_q);
  }
}

// Row b of kernels::TdTarget, in its order of operations.
__host__ __device__ inline float TdTargetRow(int64_t b, const float* __restrict__ q,
                                             int64_t members, int64_t rows, float alpha,
                                             const float* __restrict__ regularizer,
                                             const float* __restrict__ reward,
                                             const float* __restrict__ discount, float reward_scale,
                                             float gamma) {
  float value = ActorLossRowMin(b, q, members, rows);
  if (regularizer != nullptr) value = Sub(value, Mul(alpha, regularizer[b]));
  const float r = reward_scale != 1.0f ? Mul(reward[b], reward_scale) : reward[b];
  return Add(r, Mul(Mul(gamma, discount[b]), value));
}

__global__ void TdTargetKernel(const float* __restrict__ q, int64_t members, int64_t rows,
                               const float* __restrict__ alpha,
                               const float* __restrict__ regularizer,
                               const float* __restrict__ reward, const float* __restrict__ discount,
                               float reward_scale, float gamma, float* __restrict__ target) {
  const float a = alpha != nullptr ? *alpha : 0.0f;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < rows;
       b += stride) {
    target[b] =
        TdTargetRow(b, q, members, rows, a, regularizer, reward, discount, reward_scale, gamma);
  }
}

// Element i of TD3's smoothed target action, clamp(tanh(m) + clamp(ε·σ, −c, c), −1, 1), in the
// composite's order of operations (models::Td3TargetActionComposite).
__host__ __device__ inline float Td3TargetActionElement(float mean, float noise, float sigma,
                                                        float clip) {
  const float smoothing = Clamp(Mul(noise, sigma), -clip, clip);
  return Clamp(Add(tanhf(mean), smoothing), -1.0f, 1.0f);
}

__global__ void Td3TargetActionKernel(const float* __restrict__ mean, int64_t mean_stride,
                                      const float* __restrict__ noise, int64_t rows, int64_t dims,
                                      float sigma, float clip, float* __restrict__ out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < rows * dims;
       i += stride) {
    const int64_t r = i / dims, j = i - r * dims;
    out[i] = Td3TargetActionElement(mean[r * mean_stride + j], noise[i], sigma, clip);
  }
}

// kernels::TemperatureTerms after its mean: out[0..3] from the mean m.
__host__ __device__ inline void TemperatureTail(float mean, float log_alpha, float target,
                                                bool negate_entropy, float* __restrict__ out) {
  const float gap = Add(mean, target);
  out[0] = mean;
  out[1] = -Mul(log_alpha, gap);
  out[2] = -gap;
  out[3] = negate_entropy ? -mean : mean;
}

__global__ void TemperatureTermsKernel(const float* __restrict__ regularizer, int64_t rows,
                                       const float* __restrict__ log_alpha, float target,
                                       bool negate_entropy, float* __restrict__ out) {
  __shared__ double part[kTdLossThreads];
  double sum = 0;
  for (int64_t b = threadIdx.x; b < rows; b += kTdLossThreads) sum += regularizer[b];
  part[threadIdx.x] = sum;
  __syncthreads();
  for (int half = kTdLossThreads / 2; half > 0; half /= 2) {  // a fixed tree: the same each run
    if (threadIdx.x < half) part[threadIdx.x] += part[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    TemperatureTail(static_cast<float>(part[0] / static_cast<double>(rows)), *log_alpha, target,
                    negate_entropy, out);
  }
}

unsigned Blocks(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

}  // namespace

int SquashedGaussianForward(const float* mean, int64_t mean_row_stride, const float* log_std,
                            int64_t log_std_row_stride, const float* noise, float* action,
                            float* log_prob, int64_t rows, int64_t dims, float log_std_min,
                            float log_std_max, void* stream) {
  if (rows <= 0) return 0;
  const float constant = static_cast<float>(static_cast<double>(dims) * kHalfLog2Pi);
  ForwardKernel<<<Blocks(rows), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      mean, mean_row_stride, log_std, log_std_row_stride, noise, action, log_prob, rows, dims,
      constant, log_std_min, log_std_max);
  return static_cast<int>(cudaGetLastError());
}

int SquashedGaussianBackward(const float* g_action, const float* g_log_prob, const float* log_std,
                             int64_t log_std_row_stride, const float* noise, const float* action,
                             float* g_mean, float* g_log_std, int64_t g_row_stride, int64_t rows,
                             int64_t dims, float log_std_min, float log_std_max, void* stream) {
  if (rows <= 0 || dims <= 0) return 0;
  BackwardKernel<<<Blocks(rows * dims), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      g_action, g_log_prob, log_std, log_std_row_stride, noise, action, g_mean, g_log_std,
      g_row_stride, rows, dims, log_std_min, log_std_max);
  return static_cast<int>(cudaGetLastError());
}

int AdamStep(float* param, float* exp_avg, float* exp_avg_sq, const float* grad, int64_t n,
             const AdamConstants& constants, const float* step_scalars, float neg_step_size,
             float sqrt_bias_correction2, void* stream) {
  if (n <= 0) return 0;
  // a few elements per thread: enough blocks to fill any GPU at a network's size (~10^5), few
  // enough that a large one does not pay a block per 128 values
  constexpr int64_t kMaxBlocks = 1024;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(Blocks(n), kMaxBlocks));
  AdamKernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      param, exp_avg, exp_avg_sq, grad, n, constants, step_scalars, neg_step_size,
      sqrt_bias_correction2);
  return static_cast<int>(cudaGetLastError());
}

int BiasRelu(float* y, const float* b, int64_t members, int64_t rows, int64_t cols, void* stream) {
  const int64_t n = members * rows * cols;
  if (n <= 0) return 0;
  constexpr int64_t kMaxBlocks = 4096;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(Blocks(n), kMaxBlocks));
  BiasReluKernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(y, b, n, rows, cols);
  return static_cast<int>(cudaGetLastError());
}

int ReluBiasBackward(const float* g, const float* y, float* masked, float* gb, int64_t members,
                     int64_t rows, int64_t cols, void* stream) {
  if (members <= 0 || cols <= 0) return 0;
  const dim3 grid(static_cast<unsigned>((cols + kColumns - 1) / kColumns),
                  static_cast<unsigned>(members));
  const dim3 block(kColumns, kRowLanes);
  ReluBiasBackwardKernel<<<grid, block, 0, static_cast<cudaStream_t>(stream)>>>(g, y, masked, gb,
                                                                                rows, cols);
  return static_cast<int>(cudaGetLastError());
}

int TdLossForward(const float* q, const float* target, const float* weight, int64_t members,
                  int64_t rows, float* td_abs, float* out_loss, float* out_q_mean, void* stream) {
  if (members <= 0 || rows <= 0) return 0;
  TdLossForwardKernel<<<1, kTdLossThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      q, target, weight, members, rows, td_abs, out_loss, out_q_mean);
  return static_cast<int>(cudaGetLastError());
}

int TdLossBackward(const float* g, const float* q, const float* target, const float* weight,
                   int64_t members, int64_t rows, float* g_q, void* stream) {
  const int64_t n = members * rows;
  if (n <= 0) return 0;
  constexpr int64_t kMaxBlocks = 1024;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(Blocks(n), kMaxBlocks));
  TdLossBackwardKernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      g, q, target, weight, members, rows, g_q);
  return static_cast<int>(cudaGetLastError());
}

int ActorLossForward(const float* alpha, const float* regularizer, const float* q, int64_t members,
                     int64_t rows, float* out_loss, void* stream) {
  if (members <= 0 || rows <= 0) return 0;
  ActorLossForwardKernel<<<1, kTdLossThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      alpha, regularizer, q, members, rows, out_loss);
  return static_cast<int>(cudaGetLastError());
}

int ActorLossBackward(const float* g, const float* alpha, const float* q, int64_t members,
                      int64_t rows, float* g_reg, float* g_q, void* stream) {
  if (members <= 0 || rows <= 0) return 0;
  constexpr int64_t kMaxBlocks = 1024;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(Blocks(rows), kMaxBlocks));
  ActorLossBackwardKernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      g, alpha, q, members, rows, g_reg, g_q);
  return static_cast<int>(cudaGetLastError());
}

int TdTarget(const float* q, int64_t members, int64_t rows, const float* alpha,
             const float* regularizer, const float* reward, const float* discount,
             float reward_scale, float gamma, float* target, void* stream) {
  if (members <= 0 || rows <= 0) return 0;
  constexpr int64_t kMaxBlocks = 1024;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(Blocks(rows), kMaxBlocks));
  TdTargetKernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      q, members, rows, alpha, regularizer, reward, discount, reward_scale, gamma, target);
  return static_cast<int>(cudaGetLastError());
}

int Td3TargetAction(const float* mean, int64_t mean_row_stride, const float* noise, int64_t rows,
                    int64_t dims, float policy_noise, float noise_clip, float* out, void* stream) {
  if (rows <= 0 || dims <= 0) return 0;
  constexpr int64_t kMaxBlocks = 1024;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(Blocks(rows * dims), kMaxBlocks));
  Td3TargetActionKernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      mean, mean_row_stride, noise, rows, dims, policy_noise, noise_clip, out);
  return static_cast<int>(cudaGetLastError());
}

int TemperatureTerms(const float* regularizer, int64_t rows, const float* log_alpha, float target,
                     bool negate_entropy, float* out, void* stream) {
  if (rows <= 0) return 0;
  TemperatureTermsKernel<<<1, kTdLossThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      regularizer, rows, log_alpha, target, negate_entropy, out);
  return static_cast<int>(cudaGetLastError());
}

const char* ErrorString(int code) { return cudaGetErrorString(static_cast<cudaError_t>(code)); }

}  // namespace prl::models::cuda_kernels
