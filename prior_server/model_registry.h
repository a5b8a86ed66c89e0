// The models prl_prior_server serves: several names and versions at once, each version a
// LoadedModel (the frozen model and one DynamicBatcher per method it answers).
//
// Where artifacts come from:
//   - the model directory (--model_dir), laid out like the learner's model store
//     (<dir>/<name>/v<version>.prl). On one machine the local cluster points it at the learner's
//     store, so a prior trained by a TRAIN_PRIOR run is loadable the moment it is written;
//   - a path the server can read (LoadModelRequest.artifact_path): a PRL artifact or a
//     TorchScript module;
//   - the artifact's bytes in the request (LoadModelRequest.artifact), for a server that shares
//     no volume with its caller (Kubernetes: the learner pushes what it trains). A pushed PRL
//     artifact is also written to the model directory (when there is one and it lacks that
//     version), so a restarted server finds it again.
//
// Version policy: with keep_versions = N > 0, loading a version keeps only the newest N
// versions of its name loaded (Triton's "latest N"); older ones are unloaded.
// Loading on demand: a call naming a version that is not loaded but is in the model directory
// loads it first (a restarted server comes back by itself as actors call it).
// Unloading and hot swaps drop no call: a call holds its LoadedModel by a shared_ptr until it
// returns, so an unloaded version finishes what it has queued and goes away with its last call.
//
// No LibTorch: models are built by the loader passed in. Thread-safe.
#ifndef PRL_PRIOR_SERVER_MODEL_REGISTRY_H_
#define PRL_PRIOR_SERVER_MODEL_REGISTRY_H_

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/tensor.h"
#include "models/prior_inference.h"
#include "prior_server/dynamic_batcher.h"
#include "prior_server/prior_metrics.h"
#include "proto/prior.pb.h"

namespace prl::prior_server {

// One loaded version.
class LoadedModel {
 public:
  LoadedModel(std::unique_ptr<models::PriorInference> model, std::string fingerprint,
              const BatchingOptions& batching, PriorMetrics* metrics);
  ~LoadedModel();

  // ModelInfo with loaded = true and the batching it is served with.
  const v1::ModelInfo& info() const { return info_; }
  const std::string& fingerprint() const { return fingerprint_; }
  const BatchingOptions& batching() const { return batching_; }

  // Runs `method` on checked `inputs` of `rows` rows through its batcher. Errors:
  // DynamicBatcher::Call's.
  absl::StatusOr<std::vector<HostTensor>> Call(models::PriorMethod method,
                                               std::vector<HostTensor> inputs, int64_t rows,
                                               absl::Time deadline,
                                               const std::function<bool()>& cancelled) const;
  // The batcher of `method` (tests read its stats); null when the model does not answer it.
  const DynamicBatcher* batcher(models::PriorMethod method) const;

 private:
  const std::unique_ptr<models::PriorInference> model_;
  const std::string fingerprint_;
  const BatchingOptions batching_;
  v1::ModelInfo info_;
  std::array<std::unique_ptr<DynamicBatcher>, models::kNumPriorMethods> batchers_;
};

struct RegistryOptions {
  // Directory of <name>/v<version>.prl artifacts; empty for none.
  std::string model_dir;
  // Versions of one name kept loaded (latest N); 0 keeps every version.
  int keep_versions = 0;
  // Load a version a call names from the model directory when it is not loaded.
  bool load_on_demand = true;
  // Batching of every version unless its LoadModel request overrides fields.
  BatchingOptions batching;
  // Largest artifact accepted, in bytes (files and pushed bytes).
  int64_t max_artifact_bytes = int64_t{1} << 30;
};

class ModelRegistry {
 public:
  // Builds a model from an artifact's bytes (models::LoadPrior in production). `name` and
  // `version` are what it will be served under.
  using Loader = std::function<absl::StatusOr<std::unique_ptr<models::PriorInference>>(
      absl::string_view bytes, absl::string_view source, const std::string& name, int64_t version)>;

  // `metrics` may be null; it must outlive the registry.
  ModelRegistry(const RegistryOptions& options, Loader loader, PriorMetrics* metrics);
  ~ModelRegistry();

  // LoadModel (see proto/prior.proto LoadModelRequest). Errors: INVALID_ARGUMENT naming the
  // field (a bad name, a negative version, both artifact_path and artifact, an artifact over the
  // size limit, bad batching, what the loader refuses); NOT_FOUND for a version the model
  // directory does not have, or a missing file; ALREADY_EXISTS for a loaded name/version whose
  // artifact differs; DATA_LOSS for a corrupt file. A failed load changes nothing loaded.
  absl::StatusOr<v1::ModelInfo> Load(const v1::LoadModelRequest& request) ABSL_LOCKS_EXCLUDED(mu_);

  // UnloadModel. Errors: INVALID_ARGUMENT for a bad name or a negative version; NOT_FOUND
  // naming what is loaded.
  absl::StatusOr<std::vector<v1::PriorRef>> Unload(const std::string& name, int64_t version)
      ABSL_LOCKS_EXCLUDED(mu_);

  // The version a call names (0: the newest loaded; or, with nothing of that name loaded, the
  // newest in the model directory, loaded on demand). Errors: INVALID_ARGUMENT for a bad name
  // or version (naming field_prefix + "name" / "version"); NOT_FOUND naming the versions loaded
  // and what the model directory has; the load's errors.
  absl::StatusOr<std::shared_ptr<const LoadedModel>> Get(const std::string& name, int64_t version,
                                                         const std::string& field_prefix)
      ABSL_LOCKS_EXCLUDED(mu_);

  // ListModels: loaded versions (and, with include_unloaded, the model directory's other
  // artifacts), sorted by name then version; `name` empty for all.
  std::vector<v1::ModelInfo> List(const std::string& name, bool include_unloaded) const
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  using Versions = std::map<int64_t, std::shared_ptr<const LoadedModel>>;

  // Versions of `name` in the model directory, ascending.
  std::vector<int64_t> DirectoryVersions(const std::string& name) const;
  std::string DirectoryPath(const std::string& name, int64_t version) const;
  // Reads, builds and inserts name/version; the common path of Load and loading on demand.
  absl::StatusOr<std::shared_ptr<const LoadedModel>> LoadBytes(
      const std::string& name, int64_t version, absl::string_view bytes, const std::string& source,
      const BatchingOptions& batching) ABSL_LOCKS_EXCLUDED(mu_);
  // Reads `path` within the size limit.
  absl::StatusOr<std::string> ReadArtifactFile(const std::string& path,
                                               const std::string& field) const;
  void UpdateLoadedGauge(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const RegistryOptions options_;
  const Loader loader_;
  PriorMetrics* const metrics_;

  mutable absl::Mutex mu_;
  std::map<std::string, Versions> models_ ABSL_GUARDED_BY(mu_);
};

// Errors: INVALID_ARGUMENT naming `field` for a name PriorRef does not allow.
absl::Status ValidateModelName(const std::string& name, const std::string& field);

// Batching options from `config` over `defaults`. Errors: ValidateBatchingOptions's, naming
// "batching.<field>".
absl::StatusOr<BatchingOptions> MergeBatching(const BatchingOptions& defaults,
                                              const v1::BatchingConfig& config);

}  // namespace prl::prior_server

#endif  // PRL_PRIOR_SERVER_MODEL_REGISTRY_H_
