#include "models/gemm.h"

#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace prl::models {
namespace {

// A plain row-major reference: C = alpha·op(A)·op(B) + beta·C.
int Reference(char transa, char transb, int64_t m, int64_t n, int64_t k, float alpha,
              const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
              int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0;
      for (int64_t p = 0; p < k; ++p) {
        const float av = transa == 'T' ? a[p * lda + i] : a[i * lda + p];
        const float bv = transb == 'T' ? b[j * ldb + p] : b[p * ldb + j];
        sum += static_cast<double>(av) * bv;
      }
      c[i * ldc + j] = static_cast<float>(alpha * sum + beta * c[i * ldc + j]);
    }
  }
  return 0;
}

int Failing(char, char, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
            int64_t, float, float*, int64_t) {
  return 5;  // dnnl_runtime_error: what a mismatched system oneDNN answered
}

// Succeeds but ignores transposes: a wrong library must not pass either.
int IgnoresTranspose(char, char, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                     int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  return Reference('N', 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

TEST(GemmTest, TheProbeAcceptsACorrectSgemmAndRefusesBrokenOnes) {
  EXPECT_TRUE(internal::SgemmWorks(&Reference));
  EXPECT_FALSE(internal::SgemmWorks(&Failing));
  EXPECT_FALSE(internal::SgemmWorks(&IgnoresTranspose));
  EXPECT_FALSE(internal::SgemmWorks(nullptr));
}

// When oneDNN is available here, it computes what the reference does for every transpose.
TEST(GemmTest, FastSgemmMatchesTheReferenceWhenAvailable) {
  if (!FastSgemmAvailable()) GTEST_SKIP() << "no working oneDNN sgemm in this process";
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  const int64_t m = 7, n = 5, k = 9;
  std::vector<float> a(m * k), b(k * n);
  for (float& v : a) v = normal(rng);
  for (float& v : b) v = normal(rng);
  for (int t = 0; t < 4; ++t) {
    const bool ta = (t & 1) != 0, tb = (t & 2) != 0;
    std::vector<float> c(m * n, 0.5f), want(m * n, 0.5f);
    ASSERT_TRUE(FastSgemm(ta, tb, m, n, k, 1.5f, a.data(), ta ? m : k, b.data(), tb ? k : n, 0.25f,
                          c.data(), n));
    Reference(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, 1.5f, a.data(), ta ? m : k, b.data(),
              tb ? k : n, 0.25f, want.data(), n);
    for (int64_t i = 0; i < m * n; ++i) EXPECT_NEAR(c[i], want[i], 1e-4) << t << " " << i;
  }
}

}  // namespace
}  // namespace prl::models
