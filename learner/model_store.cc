#include "learner/model_store.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/directories.h"
#include "common/os_error.h"
#include "common/status_macros.h"
#include "models/model_directory.h"

namespace prl::learner {
namespace {

absl::Status CheckName(const std::string& name) { return models::ValidateModelName(name, "name"); }

}  // namespace

absl::StatusOr<std::unique_ptr<ModelStore>> ModelStore::Open(const std::string& dir) {
  PRL_RETURN_IF_ERROR(MakeDirectories(dir));
  return std::unique_ptr<ModelStore>(new ModelStore(dir));
}

std::string ModelStore::PathOf(const std::string& name, int64_t version) const {
  return models::ModelDirectoryPath(dir_, name, version);
}

std::vector<int64_t> ModelStore::Versions(const std::string& name) const {
  return models::ModelDirectoryVersions(dir_, name);
}

absl::StatusOr<int64_t> ModelStore::Reserve(const std::string& name) {
  PRL_RETURN_IF_ERROR(CheckName(name));
  absl::MutexLock lock(&mu_);
  const std::vector<int64_t> stored = Versions(name);
  int64_t next = stored.empty() ? 1 : stored.back() + 1;
  for (const auto& [n, v] : reserved_) {
    if (n == name) next = std::max(next, v + 1);
  }
  reserved_.insert({name, next});
  return next;
}

void ModelStore::Release(const std::string& name, int64_t version) {
  absl::MutexLock lock(&mu_);
  reserved_.erase({name, version});
}

absl::StatusOr<std::string> ModelStore::Write(const models::ModelArtifact& artifact) {
  PRL_RETURN_IF_ERROR(models::ValidateModelArtifact(artifact));
  const std::string& name = artifact.info.name();
  const int64_t version = artifact.info.version();
  std::string path;
  {
    absl::MutexLock lock(&mu_);
    const std::vector<int64_t> stored = Versions(name);
    if (std::binary_search(stored.begin(), stored.end(), version)) {
      return absl::AlreadyExistsError(absl::StrCat("model ", name, " version ", version,
                                                   " is already stored (", PathOf(name, version),
                                                   ")"));
    }
    PRL_RETURN_IF_ERROR(MakeDirectories(absl::StrCat(dir_, "/", name)));
    path = PathOf(name, version);
    PRL_RETURN_IF_ERROR(models::WriteModelArtifact(path, artifact));
    reserved_.erase({name, version});
  }
  if (listener_) listener_(name, version, path);
  return path;
}

absl::StatusOr<models::ModelArtifact> ModelStore::Read(const std::string& name,
                                                       int64_t version) const {
  const std::vector<int64_t> stored = Versions(name);
  if (stored.empty()) {
    return absl::NotFoundError(absl::StrCat("no model named '", name, "' in ", dir_));
  }
  if (version == 0) version = stored.back();
  if (!std::binary_search(stored.begin(), stored.end(), version)) {
    return absl::NotFoundError(absl::StrCat("model ", name, " has no version ", version,
                                            "; stored: ", absl::StrJoin(stored, ", ")));
  }
  return models::ReadModelArtifact(PathOf(name, version));
}

std::vector<v1::ModelInfo> ModelStore::List(std::vector<std::string>* problems) const {
  std::vector<v1::ModelInfo> out;
  for (const std::string& name : models::ModelDirectoryNames(dir_)) {
    for (int64_t version : Versions(name)) {
      absl::StatusOr<models::ModelArtifact> artifact =
          models::ReadModelArtifact(PathOf(name, version));
      if (!artifact.ok()) {
        if (problems != nullptr) problems->push_back(std::string(artifact.status().message()));
        continue;
      }
      out.push_back(std::move(artifact->info));
    }
  }
  return out;
}

}  // namespace prl::learner
