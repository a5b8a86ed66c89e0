// The learner's store of datasets written by COLLECT experiments, under one directory:
//
//   <dir>/<name>.hdf5   the dataset (HDF5, D4RL layout: common/dataset.h)
//   <dir>/<name>.info   its record, a prl.v1.DatasetInfo in PRL's checksummed file format
//                       (common/checksummed_file.h): name, version, SHA-256 of the file, size,
//                       creation time, transitions and episodes, the experiment and its spec
//
// A name is written once (version 1); there is no overwrite. Commit stores a finished file in
// three crash-safe steps: the record is written (atomically) while the file still lies under
// its staging name, then the file is renamed into place and the directory synced; the record
// names the experiment, so a run resumed after a crash between the steps finishes the rename
// (Commit is idempotent for the same experiment). A record whose file is missing, a file
// without a record, a corrupt record, or a file whose size or hash disagrees with its record is
// refused with DATA_LOSS naming the file, and left in place for inspection.
//
// Names follow the model name rule (1-63 characters of [a-z0-9_.-], starting with a lower-case
// letter) and must not end in .hdf5 or .h5, which PriorTrainingSpec.dataset reads as a path.
// Files whose names start with '.' (staging files) are not datasets.
//
// Thread-safe: Commit serialises on a mutex; reads only look at files.
#ifndef PRL_LEARNER_DATASET_STORE_H_
#define PRL_LEARNER_DATASET_STORE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "proto/experiment.pb.h"

namespace prl::learner {

// True when PriorTrainingSpec.dataset (or target_dataset) `dataset` is a file path (it ends in
// .hdf5 or .h5) rather than a name in the dataset store.
bool IsDatasetPath(absl::string_view dataset);

// INVALID_ARGUMENT naming `field` unless `name` is a dataset name (see the file comment).
absl::Status ValidateDatasetName(absl::string_view name, absl::string_view field);

class DatasetStore {
 public:
  // Opens (creating) the store at `dir`. Errors: the file system's, naming the directory.
  static absl::StatusOr<std::unique_ptr<DatasetStore>> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  // <dir>/<name>.hdf5 and <dir>/<name>.info.
  std::string PathOf(absl::string_view name) const;
  std::string RecordPathOf(absl::string_view name) const;
  // Where experiment `experiment_id` builds the file of `name` before Commit: in the store's
  // directory (so the rename stays on one file system), hidden (a leading '.').
  std::string StagingPathOf(absl::string_view name, absl::string_view experiment_id) const;

  // True when anything is stored under `name`: a file or a record, readable or not.
  bool Exists(absl::string_view name) const;

  // The record of `name`, checked against its file's presence and size (not its hash: see
  // Verify). Errors: INVALID_ARGUMENT for a bad name; NOT_FOUND naming the datasets stored;
  // DATA_LOSS naming the file for a corrupt or foreign record, a missing file, a file without a
  // record, or a size that disagrees.
  absl::StatusOr<v1::DatasetInfo> Lookup(absl::string_view name) const;

  // Lookup, then hashes the file and compares with the record. Errors: Lookup's; DATA_LOSS
  // naming the file when the hash differs (the file changed after it was stored).
  absl::StatusOr<v1::DatasetInfo> Verify(absl::string_view name) const;

  // The readable datasets, sorted by name. Records and files that cannot be read are left out
  // and described in `problems` when given (one message each, naming the file).
  std::vector<v1::DatasetInfo> List(std::vector<std::string>* problems = nullptr) const;

  // The names of the readable datasets, sorted, joined for messages ("a, b" or "none").
  std::string DescribeNames() const;

  // Stores the complete HDF5 file at `staged_path` (StagingPathOf(info.name(),
  // info.experiment_id())) as dataset info.name(): fills path, version, content_hash,
  // size_bytes and create_time of `info`, writes the record, renames the file into place.
  // Idempotent for the experiment that wrote the record (a resumed run finishes a Commit a
  // crash interrupted). Returns the stored record.
  // Errors: INVALID_ARGUMENT for a bad name or an empty experiment_id; ALREADY_EXISTS when the
  // name is stored (or half stored) by another experiment, naming the files; NOT_FOUND when the
  // staged file is missing; DATA_LOSS for an unreadable record in the way; the file system's.
  absl::StatusOr<v1::DatasetInfo> Commit(const std::string& staged_path, v1::DatasetInfo info)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  explicit DatasetStore(std::string dir) : dir_(std::move(dir)) {}
  // The record of `name` as stored, without looking at the file.
  absl::StatusOr<v1::DatasetInfo> ReadRecord(absl::string_view name) const;

  const std::string dir_;
  absl::Mutex mu_;
};

// Submit-time checks of the dataset names a filled spec uses, against the store and the
// experiments still QUEUED or RUNNING (`pending`):
//   COLLECT: collect.output_dataset stored already (even unreadably), or the output of a
//     pending COLLECT experiment: ALREADY_EXISTS naming the field and who has the name.
//   TRAIN_PRIOR: prior_training.dataset or target_dataset given as a name that is neither
//     stored nor the output of a pending COLLECT experiment: INVALID_ARGUMENT naming the field
//     and listing the stored datasets.
// Other kinds pass.
absl::Status CheckDatasetReferences(const v1::ExperimentSpec& spec, const DatasetStore& store,
                                    const std::vector<v1::Experiment>& pending);

}  // namespace prl::learner

#endif  // PRL_LEARNER_DATASET_STORE_H_
