// Conversions between PRL tensors (common/tensor.h) and LibTorch tensors. Kept apart from
// common:tensor so code without LibTorch never compiles its headers. c10::Error becomes an
// absl::Status here. Thread-compatible.
#ifndef PRL_COMMON_TORCH_TENSOR_H_
#define PRL_COMMON_TORCH_TENSOR_H_

#include "ATen/core/Tensor.h"
#include "absl/status/statusor.h"
#include "common/tensor.h"

namespace prl {

// The torch dtype of a PRL dtype.
at::ScalarType ToTorchDType(DType dtype);

// Copies `view` into a new CPU torch tensor of the same dtype and shape.
at::Tensor ToTorch(const TensorView& view);

// Copies a torch tensor (any device, any layout) into a HostTensor.
// Errors: INVALID_ARGUMENT for dtypes PRL does not carry (allowed: float32, int64, uint8).
absl::StatusOr<HostTensor> FromTorch(const at::Tensor& tensor);

}  // namespace prl

#endif  // PRL_COMMON_TORCH_TENSOR_H_
