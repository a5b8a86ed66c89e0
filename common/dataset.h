// Offline RL datasets as HDF5 files in the D4RL layout: PRL's collectors write them with
// DatasetWriter, and ReadDataset loads them, or D4RL files from elsewhere, into memory.
//
// A file PRL writes holds, for N transitions:
//   observations       (N, obs_dim) float32
//   actions            (N, act_dim) float32
//   rewards            (N,)         float32
//   terminals          (N,)         bool   (h5py's bool: an int8 enum FALSE=0, TRUE=1)
//   timeouts           (N,)         bool
//   next_observations  (N, obs_dim) float32
//   infos/<name>       (N, dims...) float32, one per InfoColumnSpec
// as chunked datasets extendible along the first axis, and root-group attributes env_spec,
// collector, prl_version and format ("prl-d4rl-1") as variable-length UTF-8 strings and seed
// as int64. h5py reads all of it back with the dtypes above (bool for terminals/timeouts, str
// for the string attributes).
//
// Files use the HDF5 1.10 file format (readable by HDF5 >= 1.10, i.e. any h5py of the last
// years), whose metadata carries checksums, and every dataset has the Fletcher-32 filter, so
// flipped bits in the data or the file structure read as DATA_LOSS instead of wrong numbers.
// (Only the string attributes' bytes, which HDF5 keeps in its unchecksummed global heap, are
// not covered.) Foreign files in older formats have no such checksums, and HDF5 itself may
// crash on some deliberately corrupted files of that kind: read files you trust.
//
// Nothing here includes MuJoCo or LibTorch, and H5Cpp.h stays inside dataset.cc. HDF5 errors
// become absl::Status; no exception leaves this API.
#ifndef PRL_COMMON_DATASET_H_
#define PRL_COMMON_DATASET_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace prl {

// The value of the root attribute "format" in files DatasetWriter writes.
inline constexpr char kDatasetFormat[] = "prl-d4rl-1";

// Who made a dataset. Stored as attributes of the file's root group.
struct DatasetMetadata {
  std::string env_spec;   // text-format prl.v1.EnvSpec (may be empty for foreign files)
  std::string collector;  // e.g. "scripted:planner noise=0.1", "random"
  int64_t seed = 0;
  std::string prl_version;  // the writer fills it from common/version.h if empty
};

// An extra per-row float32 column, stored as infos/<name> with shape (N, dims...). `dims`
// may be empty for one scalar per row. Names are non-empty and contain no '/'.
struct InfoColumnSpec {
  std::string name;
  std::vector<int64_t> dims;
};

struct DatasetWriterOptions {
  int obs_dim = 0;  // > 0
  int act_dim = 0;  // > 0
  std::vector<InfoColumnSpec> infos;
  DatasetMetadata metadata;
  int64_t chunk_rows = 4096;  // HDF5 chunk size in rows and flush granularity; > 0
  int compression_level = 0;  // gzip level 0-9, 0 = none
};

// One transition. The spans are only read during Append; their sizes must match the options
// (obs_dim, act_dim, and the product of each info column's dims).
struct TransitionRow {
  absl::Span<const float> observation, action, next_observation;
  float reward = 0;
  bool terminal = false;
  bool timeout = false;
  std::vector<absl::Span<const float>> infos;  // in DatasetWriterOptions::infos order
};

// Streams transitions into a new dataset file. Rows are buffered and written every
// `chunk_rows` rows; the file is built under a temporary name beside `path` (path + ".tmp.*")
// and renamed to `path` only by a successful Close(), so a crashed or killed writer never
// leaves a partial file under `path` (it may leave the temporary file). Destroying the writer
// without a successful Close() removes the temporary file.
// Owned by the caller; not thread-safe (one thread per writer; different writers may run on
// different threads, their HDF5 work taking turns on one process-wide lock).
class DatasetWriter {
 public:
  // Creates the temporary file and its empty datasets and attributes.
  // Errors: ALREADY_EXISTS if `path` exists; INVALID_ARGUMENT naming the bad option field
  // (obs_dim, act_dim, chunk_rows, compression_level, infos[i].name, infos[i].dims);
  // NOT_FOUND if the directory does not exist; INTERNAL for other I/O failures.
  static absl::StatusOr<std::unique_ptr<DatasetWriter>> Create(const std::string& path,
                                                               DatasetWriterOptions options);

  ~DatasetWriter();
  DatasetWriter(const DatasetWriter&) = delete;
  DatasetWriter& operator=(const DatasetWriter&) = delete;

