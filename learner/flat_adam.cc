#include "learner/flat_adam.h"

#include <cmath>
#include <utility>

#include "ATen/ATen.h"
#include "ATen/core/grad_mode.h"

namespace prl::learner {

FlatAdam::FlatAdam(at::Tensor param, const Options& options)
    : param_(std::move(param)),
      options_(options),
      exp_avg_(at::zeros_like(param_)),
      exp_avg_sq_(at::zeros_like(param_)) {}

void FlatAdam::Step(const at::Tensor& grad) {
  at::NoGradGuard no_grad;
  ++steps_;
  const double t = static_cast<double>(steps_);
  const double bias_correction1 = 1.0 - std::pow(options_.beta1, t);
  const double bias_correction2 = 1.0 - std::pow(options_.beta2, t);
  // m ← β1·m + (1-β1)·g;  v ← β2·v + (1-β2)·g²
  exp_avg_.mul_(options_.beta1).add_(grad, 1.0 - options_.beta1);
  exp_avg_sq_.mul_(options_.beta2).addcmul_(grad, grad, 1.0 - options_.beta2);
  // p ← p - lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps)
  at::Tensor denom = exp_avg_sq_.sqrt().div_(std::sqrt(bias_correction2)).add_(options_.eps);
  param_.addcdiv_(exp_avg_, denom, -options_.lr / bias_correction1);
}

}  // namespace prl::learner
