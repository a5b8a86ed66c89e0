// The learner's store of trained models: versioned artifacts (models/artifact.h) by name under
// one directory, <dir>/<name>/v<version>.prl, written crash-safe by the checksummed writer.
// Versions of a name are 1, 2, 3, ... in creation order. A corrupt or foreign file is refused
// with DATA_LOSS naming it and left in place for inspection; List reports it and goes on.
//
// Thread-safe: Reserve/Write serialise on a mutex, so two jobs never get the same version.
#ifndef PRL_LEARNER_MODEL_STORE_H_
#define PRL_LEARNER_MODEL_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "models/artifact.h"
#include "proto/prior.pb.h"

namespace prl::learner {

class ModelStore {
 public:
  // Opens (creating) the store at `dir`. Errors: the file system's, naming the directory.
  static absl::StatusOr<std::unique_ptr<ModelStore>> Open(const std::string& dir);

  // The next version of `name` (one more than the newest stored or reserved), reserved until
  // Write or Release. Errors: INVALID_ARGUMENT for a name artifacts do not allow.
  absl::StatusOr<int64_t> Reserve(const std::string& name) ABSL_LOCKS_EXCLUDED(mu_);
  // Gives up a reserved version that will not be written.
  void Release(const std::string& name, int64_t version) ABSL_LOCKS_EXCLUDED(mu_);

  // Writes `artifact` as its info's name and version; returns the path. Errors:
  // ALREADY_EXISTS for a version already stored; ValidateModelArtifact's; the file system's.
  absl::StatusOr<std::string> Write(const models::ModelArtifact& artifact) ABSL_LOCKS_EXCLUDED(mu_);

  // Reads name/version (0: the newest). Errors: NOT_FOUND naming what is stored;
  // ReadModelArtifact's (DATA_LOSS for a corrupt file).
  absl::StatusOr<models::ModelArtifact> Read(const std::string& name, int64_t version) const;

  // The stored models' infos (no weights), sorted by name then version. Files that cannot be
  // read are left out and named in `problems` when given.
  std::vector<v1::ModelInfo> List(std::vector<std::string>* problems = nullptr) const;

  std::string PathOf(const std::string& name, int64_t version) const;

  // Called after each successful Write with the model's name, version and file (on the
  // writer's thread, outside the store's lock): the learner pushes new artifacts to a prior
  // server that shares no file system with it (learner/model_pusher.h). Set before use.
  using WriteListener =
      std::function<void(const std::string& name, int64_t version, const std::string& path)>;
  void SetWriteListener(WriteListener listener) { listener_ = std::move(listener); }

 private:
  explicit ModelStore(std::string dir) : dir_(std::move(dir)) {}
  // Versions stored for `name`, ascending.
  std::vector<int64_t> Versions(const std::string& name) const;

  const std::string dir_;
  WriteListener listener_;
  mutable absl::Mutex mu_;
  std::set<std::pair<std::string, int64_t>> reserved_ ABSL_GUARDED_BY(mu_);
};

}  // namespace prl::learner

#endif  // PRL_LEARNER_MODEL_STORE_H_
