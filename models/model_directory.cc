#include "models/model_directory.h"

#include <dirent.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace prl::models {
namespace {

// Names in `dir` (empty when it does not exist), sorted.
std::vector<std::string> Entries(const std::string& dir, bool directories) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    if (directories && e->d_type != DT_DIR && e->d_type != DT_UNKNOWN) continue;
    out.push_back(name);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

bool IsValidModelName(absl::string_view name) {
  if (name.empty() || name.size() > 63 || !absl::ascii_islower(name[0])) return false;
  for (char c : name) {
    if (!absl::ascii_islower(c) && !absl::ascii_isdigit(c) && c != '_' && c != '.' && c != '-') {
      return false;
    }
  }
  return true;
}

absl::Status ValidateModelName(absl::string_view name, absl::string_view field) {
  if (IsValidModelName(name)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      field, ": '", name,
      "' is not allowed; it must be 1-63 characters of [a-z0-9_.-] starting with a lower-case "
      "letter"));
}

std::string ModelDirectoryPath(absl::string_view dir, absl::string_view name, int64_t version) {
  return absl::StrCat(dir, "/", name, "/v", version, ".prl");
}

std::vector<std::string> ModelDirectoryNames(absl::string_view dir) {
  std::vector<std::string> out;
  for (std::string& name : Entries(std::string(dir), /*directories=*/true)) {
    if (IsValidModelName(name)) out.push_back(std::move(name));
  }
  return out;
}

std::vector<int64_t> ModelDirectoryVersions(absl::string_view dir, absl::string_view name) {
  std::vector<int64_t> out;
  for (const std::string& entry : Entries(absl::StrCat(dir, "/", name), false)) {
    absl::string_view v = entry;
    int64_t version = 0;
    if (absl::ConsumePrefix(&v, "v") && absl::ConsumeSuffix(&v, ".prl") &&
        absl::SimpleAtoi(v, &version) && version > 0) {
      out.push_back(version);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace prl::models
