#include "fuzz/temp_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace prl::fuzz {

std::string TempPath(absl::string_view name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  if (dir == nullptr || *dir == '\0') dir = std::getenv("TMPDIR");
  if (dir == nullptr || *dir == '\0') dir = "/tmp";
  return absl::StrCat(dir, "/prl-fuzz-", getpid(), "-", name);
}

void WriteFileOrDie(const std::string& path, absl::string_view bytes) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  PRL_CHECK(fd >= 0) << "cannot create " << path << ": " << std::strerror(errno);
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    PRL_CHECK(n > 0) << "cannot write " << path << ": " << std::strerror(errno);
    done += static_cast<size_t>(n);
  }
  PRL_CHECK(close(fd) == 0) << "cannot close " << path << ": " << std::strerror(errno);
}

std::string ReadFileOrDie(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  PRL_CHECK(fd >= 0) << "cannot open " << path << ": " << std::strerror(errno);
  std::string bytes;
  char chunk[1 << 14];
  for (;;) {
    const ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    PRL_CHECK(n >= 0) << "cannot read " << path << ": " << std::strerror(errno);
    if (n == 0) break;
    bytes.append(chunk, static_cast<size_t>(n));
  }
  close(fd);
  return bytes;
}

}  // namespace prl::fuzz
