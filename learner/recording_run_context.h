// A RunContext for run tests: keeps the latest progress, the outputs, the curve and its
// truncations, calls a test's hook after each progress report, and lets a test wait for a
// progress message. Thread-safe.
#ifndef PRL_LEARNER_RECORDING_RUN_CONTEXT_H_
#define PRL_LEARNER_RECORDING_RUN_CONTEXT_H_

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "learner/experiment_run.h"
#include "proto/experiment.pb.h"

namespace prl::learner {

class RecordingRunContext final : public RunContext {
 public:
  void ReportProgress(const v1::Progress& progress) override {
    std::function<void(const v1::Progress&)> hook;
    {
      absl::MutexLock lock(&mu_);
      progress_ = progress;
      hook = on_progress_;
    }
    if (hook) hook(progress);
  }
  // Called after each progress report, outside the lock (e.g. to stop the run mid-way).
  void OnProgress(std::function<void(const v1::Progress&)> hook) {
    absl::MutexLock lock(&mu_);
    on_progress_ = std::move(hook);
  }
  void AddCurvePoint(const v1::CurvePoint& point) override {
    absl::MutexLock lock(&mu_);
    curve_.push_back(point);
  }
  void TruncateCurve(int64_t env_steps) override {
    absl::MutexLock lock(&mu_);
    truncations_.push_back(env_steps);
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
  std::vector<int64_t> truncations() {
    absl::MutexLock lock(&mu_);
    return truncations_;
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
  std::vector<int64_t> truncations_ ABSL_GUARDED_BY(mu_);
  std::function<void(const v1::Progress&)> on_progress_ ABSL_GUARDED_BY(mu_);
};

}  // namespace prl::learner

#endif  // PRL_LEARNER_RECORDING_RUN_CONTEXT_H_
