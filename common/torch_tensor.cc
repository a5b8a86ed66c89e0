#include "common/torch_tensor.h"

#include <cstring>
#include <vector>

#include "ATen/ATen.h"
#include "absl/strings/str_cat.h"

namespace prl {

at::ScalarType ToTorchDType(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return at::kFloat;
    case DType::kInt64:
      return at::kLong;
    case DType::kUInt8:
      return at::kByte;
  }
  return at::kFloat;
}

at::Tensor ToTorch(const TensorView& view) {
  std::vector<int64_t> shape(view.shape.begin(), view.shape.end());
  at::Tensor out = at::empty(shape, at::TensorOptions().dtype(ToTorchDType(view.dtype)));
  if (!view.bytes.empty()) std::memcpy(out.data_ptr(), view.bytes.data(), view.bytes.size());
  return out;
}

absl::StatusOr<HostTensor> FromTorch(const at::Tensor& tensor) {
  DType dtype;
  switch (tensor.scalar_type()) {
    case at::kFloat:
      dtype = DType::kFloat32;
      break;
    case at::kLong:
      dtype = DType::kInt64;
      break;
    case at::kByte:
      dtype = DType::kUInt8;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("torch dtype ", std::string(c10::toString(tensor.scalar_type())),
                       " has no PRL equivalent; allowed: float32, int64, uint8"));
  }
  at::Tensor cpu;
  try {
    cpu = tensor.detach().to(at::kCPU).contiguous();
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("cannot copy tensor to CPU: ", e.what_without_backtrace()));
  }
  std::vector<int64_t> shape(cpu.sizes().begin(), cpu.sizes().end());
  auto out = HostTensor::Zeros(dtype, std::move(shape));
  if (!out.ok()) return out.status();
  if (out->byte_size() > 0) {
    char* dst =
        dtype == DType::kFloat32 ? reinterpret_cast<char*>(out->mutable_data<float>().data())
        : dtype == DType::kInt64 ? reinterpret_cast<char*>(out->mutable_data<int64_t>().data())
                                 : reinterpret_cast<char*>(out->mutable_data<uint8_t>().data());
    std::memcpy(dst, cpu.data_ptr(), out->byte_size());
  }
  return out;
}

}  // namespace prl
