// Crash-safe, checksummed files: the format of every checkpoint and artifact PRL writes.
//
// A file is a 24-byte header followed by the payload:
//   bytes 0..7   magic "PRLFILE\0"
//   bytes 8..11  format version (uint32, little-endian; currently 1)
//   bytes 12..15 CRC-32C of the payload (uint32, little-endian)
//   bytes 16..23 payload length in bytes (uint64, little-endian)
// Writers write to a temporary file beside the target, fsync it, rename it over the target and
// fsync the directory, so a crash leaves either the old file or the new one, never a torn one.
// Readers refuse a file whose header, length or checksum is wrong, naming the file.
#ifndef PRL_COMMON_CHECKSUMMED_FILE_H_
#define PRL_COMMON_CHECKSUMMED_FILE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace prl {

// Streams a payload into a new checksummed file and publishes it atomically on Commit().
// If destroyed without Commit(), the temporary file is removed and the target is untouched.
// Not thread-safe; one writer per target path at a time.
class ChecksummedFileWriter {
 public:
  // Opens a temporary file next to `path` (whose directory must exist).
  // Errors: the OS error (e.g. PERMISSION_DENIED, NOT_FOUND) naming the path.
  static absl::StatusOr<std::unique_ptr<ChecksummedFileWriter>> Create(const std::string& path);

  ~ChecksummedFileWriter();
  ChecksummedFileWriter(const ChecksummedFileWriter&) = delete;
  ChecksummedFileWriter& operator=(const ChecksummedFileWriter&) = delete;

  // Appends payload bytes. Errors: the OS error (disk full, ...) naming the path.
  absl::Status Append(absl::string_view data);

  // Writes the header, fsyncs, renames over the target and fsyncs the directory. After an
  // error the target is unchanged. May be called once.
  absl::Status Commit();

  // Payload bytes appended so far.
  uint64_t payload_bytes() const { return length_; }

 private:
  ChecksummedFileWriter(std::string path, std::string temp_path, int fd);

  const std::string path_;
  const std::string temp_path_;
  int fd_;
  uint32_t crc_ = 0;
  uint64_t length_ = 0;
  bool committed_ = false;
};

// Writes `payload` to `path` as a checksummed file, atomically (see ChecksummedFileWriter).
absl::Status WriteChecksummedFile(const std::string& path, absl::string_view payload);

// Reads and verifies a checksummed file; returns its payload.
// Errors: NOT_FOUND if it does not exist; DATA_LOSS if it is truncated, has a bad magic,
// unsupported version, wrong length or checksum mismatch. Messages name the file.
absl::StatusOr<std::string> ReadChecksummedFile(const std::string& path);
// The same checks on a whole file's bytes held in memory (a file pushed over gRPC); `source`
// names it in errors. Returns the payload.
absl::StatusOr<std::string> ParseChecksummedBytes(absl::string_view contents,
                                                  absl::string_view source);

// A checksummed file mapped read-only and verified: its payload without a copy, for large files
// (a replay checkpoint) whose reader copies out what it keeps anyway. The pages are the file's,
// so they are not the process's own memory: the kernel drops them under pressure instead of
// counting them against a memory limit, where reading the file into a buffer would hold a
// second copy of everything while it is restored. Replacing the file (a rename over it) does
// not change a mapping already open.
class MappedChecksummedFile {
 public:
  // Errors: as ReadChecksummedFile's.
  static absl::StatusOr<std::unique_ptr<MappedChecksummedFile>> Open(const std::string& path);
  ~MappedChecksummedFile();
  MappedChecksummedFile(const MappedChecksummedFile&) = delete;
  MappedChecksummedFile& operator=(const MappedChecksummedFile&) = delete;

  // Valid while this object lives.
  absl::string_view payload() const { return payload_; }

 private:
  MappedChecksummedFile(void* data, size_t size) : data_(data), size_(size) {}

  void* const data_;
  const size_t size_;
  absl::string_view payload_;
};

// Writes `contents` (no header) to `path` atomically: temp file, fsync, rename, directory fsync.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents);

}  // namespace prl

#endif  // PRL_COMMON_CHECKSUMMED_FILE_H_
