// Published policies, newest version per experiment, served to actors by GetPolicy. A
// published Policy is immutable and shared (shared_ptr<const>), so serving never copies
// weights under the lock. Readers can wait for a version with a deadline.
//
// Thread-safe.
#ifndef PRL_LEARNER_POLICY_STORE_H_
#define PRL_LEARNER_POLICY_STORE_H_

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/actor.pb.h"

namespace prl::learner {

class PolicyStore {
 public:
  // Makes `policy` the newest of its experiment. Versions must increase (a lower or equal
  // version is ignored with a warning).
  void Publish(std::shared_ptr<const v1::Policy> policy) ABSL_LOCKS_EXCLUDED(mu_);

  // The newest policy of `experiment_id` once its version is >= min_version (0 counts as 1),
  // waiting until `deadline`. NOT_FOUND when the experiment never published and is not
  // expected to (see Expect); DEADLINE_EXCEEDED when the deadline passes first.
  absl::StatusOr<std::shared_ptr<const v1::Policy>> Wait(const std::string& experiment_id,
                                                         int64_t min_version, absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Marks an experiment as one that will publish (GetPolicy waits instead of NOT_FOUND).
  void Expect(const std::string& experiment_id) ABSL_LOCKS_EXCLUDED(mu_);
  // The newest version of `experiment_id` (0 when none).
  int64_t version(const std::string& experiment_id) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<const v1::Policy>> newest_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, bool> expected_ ABSL_GUARDED_BY(mu_);
};

}  // namespace prl::learner

#endif  // PRL_LEARNER_POLICY_STORE_H_
