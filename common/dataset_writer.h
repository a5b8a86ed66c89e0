// DatasetWriter: streams transitions into a new HDF5 dataset file in the D4RL layout that
// common/dataset.h describes.
//
// Nothing here includes HDF5, MuJoCo or LibTorch; H5Cpp.h stays inside dataset_writer.cc.
// HDF5 errors become absl::Status; no exception leaves this API.
#ifndef PRL_COMMON_DATASET_WRITER_H_
#define PRL_COMMON_DATASET_WRITER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/dataset.h"

namespace prl {

// What DatasetWriter::Create makes: the row shape, info columns, metadata and HDF5 layout.
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
  struct File;  // the open HDF5 file and its datasets; defined in dataset_writer.cc

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

}  // namespace prl

#endif  // PRL_COMMON_DATASET_WRITER_H_
