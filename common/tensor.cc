#include "common/tensor.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"

namespace prl {
namespace {

// Product of the dims times element size, or an error for negative dims or overflow.
absl::StatusOr<uint64_t> ByteSizeFor(DType dtype, absl::Span<const int64_t> shape,
                                     absl::string_view field) {
  uint64_t elements = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("field '", field, "': shape ",
                                                     ShapeString(shape), " has negative dimension ",
                                                     i, "; dimensions must be >= 0"));
    }
    const uint64_t d = static_cast<uint64_t>(shape[i]);
    if (d != 0 && elements > std::numeric_limits<uint64_t>::max() / 16 / d) {
      return absl::InvalidArgumentError(
          absl::StrCat("field '", field, "': shape ", ShapeString(shape), " is too large"));
    }
    elements *= d;
  }
  return elements * DTypeSize(dtype);
}

}  // namespace

namespace tensor_internal {
void CheckDType(DType have, DType want) {
  PRL_CHECK(have == want) << "tensor holds " << DTypeName(have) << ", accessed as "
                          << DTypeName(want);
}
}  // namespace tensor_internal

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return 4;
    case DType::kInt64:
      return 8;
    case DType::kUInt8:
      return 1;
  }
  return 0;
}

absl::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "float32";
    case DType::kInt64:
      return "int64";
    case DType::kUInt8:
      return "uint8";
  }
  return "unknown";
}

std::string ShapeString(absl::Span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

int64_t TensorView::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<HostTensor> HostTensor::Zeros(DType dtype, std::vector<int64_t> shape) {
  auto bytes = ByteSizeFor(dtype, shape, "shape");
  if (!bytes.ok()) return bytes.status();
  return HostTensor(dtype, std::move(shape), std::string(*bytes, '\0'));
}

HostTensor HostTensor::FromFloats(std::vector<int64_t> shape, absl::Span<const float> values) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  PRL_CHECK(n == static_cast<int64_t>(values.size()))
      << "shape " << ShapeString(shape) << " needs " << n << " values, got " << values.size();
  return HostTensor(
      DType::kFloat32, std::move(shape),
      std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
}

HostTensor HostTensor::Copy(const TensorView& view) {
  return HostTensor(view.dtype, std::vector<int64_t>(view.shape.begin(), view.shape.end()),
                    std::string(view.bytes));
}

absl::StatusOr<DType> DTypeFromProto(int proto_dtype, absl::string_view field) {
  switch (proto_dtype) {
    case v1::Tensor::DTYPE_FLOAT32:
      return DType::kFloat32;
    case v1::Tensor::DTYPE_INT64:
      return DType::kInt64;
    case v1::Tensor::DTYPE_UINT8:
      return DType::kUInt8;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("field '", field, "': dtype ", proto_dtype,
                       " is not supported; allowed: DTYPE_FLOAT32, DTYPE_INT64, DTYPE_UINT8"));
  }
}

v1::Tensor::DType DTypeToProto(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return v1::Tensor::DTYPE_FLOAT32;
    case DType::kInt64:
      return v1::Tensor::DTYPE_INT64;
    case DType::kUInt8:
      return v1::Tensor::DTYPE_UINT8;
  }
  return v1::Tensor::DTYPE_UNSPECIFIED;
}

absl::StatusOr<TensorView> ViewTensorProto(const v1::Tensor& proto, absl::string_view field) {
  auto dtype = DTypeFromProto(proto.dtype(), absl::StrCat(field, ".dtype"));
  if (!dtype.ok()) return dtype.status();
  absl::Span<const int64_t> shape(proto.shape().data(), proto.shape_size());
  auto want_bytes = ByteSizeFor(*dtype, shape, field);
  if (!want_bytes.ok()) return want_bytes.status();
  if (*want_bytes != proto.data().size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("field '", field, "': shape ", ShapeString(shape), " of ", DTypeName(*dtype),
                     " needs ", *want_bytes, " bytes of data, got ", proto.data().size()));
  }
  return TensorView{*dtype, shape, proto.data()};
}

absl::Status CheckTensor(const TensorView& view, const TensorSpec& spec) {
  if (spec.dtype.has_value() && view.dtype != *spec.dtype) {
    return absl::InvalidArgumentError(absl::StrCat("field '", spec.name, "': dtype is ",
                                                   DTypeName(view.dtype), ", must be ",
                                                   DTypeName(*spec.dtype)));
  }
  if (spec.shape.has_value()) {
    const std::vector<int64_t>& want = *spec.shape;
    bool match = want.size() == view.shape.size();
    for (size_t i = 0; match && i < want.size(); ++i) {
      match = want[i] < 0 || want[i] == view.shape[i];
    }
    if (!match) {
      std::vector<std::string> dims;
      for (int64_t d : want) dims.push_back(d < 0 ? "*" : absl::StrCat(d));
      return absl::InvalidArgumentError(absl::StrCat("field '", spec.name, "': shape is ",
                                                     ShapeString(view.shape), ", must be [",
                                                     absl::StrJoin(dims, ", "), "]"));
    }
  }
  if (spec.require_finite && view.dtype == DType::kFloat32) {
    absl::Span<const float> values = view.data<float>();
    for (size_t i = 0; i < values.size(); ++i) {
      if (!std::isfinite(values[i])) {
        return absl::InvalidArgumentError(absl::StrCat(
            "field '", spec.name, "': element ", i, " is ", std::isnan(values[i]) ? "NaN" : "Inf",
            "; only finite values are allowed"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<TensorView> ViewAndCheckTensorProto(const v1::Tensor& proto,
                                                   const TensorSpec& spec) {
  auto view = ViewTensorProto(proto, spec.name);
  if (!view.ok()) return view.status();
  absl::Status s = CheckTensor(*view, spec);
  if (!s.ok()) return s;
  return *view;
}

absl::StatusOr<HostTensor> TensorFromProto(v1::Tensor&& proto, absl::string_view field) {
  auto view = ViewTensorProto(proto, field);
  if (!view.ok()) return view.status();
  std::vector<int64_t> shape(view->shape.begin(), view->shape.end());
  const DType dtype = view->dtype;
  return HostTensor(dtype, std::move(shape), std::move(*proto.mutable_data()));
}

void TensorToProto(const TensorView& view, v1::Tensor* proto) {
  proto->set_dtype(DTypeToProto(view.dtype));
  proto->mutable_shape()->Assign(view.shape.begin(), view.shape.end());
  proto->set_data(view.bytes.data(), view.bytes.size());
}

void TensorToProto(HostTensor&& tensor, v1::Tensor* proto) {
  proto->set_dtype(DTypeToProto(tensor.dtype_));
  proto->mutable_shape()->Assign(tensor.shape_.begin(), tensor.shape_.end());
  *proto->mutable_data() = std::move(tensor.bytes_);
  tensor.shape_.clear();
}

}  // namespace prl
