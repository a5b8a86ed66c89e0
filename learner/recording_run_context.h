// A RunContext for run tests: keeps the latest progress, the outputs and the curve, and lets a
// test wait for a progress message. Thread-safe.
#ifndef PRL_LEARNER_RECORDING_RUN_CONTEXT_H_
#define PRL_LEARNER_RECORDING_RUN_CONTEXT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "learner/experiment_run.h"
#include "proto/experiment.pb.h"

namespace prl::learner {

class RecordingRunContext final : public RunContext {
 public:
  void ReportProgress(const v1::Progress& progress) override {
    absl::MutexLock lock(&mu_);
    progress_ = progress;
  }
  void AddCurvePoint(const v1::CurvePoint& point) override {
    absl::MutexLock lock(&mu_);
    curve_.push_back(point);
  }
  void TruncateCurve(int64_t env_steps) override {
    absl::MutexLock lock(&mu_);
    std::vector<v1::CurvePoint> kept;
    for (const v1::CurvePoint& p : curve_) {
      if (p.env_steps() <= env_steps) kept.push_back(p);
    }
    curve_ = kept;
  }
  void SetOutputs(const v1::ExperimentOutputs& outputs) override {
    absl::MutexLock lock(&mu_);
    outputs_ = outputs;
  }

  v1::Progress progress() {
    absl::MutexLock lock(&mu_);
    return progress_;
  }
  v1::ExperimentOutputs outputs() {
    absl::MutexLock lock(&mu_);
    return outputs_;
  }
  std::vector<v1::CurvePoint> curve() {
    absl::MutexLock lock(&mu_);
    return curve_;
  }
  // Waits until a progress report's message contains `text`.
  void AwaitMessage(const std::string& text) {
    absl::MutexLock lock(&mu_);
    const auto seen = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return absl::StrContains(progress_.message(), text);
    };
    mu_.Await(absl::Condition(&seen));
  }

 private:
  absl::Mutex mu_;
  v1::Progress progress_ ABSL_GUARDED_BY(mu_);
  v1::ExperimentOutputs outputs_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::CurvePoint> curve_ ABSL_GUARDED_BY(mu_);
};

}  // namespace prl::learner

#endif  // PRL_LEARNER_RECORDING_RUN_CONTEXT_H_
