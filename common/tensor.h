// Dense host tensors and their wire form, prl.v1.Tensor, with full validation.
//
// TensorView is a non-owning view (of a proto's bytes or a HostTensor); HostTensor owns a
// contiguous, row-major, little-endian buffer. Conversions from the wire check the dtype,
// the shape against the byte length and, on request, a wanted dtype/shape and finite values,
// and report errors naming the field. Thread-compatible (no shared mutable state).
#ifndef PRL_COMMON_TENSOR_H_
#define PRL_COMMON_TENSOR_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "proto/tensor.pb.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "PRL tensors are little-endian");

namespace prl {

enum class DType { kFloat32, kInt64, kUInt8 };

// Bytes per element.
size_t DTypeSize(DType dtype);
// "float32", "int64", "uint8".
absl::string_view DTypeName(DType dtype);
// The C++ type of each dtype, for typed access.
template <typename T>
constexpr DType DTypeOf();
template <>
constexpr DType DTypeOf<float>() {
  return DType::kFloat32;
}
template <>
constexpr DType DTypeOf<int64_t>() {
  return DType::kInt64;
}
template <>
constexpr DType DTypeOf<uint8_t>() {
  return DType::kUInt8;
}

// Formats a shape as "[2, 3]".
std::string ShapeString(absl::Span<const int64_t> shape);

// A non-owning view of a dense tensor; valid while the viewed buffer lives.
struct TensorView {
  DType dtype = DType::kFloat32;
  absl::Span<const int64_t> shape;
  absl::string_view bytes;

  int64_t num_elements() const;
  // Typed elements; the caller must have checked dtype (CHECK-fails otherwise).
  template <typename T>
  absl::Span<const T> data() const;
};

// An owning dense tensor. Movable and copyable.
class HostTensor {
 public:
  HostTensor() = default;
  // A zero-filled tensor. Errors: INVALID_ARGUMENT for a negative dimension or a size that
  // overflows.
  static absl::StatusOr<HostTensor> Zeros(DType dtype, std::vector<int64_t> shape);
  // A float32 tensor holding `values`; CHECK-fails unless the shape has values.size() elements.
  static HostTensor FromFloats(std::vector<int64_t> shape, absl::Span<const float> values);
  // Copies a view.
  static HostTensor Copy(const TensorView& view);

  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t num_elements() const { return view().num_elements(); }
  size_t byte_size() const { return bytes_.size(); }
  const std::string& bytes() const { return bytes_; }

  TensorView view() const { return TensorView{dtype_, shape_, bytes_}; }
  template <typename T>
  absl::Span<const T> data() const {
    return view().data<T>();
  }
  template <typename T>
  absl::Span<T> mutable_data();

 private:
  HostTensor(DType dtype, std::vector<int64_t> shape, std::string bytes)
      : dtype_(dtype), shape_(std::move(shape)), bytes_(std::move(bytes)) {}
  friend absl::StatusOr<HostTensor> TensorFromProto(v1::Tensor&& proto, absl::string_view field);
  friend void TensorToProto(HostTensor&& tensor, v1::Tensor* proto);

  DType dtype_ = DType::kFloat32;
  std::vector<int64_t> shape_;
  std::string bytes_;
};

// What a request field must hold. Empty `name` is not allowed: errors name the field.
struct TensorSpec {
  std::string name;
  // Required dtype; any when unset.
  std::optional<DType> dtype;
  // Required shape; -1 matches any size in that dimension. Any shape when unset.
  std::optional<std::vector<int64_t>> shape;
  // Reject NaN and +/-Inf in float tensors.
  bool require_finite = true;
};

// Views `proto` without copying, checking the dtype and that the shape matches the byte
// length. Errors: INVALID_ARGUMENT naming `field`.
absl::StatusOr<TensorView> ViewTensorProto(const v1::Tensor& proto, absl::string_view field);

// Checks `view` against `spec` (dtype, shape, finite values). Errors: INVALID_ARGUMENT naming
// spec.name, what was found and what is allowed.
absl::Status CheckTensor(const TensorView& view, const TensorSpec& spec);

// ViewTensorProto + CheckTensor.
absl::StatusOr<TensorView> ViewAndCheckTensorProto(const v1::Tensor& proto, const TensorSpec& spec);

// Takes ownership of `proto`'s bytes (no copy) after the checks of ViewTensorProto.
absl::StatusOr<HostTensor> TensorFromProto(v1::Tensor&& proto, absl::string_view field);

// Writes a tensor to its wire form.
void TensorToProto(const TensorView& view, v1::Tensor* proto);
void TensorToProto(HostTensor&& tensor, v1::Tensor* proto);

// Conversions between the wire enum and DType. Errors: INVALID_ARGUMENT for unspecified or
// unknown values, naming `field`.
absl::StatusOr<DType> DTypeFromProto(int proto_dtype, absl::string_view field);
v1::Tensor::DType DTypeToProto(DType dtype);

// ---- template definitions ----

namespace tensor_internal {
void CheckDType(DType have, DType want);
}  // namespace tensor_internal

template <typename T>
absl::Span<const T> TensorView::data() const {
  tensor_internal::CheckDType(dtype, DTypeOf<T>());
  return absl::Span<const T>(reinterpret_cast<const T*>(bytes.data()), bytes.size() / sizeof(T));
}

template <typename T>
absl::Span<T> HostTensor::mutable_data() {
  tensor_internal::CheckDType(dtype_, DTypeOf<T>());
  return absl::Span<T>(reinterpret_cast<T*>(bytes_.data()), bytes_.size() / sizeof(T));
}

}  // namespace prl

#endif  // PRL_COMMON_TENSOR_H_
