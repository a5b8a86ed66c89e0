#include "common/directories.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "common/os_error.h"

namespace prl {
namespace {

std::string Parent(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Makes the entry of a directory just created in its parent durable.
absl::Status SyncParent(const std::string& path) {
  const std::string parent = Parent(path);
  const int fd = open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return OsError("cannot open directory", parent);
  const int rc = fsync(fd);
  if (rc != 0) {
    absl::Status s = OsError("cannot fsync directory", parent);
    close(fd);
    return s;
  }
  close(fd);
  return absl::OkStatus();
}

}  // namespace

absl::Status MakeDirectories(const std::string& path) {
  for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    const std::string prefix = path.substr(0, slash);
    if (!prefix.empty() && prefix.back() != '/') {
      if (mkdir(prefix.c_str(), 0755) == 0) {
        if (absl::Status s = SyncParent(prefix); !s.ok()) return s;
      } else if (errno != EEXIST) {
        return OsError("cannot create directory", prefix);
      }
    }
    if (slash == std::string::npos) return absl::OkStatus();
  }
}

}  // namespace prl
