// Reading files whose paths users name (checkpoints, model artifacts, datasets) inside a
// server: only regular files, opened without blocking and read to their size. A device such as
// /dev/zero would otherwise be read until memory runs out and a FIFO would block the reading
// thread (and a learner restarted on the same experiment would do it again).
#ifndef PRL_COMMON_REGULAR_FILE_H_
#define PRL_COMMON_REGULAR_FILE_H_

#include <cstdint>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace prl {

// An open regular file; closes it when destroyed.
class RegularFile {
 public:
  // Opens `path` for reading (following symbolic links) without waiting on a FIFO.
  // Errors: the OS error naming the path (NOT_FOUND, PERMISSION_DENIED, ...);
  // INVALID_ARGUMENT "'<path>' is not a regular file (it is a directory)" for anything else.
  static absl::StatusOr<RegularFile> Open(const std::string& path);
  ~RegularFile();
  RegularFile(RegularFile&& other) noexcept;
  RegularFile& operator=(RegularFile&&) = delete;
  RegularFile(const RegularFile&) = delete;
  RegularFile& operator=(const RegularFile&) = delete;

  int fd() const { return fd_; }
  // The size when opened.
  int64_t size() const { return size_; }
  // Reads `n` bytes from `offset` into `out`. Errors: the OS error; DATA_LOSS when the file
  // ends first (it shrank).
  absl::Status ReadAt(int64_t offset, int64_t n, char* out) const;

 private:
  RegularFile(std::string path, int fd, int64_t size)
      : path_(std::move(path)), fd_(fd), size_(size) {}

  std::string path_;
  int fd_;
  int64_t size_;
};

// Checks that `path` names a regular file (following symbolic links), for libraries that open
// files by name (HDF5). Errors: as RegularFile::Open's.
absl::Status CheckRegularFile(const std::string& path);

// The whole of a regular file of at most `max_bytes` bytes. Errors: RegularFile::Open's;
// INVALID_ARGUMENT naming the size and the limit for a larger file.
absl::StatusOr<std::string> ReadRegularFile(
    const std::string& path, int64_t max_bytes = std::numeric_limits<int64_t>::max());

}  // namespace prl

#endif  // PRL_COMMON_REGULAR_FILE_H_
