#include "models/gemm.h"

#include <dlfcn.h>

#include <initializer_list>

namespace prl::models {
namespace {

// dnnl_sgemm from oneDNN's C API (dnnl.h): dnnl_dim_t is int64_t and dnnl_status_t an enum
// whose success value is 0. Declared here so the build needs no oneDNN headers.
using SgemmFn = int (*)(char transa, char transb, int64_t m, int64_t n, int64_t k, float alpha,
                        const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                        float* c, int64_t ldc);

SgemmFn LoadSgemm() {
  // already loaded by libtorch_cpu on Debian; dlopen then only bumps a reference count.
  for (const char* name : {"libdnnl.so.2", "libdnnl.so", "libdnnl.so.3"}) {
    void* handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) continue;
    if (void* symbol = dlsym(handle, "dnnl_sgemm")) return reinterpret_cast<SgemmFn>(symbol);
    dlclose(handle);
  }
  return nullptr;
}

SgemmFn Sgemm() {
  static const SgemmFn fn = LoadSgemm();
  return fn;
}

}  // namespace

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
