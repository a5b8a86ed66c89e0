// What the experiment manager runs: one ExperimentRun per RUNNING experiment, on the manager's
// scheduler thread. A run reports through its RunContext and ends with a Result; RequestStop
// may come from any thread.
#ifndef PRL_LEARNER_EXPERIMENT_RUN_H_
#define PRL_LEARNER_EXPERIMENT_RUN_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
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

// Builds the run of `experiment` (its spec filled and validated); `context` outlives the run.
using RunFactory = std::function<absl::StatusOr<std::unique_ptr<ExperimentRun>>(
    const v1::Experiment& experiment, RunContext* context)>;

}  // namespace prl::learner

#endif  // PRL_LEARNER_EXPERIMENT_RUN_H_
