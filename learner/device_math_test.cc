#include "learner/device_math.h"

#include "ATen/ATen.h"
#include "gtest/gtest.h"

#ifdef PRL_WITH_CUDA
#include "ATen/cuda/CUDAContext.h"
#endif

namespace prl::learner {
namespace {

bool HasGpu() { return at::hasCUDA() && at::getNumGPUs() > 0; }

// The setting takes, CPU products do not change with it, and on a GPU (skipped without one) a
// float32 product with TF32 allowed differs from the IEEE one by TF32's rounding, and is the IEEE
// one again once it is turned off.
TEST(DeviceMathTest, Tf32ProductsOnlyWhereAllowedAndOnlyOnAGpu) {
  at::manual_seed(3);
  const at::Tensor a = at::randn({512, 256}), b = at::randn({256, 256});
  const at::Tensor cpu_ieee = at::mm(a, b);
  AllowTf32Products(false);
  EXPECT_FALSE(Tf32ProductsAllowed());
  AllowTf32Products(true);
  EXPECT_TRUE(Tf32ProductsAllowed());
  EXPECT_TRUE(at::equal(at::mm(a, b), cpu_ieee));
  if (HasGpu()) {
    const at::Tensor ga = a.to(at::kCUDA), gb = b.to(at::kCUDA);
    const at::Tensor tf32 = at::mm(ga, gb).cpu();
    AllowTf32Products(false);
    const at::Tensor ieee = at::mm(ga, gb).cpu();
    const double scale = ieee.abs().max().item<double>();
    EXPECT_LT((ieee - cpu_ieee).abs().max().item<double>(), 1e-5 * scale);
    // TF32 keeps 10 of float32's 23 mantissa bits: errors of order 1e-3 relative, far above
    // float32's (on a GPU without TF32 tensor cores, before Ampere, the products are equal)
    const double tf32_error = (tf32 - cpu_ieee).abs().max().item<double>();
    EXPECT_LT(tf32_error, 1e-2 * scale);
#ifdef PRL_WITH_CUDA
    if (at::cuda::getCurrentDeviceProperties()->major >= 8) {
      EXPECT_GT(tf32_error, 1e-5 * scale);
    }
#endif
  }
  AllowTf32Products(false);
  EXPECT_FALSE(Tf32ProductsAllowed());
}

}  // namespace
}  // namespace prl::learner
