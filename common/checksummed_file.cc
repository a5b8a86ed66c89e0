#include "common/checksummed_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/crc32c.h"
#include "common/directories.h"
#include "common/os_error.h"
#include "common/regular_file.h"
#include "common/status_macros.h"
#include "common/temp_files.h"

namespace prl {
namespace {

constexpr char kMagic[8] = {'P', 'R', 'L', 'F', 'I', 'L', 'E', '\0'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderSize = 24;

void PutLe32(uint32_t v, char* out) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}
void PutLe64(uint64_t v, char* out) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}
uint32_t GetLe32(const char* in) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) {
    v |= static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  }
  return v;
}
uint64_t GetLe64(const char* in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    v |= static_cast<uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  }
  return v;
}

absl::Status WriteAll(int fd, const char* data, size_t n, off_t offset, const std::string& path) {
  while (n > 0) {
    const ssize_t w = pwrite(fd, data, n, offset);
    if (w < 0) {
      if (errno == EINTR) continue;
      return OsError("cannot write", path);
    }
    if (w == 0) {
      errno = EIO;
      return OsError("cannot write (no progress)", path);
    }
    data += w;
    n -= static_cast<size_t>(w);
    offset += w;
  }
  return absl::OkStatus();
}

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Opens a fresh temp file beside `path`.
absl::StatusOr<int> OpenTemp(const std::string& temp_path) {
  const int fd = open(temp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return OsError("cannot create", temp_path);
  return fd;
}

// fsyncs and closes `fd`, then renames temp over target and fsyncs the directory.
absl::Status Publish(int fd, const std::string& temp_path, const std::string& path) {
  if (fsync(fd) != 0) {
    absl::Status s = OsError("cannot fsync", temp_path);
    close(fd);
    return s;
  }
  if (close(fd) != 0) return OsError("cannot close", temp_path);
  if (rename(temp_path.c_str(), path.c_str()) != 0) return OsError("cannot rename onto", path);
  return SyncDirectory(DirName(path));
}

}  // namespace

ChecksummedFileWriter::ChecksummedFileWriter(std::string path, std::string temp_path, int fd)
    : path_(std::move(path)), temp_path_(std::move(temp_path)), fd_(fd) {}

absl::StatusOr<std::unique_ptr<ChecksummedFileWriter>> ChecksummedFileWriter::Create(
    const std::string& path) {
  std::string temp_path = TempPathFor(path);
  PRL_ASSIGN_OR_RETURN(int fd, OpenTemp(temp_path));
  return std::unique_ptr<ChecksummedFileWriter>(
      new ChecksummedFileWriter(path, std::move(temp_path), fd));
}

ChecksummedFileWriter::~ChecksummedFileWriter() {
  if (committed_) return;
  if (fd_ >= 0) close(fd_);
  unlink(temp_path_.c_str());
}

absl::Status ChecksummedFileWriter::Append(absl::string_view data) {
  if (committed_ || fd_ < 0) return absl::FailedPreconditionError("writer already committed");
  PRL_RETURN_IF_ERROR(WriteAll(fd_, data.data(), data.size(),
                               static_cast<off_t>(kHeaderSize + length_), temp_path_));
  crc_ = Crc32cExtend(crc_, data);
  length_ += data.size();
  return absl::OkStatus();
}

absl::Status ChecksummedFileWriter::Commit() {
  if (committed_ || fd_ < 0) return absl::FailedPreconditionError("writer already committed");
  char header[kHeaderSize];
  std::memcpy(header, kMagic, sizeof(kMagic));
  PutLe32(kVersion, header + 8);
  PutLe32(crc_, header + 12);
  PutLe64(length_, header + 16);
  PRL_RETURN_IF_ERROR(WriteAll(fd_, header, kHeaderSize, 0, temp_path_));
  const int fd = fd_;
  fd_ = -1;
  absl::Status s = Publish(fd, temp_path_, path_);
  if (!s.ok()) {
    unlink(temp_path_.c_str());
    return s;
  }
  committed_ = true;
  return absl::OkStatus();
}

absl::Status WriteChecksummedFile(const std::string& path, absl::string_view payload) {
  PRL_ASSIGN_OR_RETURN(auto writer, ChecksummedFileWriter::Create(path));
  PRL_RETURN_IF_ERROR(writer->Append(payload));
  return writer->Commit();
}

