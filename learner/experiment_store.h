// Where the learner keeps its experiments across restarts, under its state directory:
//
//   <state_dir>/experiments/<id>/experiment.pb    the Experiment (curve left out), checksummed
//   <state_dir>/experiments/<id>/spec.textproto   the filled spec, for people
//   <state_dir>/experiments/<id>/curve.csv        the learning curve, one row per CurvePoint
//   <state_dir>/experiments/<id>/checkpoint.bin   the training state (written by the run)
//   <state_dir>/experiments/<id>/stop_requested   a user's stop of the running experiment,
//                                                 kept until the run has ended (its reason)
//
// Every file is replaced atomically (temporary file, fsync, rename), so a crash leaves either
// the old or the new version. Ids are "exp-000001", "exp-000002", ... in submission order.
//
// Thread-compatible: ExperimentManager serialises calls.
#ifndef PRL_LEARNER_EXPERIMENT_STORE_H_
#define PRL_LEARNER_EXPERIMENT_STORE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/experiment.pb.h"

namespace prl::learner {

class ExperimentStore {
 public:
  // Creates <state_dir>/experiments if needed. INTERNAL when it cannot.
  static absl::StatusOr<ExperimentStore> Open(const std::string& state_dir);

  // Every stored experiment, in submission order (curves not loaded). A record that cannot be
  // read is DATA_LOSS naming its file (the file is left in place).
  absl::StatusOr<std::vector<v1::Experiment>> LoadAll() const;

  // A fresh id, one past the highest stored or handed out.
  std::string NewId();

  // Writes the experiment's record (and spec.textproto); the curve is not written here.
  absl::Status Save(const v1::Experiment& experiment) const;
  // Replaces the experiment's curve file.
  absl::Status SaveCurve(const std::string& id, const std::vector<v1::CurvePoint>& curve) const;
  // Reads the curve file; an absent file is an empty curve.
  absl::StatusOr<std::vector<v1::CurvePoint>> LoadCurve(const std::string& id) const;

  // A user's stop of a running experiment, saved before the run is asked to stop, so that a
  // learner killed while the run winds down still stops it at the next start instead of
  // training it to the end. LoadStopRequest: the reason, or nullopt when none was saved.
  absl::Status SaveStopRequest(const std::string& id, const std::string& reason) const;
  std::optional<std::string> LoadStopRequest(const std::string& id) const;

  std::string ExperimentDir(const std::string& id) const;
  std::string CheckpointPath(const std::string& id) const;

  // CSV header of curve.csv.
  static const char* CurveHeader();

 private:
  explicit ExperimentStore(std::string root) : root_(std::move(root)) {}

  std::string root_;
  int64_t next_number_ = 1;
};

}  // namespace prl::learner

#endif  // PRL_LEARNER_EXPERIMENT_STORE_H_
