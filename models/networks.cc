#include "models/networks.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <memory>
#include <tuple>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "ATen/Parallel.h"
#include "ATen/core/grad_mode.h"
#include "absl/strings/str_cat.h"
#include "c10/core/DeviceGuard.h"
#include "common/logging.h"
#include "models/cpu_kernels.h"
#include "models/gemm.h"
#include "torch/csrc/autograd/autograd.h"
#include "torch/csrc/autograd/custom_function.h"
#include "torch/csrc/autograd/variable.h"

#ifdef PRL_WITH_CUDA_KERNELS
#include <map>
#include <string>

#include "absl/synchronization/mutex.h"
#include "c10/core/InferenceMode.h"
#include "c10/cuda/CUDAGraphsC10Utils.h"
#include "c10/cuda/CUDAGuard.h"
#include "c10/cuda/CUDAStream.h"
#include "models/cuda_kernels.h"
#endif

namespace prl::models {
namespace {

constexpr double kLogStdMin = kPolicyLogStdMin;
constexpr double kLogStdMax = kPolicyLogStdMax;
constexpr double kLayerNormEps = 1e-5;
constexpr double kLog2 = 0.69314718055994530942;
constexpr double kHalfLog2Pi = 0.91893853320467274178;  // ½·log 2π

// ---- linear layers through oneDNN's sgemm ----

// Sizes of a (possibly ensemble) linear layer; see Linear() in the header.
struct LinearDims {
  int64_t members, batch, in, out;
  bool shared_input;  // x is [B, in] for every member
};

LinearDims DimsOf(const at::Tensor& x, const at::Tensor& w) {
  LinearDims d;
  d.members = w.dim() == 3 ? w.size(0) : 1;
  d.out = w.size(-2);
  d.in = w.size(-1);
  d.batch = x.size(-2);
  d.shared_input = x.dim() == 2;
  return d;
}

void Gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  TORCH_CHECK(FastSgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc),
              "oneDNN sgemm failed");
}

// Chunks of rows for the fused epilogues: about 32k elements each (ATen's grain size), at most
// one per thread, so small layers stay on the calling thread.
int64_t RowChunks(int64_t rows, int64_t cols) {
  const int64_t by_size = std::max<int64_t>(1, rows * cols / 32768);
  return std::max<int64_t>(1, std::min<int64_t>({by_size, at::get_num_threads(), rows}));
}

// y[r, :] = act(y[r, :] + b) for the rows of one member: the bias and activation fused into one
// pass over the GEMM's output.
void BiasActivate(float* y, const float* b, int64_t rows, int64_t cols, bool relu) {
  const int64_t chunks = RowChunks(rows, cols);
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t r0 = rows * c / chunks, r1 = rows * (c + 1) / chunks;
      kernels::BiasActivateRows(y + r0 * cols, b, r1 - r0, cols, relu);
    }
  });
}

// The backward epilogue of one member: g_pre = g · [y > 0] (written to `masked`, only for relu)
// and the bias gradient gb = Σ_rows g_pre, in one pass; per-chunk partial sums, added in order.
void BiasBackward(const float* g, const float* y, float* masked, float* gb, int64_t rows,
                  int64_t cols, bool relu) {
  const int64_t chunks = RowChunks(rows, cols);
  std::vector<float> partial(static_cast<size_t>(chunks * cols), 0.0f);
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t r0 = rows * c / chunks, r1 = rows * (c + 1) / chunks;
      kernels::BiasGradRows(g + r0 * cols, relu ? y + r0 * cols : nullptr,
                            relu ? masked + r0 * cols : nullptr, partial.data() + c * cols, r1 - r0,
                            cols);
    }
  });
  for (int64_t j = 0; j < cols; ++j) gb[j] = partial[j];
  for (int64_t c = 1; c < chunks; ++c) {
    for (int64_t j = 0; j < cols; ++j) gb[j] += partial[c * cols + j];
  }
}

// Linear (optionally followed by ReLU) with forward and backward products on oneDNN and the
// bias and activation fused into the products' epilogues (CPU float32 only). One autograd node
// per layer; backward needs x, W and, for the ReLU, the output (whose sign is the mask).
struct FastLinearFunction : public torch::autograd::Function<FastLinearFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x_in,
                            const at::Tensor& w_in, const at::Tensor& b_in, bool relu) {
    at::Tensor x = x_in.contiguous();
    at::Tensor w = w_in.contiguous();
    at::Tensor b = b_in.contiguous();
    const LinearDims d = DimsOf(x, w);
    at::Tensor y = w.dim() == 3 ? at::empty({d.members, d.batch, d.out}, x.options())
                                : at::empty({d.batch, d.out}, x.options());
    const float* xp = x.data_ptr<float>();
    const float* wp = w.data_ptr<float>();
    const float* bp = b.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    for (int64_t e = 0; e < d.members; ++e) {
      const float* xe = d.shared_input ? xp : xp + e * d.batch * d.in;
      float* ye = yp + e * d.batch * d.out;
      Gemm(false, true, d.batch, d.out, d.in, xe, d.in, wp + e * d.out * d.in, d.in, 0.0f, ye,
           d.out);
      BiasActivate(ye, bp + e * d.out, d.batch, d.out, relu);
    }
    ctx->saved_data["relu"] = relu;
    if (relu) {
      ctx->save_for_backward({x, w, y});
    } else {
      ctx->save_for_backward({x, w});
    }
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const bool relu = ctx->saved_data["relu"].toBool();
    const at::Tensor& x = saved[0];
    const at::Tensor& w = saved[1];
    const at::Tensor g_in = grads[0].contiguous();
    const LinearDims d = DimsOf(x, w);
    const float* xp = x.data_ptr<float>();
    const float* wp = w.data_ptr<float>();
    // the gradient before the activation, and the bias gradient, in one pass per member
    at::Tensor gy = relu ? at::empty(g_in.sizes(), g_in.options()) : g_in;
    at::Tensor gb = at::empty(
        w.dim() == 3 ? at::IntArrayRef{d.members, d.out} : at::IntArrayRef{d.out}, w.options());
    for (int64_t e = 0; e < d.members; ++e) {
      const int64_t offset = e * d.batch * d.out;
      BiasBackward(g_in.data_ptr<float>() + offset,
                   relu ? saved[2].data_ptr<float>() + offset : nullptr,
                   relu ? gy.data_ptr<float>() + offset : nullptr, gb.data_ptr<float>() + e * d.out,
                   d.batch, d.out, relu);
    }
    const float* gp = gy.data_ptr<float>();
    at::Tensor gx, gw;
    if (ctx->needs_input_grad(0)) {
      gx = at::empty(x.sizes(), x.options());
      float* gxp = gx.data_ptr<float>();
      for (int64_t e = 0; e < d.members; ++e) {
        // a shared input sums the members' contributions
        float* out = d.shared_input ? gxp : gxp + e * d.batch * d.in;
        const float beta = d.shared_input && e > 0 ? 1.0f : 0.0f;
        Gemm(false, false, d.batch, d.in, d.out, gp + e * d.batch * d.out, d.out,
             wp + e * d.out * d.in, d.in, beta, out, d.in);
      }
    }
    if (ctx->needs_input_grad(1)) {
      gw = at::empty(w.sizes(), w.options());
      float* gwp = gw.data_ptr<float>();
      for (int64_t e = 0; e < d.members; ++e) {
        const float* xe = d.shared_input ? xp : xp + e * d.batch * d.in;
        Gemm(true, false, d.out, d.in, d.batch, gp + e * d.batch * d.out, d.out, xe, d.in, 0.0f,
             gwp + e * d.out * d.in, d.in);
      }
    }
    if (!ctx->needs_input_grad(2)) gb = at::Tensor();
    return {gx, gw, gb, at::Tensor()};
  }
};

// Up to this many rows an ensemble layer on a GPU runs as one batched product; above, one
// product per member. Measured on an H200 (SAC's twin critics of [256, 256], docs/benchmarks.md):
// the batched form made the whole captured update 1.21x faster at batch 256 and 0.76x as fast at
// batch 4096, where the per-member products pick better kernels.
constexpr int64_t kBatchedEnsembleMaxRows = 1024;

#ifdef PRL_WITH_CUDA_KERNELS
// PRL's GPU kernels by family, and whether a family is right on `device`: each checked once per
// device, eagerly (never inside a CUDA-graph capture: until checked, a capture takes LibTorch's
// operations), on fixed inputs: the squashed Gaussian's and the ReLU layers' values and gradients
// against LibTorch's composites, Adam's steps against the CPU's. A family that disagrees, or
// whose check fails, is logged and keeps LibTorch's operations on that device; the others go on.
enum class CudaKernel {
  kSquashedGaussian,
  kReluLayers,
  kAdam,
  kTdLoss,
  kActorLoss,
  kTdTarget,
  kTemperature,
  kTd3TargetAction
};
constexpr int kCudaKernelFamilies = 8;
bool CudaKernelsAgree(const at::Device& device, CudaKernel kernel);
#endif

// Up to this many rows a ReLU layer's backward on a GPU is one kernel of PRL's (the mask and the
// bias gradient, cuda_kernels::ReluBiasBackward: one block per 32 columns of a member); above,
// where those few blocks would read the gradient slower than the GPU's width allows, LibTorch's
// two (threshold_backward, sum).
constexpr int64_t kFusedReluBackwardMaxRows = 1024;

// y[e] = relu(y[e] + b[e]) in place for the members of a contiguous [E, rows, cols] (or
// [rows, cols]) float32 tensor: PRL's kernel on a GPU, the CPU's pass elsewhere.
void BiasReluInPlace(const at::Tensor& y, const at::Tensor& b, const LinearDims& d) {
  if (y.is_cuda()) {
#ifdef PRL_WITH_CUDA_KERNELS
    const int code =
        cuda_kernels::BiasRelu(y.data_ptr<float>(), b.data_ptr<float>(), d.members, d.batch, d.out,
                               c10::cuda::getCurrentCUDAStream(y.device().index()).stream());
    TORCH_CHECK(code == 0, "bias/ReLU kernel: ", cuda_kernels::ErrorString(code));
    return;
#else
    TORCH_CHECK(false, "this build has no CUDA kernels");
#endif
  }
  for (int64_t e = 0; e < d.members; ++e) {
    BiasActivate(y.data_ptr<float>() + e * d.batch * d.out, b.data_ptr<float>() + e * d.out,
                 d.batch, d.out, /*relu=*/true);
  }
}

// The backward of BiasReluInPlace: masked = g·[y > 0] and gb = masked summed over the rows, per
// member (all contiguous).
void ReluBiasGrad(const at::Tensor& g, const at::Tensor& y, const at::Tensor& masked,
                  const at::Tensor& gb, const LinearDims& d) {
  if (y.is_cuda()) {
#ifdef PRL_WITH_CUDA_KERNELS
    const int code = cuda_kernels::ReluBiasBackward(
        g.data_ptr<float>(), y.data_ptr<float>(), masked.data_ptr<float>(), gb.data_ptr<float>(),
        d.members, d.batch, d.out, c10::cuda::getCurrentCUDAStream(y.device().index()).stream());
    TORCH_CHECK(code == 0, "ReLU/bias backward kernel: ", cuda_kernels::ErrorString(code));
    return;
#else
    TORCH_CHECK(false, "this build has no CUDA kernels");
#endif
  }
  for (int64_t e = 0; e < d.members; ++e) {
    const int64_t offset = e * d.batch * d.out;
    BiasBackward(g.data_ptr<float>() + offset, y.data_ptr<float>() + offset,
                 masked.data_ptr<float>() + offset, gb.data_ptr<float>() + e * d.out, d.batch,
                 d.out, /*relu=*/true);
  }
}

