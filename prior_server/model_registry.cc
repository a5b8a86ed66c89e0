#include "prior_server/model_registry.h"

#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/checksummed_file.h"
#include "common/logging.h"
#include "common/regular_file.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "models/artifact.h"
#include "models/model_directory.h"

namespace prl::prior_server {
namespace {

using models::PriorMethod;

v1::BatchingConfig ToConfig(const BatchingOptions& options) {
  v1::BatchingConfig config;
  config.set_max_batch_rows(options.max_batch_rows);
  config.set_max_queue_delay_us(absl::ToInt64Microseconds(options.max_queue_delay));
  config.set_max_queue_rows(options.max_queue_rows);
  config.set_instances(options.instances);
  config.set_immediate(options.max_queue_delay == absl::ZeroDuration());
  return config;
}

std::string Loaded(const std::map<int64_t, std::shared_ptr<const LoadedModel>>& versions) {
  std::vector<std::string> v;
  for (const auto& [version, model] : versions) v.push_back(absl::StrCat("v", version));
  return v.empty() ? "none" : absl::StrJoin(v, ", ");
}

}  // namespace

absl::Status ValidateModelName(const std::string& name, const std::string& field) {
  return models::ValidateModelName(name, field);
}

absl::StatusOr<BatchingOptions> MergeBatching(const BatchingOptions& defaults,
                                              const v1::BatchingConfig& config) {
  BatchingOptions out = defaults;
  if (config.max_batch_rows() != 0) out.max_batch_rows = config.max_batch_rows();
  if (config.max_queue_delay_us() != 0) {
    out.max_queue_delay = absl::Microseconds(config.max_queue_delay_us());
  }
  if (config.immediate()) {
    if (config.max_queue_delay_us() != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("batching.immediate: true with batching.max_queue_delay_us = ",
                       config.max_queue_delay_us(), " is contradictory; set one of them"));
    }
    out.max_queue_delay = absl::ZeroDuration();
  }
  if (config.max_queue_rows() != 0) {
    out.max_queue_rows = config.max_queue_rows();
  } else if (out.max_queue_rows < out.max_batch_rows) {
    out.max_queue_rows = out.max_batch_rows;  // a larger batch with the default queue bound
  }
  if (config.instances() != 0) out.instances = config.instances();
  PRL_RETURN_IF_ERROR(ValidateBatchingOptions(out, "batching."));
  return out;
}

// ---- LoadedModel ----

LoadedModel::LoadedModel(std::unique_ptr<models::PriorInference> model, std::string fingerprint,
                         const BatchingOptions& batching, PriorMetrics* metrics)
    : model_(std::move(model)), fingerprint_(std::move(fingerprint)), batching_(batching) {
  info_ = model_->info();
  info_.set_loaded(true);
  *info_.mutable_batching() = ToConfig(batching_);
  for (PriorMethod method : models::kAllPriorMethods) {
    if (!models::Answers(info_, method)) continue;
    const std::string method_name(models::PriorMethodName(method));
    const models::PriorInference* m = model_.get();
    batchers_[static_cast<int>(method)] = std::make_unique<DynamicBatcher>(
        absl::StrCat("model ", models::DescribeModel(info_), " ", method_name), batching_,
        [m, method](const std::vector<HostTensor>& inputs) { return m->Run(method, inputs); },
        metrics == nullptr ? nullptr : metrics->ObserverFor(info_.name(), method_name));
  }
}

LoadedModel::~LoadedModel() = default;

absl::StatusOr<std::vector<HostTensor>> LoadedModel::Call(
    PriorMethod method, std::vector<HostTensor> inputs, int64_t rows, absl::Time deadline,
    const std::function<bool()>& cancelled) const {
  const DynamicBatcher* b = batcher(method);
  if (b == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model ", models::DescribeModel(info_), " does not answer ",
        models::PriorMethodName(method), "; it answers: ", absl::StrJoin(info_.methods(), ", ")));
  }
  return const_cast<DynamicBatcher*>(b)->Call(std::move(inputs), rows, deadline, cancelled);
}

