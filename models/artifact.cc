#include "models/artifact.h"

#include <sys/stat.h>

#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/checksummed_file.h"
#include "common/status_macros.h"
#include "models/artifact.pb.h"
#include "models/model_directory.h"

namespace prl::models {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view value, absl::string_view allowed) {
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": ", value, " is not allowed; it must be ", allowed));
}

}  // namespace

const HostTensor* ModelArtifact::Find(absl::string_view name) const {
  for (const auto& [n, t] : tensors) {
    if (n == name) return &t;
  }
  return nullptr;
}

absl::Status ValidateModelArtifact(const ModelArtifact& artifact) {
  const v1::ModelInfo& info = artifact.info;
  if (!IsValidModelName(info.name())) {
    return Invalid("info.name", absl::StrCat("'", info.name(), "'"),
                   "1-63 characters of [a-z0-9_.-] starting with a lower-case letter");
  }
  if (info.version() < 1) return Invalid("info.version", absl::StrCat(info.version()), ">= 1");
  if (info.kind() == v1::PRIOR_KIND_UNSPECIFIED || !v1::PriorKind_IsValid(info.kind())) {
    return Invalid("info.kind", absl::StrCat(info.kind()), "a PriorKind other than UNSPECIFIED");
  }
  if (info.obs_dim() < 0) return Invalid("info.obs_dim", absl::StrCat(info.obs_dim()), ">= 0");
  if (info.action_dim() < 1) {
    return Invalid("info.action_dim", absl::StrCat(info.action_dim()), ">= 1");
  }
  if (info.latent_dim() < 0) {
    return Invalid("info.latent_dim", absl::StrCat(info.latent_dim()), ">= 0");
  }
  if (info.horizon() < 1) return Invalid("info.horizon", absl::StrCat(info.horizon()), ">= 1");
  if (info.context_dim() < 0) {
    return Invalid("info.context_dim", absl::StrCat(info.context_dim()), ">= 0");
  }
  std::set<std::string> names;
  for (size_t i = 0; i < artifact.tensors.size(); ++i) {
    const auto& [name, tensor] = artifact.tensors[i];
    const std::string field = absl::StrCat("tensors[", i, "]");
    if (name.empty()) return Invalid(field + ".name", "''", "non-empty");
    if (!names.insert(name).second) {
      return Invalid(field + ".name", absl::StrCat("'", name, "'"), "unique (it repeats)");
    }
    TensorSpec spec;
    spec.name = absl::StrCat("tensor '", name, "'");
    spec.dtype = DType::kFloat32;
    PRL_RETURN_IF_ERROR(CheckTensor(tensor.view(), spec));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> SerializeModelArtifact(const ModelArtifact& artifact) {
  PRL_RETURN_IF_ERROR(ValidateModelArtifact(artifact));
  ArtifactPayload payload;
  payload.set_format_version(kArtifactFormatVersion);
  *payload.mutable_info() = artifact.info;
  payload.mutable_info()->clear_artifact_path();
  payload.mutable_info()->clear_size_bytes();
  payload.mutable_info()->clear_loaded();
  for (const auto& [key, value] : artifact.hyperparameters) {
    (*payload.mutable_hyperparameters())[key] = value;
  }
  for (const auto& [name, tensor] : artifact.tensors) {
    v1::NamedTensor* named = payload.add_tensors();
    named->set_name(name);
    TensorToProto(tensor.view(), named->mutable_tensor());
  }
  return payload.SerializeAsString();
}

absl::StatusOr<ModelArtifact> ParseModelArtifact(absl::string_view bytes,
                                                 absl::string_view source) {
  ArtifactPayload payload;
  if (!payload.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())) ||
      payload.format_version() == 0) {
    return absl::DataLossError(absl::StrCat(source, " is not a PRL model artifact"));
  }
  if (payload.format_version() > kArtifactFormatVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat(source, " has artifact format ", payload.format_version(),
                     "; this build reads formats up to ", kArtifactFormatVersion));
  }
  ModelArtifact artifact;
  artifact.info = std::move(*payload.mutable_info());
  artifact.hyperparameters.insert(payload.hyperparameters().begin(),
                                  payload.hyperparameters().end());
  for (v1::NamedTensor& named : *payload.mutable_tensors()) {
    absl::StatusOr<HostTensor> tensor =
        TensorFromProto(std::move(*named.mutable_tensor()), named.name());
    if (!tensor.ok()) {
      return absl::DataLossError(absl::StrCat(source, ": ", tensor.status().message()));
    }
    artifact.tensors.emplace_back(named.name(), std::move(*tensor));
  }
  if (absl::Status s = ValidateModelArtifact(artifact); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(source, ": ", s.message()));
  }
  return artifact;
}

absl::Status WriteModelArtifact(const std::string& path, const ModelArtifact& artifact) {
  PRL_ASSIGN_OR_RETURN(std::string bytes, SerializeModelArtifact(artifact));
  return WriteChecksummedFile(path, bytes);
}

absl::StatusOr<ModelArtifact> ParseModelArtifactFile(absl::string_view file_bytes,
                                                     absl::string_view source) {
  PRL_ASSIGN_OR_RETURN(std::string bytes, ParseChecksummedBytes(file_bytes, source));
  PRL_ASSIGN_OR_RETURN(ModelArtifact artifact, ParseModelArtifact(bytes, source));
  artifact.info.set_artifact_path(std::string(source));
  artifact.info.set_size_bytes(static_cast<int64_t>(file_bytes.size()));
  return artifact;
}

absl::StatusOr<ModelArtifact> ReadModelArtifact(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat("no model artifact at ", path));
  }
  PRL_ASSIGN_OR_RETURN(std::string bytes, ReadChecksummedFile(path));
  PRL_ASSIGN_OR_RETURN(ModelArtifact artifact, ParseModelArtifact(bytes, path));
  artifact.info.set_artifact_path(path);
  artifact.info.set_size_bytes(static_cast<int64_t>(st.st_size));
  return artifact;
}

}  // namespace prl::models