// relu(Linear(x, W, b)) on a GPU in fewer kernels than LibTorch's addmm or baddbmm then relu, one
// autograd node per layer (also inside CUDA graphs, where each kernel is a node to run):
//   forward: a plain layer and an ensemble's members above kBatchedEnsembleMaxRows rows are
//     ATen's _addmm_activation (on a GPU cuBLASLt with the bias and ReLU in the product's
//     epilogue: one kernel per product); a smaller ensemble is one batched product plus
//     BiasReluInPlace (baddbmm would first copy the bias into its output);
//   backward: the ReLU mask and the bias gradient in one kernel (ReluBiasGrad) up to
//     kFusedReluBackwardMaxRows rows, then the products: mm/bmm for the input and weight
//     gradients, each only where needed.
// Shapes as Linear's: x [B, in] or [E, B, in], W [out, in] or [E, out, in], b [out] or [E, out].
// Runs on the CPU too (the CPU's passes in place of the kernels), where only tests call it:
// LinearRelu takes FastLinearFunction or the composite there.
struct EpilogueLinearReluFunction : public torch::autograd::Function<EpilogueLinearReluFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& w, const at::Tensor& b_in) {
    c10::OptionalDeviceGuard guard;
    if (x.is_cuda()) guard.reset_device(x.device());
    const LinearDims d = DimsOf(x, w);
    const at::Tensor b = b_in.contiguous();
    at::Tensor y;
    if (w.dim() == 2) {
      y = at::_addmm_activation(b, x, w.t());
    } else if (d.batch <= kBatchedEnsembleMaxRows) {
      const at::Tensor xs = d.shared_input ? x.unsqueeze(0).expand({d.members, d.batch, d.in}) : x;
      y = at::bmm(xs, w.transpose(1, 2)).contiguous();
      BiasReluInPlace(y, b, d);
    } else {
      y = at::empty({d.members, d.batch, d.out}, x.options());
      for (int64_t e = 0; e < d.members; ++e) {
        at::Tensor out = y.select(0, e);
        at::_addmm_activation_out(out, b.select(0, e), d.shared_input ? x : x.select(0, e),
                                  w.select(0, e).t());
      }
    }
    ctx->save_for_backward({x, w, y});
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& w = saved[1];
    const at::Tensor y = saved[2].contiguous();  // (it is: the forward's own output)
    c10::OptionalDeviceGuard guard;
    if (x.is_cuda()) guard.reset_device(x.device());
    const LinearDims d = DimsOf(x, w);
    const at::Tensor g = grads[0].contiguous();
    at::Tensor masked, gb;
    if (d.batch <= kFusedReluBackwardMaxRows) {
      masked = at::empty(y.sizes(), y.options());
      gb = at::empty(w.dim() == 3 ? at::IntArrayRef{d.members, d.out} : at::IntArrayRef{d.out},
                     w.options());
      ReluBiasGrad(g, y, masked, gb, d);
    } else {
      masked = at::threshold_backward(g, y, 0);
      if (ctx->needs_input_grad(2)) gb = masked.sum(-2);
    }
    at::Tensor gx, gw;
    if (ctx->needs_input_grad(0)) {
      if (w.dim() == 2) {
        gx = at::mm(masked, w);
      } else {
        gx = at::bmm(masked, w);
        if (d.shared_input) gx = gx.sum(0);  // a shared input sums the members' contributions
      }
    }
    if (ctx->needs_input_grad(1)) {
      if (w.dim() == 2) {
        gw = at::mm(masked.t(), x);
      } else {
        const at::Tensor xs =
            d.shared_input ? x.unsqueeze(0).expand({d.members, d.batch, d.in}) : x;
        gw = at::bmm(masked.transpose(1, 2), xs);
      }
    }
    if (!ctx->needs_input_grad(2)) gb = at::Tensor();
    return {gx, gw, gb};
  }
};

// TwinTdLoss as one autograd node: kernels::TdLossForward/Backward on the CPU, their
// cuda_kernels:: counterparts on a GPU (the loss's gradient read on the device, so a captured
// graph replays it). Outputs: loss, td_error_abs, q_mean; inputs q [K, B], target [B], weight
// [B] or empty (none).
struct TdLossFunction : public torch::autograd::Function<TdLossFunction> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const at::Tensor& q_in, const at::Tensor& target_in,
                                                const at::Tensor& weight_in) {
    c10::OptionalDeviceGuard guard;
    if (q_in.is_cuda()) guard.reset_device(q_in.device());
    const at::Tensor q = q_in.contiguous(), target = target_in.contiguous();
    // no weights: an empty tensor (LibTorch 1.13's custom functions take no undefined inputs)
    const at::Tensor weight = weight_in.numel() > 0 ? weight_in.contiguous() : at::Tensor();
    const int64_t members = q.size(0), rows = q.size(1);
    const float* w = weight.defined() ? weight.data_ptr<float>() : nullptr;
    at::Tensor td_abs = at::empty({rows}, q.options());
    at::Tensor loss = at::empty({}, q.options()), q_mean = at::empty({}, q.options());
    if (q.is_cuda()) {
#ifdef PRL_WITH_CUDA_KERNELS
      const int code = cuda_kernels::TdLossForward(
          q.data_ptr<float>(), target.data_ptr<float>(), w, members, rows, td_abs.data_ptr<float>(),
          loss.data_ptr<float>(), q_mean.data_ptr<float>(),
          c10::cuda::getCurrentCUDAStream(q.device().index()).stream());
      TORCH_CHECK(code == 0, "TD loss kernel: ", cuda_kernels::ErrorString(code));
#else
      TORCH_CHECK(false, "this build has no CUDA kernels");
#endif
    } else {
      const kernels::TdLossStats stats =
          kernels::TdLossForward(q.data_ptr<float>(), target.data_ptr<float>(), w, members, rows,
                                 td_abs.data_ptr<float>());
      loss.fill_(stats.loss);
      q_mean.fill_(stats.q_mean);
    }
    ctx->save_for_backward({q, target, weight.defined() ? weight : weight_in});
    ctx->mark_non_differentiable({td_abs, q_mean});
    // no zero gradients made for the outputs nothing differentiates (two kernels on a GPU)
    ctx->set_materialize_grads(false);
    return {loss, td_abs, q_mean};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& q = saved[0];
    const at::Tensor& target = saved[1];
    const at::Tensor weight = saved[2].numel() > 0 ? saved[2] : at::Tensor();
    c10::OptionalDeviceGuard guard;
    if (q.is_cuda()) guard.reset_device(q.device());
    const at::Tensor g =
        grads[0].defined() ? grads[0].to(at::kFloat).contiguous() : at::zeros({}, q.options());
    const float* w = weight.defined() ? weight.data_ptr<float>() : nullptr;
    at::Tensor g_q = at::empty(q.sizes(), q.options());
    if (q.is_cuda()) {
#ifdef PRL_WITH_CUDA_KERNELS
      const int code = cuda_kernels::TdLossBackward(
          g.data_ptr<float>(), q.data_ptr<float>(), target.data_ptr<float>(), w, q.size(0),
          q.size(1), g_q.data_ptr<float>(),
          c10::cuda::getCurrentCUDAStream(q.device().index()).stream());
      TORCH_CHECK(code == 0, "TD loss backward kernel: ", cuda_kernels::ErrorString(code));
#else
      TORCH_CHECK(false, "this build has no CUDA kernels");
#endif
    } else {
      kernels::TdLossBackward(g.item<float>(), q.data_ptr<float>(), target.data_ptr<float>(), w,
                              q.size(0), q.size(1), g_q.data_ptr<float>());
    }
    return {g_q, at::Tensor(), at::Tensor()};
  }
};

// SacActorLoss as one autograd node: kernels::ActorLossForward/Backward on the CPU, their
// cuda_kernels:: counterparts on a GPU (α and the loss's gradient read on the device). Inputs α
// [] (a constant), R [B], q [K, B].
struct ActorLossFunction : public torch::autograd::Function<ActorLossFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& alpha_in,
                            const at::Tensor& regularizer_in, const at::Tensor& q_in) {
    c10::OptionalDeviceGuard guard;
    if (q_in.is_cuda()) guard.reset_device(q_in.device());
    const at::Tensor alpha = alpha_in.contiguous(), regularizer = regularizer_in.contiguous();
    const at::Tensor q = q_in.contiguous();
    at::Tensor loss = at::empty({}, q.options());
    if (q.is_cuda()) {
#ifdef PRL_WITH_CUDA_KERNELS
      const int code = cuda_kernels::ActorLossForward(
          alpha.data_ptr<float>(), regularizer.data_ptr<float>(), q.data_ptr<float>(), q.size(0),
          q.size(1), loss.data_ptr<float>(),
          c10::cuda::getCurrentCUDAStream(q.device().index()).stream());
      TORCH_CHECK(code == 0, "actor loss kernel: ", cuda_kernels::ErrorString(code));
#else
      TORCH_CHECK(false, "this build has no CUDA kernels");
#endif
    } else {
      loss.fill_(kernels::ActorLossForward(alpha.item<float>(), regularizer.data_ptr<float>(),
                                           q.data_ptr<float>(), q.size(0), q.size(1)));
    }
    ctx->save_for_backward({alpha, q});
    return loss;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& alpha = saved[0];
    const at::Tensor& q = saved[1];
    c10::OptionalDeviceGuard guard;
    if (q.is_cuda()) guard.reset_device(q.device());
    const at::Tensor g = grads[0].contiguous();
    at::Tensor g_reg = at::empty({q.size(1)}, q.options());
    at::Tensor g_q = at::empty(q.sizes(), q.options());
    if (q.is_cuda()) {
#ifdef PRL_WITH_CUDA_KERNELS
      const int code = cuda_kernels::ActorLossBackward(
          g.data_ptr<float>(), alpha.data_ptr<float>(), q.data_ptr<float>(), q.size(0), q.size(1),
          g_reg.data_ptr<float>(), g_q.data_ptr<float>(),
          c10::cuda::getCurrentCUDAStream(q.device().index()).stream());
      TORCH_CHECK(code == 0, "actor loss backward kernel: ", cuda_kernels::ErrorString(code));
#else
      TORCH_CHECK(false, "this build has no CUDA kernels");
#endif
    } else {
      kernels::ActorLossBackward(g.item<float>(), alpha.item<float>(), q.data_ptr<float>(),
                                 q.size(0), q.size(1), g_reg.data_ptr<float>(),
                                 g_q.data_ptr<float>());
    }
    return {at::Tensor(), g_reg, g_q};
  }
};

