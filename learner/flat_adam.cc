#include "learner/flat_adam.h"

#include <utility>

#include "ATen/ATen.h"
#include "models/networks.h"

namespace prl::learner {

FlatAdam::FlatAdam(at::Tensor param, const Options& options)
    : param_(std::move(param)),
      options_(options),
      exp_avg_(at::zeros_like(param_)),
      exp_avg_sq_(at::zeros_like(param_)) {}

void FlatAdam::Step(const at::Tensor& grad) {
  ++steps_;
  models::AdamStepInPlace(param_, exp_avg_, exp_avg_sq_, grad, options_.lr, options_.beta1,
                          options_.beta2, options_.eps, steps_);
}

}  // namespace prl::learner
