// The layout of a directory of versioned model artifacts, shared by the learner's model store
// (which writes it) and the prior server (which loads from it): <dir>/<name>/v<version>.prl,
// versions 1, 2, 3, ... per name. Read-only helpers; no LibTorch. Thread-safe.
#ifndef PRL_MODELS_MODEL_DIRECTORY_H_
#define PRL_MODELS_MODEL_DIRECTORY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace prl::models {

// True for a model name artifacts and PriorRef allow: 1-63 characters of [a-z0-9_.-], starting
// with a lower-case letter.
bool IsValidModelName(absl::string_view name);
// INVALID_ARGUMENT naming `field` ("model.name: 'Bad' is not allowed; it must be ...") unless
// IsValidModelName(name).
absl::Status ValidateModelName(absl::string_view name, absl::string_view field);

// <dir>/<name>/v<version>.prl
std::string ModelDirectoryPath(absl::string_view dir, absl::string_view name, int64_t version);
// The model names with a subdirectory in `dir`, sorted (empty when `dir` does not exist).
std::vector<std::string> ModelDirectoryNames(absl::string_view dir);
// The versions of `name` stored in `dir`, ascending.
std::vector<int64_t> ModelDirectoryVersions(absl::string_view dir, absl::string_view name);

}  // namespace prl::models

#endif  // PRL_MODELS_MODEL_DIRECTORY_H_