// Whether SacActorLoss has the shapes ActorLossFunction takes: float32 on one device, α [] or [1]
// without a gradient, R [B], q [K, B].
bool ActorLossShapes(const at::Tensor& alpha, const at::Tensor& regularizer, const at::Tensor& q) {
  if (q.dim() != 2 || q.size(0) < 1 || q.size(1) < 1 || regularizer.dim() != 1 ||
      regularizer.size(0) != q.size(1) || alpha.numel() != 1 || alpha.requires_grad()) {
    return false;
  }
  for (const at::Tensor* t : {&alpha, &regularizer, &q}) {
    if (t->scalar_type() != at::kFloat || t->device() != q.device()) return false;
  }
  return true;
}

// Whether TwinTdLoss has the shapes TdLossFunction takes: float32 on one device, q [K, B], target
// and weight [B], neither of them needing a gradient (the function gives them none).
bool TdLossShapes(const at::Tensor& q, const at::Tensor& target, const at::Tensor& weight) {
  if (q.dim() != 2 || q.size(0) < 1 || q.size(1) < 1 || target.dim() != 1 ||
      target.size(0) != q.size(1) || target.requires_grad() ||
      (weight.defined() && weight.requires_grad())) {
    return false;
  }
  for (const at::Tensor* t : {&q, &target, &weight}) {
    if (t->defined() && (t->scalar_type() != at::kFloat || t->device() != q.device())) {
      return false;
    }
  }
  return !weight.defined() || weight.sizes() == target.sizes();
}

#ifdef PRL_WITH_CUDA_KERNELS
// Whether Td3TargetAction's kernel takes mean and noise: float32 [B, A] on one CUDA device, no
// gradient, mean's rows contiguous, noise contiguous.
bool Td3TargetActionShapes(const at::Tensor& mean, const at::Tensor& noise) {
  if (mean.dim() != 2 || mean.sizes() != noise.sizes() || !mean.is_cuda() ||
      noise.device() != mean.device()) {
    return false;
  }
  for (const at::Tensor* t : {&mean, &noise}) {
    if (t->scalar_type() != at::kFloat || t->requires_grad()) return false;
  }
  return mean.stride(1) == 1 && noise.is_contiguous();
}

at::Tensor FusedTd3TargetAction(const at::Tensor& mean, const at::Tensor& noise,
                                double policy_noise, double noise_clip) {
  const c10::cuda::CUDAGuard guard(mean.device());
  at::Tensor out = at::empty(noise.sizes(), noise.options());
  const int code = cuda_kernels::Td3TargetAction(
      mean.data_ptr<float>(), mean.stride(0), noise.data_ptr<float>(), mean.size(0), mean.size(1),
      static_cast<float>(policy_noise), static_cast<float>(noise_clip), out.data_ptr<float>(),
      c10::cuda::getCurrentCUDAStream(mean.device().index()).stream());
  TORCH_CHECK(code == 0, "TD3 target action kernel: ", cuda_kernels::ErrorString(code));
  return out;
}
#endif

// Whether TwinTdTarget has the shapes its kernel takes: float32 on one device, none needing a
// gradient, q [K, B], r and d [B], and α [] or [1] with R [B] or both undefined.
bool TdTargetShapes(const at::Tensor& q, const at::Tensor& alpha, const at::Tensor& regularizer,
                    const at::Tensor& reward, const at::Tensor& discount) {
  if (q.dim() != 2 || q.size(0) < 1 || q.size(1) < 1) return false;
  if (alpha.defined() != regularizer.defined()) return false;
  if (alpha.defined() && (alpha.numel() != 1 || regularizer.sizes() != reward.sizes())) {
    return false;
  }
  if (reward.dim() != 1 || reward.size(0) != q.size(1) || discount.sizes() != reward.sizes()) {
    return false;
  }
  for (const at::Tensor* t : {&q, &alpha, &regularizer, &reward, &discount}) {
    if (t->defined() &&
        (t->scalar_type() != at::kFloat || t->device() != q.device() || t->requires_grad())) {
      return false;
    }
  }
  return true;
}

// TwinTdTarget's kernel (or the CPU's pass) on shapes TdTargetShapes accepts.
at::Tensor FusedTdTargetUnchecked(const at::Tensor& q_in, const at::Tensor& alpha_in,
                                  const at::Tensor& regularizer_in, const at::Tensor& reward_in,
                                  const at::Tensor& discount_in, double reward_scale,
                                  double gamma) {
  c10::OptionalDeviceGuard guard;
  if (q_in.is_cuda()) guard.reset_device(q_in.device());
  const at::Tensor q = q_in.contiguous(), reward = reward_in.contiguous();
  const at::Tensor discount = discount_in.contiguous();
  const at::Tensor alpha = alpha_in.defined() ? alpha_in.contiguous() : at::Tensor();
  const at::Tensor regularizer =
      regularizer_in.defined() ? regularizer_in.contiguous() : at::Tensor();
  at::Tensor target = at::empty({q.size(1)}, q.options());
  const float* r = regularizer.defined() ? regularizer.data_ptr<float>() : nullptr;
  if (q.is_cuda()) {
#ifdef PRL_WITH_CUDA_KERNELS
    const int code = cuda_kernels::TdTarget(
        q.data_ptr<float>(), q.size(0), q.size(1),
        alpha.defined() ? alpha.data_ptr<float>() : nullptr, r, reward.data_ptr<float>(),
        discount.data_ptr<float>(), static_cast<float>(reward_scale), static_cast<float>(gamma),
        target.data_ptr<float>(), c10::cuda::getCurrentCUDAStream(q.device().index()).stream());
    TORCH_CHECK(code == 0, "TD target kernel: ", cuda_kernels::ErrorString(code));
#else
    TORCH_CHECK(false, "this build has no CUDA kernels");
#endif
  } else {
    kernels::TdTarget(q.data_ptr<float>(), q.size(0), q.size(1),
                      alpha.defined() ? alpha.item<float>() : 0.0f, r, reward.data_ptr<float>(),
                      discount.data_ptr<float>(), static_cast<float>(reward_scale),
                      static_cast<float>(gamma), target.data_ptr<float>());
  }
  return target;
}

// Whether SacTemperatureTerms has the shapes its kernel takes: float32 on one device, R [B] with
// B >= 1 and log α of one value without a gradient.
bool TemperatureShapes(const at::Tensor& regularizer, const at::Tensor& log_alpha) {
  return regularizer.dim() == 1 && regularizer.size(0) >= 1 && log_alpha.numel() == 1 &&
         !log_alpha.requires_grad() && regularizer.scalar_type() == at::kFloat &&
         log_alpha.scalar_type() == at::kFloat && log_alpha.device() == regularizer.device();
}

// SacTemperatureTerms's kernel (or the CPU's pass) on shapes TemperatureShapes accepts.
TemperatureTerms FusedTemperatureUnchecked(const at::Tensor& regularizer_in,
                                           const at::Tensor& log_alpha_in, double target,
                                           bool negate_entropy) {
  c10::OptionalDeviceGuard guard;
  if (regularizer_in.is_cuda()) guard.reset_device(regularizer_in.device());
  const at::Tensor regularizer = regularizer_in.detach().contiguous();
  const at::Tensor log_alpha = log_alpha_in.contiguous();
  at::Tensor out = at::empty({4}, regularizer.options());
  if (regularizer.is_cuda()) {
#ifdef PRL_WITH_CUDA_KERNELS
    const int code = cuda_kernels::TemperatureTerms(
        regularizer.data_ptr<float>(), regularizer.size(0), log_alpha.data_ptr<float>(),
        static_cast<float>(target), negate_entropy, out.data_ptr<float>(),
        c10::cuda::getCurrentCUDAStream(regularizer.device().index()).stream());
    TORCH_CHECK(code == 0, "temperature kernel: ", cuda_kernels::ErrorString(code));
#else
    TORCH_CHECK(false, "this build has no CUDA kernels");
#endif
  } else {
    kernels::TemperatureTerms(regularizer.data_ptr<float>(), regularizer.size(0),
                              log_alpha.item<float>(), static_cast<float>(target), negate_entropy,
                              out.data_ptr<float>());
  }
  return {out.select(0, 0), out.select(0, 1), out.narrow(0, 2, 1), out.select(0, 3)};
}

// Whether relu(Linear(x, W, b)) has the shapes EpilogueLinearReluFunction takes: float32 on one
// device, a plain layer on a [B, in] input, or an ensemble.
bool EpilogueLinearReluShapes(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  for (const at::Tensor* t : {&x, &w, &b}) {
    if (t->scalar_type() != at::kFloat || t->device() != x.device()) return false;
  }
  if (w.dim() == 2) {
    if (x.dim() != 2 || b.dim() != 1) return false;
  } else if (w.dim() == 3) {
    // the backward kernel's grid has a row of blocks per member (at most 65,535)
    if (b.dim() != 2 || b.size(0) != w.size(0) || w.size(0) > 65535) return false;
    if (x.dim() != 2 && !(x.dim() == 3 && x.size(0) == w.size(0))) return false;
  } else {
    return false;
  }
  return x.size(-1) == w.size(-1) && b.size(-1) == w.size(-2) && x.size(-2) > 0;
}

bool UseFastGemm(const at::Tensor& x, const at::Tensor& w, GemmBackend backend) {
  return backend == GemmBackend::kOneDnn && x.is_cpu() && w.is_cpu() &&
         x.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat && FastSgemmAvailable();
}

at::Tensor Activate(at::Tensor x, v1::NetworkSpec::Activation activation) {
  switch (activation) {
    case v1::NetworkSpec::ACTIVATION_TANH:
      return at::tanh(x);
    case v1::NetworkSpec::ACTIVATION_ELU:
      return at::elu(x);
    case v1::NetworkSpec::ACTIVATION_LEAKY_RELU:
      return at::leaky_relu(x, 0.01);
    case v1::NetworkSpec::ACTIVATION_SILU:
      return at::silu(x);
    default:
      // relu's backward needs only its output, so it may overwrite the linear output in place
      return at::relu_(x);
  }
}

// Activate's default case.
bool IsRelu(v1::NetworkSpec::Activation activation) {
  return activation != v1::NetworkSpec::ACTIVATION_TANH &&
         activation != v1::NetworkSpec::ACTIVATION_ELU &&
         activation != v1::NetworkSpec::ACTIVATION_LEAKY_RELU &&
         activation != v1::NetworkSpec::ACTIVATION_SILU;
}

// PyTorch's nn.Linear initialisation: weight and bias U(-1/sqrt(in), 1/sqrt(in)).
ParameterBlock::Init LinearInit(int64_t fan_in) {
  return {ParameterBlock::Init::kUniform, 1.0 / std::sqrt(static_cast<double>(fan_in))};
}

std::vector<int64_t> EnsembleShape(int ensemble, std::vector<int64_t> shape) {
  if (ensemble > 1) shape.insert(shape.begin(), ensemble);
  return shape;
}

}  // namespace