  // Appends one transition (buffered; writes a chunk every chunk_rows rows).
  // Errors: INVALID_ARGUMENT on a size mismatch or a non-finite value, naming the key
  // (observation, action, next_observation, reward, infos/<name>); nothing is appended then.
  // FAILED_PRECONDITION after Close() or after an earlier write failure; INTERNAL if HDF5
  // fails to write (the writer is then unusable).
  absl::Status Append(const TransitionRow& row);

  // Writes the buffered rows, closes the file, fsyncs it, renames it to `path` (never
  // replacing a file that appeared there meanwhile: ALREADY_EXISTS) and fsyncs the directory.
  // May be called once; after an error `path` is untouched and the temporary file is removed
  // when the writer is destroyed.
  absl::Status Close();

  // Rows appended so far (written or buffered).
  int64_t rows() const { return rows_; }

  const std::string& path() const { return path_; }

 private:
  struct File;  // the open HDF5 file and its datasets; defined in dataset.cc

  DatasetWriter(std::string path, std::string temp_path, DatasetWriterOptions options,
                std::unique_ptr<File> file);

  // Writes the buffered rows to the file and clears the buffers.
  absl::Status Flush();

  const std::string path_;
  const std::string temp_path_;
  const DatasetWriterOptions options_;
  std::vector<int64_t> info_sizes_;  // floats per row of each info column
  std::unique_ptr<File> file_;       // null once closed
  absl::Status status_;              // sticky: the first write failure
  bool closed_ = false;
  int64_t rows_ = 0;
  int64_t flushed_rows_ = 0;

  // rows not yet written, row-major
  std::vector<float> observations_, actions_, rewards_, next_observations_;
  std::vector<int8_t> terminals_, timeouts_;
  std::vector<std::vector<float>> infos_;
};

// A whole dataset in memory. Row i of a (N, d) column is values[i*d, (i+1)*d).
struct Dataset {
  int64_t size = 0;
  int obs_dim = 0;
  int act_dim = 0;
  std::vector<float> observations, actions, rewards, next_observations;
  std::vector<uint8_t> terminals, timeouts;  // 0/1
  // True when the file had no next_observations and ReadDataset derived them (see there).
  bool derived_next_observations = false;
  struct Info {
    std::string name;
    std::vector<int64_t> dims;  // per-row dims (the file's shape without its first axis)
    std::vector<float> values;  // size * product(dims), row-major
  };
  std::vector<Info> infos;  // in name order (HDF5 lists them so), not the writer's order
  DatasetMetadata metadata;

  // Exclusive end row of each episode, in order: i + 1 for every row i that is terminal or a
  // timeout, and then `size` if the last row is neither (an unfinished final episode).
  std::vector<int64_t> EpisodeEnds() const;

  // The info column called `name`, or null.
  const Info* FindInfo(absl::string_view name) const;
};

// Reads a dataset file: PRL's own, or a D4RL file from elsewhere.
// - observations, actions, rewards, next_observations and infos of any integer or float type
//   become float32; terminals and timeouts may be bool (enum), integer or float (non-zero is
//   true). Shapes: observations/actions/next_observations (N, d) with d > 0, rewards,
//   terminals and timeouts (N,).
// - Missing timeouts: all false. Missing metadata attributes: defaults (empty, seed 0).
// - Missing next_observations: derived, and derived_next_observations is set. Row i gets
//   observations[i + 1] when row i is neither terminal nor a timeout and is not the last
//   row; otherwise (an episode's last row, whose successor the file does not hold) it gets
//   its own observation, observations[i]. That is harmless for terminal rows (bootstrapping
//   is masked) but wrong for timeout rows and an unfinished last row: learners that
//   bootstrap should skip those rows when derived_next_observations is true.
// - infos/<name>: numeric datasets with N rows are read; non-numeric ones and subgroups are
//   skipped; a missing infos group is fine. Info values are not checked for finiteness.
// - Other top-level keys are ignored.
// Errors, naming the file and the key: NOT_FOUND if the file does not exist; DATA_LOSS if it
// is not an HDF5 file, is truncated or HDF5 cannot read it; INVALID_ARGUMENT for a missing
// observations/actions/rewards/terminals, a key that is not a numeric dataset, a wrong rank,
// row counts that disagree (naming both keys and counts), non-finite values in
// observations, actions, rewards or next_observations, NaN terminals/timeouts, or a path that
// is a directory.
// Thread-safe (HDF5 work of all readers and writers in the process takes turns on one lock).
absl::StatusOr<Dataset> ReadDataset(const std::string& path);

}  // namespace prl

#endif  // PRL_COMMON_DATASET_H_
