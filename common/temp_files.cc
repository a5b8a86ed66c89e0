#include "common/temp_files.h"

#include <dirent.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <ctime>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace prl {
namespace {

uint64_t RandomTag() {
  uint64_t tag = 0;
  if (getrandom(&tag, sizeof(tag), GRND_NONBLOCK) == static_cast<ssize_t>(sizeof(tag))) return tag;
  // no entropy yet (early boot): the clock's nanoseconds still differ between restarts
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1000000007ULL ^ static_cast<uint64_t>(now.tv_nsec);
}

bool AllOf(absl::string_view s, bool (*pred)(unsigned char)) {
  if (s.empty()) return false;
  for (const char c : s) {
    if (!pred(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

bool IsDigit(unsigned char c) { return absl::ascii_isdigit(c); }
bool IsHexDigit(unsigned char c) { return absl::ascii_isxdigit(c); }

int Sweep(const std::string& dir, int depth, time_t newest) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return 0;
  int removed = 0;
  while (const dirent* e = readdir(d)) {
    const absl::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    const std::string path = absl::StrCat(dir, "/", name);
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      if (depth > 0) removed += Sweep(path, depth - 1, newest);
    } else if (S_ISREG(st.st_mode) && IsTempFileName(name) && st.st_mtime <= newest) {
      removed += unlink(path.c_str()) == 0;
    }
  }
  closedir(d);
  return removed;
}

}  // namespace

std::string TempPathFor(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  return absl::StrCat(path, ".tmp.", getpid(), ".", counter.fetch_add(1), ".",
                      absl::StrFormat("%016x", RandomTag()));
}

bool IsTempFileName(absl::string_view file_name) {
  const size_t at = file_name.rfind(".tmp.");
  if (at == absl::string_view::npos || at == 0) return false;
  absl::string_view rest = file_name.substr(at + 5);  // pid.n[.tag]
  const size_t dot = rest.find('.');
  if (dot == absl::string_view::npos || !AllOf(rest.substr(0, dot), IsDigit)) return false;
  rest.remove_prefix(dot + 1);  // n[.tag]
  const size_t dot2 = rest.find('.');
  if (dot2 == absl::string_view::npos) return AllOf(rest, IsDigit);
  return AllOf(rest.substr(0, dot2), IsDigit) && AllOf(rest.substr(dot2 + 1), IsHexDigit);
}

int RemoveStaleTempFiles(const std::string& dir, int depth, absl::Duration min_age) {
  return Sweep(dir, depth, absl::ToTimeT(absl::Now() - min_age));
}

}  // namespace prl