at::Tensor Linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                  GemmBackend backend) {
  if (UseFastGemm(x, w, backend)) return FastLinearFunction::apply(x, w, b, false);
  // ATen: one addmm per member, the products (and backward products) of PyTorch's nn.Linear;
  // a batched baddbmm runs slower on the reference BLAS
  if (w.dim() == 2) return at::addmm(b, x, w.t());
  const int64_t rows = x.size(-2);
  if (x.is_cuda() && rows <= kBatchedEnsembleMaxRows) {
    // on a GPU, where a small product costs its launch: the members in one batched product (a
    // shared input broadcast to them without a copy), forward and backward
    const at::Tensor xs =
        x.dim() == 2 ? x.unsqueeze(0).expand({w.size(0), x.size(0), x.size(1)}) : x;
    return at::baddbmm(b.unsqueeze(1), xs, w.transpose(1, 2));
  }
  // the members' weights (and inputs) as one unbind each: its backward stacks the members'
  // gradients in one operation, where a select per member would zero and copy a whole
  // gradient for each (launches that dominate a small update on a GPU)
  const std::vector<at::Tensor> ws = w.unbind(0);
  const std::vector<at::Tensor> bs = b.unbind(0);
  const std::vector<at::Tensor> xs = x.dim() == 2 ? std::vector<at::Tensor>() : x.unbind(0);
  std::vector<at::Tensor> members;
  for (size_t e = 0; e < ws.size(); ++e) {
    members.push_back(at::addmm(bs[e], x.dim() == 2 ? x : xs[e], ws[e].t()));
  }
  return at::stack(members);
}

namespace internal {

at::Tensor EpilogueLinearRelu(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  TORCH_CHECK(EpilogueLinearReluShapes(x, w, b), "EpilogueLinearRelu: x ", x.sizes(), ", W ",
              w.sizes(), ", b ", b.sizes(), " are not a float32 layer's shapes on one device");
  return EpilogueLinearReluFunction::apply(x, w, b);
}

}  // namespace internal

at::Tensor LinearRelu(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                      GemmBackend backend) {
  if (UseFastGemm(x, w, backend)) return FastLinearFunction::apply(x, w, b, true);
#ifdef PRL_WITH_CUDA_KERNELS
  // on a GPU whose kernels passed their check
  if (x.is_cuda() && EpilogueLinearReluShapes(x, w, b) &&
      CudaKernelsAgree(x.device(), CudaKernel::kReluLayers)) {
    return EpilogueLinearReluFunction::apply(x, w, b);
  }
#endif
  at::Tensor y = Linear(x, w, b, backend);
  return at::relu_(y);
}

namespace {

bool FusedAdamLayout(const at::Tensor& param, const at::Tensor& exp_avg,
                     const at::Tensor& exp_avg_sq, const at::Tensor& grad) {
  for (const at::Tensor* t : {&param, &exp_avg, &exp_avg_sq, &grad}) {
    if (t->scalar_type() != at::kFloat || !t->is_contiguous() || t->device() != param.device() ||
        t->numel() != param.numel()) {
      return false;
    }
  }
  if (param.is_cpu()) return true;
#ifdef PRL_WITH_CUDA_KERNELS
  if (param.is_cuda()) return CudaKernelsAgree(param.device(), CudaKernel::kAdam);
#endif
  return false;
}

// One fused Adam pass over float32 contiguous tensors on the CPU or a GPU (FusedAdamLayout),
// with the step's scalars from `s` or, on a GPU where `device_step_scalars` is given, from it.
void FusedAdamStep(const at::Tensor& param, const at::Tensor& exp_avg, const at::Tensor& exp_avg_sq,
                   const at::Tensor& grad, const kernels::AdamScalars& s,
                   const at::Tensor& device_step_scalars) {
  float* p = param.data_ptr<float>();
  float* m = exp_avg.data_ptr<float>();
  float* v = exp_avg_sq.data_ptr<float>();
  const float* g = grad.data_ptr<float>();
  if (param.is_cpu()) {
    at::parallel_for(0, param.numel(), 32768, [&](int64_t begin, int64_t end) {
      kernels::AdamStep(p + begin, m + begin, v + begin, g + begin, end - begin, s);
    });
    return;
  }
#ifdef PRL_WITH_CUDA_KERNELS
  const c10::cuda::CUDAGuard guard(param.device());
  const cuda_kernels::AdamConstants constants{s.beta1, s.one_minus_beta1, s.beta2,
                                              s.one_minus_beta2, s.eps};
  const int code = cuda_kernels::AdamStep(
      p, m, v, g, param.numel(), constants,
      device_step_scalars.defined() ? device_step_scalars.data_ptr<float>() : nullptr,
      s.neg_step_size, s.sqrt_bias_correction2,
      c10::cuda::getCurrentCUDAStream(param.device().index()).stream());
  TORCH_CHECK(code == 0, "Adam kernel: ", cuda_kernels::ErrorString(code));
  // written through raw pointers: tell autograd, as LibTorch's in-place operations do, so that a
  // tensor saved for a backward and stepped before it is caught there
  for (const at::Tensor* t : {&param, &exp_avg, &exp_avg_sq}) {
    torch::autograd::impl::bump_version(*t);
  }
#else
  TORCH_CHECK(false, "this build has no CUDA kernels");
#endif
}

}  // namespace

void AdamStepInPlace(const at::Tensor& param, const at::Tensor& exp_avg,
                     const at::Tensor& exp_avg_sq, const at::Tensor& grad, double lr, double beta1,
                     double beta2, double eps, int64_t step) {
  at::NoGradGuard no_grad;
  if (FusedAdamLayout(param, exp_avg, exp_avg_sq, grad)) {
    FusedAdamStep(param, exp_avg, exp_avg_sq, grad,
                  kernels::MakeAdamScalars(lr, beta1, beta2, eps, step), at::Tensor());
    return;
  }
  const double t = static_cast<double>(step);
  const double bias_correction1 = 1.0 - std::pow(beta1, t);
  const double bias_correction2 = 1.0 - std::pow(beta2, t);
  // m ← β1·m + (1-β1)·g;  v ← β2·v + (1-β2)·g²;  p ← p - lr/bc1 · m / (√v/√bc2 + eps)
  at::Tensor m = exp_avg, v = exp_avg_sq, p = param;
  m.mul_(beta1).add_(grad, 1.0 - beta1);
  v.mul_(beta2).addcmul_(grad, grad, 1.0 - beta2);
  at::Tensor denom = v.sqrt().div_(std::sqrt(bias_correction2)).add_(eps);
  p.addcdiv_(m, denom, -lr / bias_correction1);
}

void AdamStepScalars(double lr, double beta1, double beta2, int64_t step, float* out) {
  const kernels::AdamScalars s = kernels::MakeAdamScalars(lr, beta1, beta2, 0.0, step);
  out[0] = s.neg_step_size;
  out[1] = s.sqrt_bias_correction2;
}

void AdamStepInPlaceWithStepScalars(const at::Tensor& param, const at::Tensor& exp_avg,
                                    const at::Tensor& exp_avg_sq, const at::Tensor& grad,
                                    double beta1, double beta2, double eps,
                                    const at::Tensor& step_scalars) {
  TORCH_CHECK(step_scalars.scalar_type() == at::kFloat &&
                  step_scalars.numel() == kAdamStepScalars && step_scalars.is_contiguous() &&
                  step_scalars.device() == param.device(),
              "Adam step scalars: want a contiguous float32 [", kAdamStepScalars, "] on ",
              param.device().str(), ", got ", step_scalars.toString(), " ", step_scalars.sizes(),
              " on ", step_scalars.device().str());
  at::NoGradGuard no_grad;
  if (FusedAdamLayout(param, exp_avg, exp_avg_sq, grad)) {
    kernels::AdamScalars s = kernels::MakeAdamScalars(0.0, beta1, beta2, eps, 1);
    if (param.is_cpu()) {
      s.neg_step_size = step_scalars.data_ptr<float>()[0];
      s.sqrt_bias_correction2 = step_scalars.data_ptr<float>()[1];
      FusedAdamStep(param, exp_avg, exp_avg_sq, grad, s, at::Tensor());
    } else {
      FusedAdamStep(param, exp_avg, exp_avg_sq, grad, s, step_scalars);
    }
    return;
  }
  const at::Tensor neg_step_size = step_scalars.narrow(0, 0, 1);
  const at::Tensor sqrt_bias_correction2 = step_scalars.narrow(0, 1, 1);
  at::Tensor m = exp_avg, v = exp_avg_sq, p = param;
  m.mul_(beta1).add_(grad, 1.0 - beta1);
  v.mul_(beta2).addcmul_(grad, grad, 1.0 - beta2);
  const at::Tensor denom = v.sqrt().div_(sqrt_bias_correction2).add_(eps);
  p.addcdiv_(m * neg_step_size, denom);
}

at::Tensor TanhLogDetJacobian(const at::Tensor& u) {
  return (kLog2 - u - at::softplus(u * -2.0)) * 2.0;
}

