// The learner's experiment lifecycle: a FIFO queue, one RUNNING experiment at a time, state
// transitions QUEUED -> RUNNING -> SUCCEEDED | FAILED | STOPPED (or QUEUED -> STOPPED), every
// change persisted through ExperimentStore before it is visible, watchers woken on changes,
// and on start the stored queue reloaded: an experiment that was RUNNING when the learner
// stopped runs again first (restarts + 1) and resumes from its checkpoint.
//
// Thread-safe. Owns the scheduler thread (joined by Shutdown or the destructor).
#ifndef PRL_LEARNER_EXPERIMENT_MANAGER_H_
#define PRL_LEARNER_EXPERIMENT_MANAGER_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "learner/experiment_run.h"
#include "learner/experiment_store.h"
#include "proto/experiment.pb.h"

namespace prl::learner {

struct ExperimentManagerOptions {
  std::string state_dir;
  // Builds runs; required.
  RunFactory run_factory;
  // Validates and fills a submitted spec; required (learner/spec_validation.h in the binary).
  std::function<absl::StatusOr<v1::ExperimentSpec>(const v1::ExperimentSpec&)> validate;
  // Optional: called with the number of experiments in each state ("queued", "running", ...;
  // every state present, zeros included) at start and after every change, under the
  // manager's lock (it must not call the manager). The learner's metrics use it.
  std::function<void(const std::map<std::string, int>& counts)> on_state_counts;
};

class ExperimentManager {
 public:
  // Loads the stored experiments and starts the scheduler. DATA_LOSS for an unreadable record.
  static absl::StatusOr<std::unique_ptr<ExperimentManager>> Create(
      ExperimentManagerOptions options);
  ~ExperimentManager();

  // Validates, stores and queues. INVALID_ARGUMENT / UNIMPLEMENTED from validation.
  absl::StatusOr<v1::Experiment> Submit(const v1::ExperimentSpec& spec) ABSL_LOCKS_EXCLUDED(mu_);
  // NOT_FOUND for an unknown id.
  absl::StatusOr<v1::Experiment> Get(const std::string& id, bool include_curve) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // Newest first, filtered, paginated (the token is the id to continue after).
  // INVALID_ARGUMENT for bad page sizes, tokens or states.
  absl::StatusOr<std::pair<std::vector<v1::Experiment>, std::string>> List(
      const std::vector<v1::ExperimentState>& states, int page_size,
      const std::string& page_token) const ABSL_LOCKS_EXCLUDED(mu_);
  // Stops a queued or running experiment (waits until a running one has ended); returns it
  // unchanged when it already ended. NOT_FOUND for an unknown id.
  absl::StatusOr<v1::Experiment> Stop(const std::string& id, const std::string& reason)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Waits until the experiment changed after `*seen` (a change counter; 0 returns at once) or
  // `deadline`, then returns it and updates *seen. NOT_FOUND for an unknown id.
  absl::StatusOr<v1::Experiment> WaitForChange(const std::string& id, int64_t* seen,
                                               absl::Time deadline) const ABSL_LOCKS_EXCLUDED(mu_);

  // Stops the scheduler: a running experiment is checkpointed and stays RUNNING on disk, to
  // resume when the learner starts again. Idempotent.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  class Context;
  struct Entry {
    v1::Experiment experiment;
    std::vector<v1::CurvePoint> curve;
    int64_t changes = 1;
  };

  ExperimentManager(ExperimentManagerOptions options, ExperimentStore store);
  void SchedulerLoop() ABSL_LOCKS_EXCLUDED(mu_);
  // Persists and publishes a change to `entry`.
  void Changed(Entry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RenumberQueue() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Calls options_.on_state_counts.
  void ReportStateCounts() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void End(Entry& entry, v1::ExperimentState state, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ExperimentManagerOptions options_;
  mutable absl::Mutex mu_;
  ExperimentStore store_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> order_ ABSL_GUARDED_BY(mu_);  // submission order
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);
  std::string running_ ABSL_GUARDED_BY(mu_);
  ExperimentRun* run_ ABSL_GUARDED_BY(mu_) = nullptr;
  // A Stop that came while the running experiment's run was being built.
  std::string pending_stop_ ABSL_GUARDED_BY(mu_);
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  std::thread scheduler_;
};

}  // namespace prl::learner

#endif  // PRL_LEARNER_EXPERIMENT_MANAGER_H_
