#include "models/gemm.h"

#include <dlfcn.h>

#include <array>
#include <initializer_list>

namespace prl::models {
namespace {

using internal::SgemmFn;

SgemmFn LoadSgemm() {
  // already loaded by libtorch_cpu on Debian; dlopen then only bumps a reference count.
  for (const char* name : {"libdnnl.so.2", "libdnnl.so", "libdnnl.so.3"}) {
    // DEEPBIND: the library's own symbols first. A LibTorch that links its own oneDNN in (PyPI's
    // torch) exports the same names, and without it this copy's calls would land in that one
    // and fail.
    void* handle = dlopen(name, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (handle == nullptr) continue;
    if (void* symbol = dlsym(handle, "dnnl_sgemm")) {
      auto fn = reinterpret_cast<SgemmFn>(symbol);
      if (internal::SgemmWorks(fn)) return fn;
    }
    dlclose(handle);
  }
  return nullptr;
}

SgemmFn Sgemm() {
  static const SgemmFn fn = LoadSgemm();
  return fn;
}

}  // namespace

namespace internal {

bool SgemmWorks(SgemmFn fn) {
  if (fn == nullptr) return false;
  // A = [[1, 2, 3], [4, 5, 6]] (2 x 3), B = [[1, 0], [2, 1], [0, 3]] (3 x 2):
  // A·B = [[5, 11], [14, 23]], small integers every float computes exactly.
  const std::array<float, 6> a = {1, 2, 3, 4, 5, 6};
  const std::array<float, 6> at = {1, 4, 2, 5, 3, 6};  // Aᵀ stored row-major (3 x 2)
  const std::array<float, 6> b = {1, 0, 2, 1, 0, 3};
  const std::array<float, 6> bt = {1, 2, 0, 0, 1, 3};  // Bᵀ stored row-major (2 x 3)
  const std::array<float, 4> want = {5, 11, 14, 23};
  for (int t = 0; t < 4; ++t) {
    const bool ta = (t & 1) != 0, tb = (t & 2) != 0;
    // C = 2·op(A)·op(B) + 1·C0 with C0 = 1 everywhere
    std::array<float, 4> c = {1, 1, 1, 1};
    const int status = fn(ta ? 'T' : 'N', tb ? 'T' : 'N', 2, 2, 3, 2.0f, ta ? at.data() : a.data(),
                          ta ? 2 : 3, tb ? bt.data() : b.data(), tb ? 3 : 2, 1.0f, c.data(), 2);
    if (status != 0) return false;
    for (int i = 0; i < 4; ++i) {
      if (c[i] != 2 * want[i] + 1) return false;
    }
  }
  return true;
}

}  // namespace internal

bool FastSgemmAvailable() { return Sgemm() != nullptr; }

bool FastSgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
               int64_t ldc) {
  SgemmFn fn = Sgemm();
  if (fn == nullptr) return false;
  return fn(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c,
            ldc) == 0;
}

}  // namespace prl::models
