#include "learner/flat_adam.h"

#include <cmath>
#include <utility>

#include "ATen/ATen.h"
#include "ATen/core/grad_mode.h"
#include "models/networks.h"

namespace prl::learner {

FlatAdam::FlatAdam(at::Tensor param, const Options& options)
    : param_(std::move(param)),
      options_(options),
      exp_avg_(at::zeros_like(param_)),
      exp_avg_sq_(at::zeros_like(param_)) {}

void FlatAdam::Step(const at::Tensor& grad) {
  ++steps_;
  if (neg_step_size_.defined()) {
    // torch.optim.Adam's arithmetic with the scalars read from the device
    at::NoGradGuard no_grad;
    if (param_.is_cuda()) {
      // what torch.optim.Adam(fused=True) runs: the bias corrections from the step count
      at::_fused_adam_({param_}, {grad}, {exp_avg_}, {exp_avg_sq_}, {}, {step_count_}, options_.lr,
                       options_.beta1, options_.beta2, /*weight_decay=*/0.0, options_.eps,
                       /*amsgrad=*/false, /*maximize=*/false);
      return;
    }
    exp_avg_.mul_(options_.beta1).add_(grad, 1.0 - options_.beta1);
    exp_avg_sq_.mul_(options_.beta2).addcmul_(grad, grad, 1.0 - options_.beta2);
    const at::Tensor denom = exp_avg_sq_.sqrt().mul_(inv_sqrt_bias_corr2_).add_(options_.eps);
    param_.addcdiv_(exp_avg_ * neg_step_size_, denom);
    return;
  }
  models::AdamStepInPlace(param_, exp_avg_, exp_avg_sq_, grad, options_.lr, options_.beta1,
                          options_.beta2, options_.eps, steps_);
}

void FlatAdam::UseDeviceScalars(const at::Tensor& scalars) {
  if (!scalars.defined()) {
    step_count_ = neg_step_size_ = inv_sqrt_bias_corr2_ = at::Tensor();
    return;
  }
  step_count_ = scalars.narrow(0, 0, 1);
  neg_step_size_ = scalars.narrow(0, 1, 1);
  inv_sqrt_bias_corr2_ = scalars.narrow(0, 2, 1);
}

void FlatAdam::NextStepScalars(float* out) const {
  const double t = static_cast<double>(steps_ + 1);
  out[0] = static_cast<float>(t);
  out[1] = static_cast<float>(-options_.lr / (1.0 - std::pow(options_.beta1, t)));
  out[2] = static_cast<float>(1.0 / std::sqrt(1.0 - std::pow(options_.beta2, t)));
}

}  // namespace prl::learner
