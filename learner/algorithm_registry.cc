#include "learner/algorithm_registry.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "learner/flat_algorithm.h"

namespace prl::learner {
namespace {

// The spec's name of an algorithm oneof case ("sac"), from the proto's field names.
std::string CaseName(v1::AlgorithmSpec::AlgorithmCase which) {
  const google::protobuf::FieldDescriptor* field =
      v1::AlgorithmSpec::descriptor()->FindFieldByNumber(static_cast<int>(which));
  return field == nullptr ? absl::StrCat("#", static_cast<int>(which)) : field->name();
}

}  // namespace

void AlgorithmRegistry::Register(v1::AlgorithmSpec::AlgorithmCase which, std::string name,
                                 AlgorithmFactory factory) {
  entries_[static_cast<int>(which)] = Entry{std::move(name), std::move(factory)};
}

bool AlgorithmRegistry::Has(v1::AlgorithmSpec::AlgorithmCase which) const {
  return entries_.count(static_cast<int>(which)) > 0;
}

std::vector<std::string> AlgorithmRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& [which, entry] : entries_) out.push_back(entry.name);
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<std::unique_ptr<Algorithm>> AlgorithmRegistry::Create(
    const AlgorithmOptions& options) const {
  const v1::AlgorithmSpec::AlgorithmCase which = options.spec.algorithm().algorithm_case();
  if (which == v1::AlgorithmSpec::ALGORITHM_NOT_SET) {
    return absl::InvalidArgumentError(
        absl::StrCat("algorithm: not set; it must be one of ", absl::StrJoin(names(), ", ")));
  }
  auto it = entries_.find(static_cast<int>(which));
  if (it == entries_.end()) {
    return absl::UnimplementedError(absl::StrCat("algorithm.", CaseName(which),
                                                 ": not implemented by this learner; it runs ",
                                                 absl::StrJoin(names(), ", ")));
  }
  return it->second.factory(options);
}

AlgorithmRegistry DefaultAlgorithmRegistry() {
  AlgorithmRegistry registry;
  registry.Register(v1::AlgorithmSpec::kSac, "sac", CreateFlatAlgorithm);
  registry.Register(v1::AlgorithmSpec::kTd3, "td3", CreateFlatAlgorithm);
  return registry;
}

}  // namespace prl::learner
