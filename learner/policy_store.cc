#include "learner/policy_store.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace prl::learner {

void PolicyStore::Publish(std::shared_ptr<const v1::Policy> policy) {
  absl::MutexLock lock(&mu_);
  auto& slot = newest_[policy->experiment_id()];
  if (slot != nullptr && slot->version() >= policy->version()) {
    PRL_LOG(WARNING) << "policy " << policy->experiment_id() << " v" << policy->version()
                     << " is not newer than v" << slot->version() << "; ignored";
    return;
  }
  slot = std::move(policy);
}

void PolicyStore::Expect(const std::string& experiment_id) {
  absl::MutexLock lock(&mu_);
  expected_[experiment_id] = true;
}

int64_t PolicyStore::version(const std::string& experiment_id) const {
  absl::MutexLock lock(&mu_);
  auto it = newest_.find(experiment_id);
  return it == newest_.end() ? 0 : it->second->version();
}

absl::StatusOr<std::shared_ptr<const v1::Policy>> PolicyStore::Wait(
    const std::string& experiment_id, int64_t min_version, absl::Time deadline) {
  min_version = std::max<int64_t>(1, min_version);
  absl::MutexLock lock(&mu_);
  const auto ready = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    auto it = newest_.find(experiment_id);
    return it != newest_.end() && it->second->version() >= min_version;
  };
  if (newest_.find(experiment_id) == newest_.end() && !expected_.count(experiment_id)) {
    return absl::NotFoundError(
        absl::StrCat("experiment_id: ", experiment_id, " has no policy on this learner"));
  }
  if (!mu_.AwaitWithDeadline(absl::Condition(&ready), deadline)) {
    return absl::DeadlineExceededError(absl::StrCat("no policy version >= ", min_version, " of ",
                                                    experiment_id, " before the deadline"));
  }
  return newest_[experiment_id];
}

}  // namespace prl::learner
