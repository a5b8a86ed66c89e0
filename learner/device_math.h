// How a GPU learner rounds its float32 matrix products.
//
// By default every product is IEEE float32, as on the CPU (a GPU update's losses then match
// the CPU's to float rounding). AllowTf32Products(true) lets cuBLAS run them on TF32 tensor
// cores (inputs rounded to a 10-bit mantissa, float32 accumulation; PyTorch's
// torch.backends.cuda.matmul.allow_tf32): on Ampere and later GPUs several times the
// throughput of float32 at large batches, with products accurate to about 1e-3 relative
// instead of 1e-7. The CPU is not affected.
//
// Process-wide, as PyTorch's setting is: call it before the first update (a CUDA graph keeps the
// math mode it was captured with). Thread-compatible with updates on other threads only before
// they start.
#ifndef PRL_LEARNER_DEVICE_MATH_H_
#define PRL_LEARNER_DEVICE_MATH_H_

namespace prl::learner {

void AllowTf32Products(bool allow);
bool Tf32ProductsAllowed();

}  // namespace prl::learner

#endif  // PRL_LEARNER_DEVICE_MATH_H_