const DynamicBatcher* LoadedModel::batcher(PriorMethod method) const {
  return batchers_[static_cast<int>(method)].get();
}

// ---- ModelRegistry ----

ModelRegistry::ModelRegistry(const RegistryOptions& options, Loader loader, PriorMetrics* metrics)
    : options_(options), loader_(std::move(loader)), metrics_(metrics) {}

ModelRegistry::~ModelRegistry() = default;

std::vector<int64_t> ModelRegistry::DirectoryVersions(const std::string& name) const {
  if (options_.model_dir.empty()) return {};
  return models::ModelDirectoryVersions(options_.model_dir, name);
}

std::string ModelRegistry::DirectoryPath(const std::string& name, int64_t version) const {
  return models::ModelDirectoryPath(options_.model_dir, name, version);
}

absl::StatusOr<std::string> ModelRegistry::ReadArtifactFile(const std::string& path,
                                                            const std::string& field) const {
  // a regular file within the size limit, read to its size: a device (/dev/zero) or a FIFO
  // named here would otherwise be read until memory ran out or block a server thread
  absl::StatusOr<std::string> bytes = ReadRegularFile(path, options_.max_artifact_bytes);
  if (bytes.ok()) return bytes;
  const absl::Status& s = bytes.status();
  if (absl::IsNotFound(s)) return absl::NotFoundError(absl::StrCat(field, ": no file at ", path));
  if (absl::IsInvalidArgument(s)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", s.message(),
                     absl::StrContains(s.message(), "the limit") ? " (--max_artifact_bytes)" : ""));
  }
  return absl::Status(s.code(), absl::StrCat(field, ": ", s.message()));
}

absl::StatusOr<std::shared_ptr<const LoadedModel>> ModelRegistry::LoadBytes(
    const std::string& name, int64_t version, absl::string_view bytes, const std::string& source,
    const BatchingOptions& batching) {
  const std::string fingerprint = Sha256(bytes);
  {
    // Loading the same artifact again is a no-op; a different one under a loaded name/version
    // is refused before any work.
    absl::MutexLock lock(&mu_);
    auto it = models_.find(name);
    if (it != models_.end()) {
      auto v = it->second.find(version);
      if (v != it->second.end()) {
        if (v->second->fingerprint() == fingerprint) return v->second;
        return absl::AlreadyExistsError(absl::StrCat(
            "model '", name, "' v", version, " is already loaded from another artifact (",
            v->second->info().artifact_path(), "); unload it first or load another version"));
      }
    }
  }
  absl::StatusOr<std::unique_ptr<models::PriorInference>> model =
      loader_(bytes, source, name, version);
  if (!model.ok()) {
    if (metrics_ != nullptr) metrics_->CountLoad(model.status().code());
    return model.status();
  }
  auto loaded =
      std::make_shared<const LoadedModel>(*std::move(model), fingerprint, batching, metrics_);
  std::vector<std::shared_ptr<const LoadedModel>> evicted;  // destroyed outside the lock
  absl::MutexLock lock(&mu_);
  Versions& versions = models_[name];
  auto [it, inserted] = versions.emplace(version, loaded);
  if (!inserted) {
    // A concurrent load of the same name/version won the race.
    if (it->second->fingerprint() == fingerprint) return it->second;
    return absl::AlreadyExistsError(absl::StrCat("model '", name, "' v", version,
                                                 " was loaded from another artifact meanwhile"));
  }
  if (options_.keep_versions > 0) {
    while (static_cast<int>(versions.size()) > options_.keep_versions) {
      evicted.push_back(std::move(versions.begin()->second));
      versions.erase(versions.begin());
    }
  }
  if (metrics_ != nullptr) metrics_->CountLoad(absl::StatusCode::kOk);
  UpdateLoadedGauge(name);
  return loaded;
}

