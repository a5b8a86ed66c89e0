#include "common/dataset.h"

namespace prl {

std::vector<int64_t> Dataset::EpisodeEnds() const {
  std::vector<int64_t> ends;
  for (int64_t i = 0; i < size; ++i) {
    if (terminals[i] != 0 || timeouts[i] != 0) ends.push_back(i + 1);
  }
  if (size > 0 && (ends.empty() || ends.back() != size)) ends.push_back(size);
  return ends;
}

const Dataset::Info* Dataset::FindInfo(absl::string_view name) const {
  for (const Info& info : infos) {
    if (info.name == name) return &info;
  }
  return nullptr;
}

}  // namespace prl
