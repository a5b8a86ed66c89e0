#include "learner/experiment_store.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/checksummed_file.h"
#include "common/directories.h"
#include "common/status_macros.h"
#include "google/protobuf/text_format.h"

namespace prl::learner {
namespace {

// The number in "exp-000042", or -1.
int64_t IdNumber(const std::string& id) {
  int64_t n;
  if (id.rfind("exp-", 0) != 0 || !absl::SimpleAtoi(id.substr(4), &n)) return -1;
  return n;
}

}  // namespace

absl::StatusOr<ExperimentStore> ExperimentStore::Open(const std::string& state_dir) {
  PRL_RETURN_IF_ERROR(MakeDirectories(state_dir));
  const std::string root = state_dir + "/experiments";
  PRL_RETURN_IF_ERROR(MakeDirectories(root));
  ExperimentStore store(root);
  // the next id follows the highest directory, stored record or not
  DIR* dir = opendir(root.c_str());
  if (dir == nullptr) {
    return absl::InternalError(absl::StrCat("cannot list ", root, ": ", std::strerror(errno)));
  }
  while (dirent* entry = readdir(dir)) {
    store.next_number_ = std::max(store.next_number_, IdNumber(entry->d_name) + 1);
  }
  closedir(dir);
  return store;
}

std::string ExperimentStore::NewId() { return absl::StrFormat("exp-%06d", next_number_++); }

std::string ExperimentStore::ExperimentDir(const std::string& id) const {
  return absl::StrCat(root_, "/", id);
}

std::string ExperimentStore::CheckpointPath(const std::string& id) const {
  return ExperimentDir(id) + "/checkpoint.bin";
}

absl::StatusOr<std::vector<v1::Experiment>> ExperimentStore::LoadAll() const {
  std::vector<std::pair<int64_t, std::string>> ids;
  DIR* dir = opendir(root_.c_str());
  if (dir == nullptr) {
    return absl::InternalError(absl::StrCat("cannot list ", root_, ": ", std::strerror(errno)));
  }
  while (dirent* entry = readdir(dir)) {
    const int64_t n = IdNumber(entry->d_name);
    if (n >= 0) ids.emplace_back(n, entry->d_name);
  }
  closedir(dir);
  std::sort(ids.begin(), ids.end());
  std::vector<v1::Experiment> experiments;
  for (const auto& [number, id] : ids) {
    const std::string path = ExperimentDir(id) + "/experiment.pb";
    struct stat st;
    if (stat(path.c_str(), &st) != 0) continue;  // created, never saved (crash at Submit)
    PRL_ASSIGN_OR_RETURN(std::string bytes, ReadChecksummedFile(path));
    v1::Experiment experiment;
    if (!experiment.ParseFromString(bytes)) {
      return absl::DataLossError(absl::StrCat(path, " is not an Experiment record"));
    }
    experiments.push_back(std::move(experiment));
  }
  return experiments;
}

absl::Status ExperimentStore::Save(const v1::Experiment& experiment) const {
  const std::string dir = ExperimentDir(experiment.id());
  PRL_RETURN_IF_ERROR(MakeDirectories(dir));
  v1::Experiment record = experiment;
  record.clear_curve();
  PRL_RETURN_IF_ERROR(WriteChecksummedFile(dir + "/experiment.pb", record.SerializeAsString()));
  std::string text;
  google::protobuf::TextFormat::PrintToString(experiment.spec(), &text);
  return WriteFileAtomically(dir + "/spec.textproto", text);
}

absl::Status ExperimentStore::SaveStopRequest(const std::string& id,
                                              const std::string& reason) const {
  PRL_RETURN_IF_ERROR(MakeDirectories(ExperimentDir(id)));
  return WriteFileAtomically(ExperimentDir(id) + "/stop_requested", reason);
}

std::optional<std::string> ExperimentStore::LoadStopRequest(const std::string& id) const {
  std::ifstream file(ExperimentDir(id) + "/stop_requested", std::ios::binary);
  if (!file) return std::nullopt;
  std::stringstream reason;
  reason << file.rdbuf();
  return reason.str().empty() ? "stopped by user" : reason.str();
}

const char* ExperimentStore::CurveHeader() {
  return "env_steps,elapsed_seconds,updates,train_return,train_episodes,eval_return,"
         "eval_episodes,eval_success_rate";
}

absl::Status ExperimentStore::SaveCurve(const std::string& id,
                                        const std::vector<v1::CurvePoint>& curve) const {
  std::string csv = absl::StrCat(CurveHeader(), "\n");
  for (const v1::CurvePoint& p : curve) {
    absl::StrAppendFormat(&csv, "%d,%.3f,%d,%.6g,%d,%.6g,%d,%.4f\n", p.env_steps(),
                          p.elapsed_seconds(), p.updates(), p.train_return(), p.train_episodes(),
                          p.eval_return(), p.eval_episodes(), p.eval_success_rate());
  }
  PRL_RETURN_IF_ERROR(MakeDirectories(ExperimentDir(id)));
  return WriteFileAtomically(ExperimentDir(id) + "/curve.csv", csv);
}

absl::StatusOr<std::vector<v1::CurvePoint>> ExperimentStore::LoadCurve(
    const std::string& id) const {
  const std::string path = ExperimentDir(id) + "/curve.csv";
  std::ifstream file(path);
  std::vector<v1::CurvePoint> curve;
  if (!file) return curve;
  std::string line;
  std::getline(file, line);  // header
  int line_number = 1;
  while (std::getline(file, line)) {
    ++line_number;
    if (line.empty()) continue;
    std::vector<std::string> f = absl::StrSplit(line, ',');
    v1::CurvePoint p;
    int64_t env_steps, updates;
    int train_episodes, eval_episodes;
    double elapsed, train_return, eval_return, success;
    if (f.size() != 8 || !absl::SimpleAtoi(f[0], &env_steps) || !absl::SimpleAtod(f[1], &elapsed) ||
        !absl::SimpleAtoi(f[2], &updates) || !absl::SimpleAtod(f[3], &train_return) ||
        !absl::SimpleAtoi(f[4], &train_episodes) || !absl::SimpleAtod(f[5], &eval_return) ||
        !absl::SimpleAtoi(f[6], &eval_episodes) || !absl::SimpleAtod(f[7], &success)) {
      return absl::DataLossError(absl::StrCat(path, ":", line_number, ": malformed curve row"));
    }
    p.set_env_steps(env_steps);
    p.set_elapsed_seconds(elapsed);
    p.set_updates(updates);
    p.set_train_return(train_return);
    p.set_train_episodes(train_episodes);
    p.set_eval_return(eval_return);
    p.set_eval_episodes(eval_episodes);
    p.set_eval_success_rate(success);
    curve.push_back(p);
  }
  return curve;
}

}  // namespace prl::learner