namespace {

// SampleSquashedGaussian as one autograd node (kernels::SquashedGaussianForward and Backward on
// the CPU, cuda_kernels:: on a GPU): the composite below is 15 elementwise operations and 13
// backward nodes, each a dispatch and a pass over a [B, A] tensor (on a GPU a kernel launch,
// also inside a CUDA graph), twice per SAC update. Its inputs are (mean, log σ, noise), or on a
// GPU (head, undefined, noise): a policy head's output [..., 2·A], mean then log σ before the
// clamp to [kLogStdMin, kLogStdMax], which the kernels apply as they read it; the backward then
// writes the head's gradient in one tensor with the clamp's mask, where the two views' path
// runs the clamp's backward, both slices' backward and their sum.
struct SquashedGaussianFunction : public torch::autograd::Function<SquashedGaussianFunction> {
  // Row stride of a [rows, dims] view whose rows are contiguous (the policy head's narrows).
  static int64_t RowStride(const at::Tensor& t) { return t.dim() < 2 ? t.size(-1) : t.stride(-2); }

  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const at::Tensor& mean_in,
                                                const at::Tensor& log_std_in,
                                                const at::Tensor& noise_in) {
    const bool cuda = mean_in.is_cuda();
    const bool head = !log_std_in.defined();
    TORCH_CHECK(cuda || !head, "the squashed Gaussian from a head runs on a GPU only");
    // the GPU kernel reads rows at a stride; the CPU kernel wants contiguous inputs
    const at::Tensor mean = cuda ? mean_in : mean_in.contiguous();
    const at::Tensor log_std = head ? mean : cuda ? log_std_in : log_std_in.contiguous();
    const at::Tensor noise = noise_in.contiguous();
    const int64_t dims = noise.size(-1);
    const int64_t rows = dims == 0 ? 0 : noise.numel() / dims;
    at::Tensor action = at::empty(noise.sizes(), noise.options());
    at::Tensor log_prob = at::empty(noise.sizes().slice(0, noise.dim() - 1), noise.options());
    if (cuda) {
#ifdef PRL_WITH_CUDA_KERNELS
      const c10::cuda::CUDAGuard guard(mean.device());
      const float inf = std::numeric_limits<float>::infinity();
      const int code = cuda_kernels::SquashedGaussianForward(
          mean.data_ptr<float>(), RowStride(mean), log_std.data_ptr<float>() + (head ? dims : 0),
          RowStride(log_std), noise.data_ptr<float>(), action.data_ptr<float>(),
          log_prob.data_ptr<float>(), rows, dims, head ? static_cast<float>(kLogStdMin) : -inf,
          head ? static_cast<float>(kLogStdMax) : inf,
          c10::cuda::getCurrentCUDAStream(mean.device().index()).stream());
      TORCH_CHECK(code == 0, "squashed-Gaussian kernel: ", cuda_kernels::ErrorString(code));
#else
      TORCH_CHECK(false, "this build has no CUDA kernels");
#endif
    } else {
      kernels::SquashedGaussianForward(mean.data_ptr<float>(), log_std.data_ptr<float>(),
                                       noise.data_ptr<float>(), action.data_ptr<float>(),
                                       log_prob.data_ptr<float>(), rows, dims);
    }
    ctx->saved_data["head"] = head;
    ctx->save_for_backward({log_std, noise, action});
    return {action, log_prob};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const bool head = ctx->saved_data["head"].toBool();
    const at::Tensor& log_std = saved[0];  // the head itself, for one
    const at::Tensor& noise = saved[1];
    const at::Tensor& action = saved[2];
    const at::Tensor g_action = grads[0].defined() ? grads[0].contiguous() : at::Tensor();
    const at::Tensor g_log_prob = grads[1].defined() ? grads[1].contiguous() : at::Tensor();
    const int64_t dims = action.size(-1);
    const int64_t rows = dims == 0 ? 0 : action.numel() / dims;
    // a head's gradient in one contiguous tensor, its rows 2·dims apart
    at::Tensor g_mean = at::empty(head ? log_std.sizes() : action.sizes(), action.options());
    at::Tensor g_log_std = head ? at::Tensor() : at::empty(action.sizes(), action.options());
    const float* ga = g_action.defined() ? g_action.data_ptr<float>() : nullptr;
    const float* glp = g_log_prob.defined() ? g_log_prob.data_ptr<float>() : nullptr;
    if (action.is_cuda()) {
#ifdef PRL_WITH_CUDA_KERNELS
      const c10::cuda::CUDAGuard guard(action.device());
      const float inf = std::numeric_limits<float>::infinity();
      float* gm = g_mean.data_ptr<float>();
      const int code = cuda_kernels::SquashedGaussianBackward(
          ga, glp, log_std.data_ptr<float>() + (head ? dims : 0), RowStride(log_std),
          noise.data_ptr<float>(), action.data_ptr<float>(), gm,
          head ? gm + dims : g_log_std.data_ptr<float>(), head ? 2 * dims : dims, rows, dims,
          head ? static_cast<float>(kLogStdMin) : -inf, head ? static_cast<float>(kLogStdMax) : inf,
          c10::cuda::getCurrentCUDAStream(action.device().index()).stream());
      TORCH_CHECK(code == 0,
                  "squashed-Gaussian backward kernel: ", cuda_kernels::ErrorString(code));
#endif
    } else {
      kernels::SquashedGaussianBackward(ga, glp, log_std.data_ptr<float>(), noise.data_ptr<float>(),
                                        action.data_ptr<float>(), g_mean.data_ptr<float>(),
                                        g_log_std.data_ptr<float>(), rows, dims);
    }
    return {g_mean, g_log_std, at::Tensor()};
  }
};

#ifdef PRL_WITH_CUDA_KERNELS
// The largest difference, relative to the reference's scale, between the squashed-Gaussian
// kernels and the composite: values and gradients, on fixed inputs in the policy head's layout,
// through both nodes (the two views; the head with the clamp inside), log σ on both sides of
// the clamp's range.
double CheckSquashedGaussian(const at::TensorOptions& opts) {
  const int64_t rows = 37, dims = 5;
  const at::Tensor index = at::arange(rows * 2 * dims, opts).reshape({rows, 2 * dims});
  // the head's layout: mean and log σ side by side in one row, read through narrows
  const at::Tensor head =
      (at::sin(index * 0.37) * 3.0 - (at::fmod(index, 17.0) == 0).to(index.scalar_type()) * 30.0)
          .requires_grad_(true);
  const at::Tensor noise = at::sin(index.narrow(1, 0, dims) * 1.3);
  const at::Tensor g_action = at::cos(index.narrow(1, 0, dims) * 0.7);
  const at::Tensor g_log_prob = at::sin(at::arange(rows, opts) * 0.9);
  const at::Tensor mean = head.narrow(1, 0, dims);
  const at::Tensor log_std = head.narrow(1, dims, dims).clamp(kLogStdMin, kLogStdMax);
  const torch::autograd::variable_list fused =
      SquashedGaussianFunction::apply(mean, log_std, noise);
  const torch::autograd::variable_list from_head =
      SquashedGaussianFunction::apply(head, at::Tensor(), noise);
  const SquashedSample composite = SampleSquashedGaussianComposite(mean, log_std, noise);
  const at::Tensor g_fused =
      torch::autograd::grad({fused[0], fused[1]}, {head}, {g_action, g_log_prob})[0];
  const at::Tensor g_head =
      torch::autograd::grad({from_head[0], from_head[1]}, {head}, {g_action, g_log_prob})[0];
  const at::Tensor g_composite = torch::autograd::grad({composite.action, composite.log_prob},
                                                       {head}, {g_action, g_log_prob})[0];
  double worst = 0;
  for (const auto& [a, b] :
       {std::pair{fused[0], composite.action}, std::pair{fused[1], composite.log_prob},
        std::pair{g_fused, g_composite}, std::pair{from_head[0], composite.action},
        std::pair{from_head[1], composite.log_prob}, std::pair{g_head, g_composite}}) {
    const double diff = (a - b).abs().max().item<double>();
    const double scale = 1.0 + b.abs().max().item<double>();
    worst = std::max(worst, diff / scale);
  }
  return worst;
}

// The same for the ReLU layers against Linear then relu: values and the gradients of x, W and
// b, for a plain layer and an ensemble (shared and own inputs), on both sides of the row limits.
double CheckReluLayers(const at::TensorOptions& opts) {
  double worst = 0;
  for (const int64_t layer_rows : {int64_t{37}, kBatchedEnsembleMaxRows + 76}) {
    for (const int members : {1, 2}) {
      for (const bool shared : {true, false}) {
        if (members == 1 && !shared) continue;
        const int64_t in = 23, out = 40;
        auto pattern = [&](std::vector<int64_t> shape, double f) {
          int64_t n = 1;
          for (int64_t v : shape) n *= v;
          return (at::sin(at::arange(n, opts) * f) * 1.5).reshape(shape).requires_grad_(true);
        };
        std::vector<int64_t> x_shape = {layer_rows, in}, w_shape = {out, in}, b_shape = {out};
        if (members > 1) {
          if (!shared) x_shape.insert(x_shape.begin(), members);
          w_shape.insert(w_shape.begin(), members);
          b_shape.insert(b_shape.begin(), members);
        }
        const at::Tensor x = pattern(x_shape, 0.13), w = pattern(w_shape, 0.29) * 0.3;
        const at::Tensor b = pattern(b_shape, 0.71);
        const at::Tensor w_leaf = w.detach().requires_grad_(true);
        const at::Tensor fused_y = EpilogueLinearReluFunction::apply(x, w_leaf, b);
        const at::Tensor composite_y = at::relu(Linear(x, w_leaf, b, GemmBackend::kAten));
        const at::Tensor g =
            at::cos(at::arange(fused_y.numel(), opts) * 0.53).reshape(fused_y.sizes());
        const auto fused_g = torch::autograd::grad({fused_y}, {x, w_leaf, b}, {g});
        const auto composite_g = torch::autograd::grad({composite_y}, {x, w_leaf, b}, {g});
        std::vector<std::pair<at::Tensor, at::Tensor>> pairs = {{fused_y, composite_y}};
        for (size_t k = 0; k < fused_g.size(); ++k) pairs.emplace_back(fused_g[k], composite_g[k]);
        for (const auto& [a, c] : pairs) {
          const double diff = (a - c).abs().max().item<double>();
          worst = std::max(worst, diff / (1.0 + c.abs().max().item<double>()));
        }
      }
    }
  }
  return worst;
}

// The same for the TD loss against TwinTdLossComposite: the loss, td_error_abs, q_mean and the
// gradient of q, with and without weights, at two batch sizes (one not a power of two: LibTorch's
// mean divides on the CPU where its GPU kernel multiplies by the reciprocal).
double CheckTdLoss(const at::TensorOptions& opts) {
  double worst = 0;
  for (const int64_t rows : {int64_t{256}, int64_t{1037}}) {
    for (const bool weighted : {false, true}) {
      const at::Tensor i = at::arange(2 * rows, opts);
      const at::Tensor q = (at::sin(i * 0.37) * 3.0).reshape({2, rows}).requires_grad_(true);
      const at::Tensor target = at::cos(i.narrow(0, 0, rows) * 0.11) * 2.0;
      const at::Tensor weight =
          weighted ? at::sin(i.narrow(0, 0, rows) * 0.05).abs() + 0.5 : at::Tensor();
      const TdLoss fused = internal::FusedTwinTdLoss(q, target, weight);
      const TdLoss composite = TwinTdLossComposite(q, target, weight);
      const at::Tensor g_fused = torch::autograd::grad({fused.loss}, {q})[0];
      const at::Tensor g_composite = torch::autograd::grad({composite.loss}, {q})[0];
      for (const auto& [a, c] :
           {std::pair{fused.loss, composite.loss},
            std::pair{fused.td_error_abs, composite.td_error_abs},
            std::pair{fused.q_mean, composite.q_mean}, std::pair{g_fused, g_composite}}) {
        const double diff = (a - c).abs().max().item<double>();
        worst = std::max(worst, diff / (1e-3 + c.abs().max().item<double>()));
      }
    }
  }
  return worst;
}

// The same for SAC's actor loss against SacActorLossComposite: the loss and the gradients of R
// and q, at two batch sizes, with rows whose critics tie at the minimum.
double CheckActorLoss(const at::TensorOptions& opts) {
  double worst = 0;
  for (const int64_t rows : {int64_t{256}, int64_t{1037}}) {
    const at::Tensor i = at::arange(rows, opts);
    at::Tensor q0 = at::sin(i * 0.37) * 3.0, q1 = at::cos(i * 0.23) * 3.0;
    q1 = at::where(at::remainder(i, 7) == 0, q0, q1);  // ties
    const at::Tensor q = at::stack({q0, q1}).requires_grad_(true);
    const at::Tensor regularizer = (at::sin(i * 0.05) * 4.0).requires_grad_(true);
    const at::Tensor alpha = at::full({}, 0.37, opts);
    const at::Tensor fused = internal::FusedSacActorLoss(alpha, regularizer, q);
    const at::Tensor composite = SacActorLossComposite(alpha, regularizer, q);
    const auto g_fused = torch::autograd::grad({fused}, {regularizer, q});
    const auto g_composite = torch::autograd::grad({composite}, {regularizer, q});
    for (const auto& [a, c] : {std::pair{fused, composite}, std::pair{g_fused[0], g_composite[0]},
                               std::pair{g_fused[1], g_composite[1]}}) {
      const double diff = (a - c).abs().max().item<double>();
      worst = std::max(worst, diff / (1e-3 + c.abs().max().item<double>()));
    }
  }
  return worst;
}