namespace {

absl::Status Corrupt(absl::string_view source, absl::string_view why) {
  return absl::DataLossError(
      absl::StrCat("file '", source, "' is corrupt or not a PRL file: ", why));
}

// Checks the header against a file of `size` bytes; returns the payload's CRC.
absl::StatusOr<uint32_t> CheckHeader(const char* header, uint64_t size, absl::string_view source) {
  if (size < kHeaderSize) {
    return Corrupt(source, absl::StrCat("it has ", size, " bytes, fewer than the ", kHeaderSize,
                                        "-byte header"));
  }
  if (std::memcmp(header, kMagic, sizeof(kMagic)) != 0) return Corrupt(source, "bad magic");
  const uint32_t version = GetLe32(header + 8);
  if (version != kVersion) {
    return Corrupt(source,
                   absl::StrCat("format version ", version, " (this build reads ", kVersion, ")"));
  }
  const uint64_t length = GetLe64(header + 16);
  if (length != size - kHeaderSize) {
    return Corrupt(source, absl::StrCat("header says ", length, " payload bytes, file has ",
                                        size - kHeaderSize));
  }
  return GetLe32(header + 12);
}

absl::Status CheckCrc(uint32_t crc, absl::string_view payload, absl::string_view source) {
  const uint32_t actual = Crc32c(payload);
  if (actual != crc) {
    return Corrupt(source, absl::StrCat("checksum mismatch (header 0x", absl::Hex(crc),
                                        ", payload 0x", absl::Hex(actual), ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> ReadChecksummedFile(const std::string& path) {
  // a regular file only, and read no further than its header says: a path that names a device
  // or a FIFO, or a large file that is not a PRL file, fails at once
  PRL_ASSIGN_OR_RETURN(const RegularFile file, RegularFile::Open(path));
  const uint64_t size = static_cast<uint64_t>(file.size());
  char header[kHeaderSize] = {};
  if (size >= kHeaderSize) PRL_RETURN_IF_ERROR(file.ReadAt(0, kHeaderSize, header));
  PRL_ASSIGN_OR_RETURN(const uint32_t crc, CheckHeader(header, size, path));
  std::string payload(size - kHeaderSize, '\0');
  PRL_RETURN_IF_ERROR(
      file.ReadAt(kHeaderSize, static_cast<int64_t>(payload.size()), payload.data()));
  PRL_RETURN_IF_ERROR(CheckCrc(crc, payload, path));
  return payload;
}

absl::StatusOr<std::string> ParseChecksummedBytes(absl::string_view contents,
                                                  absl::string_view source) {
  PRL_ASSIGN_OR_RETURN(const uint32_t crc, CheckHeader(contents.data(), contents.size(), source));
  const absl::string_view payload = contents.substr(kHeaderSize);
  PRL_RETURN_IF_ERROR(CheckCrc(crc, payload, source));
  return std::string(payload);
}

absl::StatusOr<std::unique_ptr<MappedChecksummedFile>> MappedChecksummedFile::Open(
    const std::string& path) {
  PRL_ASSIGN_OR_RETURN(const RegularFile file, RegularFile::Open(path));
  const size_t size = static_cast<size_t>(file.size());
  void* data = nullptr;
  if (size > 0) {
    data = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, file.fd(), 0);
    if (data == MAP_FAILED) return OsError("cannot map", path);
    madvise(data, size, MADV_SEQUENTIAL);
  }
  // the mapping keeps the file; the descriptor closes here
  std::unique_ptr<MappedChecksummedFile> mapped(new MappedChecksummedFile(data, size));
  const char* bytes = static_cast<const char*>(data);
  PRL_ASSIGN_OR_RETURN(const uint32_t crc, CheckHeader(bytes, size, path));
  mapped->payload_ = absl::string_view(bytes + kHeaderSize, size - kHeaderSize);
  PRL_RETURN_IF_ERROR(CheckCrc(crc, mapped->payload_, path));
  return mapped;
}

MappedChecksummedFile::~MappedChecksummedFile() {
  if (data_ != nullptr) munmap(data_, size_);
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents) {
  const std::string temp_path = TempPathFor(path);
  PRL_ASSIGN_OR_RETURN(int fd, OpenTemp(temp_path));
  absl::Status s = WriteAll(fd, contents.data(), contents.size(), 0, temp_path);
  if (s.ok()) {
    s = Publish(fd, temp_path, path);
  } else {
    close(fd);
  }
  if (!s.ok()) unlink(temp_path.c_str());
  return s;
}

}  // namespace prl
