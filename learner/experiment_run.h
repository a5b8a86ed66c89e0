// What the experiment manager runs: one ExperimentRun per RUNNING experiment, on the manager's
// scheduler thread. A run reports through its RunContext and ends with a Result; RequestStop
// may come from any thread.
#ifndef PRL_LEARNER_EXPERIMENT_RUN_H_
#define PRL_LEARNER_EXPERIMENT_RUN_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/experiment.pb.h"

namespace prl::learner {

// How a run reports to the manager. Thread-safe.
class RunContext {
 public:
  virtual ~RunContext() = default;
  // Replaces the experiment's live counters.
  virtual void ReportProgress(const v1::Progress& progress) = 0;
  // Appends a learning-curve point (stored in curve.csv at once).
  virtual void AddCurvePoint(const v1::CurvePoint& point) = 0;
  // Drops the curve points past `env_steps` (stored at once): a run restored from a checkpoint
  // cuts its curve back to the checkpoint, so the points of a lost stretch do not mix with the
  // ones that replace them.
  virtual void TruncateCurve(int64_t env_steps) = 0;
  // Replaces the experiment's outputs.
  virtual void SetOutputs(const v1::ExperimentOutputs& outputs) = 0;
};

class ExperimentRun {
 public:
  struct Result {
    // SUCCEEDED, FAILED or STOPPED; RUNNING means "interrupted by a learner shutdown, resume
    // on restart".
    v1::ExperimentState state = v1::EXPERIMENT_STATE_SUCCEEDED;
    std::string reason;
  };

  virtual ~ExperimentRun() = default;
  // Runs to the end; blocking.
  virtual Result Run() = 0;
  // Asks the run to end soon: with STOPPED and `reason`, or (shutdown) checkpointed and left
  // RUNNING for the next start. Thread-safe; returns at once.
  virtual void RequestStop(const std::string& reason, bool shutdown) = 0;
};

// The stop a run was asked for (ExperimentRun::RequestStop), which its loop polls and waits on.
// The first request wins. Thread-safe.
class StopRequest {
 public:
  void Request(const std::string& reason, bool shutdown) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (requested_) return;
    requested_ = true;
    reason_ = reason;
    shutdown_ = shutdown;
  }
  // STOPPED with the reason, or RUNNING for a learner shutdown (resume at the next start);
  // nullopt while no stop was asked for.
  std::optional<ExperimentRun::Result> Get() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (!requested_) return std::nullopt;
    return ExperimentRun::Result{
        shutdown_ ? v1::EXPERIMENT_STATE_RUNNING : v1::EXPERIMENT_STATE_STOPPED, reason_};
  }
  // Waits up to `timeout` for a request; true when one came.
  bool WaitFor(absl::Duration timeout) const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&requested_), timeout);
    return requested_;
  }

 private:
  mutable absl::Mutex mu_;
  bool requested_ ABSL_GUARDED_BY(mu_) = false;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  std::string reason_ ABSL_GUARDED_BY(mu_);
};

// Builds the run of `experiment` (its spec filled and validated); `context` outlives the run.
using RunFactory = std::function<absl::StatusOr<std::unique_ptr<ExperimentRun>>(
    const v1::Experiment& experiment, RunContext* context)>;

}  // namespace prl::learner

#endif  // PRL_LEARNER_EXPERIMENT_RUN_H_