// The same for TD3's target action against Td3TargetActionComposite: the smoothing and the action
// clamped and not, mean's rows read at the stride of the policy head's output.
double CheckTd3TargetAction(const at::TensorOptions& opts) {
  const int64_t rows = 300, dims = 6;
  const at::Tensor index = at::arange(rows * (dims + 2), opts).reshape({rows, dims + 2});
  const at::Tensor mean = (at::sin(index * 0.37) * 3.0).narrow(1, 0, dims);
  const at::Tensor noise = at::cos(index.narrow(1, 0, dims) * 0.23) * 3.0;
  const at::Tensor fused = FusedTd3TargetAction(mean, noise.contiguous(), 0.2, 0.5);
  const at::Tensor composite = Td3TargetActionComposite(mean, noise, 0.2, 0.5);
  return (fused - composite).abs().max().item<double>();  // values within [-1, 1]
}

// The same for the TD target against TwinTdTargetComposite, with and without the α·R term and
// a reward scale, with ties among the critics.
double CheckTdTarget(const at::TensorOptions& opts) {
  double worst = 0;
  for (const int64_t rows : {int64_t{256}, int64_t{1037}}) {
    const at::Tensor i = at::arange(rows, opts);
    at::Tensor q0 = at::sin(i * 0.37) * 3.0, q1 = at::cos(i * 0.23) * 3.0;
    q1 = at::where(at::remainder(i, 7) == 0, q0, q1);
    const at::Tensor q = at::stack({q0, q1});
    const at::Tensor regularizer = at::sin(i * 0.05) * 4.0, reward = at::cos(i * 0.13);
    const at::Tensor discount =
        at::where(at::remainder(i, 11) == 0, at::zeros_like(i), at::sin(i * 0.07).abs());
    const at::Tensor alpha = at::full({}, 0.37, opts);
    for (const bool soft : {true, false}) {
      for (const double scale : {1.0, 5.0}) {
        const at::Tensor a = soft ? alpha : at::Tensor(), r = soft ? regularizer : at::Tensor();
        const at::Tensor fused =
            internal::FusedTwinTdTarget(q, a, r, reward, discount, scale, 0.99);
        const at::Tensor composite = TwinTdTargetComposite(q, a, r, reward, discount, scale, 0.99);
        const double diff = (fused - composite).abs().max().item<double>();
        worst = std::max(worst, diff / (1e-3 + composite.abs().max().item<double>()));
      }
    }
  }
  return worst;
}

// The same for the temperature terms against SacTemperatureTermsComposite, at two batch sizes,
// both signs of the entropy.
double CheckTemperature(const at::TensorOptions& opts) {
  double worst = 0;
  for (const int64_t rows : {int64_t{256}, int64_t{1037}}) {
    const at::Tensor regularizer = at::sin(at::arange(rows, opts) * 0.37) * 3.0 - 1.0;
    const at::Tensor log_alpha = at::full({1}, -1.3, opts);
    for (const bool negate : {true, false}) {
      const TemperatureTerms fused =
          internal::FusedSacTemperatureTerms(regularizer, log_alpha, -6.0, negate);
      const TemperatureTerms composite =
          SacTemperatureTermsComposite(regularizer, log_alpha, -6.0, negate);
      for (const auto& [a, c] :
           {std::pair{fused.mean, composite.mean}, std::pair{fused.loss, composite.loss},
            std::pair{fused.grad, composite.grad}, std::pair{fused.entropy, composite.entropy}}) {
        const double diff = (a - c).abs().max().item<double>();
        worst = std::max(worst, diff / (1e-3 + c.abs().max().item<double>()));
      }
    }
  }
  return worst;
}

// How many values differ between the Adam kernel and the CPU's pass, which it matches bit for
// bit: a few steps, the step scalars read on the device as in a graph.
int64_t CheckAdam(const at::Device& device) {
  const int64_t n = 4099;  // several blocks and a partial one
  const at::Tensor i = at::arange(n, at::kFloat);
  at::Tensor cpu[4] = {at::sin(i * 0.11), at::sin(i * 0.23) * 1e-3,
                       at::square(at::sin(i * 0.31)) * 1e-5, at::Tensor()};
  at::Tensor gpu[4];
  for (int k = 0; k < 3; ++k) gpu[k] = cpu[k].to(device);
  int64_t adam_mismatches = 0;
  for (int64_t step = 1; step <= 3; ++step) {
    cpu[3] = at::cos(i * (0.17 * static_cast<double>(step)));
    gpu[3] = cpu[3].to(device);
    kernels::AdamScalars s = kernels::MakeAdamScalars(1e-3, 0.9, 0.999, 1e-8, step);
    FusedAdamStep(cpu[0], cpu[1], cpu[2], cpu[3], s, at::Tensor());
    const at::Tensor step_scalars =
        at::tensor({s.neg_step_size, s.sqrt_bias_correction2}, at::kFloat).to(device);
    s.neg_step_size = s.sqrt_bias_correction2 = 0.0f;  // must come from the device
    FusedAdamStep(gpu[0], gpu[1], gpu[2], gpu[3], s, step_scalars);
  }
  for (int k = 0; k < 3; ++k) adam_mismatches += cpu[k].ne(gpu[k].cpu()).sum().item<int64_t>();
  return adam_mismatches;
}

bool CudaKernelsAgree(const at::Device& device, CudaKernel kernel) {
  static absl::Mutex mu(absl::kConstInit);
  static std::map<int, std::array<bool, kCudaKernelFamilies>>* checked =
      new std::map<int, std::array<bool, kCudaKernelFamilies>>();
  absl::MutexLock lock(&mu);
  if (auto it = checked->find(device.index()); it != checked->end()) {
    return it->second[static_cast<int>(kernel)];
  }
  const c10::cuda::CUDAGuard guard(device);  // the capture status of this device's stream
  if (c10::cuda::currentStreamCaptureStatusMayInitCtx() != c10::cuda::CaptureStatus::None) {
    return false;
  }
  // the checks differentiate: out of inference mode (the prior server and policy runners call
  // their networks in it) and with gradients on
  const c10::InferenceMode not_inference(/*enabled=*/false);
  const at::AutoGradMode grad_mode(true);
  // IEEE float32 products on both sides of each comparison, whatever the process chose
  // (learner/device_math.h: with TF32, cuBLAS may pick tensor-core kernels for one side only)
  const at::NoTF32Guard ieee_products;
  const auto opts = at::TensorOptions().dtype(at::kFloat).device(device);
  std::array<bool, kCudaKernelFamilies> agree{};
  // one family at a time: a failed or disagreeing check turns off that family alone
  auto run = [&](CudaKernel family, const char* name, auto check) {
    std::string detail;
    bool ok = false;
    try {
      std::tie(ok, detail) = check();
    } catch (const c10::Error& e) {
      // e.g. out of memory: not the kernels' fault, but the process keeps LibTorch's operations
      PRL_LOG(ERROR) << name << " kernels on " << device.str() << " could not be checked ("
                     << e.what_without_backtrace() << "); using LibTorch's operations";
      return;
    }
    if (ok) {
      PRL_LOG(INFO) << name << " kernels on " << device.str() << ": " << detail;
    } else {
      PRL_LOG(ERROR) << name << " kernels on " << device.str() << " disagree (" << detail
                     << "); using LibTorch's operations";
    }
    agree[static_cast<int>(family)] = ok;
  };
  auto relative = [](double worst) {
    return std::pair{worst <= 1e-5,
                     absl::StrCat("largest relative difference ", worst, " (allowed 1e-5)")};
  };
  run(CudaKernel::kSquashedGaussian, "squashed-Gaussian",
      [&] { return relative(CheckSquashedGaussian(opts)); });
  run(CudaKernel::kReluLayers, "ReLU layer", [&] { return relative(CheckReluLayers(opts)); });
  run(CudaKernel::kTdLoss, "TD loss", [&] { return relative(CheckTdLoss(opts)); });
  run(CudaKernel::kActorLoss, "actor loss", [&] { return relative(CheckActorLoss(opts)); });
  run(CudaKernel::kTdTarget, "TD target", [&] { return relative(CheckTdTarget(opts)); });
  run(CudaKernel::kTemperature, "temperature", [&] { return relative(CheckTemperature(opts)); });
  run(CudaKernel::kTd3TargetAction, "TD3 target action",
      [&] { return relative(CheckTd3TargetAction(opts)); });
  run(CudaKernel::kAdam, "Adam", [&] {
    const int64_t differ = CheckAdam(device);
    return std::pair{differ == 0,
                     absl::StrCat(differ, " values differ from the CPU's pass (allowed 0)")};
  });
  (*checked)[device.index()] = agree;
  return agree[static_cast<int>(kernel)];
}
#endif

bool FusedSquashedGaussian(const at::Tensor& mean, const at::Tensor& log_std,
                           const at::Tensor& noise) {
  for (const at::Tensor* t : {&mean, &log_std, &noise}) {
    if (t->scalar_type() != at::kFloat || t->dim() < 1 || t->device() != mean.device()) {
      return false;
    }
  }
  if (mean.sizes() != log_std.sizes() || mean.sizes() != noise.sizes()) return false;
  if (mean.is_cpu()) return true;
#ifdef PRL_WITH_CUDA_KERNELS
  if (mean.is_cuda()) {
    // the kernels read mean and log σ rows at a stride, each row's values contiguous
    for (const at::Tensor* t : {&mean, &log_std}) {
      if (t->stride(-1) != 1 || (t->dim() > 2 && !t->is_contiguous())) return false;
    }
    return CudaKernelsAgree(mean.device(), CudaKernel::kSquashedGaussian);
  }
#endif
  return false;
}

}  // namespace

SquashedSample SampleSquashedGaussian(const at::Tensor& mean, const at::Tensor& log_std,
                                      const at::Tensor& noise) {
  if (FusedSquashedGaussian(mean, log_std, noise)) {
    const torch::autograd::variable_list out =
        SquashedGaussianFunction::apply(mean, log_std, noise);
    return {out[0], out[1]};
  }
  return SampleSquashedGaussianComposite(mean, log_std, noise);
}

SquashedSample SampleSquashedGaussian(const PolicyNetwork::Output& out, const at::Tensor& noise) {
#ifdef PRL_WITH_CUDA_KERNELS
  const at::Tensor& head = out.head;
  // the head's node where mean is the head's first half (its view, as Forward returns it) and
  // the two-view node would take the kernels too
  if (head.defined() && head.is_cuda() && head.dim() >= 1 && noise.dim() == head.dim() &&
      head.size(-1) == 2 * noise.size(-1) && out.mean.data_ptr() == head.data_ptr() &&
      out.mean.strides() == head.strides() && head.stride(-1) == 1 &&
      (head.dim() <= 2 || head.is_contiguous()) &&
      FusedSquashedGaussian(out.mean, out.log_std, noise)) {
    const torch::autograd::variable_list r =
        SquashedGaussianFunction::apply(head, at::Tensor(), noise);
    return {r[0], r[1]};
  }
#endif
  return SampleSquashedGaussian(out.mean, out.log_std, noise);
}

