// Single-precision matrix products for the learner's linear layers on CPU, through oneDNN's
// dnnl_sgemm when the process can load it.
//
// Why: Debian's LibTorch (and PyTorch) route float32 matmul to the system BLAS, which on a
// stock Debian machine is the netlib reference BLAS (about 1.5 GFLOP/s on one core); oneDNN,
// which LibTorch itself links, ships a JIT-compiled sgemm that runs the same products 50-100x
// faster. The library is found with dlopen at run time, so builds against other LibTorch
// distributions (which bundle oneDNN privately) still work and simply fall back to ATen.
// No LibTorch headers here. Thread-safe.
#ifndef PRL_MODELS_GEMM_H_
#define PRL_MODELS_GEMM_H_

#include <cstdint>

namespace prl::models {

// True when dnnl_sgemm was found and works (looked up once, on first use, and probed with small
// products it must get exactly right; a library that loads but fails or miscomputes — e.g. a
// system oneDNN next to a LibTorch bundling its own — leaves the ATen path in use).
bool FastSgemmAvailable();

// Row-major C = alpha · op(A) · op(B) + beta · C, where op(X) is X or its transpose, C is m x n
// and the inner dimension is k; lda, ldb and ldc are row strides in elements. Uses oneDNN's
// threads (the calling thread's OpenMP setting, i.e. at::set_num_threads). Returns false when
// FastSgemmAvailable() is false or oneDNN reports an error (C is then unspecified).
bool FastSgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
               int64_t ldc);

namespace internal {

// dnnl_sgemm's C signature (dnnl_dim_t = int64_t, dnnl_status_t 0 on success).
using SgemmFn = int (*)(char transa, char transb, int64_t m, int64_t n, int64_t k, float alpha,
                        const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                        float* c, int64_t ldc);

// The probe FastSgemmAvailable runs: true when `fn` returns success and the exact results for a
// few small products (every transpose combination, alpha and beta) — tests feed it broken
// implementations.
bool SgemmWorks(SgemmFn fn);

}  // namespace internal

}  // namespace prl::models

#endif  // PRL_MODELS_GEMM_H_