absl::StatusOr<v1::ModelInfo> ModelRegistry::Load(const v1::LoadModelRequest& request) {
  PRL_RETURN_IF_ERROR(ValidateModelName(request.name(), "name"));
  if (request.version() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("version: ", request.version(), " is not allowed; it must be >= 0"));
  }
  if (!request.artifact_path().empty() && !request.artifact().empty()) {
    return absl::InvalidArgumentError(
        "artifact_path and artifact are both set; give the file's path or its bytes, not both");
  }
  PRL_ASSIGN_OR_RETURN(BatchingOptions batching,
                       MergeBatching(options_.batching, request.batching()));
  const std::string& name = request.name();
  int64_t version = request.version();
  std::string bytes;
  std::string source;
  if (request.artifact_path().empty() && request.artifact().empty()) {
    if (options_.model_dir.empty()) {
      return absl::FailedPreconditionError(
          "artifact_path: empty, and this server has no model directory (--model_dir) to load "
          "from; give artifact_path or artifact");
    }
    const std::vector<int64_t> stored = DirectoryVersions(name);
    if (version == 0 && !stored.empty()) version = stored.back();
    if (!std::binary_search(stored.begin(), stored.end(), version)) {
      return absl::NotFoundError(absl::StrCat(
          "model '", name, "'", version == 0 ? "" : absl::StrCat(" v", version),
          " is not in the model directory ", options_.model_dir, "; it has ",
          stored.empty() ? "no versions of it" : absl::StrCat("v", absl::StrJoin(stored, ", v"))));
    }
    source = DirectoryPath(name, version);
    PRL_ASSIGN_OR_RETURN(bytes, ReadArtifactFile(source, "name"));
  } else {
    if (!request.artifact().empty()) {
      if (static_cast<int64_t>(request.artifact().size()) > options_.max_artifact_bytes) {
        return absl::InvalidArgumentError(
            absl::StrCat("artifact: ", request.artifact().size(), " bytes; the limit is ",
                         options_.max_artifact_bytes, " (--max_artifact_bytes)"));
      }
      bytes = request.artifact();
      source = absl::StrCat("pushed artifact for '", name, "'");
    } else {
      source = request.artifact_path();
      PRL_ASSIGN_OR_RETURN(bytes, ReadArtifactFile(source, "artifact_path"));
    }
    if (version == 0) {
      const std::vector<int64_t> stored = DirectoryVersions(name);
      int64_t newest = stored.empty() ? 0 : stored.back();
      absl::MutexLock lock(&mu_);
      auto it = models_.find(name);
      if (it != models_.end() && !it->second.empty()) {
        newest = std::max(newest, it->second.rbegin()->first);
      }
      version = newest + 1;
    }
  }
  PRL_ASSIGN_OR_RETURN(std::shared_ptr<const LoadedModel> loaded,
                       LoadBytes(name, version, bytes, source, batching));
  if (!request.artifact().empty() && !options_.model_dir.empty() &&
      loaded->info().kind() != v1::PRIOR_KIND_TORCHSCRIPT) {
    // A pushed PRL artifact is kept in the model directory, so a restarted server loads it
    // again on demand (Kubernetes: the directory is the server's own volume).
    const std::string path = DirectoryPath(name, version);
    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
      mkdir(absl::StrCat(options_.model_dir, "/", name).c_str(), 0755);
      absl::Status kept = WriteFileAtomically(path, bytes);
      if (!kept.ok()) {
        PRL_LOG(WARNING) << "pushed model '" << name << "' v" << version
                         << " is served but could not be kept in the model directory: "
                         << kept.message();
      }
    }
  }
  return loaded->info();
}