SquashedSample SampleSquashedGaussianComposite(const at::Tensor& mean, const at::Tensor& log_std,
                                               const at::Tensor& noise) {
  at::Tensor u = at::addcmul(mean, log_std.exp(), noise);
  // log N(u; mean, std) with (u - mean) / std = noise exactly, then the tanh Jacobian
  const int64_t dims = mean.size(-1);
  at::Tensor per_dim = noise.square() * -0.5 - log_std - TanhLogDetJacobian(u);
  return {at::tanh(u), per_dim.sum(-1) - dims * kHalfLog2Pi};
}

namespace {
// TdLossFunction's weight: `weight`, or an empty tensor for none.
at::Tensor WeightInput(const at::Tensor& weight, const at::Tensor& q) {
  return weight.defined() ? weight : at::empty({0}, q.options());
}
}  // namespace

TdLoss TwinTdLossComposite(const at::Tensor& q, const at::Tensor& target,
                           const at::Tensor& weight) {
  const at::Tensor error = q - target;
  at::Tensor squared = error.square();
  if (weight.defined()) squared = squared * weight;
  return {squared.sum(0).mean() * 0.5, error.detach().abs().mean(0), q.detach().mean()};
}

TdLoss TwinTdLoss(const at::Tensor& q, const at::Tensor& target, const at::Tensor& weight) {
#ifdef PRL_WITH_CUDA_KERNELS
  // the forward kernel is one block: meant for a batch's rows, not for millions
  constexpr int64_t kFusedTdLossMaxRows = 65536;
  if (q.is_cuda() && TdLossShapes(q, target, weight) && q.size(1) <= kFusedTdLossMaxRows &&
      CudaKernelsAgree(q.device(), CudaKernel::kTdLoss)) {
    const torch::autograd::variable_list out =
        TdLossFunction::apply(q, target, WeightInput(weight, q));
    return {out[0], out[1], out[2]};
  }
#endif
  return TwinTdLossComposite(q, target, weight);
}

at::Tensor SacActorLossComposite(const at::Tensor& alpha, const at::Tensor& regularizer,
                                 const at::Tensor& q) {
  return (alpha * regularizer - q.amin(0)).mean();
}

at::Tensor SacActorLoss(const at::Tensor& alpha, const at::Tensor& regularizer,
                        const at::Tensor& q) {
#ifdef PRL_WITH_CUDA_KERNELS
  constexpr int64_t kFusedActorLossMaxRows = 65536;  // a one-block forward, as the TD loss's
  if (q.is_cuda() && ActorLossShapes(alpha, regularizer, q) &&
      q.size(1) <= kFusedActorLossMaxRows && CudaKernelsAgree(q.device(), CudaKernel::kActorLoss)) {
    return ActorLossFunction::apply(alpha.reshape({}), regularizer, q);
  }
#endif
  return SacActorLossComposite(alpha, regularizer, q);
}

at::Tensor TwinTdTargetComposite(const at::Tensor& q, const at::Tensor& alpha,
                                 const at::Tensor& regularizer, const at::Tensor& reward,
                                 const at::Tensor& discount, double reward_scale, double gamma) {
  at::Tensor value = q.amin(0);
  if (alpha.defined()) value = value - alpha * regularizer;
  // (no product by one: on a GPU each operation is a kernel of its own)
  return at::addcmul(reward_scale != 1.0 ? reward * reward_scale : reward, discount, value, gamma);
}

at::Tensor TwinTdTarget(const at::Tensor& q, const at::Tensor& alpha, const at::Tensor& regularizer,
                        const at::Tensor& reward, const at::Tensor& discount, double reward_scale,
                        double gamma) {
#ifdef PRL_WITH_CUDA_KERNELS
  if (q.is_cuda() && TdTargetShapes(q, alpha, regularizer, reward, discount) &&
      CudaKernelsAgree(q.device(), CudaKernel::kTdTarget)) {
    return FusedTdTargetUnchecked(q, alpha, regularizer, reward, discount, reward_scale, gamma);
  }
#endif
  return TwinTdTargetComposite(q, alpha, regularizer, reward, discount, reward_scale, gamma);
}

at::Tensor Td3TargetActionComposite(const at::Tensor& mean, const at::Tensor& noise,
                                    double policy_noise, double noise_clip) {
  const at::Tensor smoothing = (noise * policy_noise).clamp_(-noise_clip, noise_clip);
  return (at::tanh(mean) + smoothing).clamp_(-1.0, 1.0);
}

at::Tensor Td3TargetAction(const at::Tensor& mean, const at::Tensor& noise, double policy_noise,
                           double noise_clip) {
#ifdef PRL_WITH_CUDA_KERNELS
  if (Td3TargetActionShapes(mean, noise) &&
      CudaKernelsAgree(mean.device(), CudaKernel::kTd3TargetAction)) {
    return FusedTd3TargetAction(mean, noise, policy_noise, noise_clip);
  }
#endif
  return Td3TargetActionComposite(mean, noise, policy_noise, noise_clip);
}

TemperatureTerms SacTemperatureTermsComposite(const at::Tensor& regularizer,
                                              const at::Tensor& log_alpha, double target,
                                              bool negate_entropy) {
  const at::Tensor mean = regularizer.detach().mean();
  const at::Tensor gap = mean + target;
  // the loss before the step changes log α
  return {mean, -(log_alpha.reshape({}) * gap), -gap.reshape({1}), negate_entropy ? -mean : mean};
}

TemperatureTerms SacTemperatureTerms(const at::Tensor& regularizer, const at::Tensor& log_alpha,
                                     double target, bool negate_entropy) {
#ifdef PRL_WITH_CUDA_KERNELS
  constexpr int64_t kFusedTemperatureMaxRows = 65536;  // a one-block kernel, as the TD loss's
  if (regularizer.is_cuda() && TemperatureShapes(regularizer, log_alpha) &&
      regularizer.size(0) <= kFusedTemperatureMaxRows &&
      CudaKernelsAgree(regularizer.device(), CudaKernel::kTemperature)) {
    return FusedTemperatureUnchecked(regularizer, log_alpha, target, negate_entropy);
  }
#endif
  return SacTemperatureTermsComposite(regularizer, log_alpha, target, negate_entropy);
}

namespace internal {

TemperatureTerms FusedSacTemperatureTerms(const at::Tensor& regularizer,
                                          const at::Tensor& log_alpha, double target,
                                          bool negate_entropy) {
  TORCH_CHECK(
      TemperatureShapes(regularizer, log_alpha) && (regularizer.is_cpu() || regularizer.is_cuda()),
      "FusedSacTemperatureTerms: regularizer ", regularizer.sizes(), ", log_alpha ",
      log_alpha.sizes(),
      " are not float32 [B] and [1] (no gradient) on one device, the CPU or a GPU");
  return FusedTemperatureUnchecked(regularizer, log_alpha, target, negate_entropy);
}

at::Tensor FusedTwinTdTarget(const at::Tensor& q, const at::Tensor& alpha,
                             const at::Tensor& regularizer, const at::Tensor& reward,
                             const at::Tensor& discount, double reward_scale, double gamma) {
  TORCH_CHECK(
      TdTargetShapes(q, alpha, regularizer, reward, discount) && (q.is_cpu() || q.is_cuda()),
      "FusedTwinTdTarget: q ", q.sizes(), ", reward ", reward.sizes(), ", discount ",
      discount.sizes(),
      " are not float32 [K, B], [B] and [B] without gradients (α [] and R [B] or neither) "
      "on the CPU or a GPU");
  return FusedTdTargetUnchecked(q, alpha, regularizer, reward, discount, reward_scale, gamma);
}

at::Tensor FusedSacActorLoss(const at::Tensor& alpha, const at::Tensor& regularizer,
                             const at::Tensor& q) {
  TORCH_CHECK(ActorLossShapes(alpha, regularizer, q) && (q.is_cpu() || q.is_cuda()),
              "FusedSacActorLoss: alpha ", alpha.sizes(), ", regularizer ", regularizer.sizes(),
              ", q ", q.sizes(), " are not float32 [], [B] and [K, B] on the CPU or a GPU");
  return ActorLossFunction::apply(alpha.reshape({}), regularizer, q);
}

TdLoss FusedTwinTdLoss(const at::Tensor& q, const at::Tensor& target, const at::Tensor& weight) {
  TORCH_CHECK(TdLossShapes(q, target, weight) && (q.is_cpu() || q.is_cuda()), "FusedTwinTdLoss: q ",
              q.sizes(), ", target ", target.sizes(),
              " are not float32 [K, B] and [B] (no gradient) on the CPU or a GPU");
  const torch::autograd::variable_list out =
      TdLossFunction::apply(q, target, WeightInput(weight, q));
  return {out[0], out[1], out[2]};
}

}  // namespace internal

// ---- ParameterBlock ----

int ParameterBlock::Declare(std::string name, std::vector<int64_t> shape, Init init) {
  PRL_CHECK(!flat_.defined()) << "ParameterBlock::Declare after Allocate";
  int64_t numel = 1;
  for (int64_t s : shape) numel *= s;
  entries_.push_back({std::move(name), std::move(shape), init, numel_, at::Tensor()});
  numel_ += numel;
  return static_cast<int>(entries_.size()) - 1;
}

void ParameterBlock::Allocate(at::Device device, bool requires_grad) {
  const auto options = at::TensorOptions().dtype(at::kFloat).device(device);
  flat_ = at::zeros({numel_}, options);
  if (requires_grad) flat_grad_ = at::zeros({numel_}, options);
  MakeViews();
}

void ParameterBlock::MakeViews() {
  for (Entry& e : entries_) {
    int64_t numel = 1;
    for (int64_t s : e.shape) numel *= s;
    e.view = flat_.narrow(0, e.offset, numel).view(e.shape);
    if (flat_grad_.defined()) {
      e.view.requires_grad_(true);
      e.view.mutable_grad() = flat_grad_.narrow(0, e.offset, numel).view(e.shape);
    }
  }
}

ParameterBlock& ParameterBlock::GradientShard(int shard) {
  PRL_CHECK(flat_grad_.defined()) << "ParameterBlock::GradientShard of a block without gradients";
  PRL_CHECK(shard >= 1) << "ParameterBlock::GradientShard(" << shard << ")";
  while (static_cast<int>(shards_.size()) < shard) {
    auto copy = std::make_unique<ParameterBlock>();
    copy->entries_ = entries_;
    copy->numel_ = numel_;
    copy->flat_ = flat_;
    copy->flat_grad_ = at::zeros_like(flat_grad_);
    copy->MakeViews();
    shards_.push_back(std::move(copy));
  }
  return *shards_[shard - 1];
}

void ParameterBlock::Initialize(at::Generator& generator) {
  at::Tensor cpu = at::empty({numel_}, at::kFloat);
  for (const Entry& e : entries_) {
    int64_t numel = 1;
    for (int64_t s : e.shape) numel *= s;
    at::Tensor part = cpu.narrow(0, e.offset, numel);
    if (e.init.kind == Init::kUniform) {
      part.uniform_(-e.init.value, e.init.value, generator);
    } else {
      part.fill_(e.init.value);
    }
  }
  flat_.copy_(cpu);
}

