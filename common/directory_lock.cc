#include "common/directory_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/directories.h"
#include "common/os_error.h"

namespace prl {
absl::StatusOr<std::unique_ptr<DirectoryLock>> DirectoryLock::Acquire(const std::string& dir,
                                                                      absl::string_view holder) {
  if (absl::Status s = MakeDirectories(dir); !s.ok()) return s;
  std::string path = absl::StrCat(dir, "/LOCK");
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return OsError("cannot open the lock file", path);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) {
      absl::Status s = OsError("cannot lock", path);
      close(fd);
      return s;
    }
    char buffer[256];
    const ssize_t n = pread(fd, buffer, sizeof(buffer) - 1, 0);
    close(fd);
    absl::string_view who =
        n > 0 ? absl::StripAsciiWhitespace(absl::string_view(buffer, static_cast<size_t>(n)))
              : absl::string_view("another process");
    return absl::FailedPreconditionError(
        absl::StrCat("directory '", dir, "' is in use by ", who, " (", path,
                     " is locked); two processes cannot share one state directory: stop the "
                     "other one or give this one a directory of its own"));
  }
  const std::string text = absl::StrCat(holder, ", pid ", getpid(), "\n");
  if (ftruncate(fd, 0) != 0 ||
      pwrite(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    absl::Status s = OsError("cannot write", path);
    close(fd);
    return s;
  }
  return std::unique_ptr<DirectoryLock>(new DirectoryLock(std::move(path), fd));
}

DirectoryLock::~DirectoryLock() { close(fd_); }  // closing the descriptor releases the lock

}  // namespace prl
