#include "learner/dataset_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/checksummed_file.h"
#include "common/directories.h"
#include "common/os_error.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "models/model_directory.h"

namespace prl::learner {
namespace {

constexpr char kFileSuffix[] = ".hdf5";
constexpr char kRecordSuffix[] = ".info";

bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

absl::StatusOr<int64_t> FileSize(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return OsError("cannot stat", path);
  return static_cast<int64_t>(st.st_size);
}

void SetNow(google::protobuf::Timestamp* ts) {
  const absl::Time now = absl::Now();
  ts->set_seconds(absl::ToUnixSeconds(now));
  ts->set_nanos(static_cast<int32_t>(absl::ToUnixNanos(now) % 1000000000));
}

}  // namespace

bool IsDatasetPath(absl::string_view dataset) {
  return absl::EndsWith(dataset, ".hdf5") || absl::EndsWith(dataset, ".h5");
}

absl::Status ValidateDatasetName(absl::string_view name, absl::string_view field) {
  PRL_RETURN_IF_ERROR(models::ValidateModelName(name, field));
  if (IsDatasetPath(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": '", name,
                     "' is not allowed; a dataset name must not end in .hdf5 or .h5 (TRAIN_PRIOR "
                     "reads such a dataset as a file path)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<DatasetStore>> DatasetStore::Open(const std::string& dir) {
  PRL_RETURN_IF_ERROR(MakeDirectories(dir));
  return std::unique_ptr<DatasetStore>(new DatasetStore(dir));
}

std::string DatasetStore::PathOf(absl::string_view name) const {
  return absl::StrCat(dir_, "/", name, kFileSuffix);
}

std::string DatasetStore::RecordPathOf(absl::string_view name) const {
  return absl::StrCat(dir_, "/", name, kRecordSuffix);
}

std::string DatasetStore::StagingPathOf(absl::string_view name,
                                        absl::string_view experiment_id) const {
  return absl::StrCat(dir_, "/.", name, ".", experiment_id, ".staged", kFileSuffix);
}

bool DatasetStore::Exists(absl::string_view name) const {
  return FileExists(PathOf(name)) || FileExists(RecordPathOf(name));
}

absl::StatusOr<v1::DatasetInfo> DatasetStore::ReadRecord(absl::string_view name) const {
  const std::string record_path = RecordPathOf(name);
  PRL_ASSIGN_OR_RETURN(std::string payload, ReadChecksummedFile(record_path));
  v1::DatasetInfo info;
  if (!info.ParseFromString(payload) || info.name() != name) {
    return absl::DataLossError(
        absl::StrCat(record_path, " is not the record of dataset '", name, "'; left in place"));
  }
  return info;
}

absl::StatusOr<v1::DatasetInfo> DatasetStore::Lookup(absl::string_view name) const {
  PRL_RETURN_IF_ERROR(ValidateDatasetName(name, "dataset"));
  const std::string path = PathOf(name);
  const std::string record_path = RecordPathOf(name);
  const bool have_file = FileExists(path);
  if (!FileExists(record_path)) {
    if (have_file) {
      return absl::DataLossError(absl::StrCat(path, " has no record ", record_path,
                                              " (not written by this learner, or its record was "
                                              "removed); left in place"));
    }
    return absl::NotFoundError(
        absl::StrCat("no dataset named '", name, "' in ", dir_, "; stored: ", DescribeNames()));
  }
  PRL_ASSIGN_OR_RETURN(v1::DatasetInfo info, ReadRecord(name));
  if (!have_file) {
    return absl::DataLossError(absl::StrCat(
        "the record ", record_path, " names ", path,
        ", which is missing (a collection interrupted while storing it resumes and finishes; "
        "otherwise the file was removed); left in place"));
  }
  PRL_ASSIGN_OR_RETURN(const int64_t size, FileSize(path));
  if (size != info.size_bytes()) {
    return absl::DataLossError(absl::StrCat(path, " has ", size, " bytes; its record ", record_path,
                                            " says ", info.size_bytes(),
                                            " (the file changed after it was stored); left in "
                                            "place"));
  }
  info.set_path(path);  // the store may have moved since it was written
  return info;
}

absl::StatusOr<v1::DatasetInfo> DatasetStore::Verify(absl::string_view name) const {
  PRL_ASSIGN_OR_RETURN(v1::DatasetInfo info, Lookup(name));
  PRL_ASSIGN_OR_RETURN(const std::string hash, Sha256File(info.path()));
  if (hash != info.content_hash()) {
    return absl::DataLossError(absl::StrCat(info.path(), " has hash ", hash, "; its record ",
                                            RecordPathOf(name), " says ", info.content_hash(),
                                            " (the file changed after it was stored); left in "
                                            "place"));
  }
  return info;
}

std::vector<v1::DatasetInfo> DatasetStore::List(std::vector<std::string>* problems) const {
  std::vector<std::string> names;
  if (DIR* d = opendir(dir_.c_str()); d != nullptr) {
    while (const dirent* e = readdir(d)) {
      absl::string_view file = e->d_name;
      if (file.empty() || file[0] == '.') continue;  // staging files, temporaries
      for (const char* suffix : {kFileSuffix, kRecordSuffix}) {
        if (absl::ConsumeSuffix(&file, suffix)) names.emplace_back(file);
      }
    }
    closedir(d);
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  std::vector<v1::DatasetInfo> out;
  for (const std::string& name : names) {
    absl::StatusOr<v1::DatasetInfo> info = Lookup(name);
    if (!info.ok()) {
      if (problems != nullptr) problems->push_back(std::string(info.status().message()));
      continue;
    }
    out.push_back(*std::move(info));
  }
  return out;
}

std::string DatasetStore::DescribeNames() const {
  std::vector<std::string> names;
  // records only: Lookup (which List calls) would come back here for a missing name
  if (DIR* d = opendir(dir_.c_str()); d != nullptr) {
    while (const dirent* e = readdir(d)) {
      absl::string_view file = e->d_name;
      if (file.empty() || file[0] == '.' || !absl::ConsumeSuffix(&file, kRecordSuffix)) continue;
      if (ReadRecord(file).ok() && FileExists(PathOf(file))) names.emplace_back(file);
    }
    closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names.empty() ? "none" : absl::StrJoin(names, ", ");
}

absl::StatusOr<v1::DatasetInfo> DatasetStore::Commit(const std::string& staged_path,
                                                     v1::DatasetInfo info) {
  const std::string name = info.name();
  PRL_RETURN_IF_ERROR(ValidateDatasetName(name, "name"));
  if (info.experiment_id().empty()) {
    return absl::InvalidArgumentError(
        "experiment_id: a dataset records the experiment that "
        "wrote it; it must not be empty");
  }
  const std::string path = PathOf(name);
  const std::string record_path = RecordPathOf(name);
  absl::MutexLock lock(&mu_);
  if (FileExists(record_path)) {
    PRL_ASSIGN_OR_RETURN(v1::DatasetInfo stored, ReadRecord(name));
    if (stored.experiment_id() != info.experiment_id()) {
      return absl::AlreadyExistsError(absl::StrCat("dataset '", name, "' is already stored (",
                                                   record_path, ", written by ",
                                                   stored.experiment_id(), ")"));
    }
    // this experiment's record: finish what an interrupted Commit started
    if (!FileExists(path)) {
      if (rename(staged_path.c_str(), path.c_str()) != 0) {
        return OsError(absl::StrCat("cannot move the staged dataset to ", path, " from"),
                       staged_path);
      }
      PRL_RETURN_IF_ERROR(SyncDirectory(dir_));
    } else if (FileExists(staged_path)) {
      std::remove(staged_path.c_str());
    }
    stored.set_path(path);
    return stored;
  }
  if (FileExists(path)) {
    return absl::AlreadyExistsError(
        absl::StrCat("dataset '", name, "': ", path, " exists without its record ", record_path,
                     "; it is left in place (remove it to reuse the name)"));
  }
  if (!FileExists(staged_path)) {
    return absl::NotFoundError(absl::StrCat("the staged dataset ", staged_path, " is missing"));
  }
  PRL_ASSIGN_OR_RETURN(const std::string hash, Sha256File(staged_path));
  PRL_ASSIGN_OR_RETURN(const int64_t size, FileSize(staged_path));
  info.set_version(1);
  info.set_path(path);
  info.set_content_hash(hash);
  info.set_size_bytes(size);
  SetNow(info.mutable_create_time());
  // the record first: from here on, the name is taken and a resumed run can finish the rename
  PRL_RETURN_IF_ERROR(WriteChecksummedFile(record_path, info.SerializeAsString()));
  if (rename(staged_path.c_str(), path.c_str()) != 0) {
    return OsError(absl::StrCat("cannot move the staged dataset to ", path, " from"), staged_path);
  }
  PRL_RETURN_IF_ERROR(SyncDirectory(dir_));
  return info;
}

namespace {

// The pending COLLECT experiment that writes `name`, or null.
const v1::Experiment* Producer(const std::vector<v1::Experiment>& pending,
                               const std::string& name) {
  for (const v1::Experiment& e : pending) {
    if (e.spec().kind() == v1::ExperimentSpec::KIND_COLLECT &&
        e.spec().collect().output_dataset() == name) {
      return &e;
    }
  }
  return nullptr;
}

}  // namespace

absl::Status CheckDatasetReferences(const v1::ExperimentSpec& spec, const DatasetStore& store,
                                    const std::vector<v1::Experiment>& pending) {
  if (spec.kind() == v1::ExperimentSpec::KIND_COLLECT) {
    const std::string& name = spec.collect().output_dataset();
    if (store.Exists(name)) {
      return absl::AlreadyExistsError(
          absl::StrCat("collect.output_dataset: dataset '", name, "' is already stored (",
                       store.PathOf(name), "); a name is written once: choose another name"));
    }
    if (const v1::Experiment* other = Producer(pending, name); other != nullptr) {
      return absl::AlreadyExistsError(
          absl::StrCat("collect.output_dataset: dataset '", name, "' is the output of ",
                       other->id(), ", which is ", v1::ExperimentState_Name(other->state()),
                       "; a name is written once: choose another name"));
    }
    return absl::OkStatus();
  }
  if (spec.kind() != v1::ExperimentSpec::KIND_TRAIN_PRIOR) return absl::OkStatus();
  const std::pair<const char*, std::string> fields[] = {
      {"prior_training.dataset", spec.prior_training().dataset()},
      {"prior_training.target_dataset", spec.prior_training().target_dataset()},
  };
  for (const auto& [field, dataset] : fields) {
    if (dataset.empty() || IsDatasetPath(dataset)) continue;
    if (store.Exists(dataset) || Producer(pending, dataset) != nullptr) continue;
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": \"", dataset,
        "\" is not a dataset of this learner (stored: ", store.DescribeNames(),
        ", and no queued or running COLLECT experiment writes it); name one, or give the path of "
        "a D4RL-layout .hdf5 or .h5 file"));
  }
  return absl::OkStatus();
}

}  // namespace prl::learner