void ParameterBlock::ZeroGrad() {
  if (flat_grad_.defined()) flat_grad_.zero_();
}

void ParameterBlock::GradientInto(const at::Tensor& loss) {
  PRL_CHECK(flat_grad_.defined()) << "ParameterBlock::GradientInto of a block without gradients";
  std::vector<at::Tensor> params;
  params.reserve(entries_.size());
  for (const Entry& e : entries_) params.push_back(e.view);
  const std::vector<at::Tensor> grads =
      torch::autograd::grad({loss}, params, /*grad_outputs=*/{}, /*retain_graph=*/false,
                            /*create_graph=*/false, /*allow_unused=*/true);
  std::vector<at::Tensor> flat;
  flat.reserve(grads.size());
  for (size_t i = 0; i < grads.size(); ++i) {
    flat.push_back(grads[i].defined() ? grads[i].reshape({-1})
                                      : at::zeros({params[i].numel()}, flat_grad_.options()));
  }
  at::NoGradGuard no_grad;
  at::cat_out(flat_grad_, flat, 0);
}

// ---- MlpTrunk ----

MlpTrunk::MlpTrunk(ParameterBlock* block, const std::string& prefix, int64_t input_dim,
                   const v1::NetworkSpec& resolved, int ensemble)
    : activation_(resolved.activation()), ensemble_(ensemble), output_dim_(input_dim) {
  int index = 0;  // nn.Sequential index: Linear, [LayerNorm], activation
  int64_t in = input_dim;
  for (int32_t size : resolved.hidden_sizes()) {
    const std::string linear = absl::StrCat(prefix, ".", index++, ".");
    Layer layer;
    layer.weight =
        block->Declare(linear + "weight", EnsembleShape(ensemble, {size, in}), LinearInit(in));
    layer.bias = block->Declare(linear + "bias", EnsembleShape(ensemble, {size}), LinearInit(in));
    if (resolved.layer_norm()) {
      const std::string norm = absl::StrCat(prefix, ".", index++, ".");
      layer.ln_weight = block->Declare(norm + "weight", EnsembleShape(ensemble, {size}),
                                       {ParameterBlock::Init::kConstant, 1.0});
      layer.ln_bias = block->Declare(norm + "bias", EnsembleShape(ensemble, {size}),
                                     {ParameterBlock::Init::kConstant, 0.0});
    }
    ++index;  // the activation has no parameters
    layers_.push_back(layer);
    in = size;
  }
  output_dim_ = in;
}

at::Tensor MlpTrunk::Forward(const ParameterBlock& block, const at::Tensor& x, GemmBackend gemm,
                             bool detach, int member) const {
  // a parameter as this call uses it: detached and/or one member's slice
  auto get = [&](int index) {
    at::Tensor p = block.param(index);
    if (detach) p = p.detach();
    if (member >= 0 && ensemble_ > 1) p = p.select(0, member);
    return p;
  };
  const bool stacked = ensemble_ > 1 && member < 0;
  at::Tensor h = x;
  for (const Layer& layer : layers_) {
    if (layer.ln_weight < 0 && IsRelu(activation_)) {
      h = LinearRelu(h, get(layer.weight), get(layer.bias), gemm);
      continue;
    }
    h = Linear(h, get(layer.weight), get(layer.bias), gemm);
    if (layer.ln_weight >= 0) {
      const int64_t size = h.size(-1);
      if (stacked) {
        h = at::addcmul(get(layer.ln_bias).unsqueeze(1), at::layer_norm(h, {size}),
                        get(layer.ln_weight).unsqueeze(1));
      } else {
        h = at::layer_norm(h, {size}, get(layer.ln_weight), get(layer.ln_bias), kLayerNormEps);
      }
    }
    h = Activate(h, activation_);
  }
  return h;
}

std::vector<MlpTrunk::LinearIndices> MlpTrunk::linear_layers() const {
  std::vector<LinearIndices> out;
  out.reserve(layers_.size());
  for (const Layer& layer : layers_) out.push_back({layer.weight, layer.bias});
  return out;
}

bool MlpTrunk::PlainRelu() const {
  if (ensemble_ != 1 || !IsRelu(activation_)) return false;
  for (const Layer& layer : layers_) {
    if (layer.ln_weight >= 0) return false;
  }
  return true;
}

namespace {

// The offset of parameter `index` (member `member` of an ensemble parameter) in the block.
int64_t MemberOffset(const ParameterBlock& block, int index, int member) {
  const at::Tensor& p = block.param(index);
  const int64_t per_member = p.dim() >= 1 && member > 0 ? p.numel() / p.size(0) : 0;
  return (p.data_ptr<float>() - block.flat().data_ptr<float>()) + member * per_member;
}

// A linear layer's slot: weight [.., out, in], bias [.., out].
dense::LinearSlot SlotOf(const ParameterBlock& block, int weight, int bias, int member) {
  const at::Tensor& w = block.param(weight);
  return {MemberOffset(block, weight, member), MemberOffset(block, bias, member), w.size(-1),
          w.size(-2)};
}

bool DenseBlock(const ParameterBlock& block) {
  return block.flat().defined() && block.flat().is_cpu() &&
         block.flat().scalar_type() == at::kFloat;
}

}  // namespace

std::optional<std::vector<dense::LinearSlot>> MlpTrunk::DenseSlots(const ParameterBlock& block,
                                                                   int member) const {
  if (!IsRelu(activation_) || layers_.empty() || !DenseBlock(block) || member < 0 ||
      member >= ensemble_) {
    return std::nullopt;
  }
  std::vector<dense::LinearSlot> slots;
  for (const Layer& layer : layers_) {
    if (layer.ln_weight >= 0) return std::nullopt;
    slots.push_back(SlotOf(block, layer.weight, layer.bias, ensemble_ > 1 ? member : 0));
  }
  return slots;
}

std::optional<dense::DenseMlp> MlpTrunk::DenseWithHeads(
    const ParameterBlock& block, const std::vector<LinearIndices>& heads) const {
  std::optional<std::vector<dense::LinearSlot>> trunk = DenseSlots(block, 0);
  if (!trunk) return std::nullopt;
  std::vector<dense::LinearSlot> outputs;
  for (const LinearIndices& h : heads) outputs.push_back(SlotOf(block, h.weight, h.bias, 0));
  return dense::DenseMlp(*std::move(trunk), std::move(outputs));
}

// ---- PolicyNetwork ----

PolicyNetwork::PolicyNetwork(int64_t input_dim, int64_t output_dim, const v1::NetworkSpec& resolved,
                             Head head, const NetworkOptions& options)
    : input_dim_(input_dim),
      output_dim_(output_dim),
      head_(head),
      gemm_(options.gemm),
      trunk_(&block_, "trunk", input_dim, resolved, /*ensemble=*/1) {
  const int64_t rows = head == Head::kSquashedGaussian ? 2 * output_dim : output_dim;
  const int64_t hidden = trunk_.output_dim();
  head_weight_ = block_.Declare("head.weight", {rows, hidden}, LinearInit(hidden));
  head_bias_ = block_.Declare("head.bias", {rows}, LinearInit(hidden));
  block_.Allocate(options.device, options.trainable);
}

PolicyNetwork::Output PolicyNetwork::Forward(const at::Tensor& obs) const {
  at::Tensor h = trunk_.Forward(block_, obs, gemm_);
  at::Tensor out = Linear(h, block_.param(head_weight_), block_.param(head_bias_), gemm_);
  if (head_ == Head::kDeterministic) return {out, at::Tensor(), at::Tensor()};
  return {out.narrow(-1, 0, output_dim_),
          out.narrow(-1, output_dim_, output_dim_).clamp(kLogStdMin, kLogStdMax), out};
}

std::optional<dense::DenseMlp> PolicyNetwork::Dense() const {
  std::optional<std::vector<dense::LinearSlot>> trunk = trunk_.DenseSlots(block_, 0);
  if (!trunk) return std::nullopt;
  return dense::DenseMlp(*std::move(trunk), {SlotOf(block_, head_weight_, head_bias_, 0)});
}

std::vector<std::pair<std::string, at::Tensor>> PolicyNetwork::NamedParameters() const {
  std::vector<std::pair<std::string, at::Tensor>> named;
  for (int i = 0; i < block_.size(); ++i) {
    if (i == head_weight_ || i == head_bias_) continue;
    named.emplace_back(block_.name(i), block_.param(i).detach());
  }
  const at::Tensor w = block_.param(head_weight_).detach();
  const at::Tensor b = block_.param(head_bias_).detach();
  named.emplace_back("mean.weight", w.narrow(0, 0, output_dim_));
  named.emplace_back("mean.bias", b.narrow(0, 0, output_dim_));
  if (head_ == Head::kSquashedGaussian) {
    named.emplace_back("log_std.weight", w.narrow(0, output_dim_, output_dim_));
    named.emplace_back("log_std.bias", b.narrow(0, output_dim_, output_dim_));
  }
  return named;
}

// ---- QEnsemble ----

QEnsemble::QEnsemble(int64_t obs_dim, int64_t action_dim, const v1::NetworkSpec& resolved,
                     int ensemble, const NetworkOptions& options)
    : ensemble_(ensemble),
      gemm_(options.gemm),
      trunk_(&block_, "trunk", obs_dim + action_dim, resolved, ensemble) {
  const int64_t hidden = trunk_.output_dim();
  out_weight_ =
      block_.Declare("out.weight", EnsembleShape(ensemble, {1, hidden}), LinearInit(hidden));
  out_bias_ = block_.Declare("out.bias", EnsembleShape(ensemble, {1}), LinearInit(hidden));
  block_.Allocate(options.device, options.trainable);
}

at::Tensor QEnsemble::Run(const at::Tensor& obs, const at::Tensor& action, bool detach,
                          int member) const {
  at::Tensor h = trunk_.Forward(block_, at::cat({obs, action}, -1), gemm_, detach, member);
  at::Tensor w = block_.param(out_weight_);
  at::Tensor b = block_.param(out_bias_);
  if (detach) {
    w = w.detach();
    b = b.detach();
  }
  if (member >= 0 && ensemble_ > 1) {
    w = w.select(0, member);
    b = b.select(0, member);
  }
  return Linear(h, w, b, gemm_).squeeze(-1);
}

at::Tensor QEnsemble::Forward(const at::Tensor& obs, const at::Tensor& action, bool detach) const {
  at::Tensor q = Run(obs, action, detach, -1);
  return ensemble_ > 1 ? q : q.unsqueeze(0);
}

std::optional<dense::DenseMlp> QEnsemble::DenseMember(int k) const {
  std::optional<std::vector<dense::LinearSlot>> trunk = trunk_.DenseSlots(block_, k);
  if (!trunk) return std::nullopt;
  return dense::DenseMlp(*std::move(trunk),
                         {SlotOf(block_, out_weight_, out_bias_, ensemble_ > 1 ? k : 0)});
}

at::Tensor QEnsemble::ForwardMember(int k, const at::Tensor& obs, const at::Tensor& action,
                                    bool detach) const {
  return Run(obs, action, detach, k);
}

}  // namespace prl::models
