// Adam over one flat parameter tensor (a ParameterBlock's flat(), or log α), with the arithmetic
// of torch.optim.Adam (bias-corrected moments, eps added to the corrected root; no weight decay,
// no AMSGrad). One Step is one fused pass (models::AdamStepInPlace: on the CPU, and one kernel on
// a GPU in CUDA builds), however many layers the network has.
//
// Thread-compatible. Owned by the agent that owns the parameters.
#ifndef PRL_LEARNER_FLAT_ADAM_H_
#define PRL_LEARNER_FLAT_ADAM_H_

#include <cstdint>

#include "ATen/core/Tensor.h"

namespace prl::learner {

class FlatAdam {
 public:
  struct Options {
    double lr = 3e-4;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
  };

  // `param` is updated in place by Step; it must not require grad itself (views of it may).
  FlatAdam(at::Tensor param, const Options& options);

  // One update with `grad` (param's shape and device).
  void Step(const at::Tensor& grad);

  // For updates captured as CUDA graphs, whose kernels cannot take a new step size as an
  // argument each time: while `scalars` (a float32 tensor [kDeviceScalars] on param's device)
  // is set, Step reads the step's scalars from it, as NextStepScalars wrote them before the
  // launch (models::AdamStepInPlaceWithStepScalars: on a GPU one kernel, the same values as the
  // host path). An undefined tensor returns to the host path.
  static constexpr int kDeviceScalars = 2;  // models::kAdamStepScalars
  void UseDeviceScalars(const at::Tensor& scalars);
  // What the next Step's device scalars must hold: models::AdamStepScalars for step steps() + 1,
  // {−lr / (1 − β1^t), √(1 − β2^t)}.
  void NextStepScalars(float* out) const;

  // State, for checkpoints: the moment estimates and the number of steps taken.
  const at::Tensor& exp_avg() const { return exp_avg_; }
  const at::Tensor& exp_avg_sq() const { return exp_avg_sq_; }
  int64_t steps() const { return steps_; }
  int64_t* mutable_steps() { return &steps_; }

 private:
  at::Tensor param_;
  Options options_;
  at::Tensor exp_avg_;
  at::Tensor exp_avg_sq_;
  int64_t steps_ = 0;
  at::Tensor device_scalars_;  // or undefined
};

}  // namespace prl::learner

#endif  // PRL_LEARNER_FLAT_ADAM_H_