absl::StatusOr<std::vector<v1::PriorRef>> ModelRegistry::Unload(const std::string& name,
                                                                int64_t version) {
  PRL_RETURN_IF_ERROR(ValidateModelName(name, "name"));
  if (version < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("version: ", version, " is not allowed; it must be >= 0 (0: every version)"));
  }
  std::vector<std::shared_ptr<const LoadedModel>> unloaded;  // destroyed outside the lock
  std::vector<v1::PriorRef> refs;
  {
    absl::MutexLock lock(&mu_);
    auto it = models_.find(name);
    if (it == models_.end() || it->second.empty()) {
      return absl::NotFoundError(absl::StrCat("no version of model '", name, "' is loaded"));
    }
    Versions& versions = it->second;
    for (auto v = versions.begin(); v != versions.end();) {
      if (version == 0 || v->first == version) {
        v1::PriorRef ref;
        ref.set_name(name);
        ref.set_version(v->first);
        refs.push_back(ref);
        unloaded.push_back(std::move(v->second));
        v = versions.erase(v);
      } else {
        ++v;
      }
    }
    if (refs.empty()) {
      return absl::NotFoundError(absl::StrCat("model '", name, "' v", version,
                                              " is not loaded; loaded: ", Loaded(versions)));
    }
    UpdateLoadedGauge(name);
    if (versions.empty()) models_.erase(it);
  }
  return refs;
}

absl::StatusOr<std::shared_ptr<const LoadedModel>> ModelRegistry::Get(
    const std::string& name, int64_t version, const std::string& field_prefix) {
  PRL_RETURN_IF_ERROR(ValidateModelName(name, field_prefix + "name"));
  if (version < 0) {
    return absl::InvalidArgumentError(absl::StrCat(field_prefix, "version: ", version,
                                                   " is not allowed; it must be >= 0 (0: the "
                                                   "newest loaded)"));
  }
  std::string loaded_list = "none";
  {
    absl::MutexLock lock(&mu_);
    auto it = models_.find(name);
    if (it != models_.end() && !it->second.empty()) {
      if (version == 0) return it->second.rbegin()->second;
      auto v = it->second.find(version);
      if (v != it->second.end()) return v->second;
      loaded_list = Loaded(it->second);
    }
  }
  const std::vector<int64_t> stored = DirectoryVersions(name);
  int64_t want = version;
  if (want == 0 && !stored.empty()) want = stored.back();
  if (options_.load_on_demand && std::binary_search(stored.begin(), stored.end(), want)) {
    const std::string path = DirectoryPath(name, want);
    PRL_ASSIGN_OR_RETURN(std::string bytes, ReadArtifactFile(path, field_prefix + "name"));
    return LoadBytes(name, want, bytes, path, options_.batching);
  }
  return absl::NotFoundError(absl::StrCat(
      "model '", name, "'", version == 0 ? "" : absl::StrCat(" v", version),
      " is not loaded (loaded versions of it: ", loaded_list, ")",
      options_.model_dir.empty()
          ? "; load it with LoadModel"
          : absl::StrCat("; the model directory has ",
                         stored.empty() ? "no versions of it"
                                        : absl::StrCat("v", absl::StrJoin(stored, ", v")))));
}

std::vector<v1::ModelInfo> ModelRegistry::List(const std::string& name,
                                               bool include_unloaded) const {
  std::map<std::pair<std::string, int64_t>, v1::ModelInfo> out;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [n, versions] : models_) {
      if (!name.empty() && n != name) continue;
      for (const auto& [v, model] : versions) out[{n, v}] = model->info();
    }
  }
  if (include_unloaded && !options_.model_dir.empty()) {
    std::vector<std::string> names;
    if (name.empty()) {
      names = models::ModelDirectoryNames(options_.model_dir);
    } else {
      names.push_back(name);
    }
    for (const std::string& n : names) {
      for (int64_t v : DirectoryVersions(n)) {
        if (out.count({n, v}) != 0) continue;
        absl::StatusOr<models::ModelArtifact> artifact =
            models::ReadModelArtifact(DirectoryPath(n, v));
        if (!artifact.ok()) continue;  // a corrupt file is reported when someone loads it
        artifact->info.set_loaded(false);
        out[{n, v}] = std::move(artifact->info);
      }
    }
  }
  std::vector<v1::ModelInfo> list;
  list.reserve(out.size());
  for (auto& [key, info] : out) list.push_back(std::move(info));
  return list;
}

void ModelRegistry::UpdateLoadedGauge(const std::string& name) {
  if (metrics_ == nullptr) return;
  auto it = models_.find(name);
  metrics_->SetLoadedVersions(name, it == models_.end() ? 0 : static_cast<int>(it->second.size()));
}

}  // namespace prl::prior_server
