#include "models/prior_model.h"

#include "ATen/ATen.h"

namespace prl::models {

at::Tensor DiagonalGaussianKl(const DiagonalGaussian& q, const DiagonalGaussian& p) {
  // ½·(σ_q/σ_p)² + ½·((μ_q - μ_p)/σ_p)² - log(σ_q/σ_p) - ½, with the ratios taken in log space
  at::Tensor log_ratio = q.log_std - p.log_std;
  at::Tensor scaled_diff_sq = (q.mean - p.mean).square() * at::exp(p.log_std * -2.0);
  return (at::exp(log_ratio * 2.0) + scaled_diff_sq) * 0.5 - log_ratio - 0.5;
}

}  // namespace prl::models
