#include "learner/flat_adam.h"

#include <utility>

#include "ATen/ATen.h"
#include "models/networks.h"

namespace prl::learner {

static_assert(FlatAdam::kDeviceScalars == models::kAdamStepScalars);

FlatAdam::FlatAdam(at::Tensor param, const Options& options)
    : param_(std::move(param)),
      options_(options),
      exp_avg_(at::zeros_like(param_)),
      exp_avg_sq_(at::zeros_like(param_)) {}

void FlatAdam::Step(const at::Tensor& grad) {
  ++steps_;
  if (device_scalars_.defined()) {
    models::AdamStepInPlaceWithStepScalars(param_, exp_avg_, exp_avg_sq_, grad, options_.beta1,
                                           options_.beta2, options_.eps, device_scalars_);
    return;
  }
  models::AdamStepInPlace(param_, exp_avg_, exp_avg_sq_, grad, options_.lr, options_.beta1,
                          options_.beta2, options_.eps, steps_);
}

void FlatAdam::UseDeviceScalars(const at::Tensor& scalars) { device_scalars_ = scalars; }

void FlatAdam::NextStepScalars(float* out) const {
  models::AdamStepScalars(options_.lr, options_.beta1, options_.beta2, steps_ + 1, out);
}

}  // namespace prl::learner
