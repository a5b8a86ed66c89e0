#include "models/prior_inference.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"

namespace prl::models {

absl::string_view PriorMethodName(PriorMethod method) {
  switch (method) {
    case PriorMethod::kDecode:
      return "Decode";
    case PriorMethod::kPrior:
      return "Prior";
    case PriorMethod::kForward:
      return "Forward";
    case PriorMethod::kInverse:
      return "Inverse";
    case PriorMethod::kTranslate:
      return "Translate";
  }
  return "Unknown";
}

absl::StatusOr<PriorMethod> PriorMethodFromName(absl::string_view name) {
  for (PriorMethod m : kAllPriorMethods) {
    if (PriorMethodName(m) == name) return m;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown prior method '", name, "'; allowed: Decode, Prior, Forward, Inverse, Translate"));
}

std::vector<PriorInputSpec> PriorInputSpecs(const v1::ModelInfo& info, PriorMethod method) {
  const int64_t obs = info.obs_dim();
  switch (method) {
    case PriorMethod::kDecode:
      return {{"z", info.latent_dim()}, {"state", info.state_conditioned_decoder() ? obs : 0}};
    case PriorMethod::kPrior:
      return {{"state", obs}};
    case PriorMethod::kForward:
      return {{"z", info.action_dim()}, {"state", obs}};
    case PriorMethod::kInverse:
      return {{"actions", info.action_dim()}, {"state", obs}};
    case PriorMethod::kTranslate:
      return {{"state", obs},
              {"source_action", info.action_dim()},
              {"source_context", info.context_dim()},
              {"target_context", info.context_dim()}};
  }
  return {};
}

std::vector<std::string> PriorOutputFields(PriorMethod method) {
  switch (method) {
    case PriorMethod::kDecode:
      return {"actions"};
    case PriorMethod::kPrior:
      return {"mean", "log_std"};
    case PriorMethod::kForward:
      return {"actions", "log_det"};
    case PriorMethod::kInverse:
      return {"z", "log_det"};
    case PriorMethod::kTranslate:
      return {"target_action"};
  }
  return {};
}

int64_t DecodeStepsPerCall(const v1::ModelInfo& info) {
  return info.kind() == v1::PRIOR_KIND_SKILL_VAE ? 1 : info.horizon();
}

bool Answers(const v1::ModelInfo& info, PriorMethod method) {
  for (const std::string& m : info.methods()) {
    if (m == PriorMethodName(method)) return true;
  }
  return false;
}

std::string DescribeModel(const v1::ModelInfo& info) {
  return absl::StrCat("'", info.name(), "' v", info.version(), " (",
                      v1::PriorKind_Name(info.kind()), ")");
}

absl::StatusOr<int64_t> CheckPriorInputs(const v1::ModelInfo& info, PriorMethod method,
                                         const std::vector<HostTensor>& inputs) {
  if (!Answers(info, method)) {
    return absl::FailedPreconditionError(
        absl::StrCat("model ", DescribeModel(info), " does not answer ", PriorMethodName(method),
                     "; it answers: ", absl::StrJoin(info.methods(), ", ")));
  }
  const std::vector<PriorInputSpec> specs = PriorInputSpecs(info, method);
  if (inputs.size() != specs.size()) {
    return absl::InvalidArgumentError(absl::StrCat(PriorMethodName(method), " takes ", specs.size(),
                                                   " inputs, got ", inputs.size()));
  }
  int64_t rows = -1;
  std::string rows_field;
  for (size_t i = 0; i < specs.size(); ++i) {
    const HostTensor& t = inputs[i];
    const PriorInputSpec& spec = specs[i];
    if (t.dtype() != DType::kFloat32) {
      return absl::InvalidArgumentError(absl::StrCat(spec.field, ": dtype ", DTypeName(t.dtype()),
                                                     " is not allowed; it must be float32"));
    }
    if (t.shape().size() != 2 || t.shape()[1] != spec.width || t.shape()[0] < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(spec.field, ": shape ", ShapeString(t.shape()), " does not fit model ",
                       DescribeModel(info), "; expected [B, ", spec.width, "] with B >= 1"));
    }
    if (rows < 0) {
      rows = t.shape()[0];
      rows_field = spec.field;
    } else if (t.shape()[0] != rows) {
      return absl::InvalidArgumentError(absl::StrCat(spec.field, ": ", t.shape()[0], " rows, but ",
                                                     rows_field, " has ", rows,
                                                     "; every input must have the same rows"));
    }
    absl::Span<const float> values = t.data<float>();
    for (size_t j = 0; j < values.size(); ++j) {
      if (!std::isfinite(values[j])) {
        return absl::InvalidArgumentError(absl::StrCat(
            spec.field, ": element ", j, " (row ", j / std::max<int64_t>(spec.width, 1), ") is ",
            values[j], "; every value must be finite"));
      }
    }
  }
  return rows;
}

HostTensor ConcatRows(const std::vector<const HostTensor*>& parts) {
  PRL_CHECK(!parts.empty());
  std::vector<int64_t> shape = parts[0]->shape();
  PRL_CHECK(!shape.empty());
  int64_t rows = 0;
  for (const HostTensor* p : parts) {
    PRL_CHECK(p->dtype() == DType::kFloat32);
    PRL_CHECK(p->shape().size() == shape.size());
    for (size_t d = 1; d < shape.size(); ++d) PRL_CHECK(p->shape()[d] == shape[d]);
    rows += p->shape()[0];
  }
  shape[0] = rows;
  absl::StatusOr<HostTensor> out = HostTensor::Zeros(DType::kFloat32, shape);
  PRL_CHECK(out.status().ok());
  char* dst = reinterpret_cast<char*>(out->mutable_data<float>().data());
  for (const HostTensor* p : parts) {
    std::memcpy(dst, p->bytes().data(), p->byte_size());
    dst += p->byte_size();
  }
  return *std::move(out);
}

HostTensor SliceRows(const HostTensor& tensor, int64_t begin, int64_t count) {
  PRL_CHECK(!tensor.shape().empty());
  PRL_CHECK(begin >= 0 && count >= 0 && begin + count <= tensor.shape()[0]);
  std::vector<int64_t> shape = tensor.shape();
  const size_t row_bytes = shape[0] == 0 ? 0 : tensor.byte_size() / shape[0];
  shape[0] = count;
  TensorView view{tensor.dtype(), shape,
                  absl::string_view(tensor.bytes()).substr(begin * row_bytes, count * row_bytes)};
  return HostTensor::Copy(view);
}

}  // namespace prl::models
