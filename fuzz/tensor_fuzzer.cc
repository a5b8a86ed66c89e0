// Fuzzes the validation of tensors received over the network (common/tensor.h): the input is
// a serialized prl.v1.Tensor, as it arrives inside every request that carries one. Checks that
// what ViewTensorProto accepts is consistent (byte length = elements x dtype size), that
// CheckTensor enforces the specs a service would give it (dtype, shape with wildcards, finite
// values) and refuses only with INVALID_ARGUMENT naming the field, that ViewAndCheckTensorProto
// is ViewTensorProto then CheckTensor, and that TensorFromProto, TensorToProto and
// HostTensor::Zeros round-trip what was accepted.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "common/logging.h"
#include "common/tensor.h"
#include "proto/tensor.pb.h"

namespace prl::fuzz {
namespace {

// Zeros() of a tensor above this size is not tried (the allocation is the point of none).
constexpr size_t kMaxZerosBytes = 1 << 20;

void CheckRefusal(const absl::Status& status, absl::string_view field) {
  PRL_CHECK(status.code() == absl::StatusCode::kInvalidArgument) << status;
  PRL_CHECK(absl::StrContains(status.message(), field))
      << "error does not name " << field << ": " << status;
}

// The specs a service checks requests with: any tensor, float32 batches of 3-vectors, and
// exactly the tensor's own dtype and shape (which must pass apart from finiteness).
std::vector<TensorSpec> SpecsFor(const TensorView& view) {
  std::vector<TensorSpec> specs;
  specs.push_back({"any", std::nullopt, std::nullopt, true});
  specs.push_back({"any_allow_nan", std::nullopt, std::nullopt, false});
  specs.push_back({"batch", DType::kFloat32, std::vector<int64_t>{-1, 3}, true});
  specs.push_back(
      {"own", view.dtype, std::vector<int64_t>(view.shape.begin(), view.shape.end()), true});
  return specs;
}

bool AllFinite(const TensorView& view) {
  if (view.dtype != DType::kFloat32) return true;
  for (float value : view.data<float>()) {
    if (!std::isfinite(value)) return false;
  }
  return true;
}

void TestOneInput(absl::string_view bytes) {
  v1::Tensor proto;
  if (!proto.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return;

  const absl::StatusOr<TensorView> view = ViewTensorProto(proto, "fuzz.tensor");
  if (!view.ok()) {
    CheckRefusal(view.status(), "fuzz.tensor");
    PRL_CHECK(!TensorFromProto(v1::Tensor(proto), "fuzz.tensor").ok());
    return;
  }

  // an accepted tensor is consistent with itself.
  PRL_CHECK(view->bytes.data() == proto.data().data());
  PRL_CHECK(view->shape.size() == static_cast<size_t>(proto.shape_size()));
  int64_t elements = 1;
  for (int64_t d : view->shape) {
    PRL_CHECK(d >= 0) << ShapeString(view->shape);
    elements *= d;
  }
  PRL_CHECK(view->num_elements() == elements);
  PRL_CHECK(view->bytes.size() == static_cast<size_t>(elements) * DTypeSize(view->dtype))
      << ShapeString(view->shape) << " " << DTypeName(view->dtype) << " " << view->bytes.size();
  switch (view->dtype) {
    case DType::kFloat32:
      PRL_CHECK(view->data<float>().size() == static_cast<size_t>(elements));
      break;
    case DType::kInt64:
      PRL_CHECK(view->data<int64_t>().size() == static_cast<size_t>(elements));
      break;
    case DType::kUInt8:
      PRL_CHECK(view->data<uint8_t>().size() == static_cast<size_t>(elements));
      break;
  }

  // every spec: CheckTensor's verdict is the spec's, and ViewAndCheckTensorProto says the same.
  const bool finite = AllFinite(*view);
  for (const TensorSpec& spec : SpecsFor(*view)) {
    const absl::Status checked = CheckTensor(*view, spec);
    bool want = !spec.require_finite || finite;
    if (spec.dtype.has_value()) want = want && *spec.dtype == view->dtype;
    if (spec.shape.has_value()) {
      bool match = spec.shape->size() == view->shape.size();
      for (size_t i = 0; match && i < spec.shape->size(); ++i) {
        match = (*spec.shape)[i] < 0 || (*spec.shape)[i] == view->shape[i];
      }
      want = want && match;
    }
    PRL_CHECK(checked.ok() == want) << spec.name << ": " << checked;
    if (!checked.ok()) CheckRefusal(checked, spec.name);
    const absl::StatusOr<TensorView> both = ViewAndCheckTensorProto(proto, spec);
    PRL_CHECK(both.status() == checked) << both.status() << " vs " << checked;
  }

  // round trips: proto -> HostTensor -> proto, view -> proto.
  v1::Tensor written;
  TensorToProto(*view, &written);
  PRL_CHECK(written.dtype() == proto.dtype() && written.data() == proto.data());
  PRL_CHECK(written.shape_size() == proto.shape_size());
  for (int i = 0; i < written.shape_size(); ++i) PRL_CHECK(written.shape(i) == proto.shape(i));
  absl::StatusOr<HostTensor> host = TensorFromProto(v1::Tensor(proto), "fuzz.tensor");
  PRL_CHECK(host.ok()) << host.status();
  PRL_CHECK(host->dtype() == view->dtype && host->bytes() == proto.data());
  PRL_CHECK(host->num_elements() == elements);
  const HostTensor copy = HostTensor::Copy(host->view());
  v1::Tensor moved;
  TensorToProto(HostTensor(*host), &moved);
  PRL_CHECK(moved.SerializeAsString() == written.SerializeAsString());
  PRL_CHECK(copy.bytes() == proto.data());

  if (view->bytes.size() <= kMaxZerosBytes) {
    const absl::StatusOr<HostTensor> zeros = HostTensor::Zeros(
        view->dtype, std::vector<int64_t>(view->shape.begin(), view->shape.end()));
    PRL_CHECK(zeros.ok()) << zeros.status();
    PRL_CHECK(zeros->byte_size() == view->bytes.size());
  }
}

}  // namespace
}  // namespace prl::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  prl::fuzz::TestOneInput(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
