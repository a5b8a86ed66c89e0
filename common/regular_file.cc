#include "common/regular_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/os_error.h"

namespace prl {
namespace {

const char* KindOf(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a plain file";
}

absl::Status NotRegular(const std::string& path, mode_t mode) {
  return absl::InvalidArgumentError(
      absl::StrCat("'", path, "' is not a regular file (it is ", KindOf(mode), ")"));
}

}  // namespace

absl::StatusOr<RegularFile> RegularFile::Open(const std::string& path) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer
  const int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return OsError("cannot open", path);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    absl::Status s = OsError("cannot stat", path);
    close(fd);
    return s;
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return NotRegular(path, st.st_mode);
  }
  return RegularFile(path, fd, static_cast<int64_t>(st.st_size));
}

RegularFile::~RegularFile() {
  if (fd_ >= 0) close(fd_);
}

RegularFile::RegularFile(RegularFile&& other) noexcept
    : path_(std::move(other.path_)), fd_(other.fd_), size_(other.size_) {
  other.fd_ = -1;
}

absl::Status RegularFile::ReadAt(int64_t offset, int64_t n, char* out) const {
  while (n > 0) {
    const ssize_t r = pread(fd_, out, static_cast<size_t>(n), static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      return OsError("cannot read", path_);
    }
    if (r == 0) {
      return absl::DataLossError(
          absl::StrCat("'", path_, "' ended at byte ", offset, " while being read"));
    }
    out += r;
    offset += r;
    n -= r;
  }
  return absl::OkStatus();
}

absl::Status CheckRegularFile(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return OsError("cannot open", path);
  if (!S_ISREG(st.st_mode)) return NotRegular(path, st.st_mode);
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadRegularFile(const std::string& path, int64_t max_bytes) {
  absl::StatusOr<RegularFile> file = RegularFile::Open(path);
  if (!file.ok()) return file.status();
  if (file->size() > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", path, "' has ", file->size(), " bytes; the limit is ", max_bytes));
  }
  std::string contents(static_cast<size_t>(file->size()), '\0');
  if (absl::Status s = file->ReadAt(0, file->size(), contents.data()); !s.ok()) return s;
  return contents;
}

}  // namespace prl
