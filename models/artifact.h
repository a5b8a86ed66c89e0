// Trained-model artifacts: the file a prior-training job writes, the learner and the prior
// server load, and users move between clusters. One artifact is self-describing — its
// prl.v1.ModelInfo (name, version, kind, dimensions, horizon, the dataset and its hash, the
// training spec), architecture hyperparameters, and the named tensors — stored in PRL's
// checksummed file format (write to a temporary file, fsync, rename), so a crash leaves the old
// artifact or the new one and a corrupted file is refused with DATA_LOSS naming it.
//
// No LibTorch here: tensors are HostTensors; the model classes that fill and read them live
// beside this file. Thread-compatible values; the functions are thread-safe.
#ifndef PRL_MODELS_ARTIFACT_H_
#define PRL_MODELS_ARTIFACT_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/tensor.h"
#include "proto/prior.pb.h"

namespace prl::models {

// The artifact layout this build writes and the newest it reads.
inline constexpr uint32_t kArtifactFormatVersion = 1;

struct ModelArtifact {
  v1::ModelInfo info;
  std::map<std::string, int64_t> hyperparameters;
  std::vector<std::pair<std::string, HostTensor>> tensors;

  // The tensor called `name`, or nullptr.
  const HostTensor* Find(absl::string_view name) const;
};

// Checks what every artifact must satisfy: a valid model name (1-63 of [a-z0-9_.-], starting
// with a lower-case letter), version >= 1, a kind, non-negative dimensions with action_dim >= 1
// and horizon >= 1, and unique, non-empty tensor names with finite float32 values.
// INVALID_ARGUMENT naming the field ("info.horizon: 0 is not allowed; it must be >= 1").
absl::Status ValidateModelArtifact(const ModelArtifact& artifact);

// Bytes of `artifact` (the checksummed file's payload), for files and for pushing an artifact
// over gRPC. Errors: ValidateModelArtifact's.
absl::StatusOr<std::string> SerializeModelArtifact(const ModelArtifact& artifact);
// Parses bytes from SerializeModelArtifact; `source` names them in errors. Errors: DATA_LOSS
// for bytes that are not an artifact; FAILED_PRECONDITION for a newer format version;
// ValidateModelArtifact's.
absl::StatusOr<ModelArtifact> ParseModelArtifact(absl::string_view bytes, absl::string_view source);

// Parses the bytes of a whole artifact file (as ReadModelArtifact reads them from disk: the
// checksummed header and the payload), e.g. pushed over gRPC; `source` names them in errors.
// Fills info.artifact_path = source and info.size_bytes. Errors: DATA_LOSS for a truncated,
// corrupted or foreign file; ParseModelArtifact's.
absl::StatusOr<ModelArtifact> ParseModelArtifactFile(absl::string_view file_bytes,
                                                     absl::string_view source);

// Writes `artifact` to `path` atomically; info.artifact_path and size_bytes are not stored
// (they describe where a reader found it). Errors: ValidateModelArtifact's; the file system's.
absl::Status WriteModelArtifact(const std::string& path, const ModelArtifact& artifact);
// Reads and checks an artifact; fills info.artifact_path and info.size_bytes. Errors: NOT_FOUND
// for a missing file; DATA_LOSS for a truncated, corrupted or foreign file; the others of
// ParseModelArtifact.
absl::StatusOr<ModelArtifact> ReadModelArtifact(const std::string& path);

}  // namespace prl::models

#endif  // PRL_MODELS_ARTIFACT_H_
