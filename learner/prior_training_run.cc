#include "learner/prior_training_run.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <utility>
#include <vector>

#include "ATen/Context.h"
#include "ATen/Parallel.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/dataset_reader.h"
#include "common/logging.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "google/protobuf/text_format.h"
#include "learner/window_dataset.h"
#include "models/artifact.h"

namespace prl::learner {
namespace {

void SetNow(google::protobuf::Timestamp* ts) {
  const absl::Time now = absl::Now();
  ts->set_seconds(absl::ToUnixSeconds(now));
  ts->set_nanos(static_cast<int32_t>(absl::ToUnixNanos(now) % 1000000000));
}

// Hyperparameter of a checkpoint: training steps done.
constexpr char kCheckpointStep[] = "run.step";

// The batch sampler of step `step`: seeded by the run's seed and the step alone, so a run
// resumed from a checkpoint draws the batches an uninterrupted one would.
std::mt19937_64 StepRng(int64_t seed, int64_t step) {
  uint64_t z = static_cast<uint64_t>(seed) ^ 0x5eed5eedULL;
  z += 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(step + 1);  // splitmix64
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return std::mt19937_64(z ^ (z >> 31));
}

// "auto" -> "cuda" when LibTorch sees a GPU, "cpu" otherwise.
std::string ResolveDevice(const std::string& device) {
  if (device.empty() || device == "auto") return at::hasCUDA() ? "cuda" : "cpu";
  return device;
}

class PriorTrainingRun final : public ExperimentRun {
 public:
  PriorTrainingRun(const v1::Experiment& experiment, RunContext* context,
                   PriorTrainingRunOptions options)
      : experiment_(experiment),
        spec_(experiment.spec().prior_training()),
        context_(context),
        options_(std::move(options)) {
    if (options_.metrics != nullptr) metrics_ = options_.metrics->ForExperiment(experiment.id());
  }

  Result Run() override;

  void RequestStop(const std::string& reason, bool shutdown) override {
    stop_.Request(reason, shutdown);
  }

 private:
  // The dataset (and an ACTION_TRANSLATOR's target dataset) as windows; errors name the file.
  absl::Status LoadData();
  // The file of `name` (a path, or a stored dataset checked against its record) and its hash;
  // errors name `field`.
  absl::StatusOr<std::string> ResolveDataset(const std::string& field, const std::string& name,
                                             std::string* hash) const;
  // `info`'s dataset fields.
  void SetDatasets(v1::ModelInfo* info) const;
  // Mean losses over the first validation windows ("validation_<term>"); empty without any.
  absl::StatusOr<models::Losses> Validate() const;
  void Report(int64_t step, int64_t total_steps, int64_t epoch, double samples_per_second);
  absl::StatusOr<std::string> Store(const models::Losses& validation);
  // The version of the output model this experiment stored in an earlier run (its training
  // summary names the experiment), if any: a learner killed after storing it and before the
  // experiment's end was recorded.
  std::optional<int64_t> StoredEarlier() const;
  // Sets the outputs to the stored version and publishes it when the spec asks; the run's
  // result.
  Result Succeed(int64_t version, const std::string& path, std::string reason);
  // Writes the checkpoint after `step` steps (crash-safe: a temporary file renamed over it).
  absl::Status Checkpoint(int64_t step);
  // The steps done by the checkpoint the model was restored from (0 when there is none or it
  // does not fit: it is then renamed aside, and the model rebuilt fresh).
  int64_t Resume(const PriorModelRequest& request);
  void RemoveCheckpoint();

  const v1::Experiment experiment_;
  const v1::PriorTrainingSpec spec_;
  RunContext* const context_;
  const PriorTrainingRunOptions options_;
  std::optional<RunMetrics> metrics_;

  std::string dataset_hash_, target_dataset_hash_;
  std::unique_ptr<WindowDataset> data_;
  std::unique_ptr<models::PriorModel> model_;
  int64_t version_ = 0;
  models::Losses train_losses_, validation_losses_;
  absl::Time start_ = absl::Now();

  StopRequest stop_;
};

absl::StatusOr<std::string> PriorTrainingRun::ResolveDataset(const std::string& field,
                                                             const std::string& name,
                                                             std::string* hash) const {
  if (IsDatasetPath(name)) {
    PRL_ASSIGN_OR_RETURN(*hash, Sha256File(name));
    return name;
  }
  // a name in the dataset store: its file, checked against the hash it was stored with
  if (options_.datasets == nullptr) {
    return absl::NotFoundError(
        absl::StrCat(field, ": '", name,
                     "' is a dataset name, but this learner has no dataset store: give the "
                     "path of a D4RL-layout .hdf5 or .h5 file"));
  }
  absl::StatusOr<v1::DatasetInfo> info = options_.datasets->Verify(name);
  if (!info.ok()) {
    return absl::Status(info.status().code(), absl::StrCat(field, ": ", info.status().message()));
  }
  *hash = info->content_hash();
  return info->path();
}

absl::Status PriorTrainingRun::LoadData() {
  PRL_ASSIGN_OR_RETURN(const std::string path,
                       ResolveDataset("prior_training.dataset", spec_.dataset(), &dataset_hash_));
  PRL_ASSIGN_OR_RETURN(Dataset dataset, ReadDataset(path));
  WindowDatasetOptions options;
  options.horizon = spec_.horizon();
  options.validation_fraction = options_.validation_fraction;
  options.seed = static_cast<uint64_t>(spec_.seed());
  options.device = ResolveDevice(experiment_.spec().resources().learner_device().empty()
                                     ? options_.device
                                     : experiment_.spec().resources().learner_device());
  if (spec_.kind() == v1::PRIOR_KIND_ACTION_TRANSLATOR) {
    // transitions (s, a, s') of the source and the target task: windows of 2 steps
    PRL_ASSIGN_OR_RETURN(const std::string target_path,
                         ResolveDataset("prior_training.target_dataset", spec_.target_dataset(),
                                        &target_dataset_hash_));
    PRL_ASSIGN_OR_RETURN(Dataset target, ReadDataset(target_path));
    options.horizon = 2;
    std::vector<Dataset> tasks;
    tasks.push_back(std::move(dataset));
    tasks.push_back(std::move(target));
    PRL_ASSIGN_OR_RETURN(
        data_, WindowDataset::CreateTasks(std::move(tasks), options, {path, target_path}));
    return absl::OkStatus();
  }
  PRL_ASSIGN_OR_RETURN(data_, WindowDataset::Create(std::move(dataset), options, path));
  if (spec_.kind() == v1::PRIOR_KIND_REAL_NVP_FLOW && spec_.latent_dim() != 0 &&
      spec_.latent_dim() != data_->act_dim()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prior_training.latent_dim: ", spec_.latent_dim(), " is not allowed; a flow's latent is ",
        "the action: use 0 or ", data_->act_dim(), " (the dataset's action dimension)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<models::Losses> PriorTrainingRun::Validate() const {
  const int64_t n = std::min(options_.max_validation_windows, data_->validation_windows());
  // each term weighted by the rows of the batches that report it (a translator's terms are
  // means over one task's rows; its validation batches hold the two tasks equally)
  models::Losses sums;
  std::map<std::string, int64_t> rows;
  for (int64_t begin = 0; begin < n; begin += spec_.batch_size()) {
    const int64_t count = std::min<int64_t>(spec_.batch_size(), n - begin);
    PRL_ASSIGN_OR_RETURN(models::Losses losses, model_->Evaluate(data_->Validation(begin, count)));
    for (const auto& [name, value] : losses) {
      sums[name] += value * count;
      rows[name] += count;
    }
  }
  models::Losses out;
  for (const auto& [name, sum] : sums) out["validation_" + name] = sum / rows[name];
  return out;
}

void PriorTrainingRun::Report(int64_t step, int64_t total_steps, int64_t epoch,
                              double samples_per_second) {
  v1::Progress p;
  p.set_updates(step);
  p.set_updates_per_second(samples_per_second / spec_.batch_size());
  p.set_fraction_done(total_steps > 0 ? std::min(1.0, static_cast<double>(step) / total_steps)
                                      : 0.0);
  auto& scalars = *p.mutable_scalars();
  scalars["epoch"] = static_cast<double>(epoch);
  scalars["samples_per_second"] = samples_per_second;
  for (const auto& [name, value] : train_losses_) scalars[name] = value;
  for (const auto& [name, value] : validation_losses_) scalars[name] = value;
  p.set_message(absl::StrCat(
      "training ", v1::PriorKind_Name(spec_.kind()), " ", spec_.output_model(), " v", version_,
      " on ", spec_.dataset(), spec_.target_dataset().empty() ? "" : " -> ", spec_.target_dataset(),
      " (", data_->train_windows(), " training and ", data_->validation_windows(),
      " validation windows of ", data_->horizon(), " steps)"));
  context_->ReportProgress(p);
}

void PriorTrainingRun::SetDatasets(v1::ModelInfo* info) const {
  info->set_dataset(spec_.dataset());
  info->set_dataset_hash(dataset_hash_);
  if (!spec_.target_dataset().empty()) {
    info->set_target_dataset(spec_.target_dataset());
    info->set_target_dataset_hash(target_dataset_hash_);
  }
}

absl::Status PriorTrainingRun::Checkpoint(int64_t step) {
  v1::ModelInfo info;
  info.set_name(spec_.output_model());
  info.set_version(version_);
  SetDatasets(&info);
  PRL_ASSIGN_OR_RETURN(models::ModelArtifact state, model_->TrainingState(info));
  state.hyperparameters[kCheckpointStep] = step;
  std::error_code error;
  std::filesystem::create_directories(std::filesystem::path(options_.checkpoint_path).parent_path(),
                                      error);
  return models::WriteModelArtifact(options_.checkpoint_path, state);
}

int64_t PriorTrainingRun::Resume(const PriorModelRequest& request) {
  if (options_.checkpoint_path.empty()) return 0;
  absl::StatusOr<models::ModelArtifact> state = models::ReadModelArtifact(options_.checkpoint_path);
  if (absl::IsNotFound(state.status())) return 0;
  absl::Status problem = state.status();
  int64_t step = 0;
  if (problem.ok()) {
    auto it = state->hyperparameters.find(kCheckpointStep);
    if (state->info.dataset_hash() != dataset_hash_ ||
        state->info.target_dataset_hash() != target_dataset_hash_) {
      problem = absl::FailedPreconditionError("it was trained on another version of the dataset");
    } else if (it == state->hyperparameters.end() || it->second < 1) {
      problem = absl::DataLossError("it records no step");
    } else {
      step = it->second;
      problem = model_->RestoreTrainingState(*state);
    }
  }
  if (problem.ok()) {
    PRL_LOG(INFO) << experiment_.id() << ": resumed " << spec_.output_model() << " from "
                  << options_.checkpoint_path << " at step " << step;
    return step;
  }
  const std::string aside = options_.checkpoint_path + ".unusable";
  PRL_LOG(WARNING) << experiment_.id() << ": not resuming from " << options_.checkpoint_path << " ("
                   << problem << "); moved to " << aside << ", training from the start";
  std::rename(options_.checkpoint_path.c_str(), aside.c_str());
  // a failed restore may have changed part of the model: start from a fresh one
  absl::StatusOr<std::unique_ptr<models::PriorModel>> fresh = options_.factory(request);
  if (fresh.ok()) model_ = std::move(*fresh);
  return 0;
}

void PriorTrainingRun::RemoveCheckpoint() {
  if (!options_.checkpoint_path.empty()) std::remove(options_.checkpoint_path.c_str());
}

absl::StatusOr<std::string> PriorTrainingRun::Store(const models::Losses& validation) {
  v1::ModelInfo info;
  info.set_name(spec_.output_model());
  info.set_version(version_);
  SetNow(info.mutable_create_time());
  SetDatasets(&info);
  std::string summary;
  google::protobuf::TextFormat::PrintToString(spec_, &summary);
  absl::StrAppend(&summary, "# experiment: ", experiment_.id(), "\n");
  for (const auto& [name, value] : validation)
    absl::StrAppend(&summary, "# ", name, ": ", value, "\n");
  info.set_training_summary(summary);
  PRL_ASSIGN_OR_RETURN(models::ModelArtifact artifact, model_->ToArtifact(info));
  return options_.models->Write(artifact);
}

std::optional<int64_t> PriorTrainingRun::StoredEarlier() const {
  const std::string mark = absl::StrCat("# experiment: ", experiment_.id(), "\n");
  for (const v1::ModelInfo& info : options_.models->List()) {
    if (info.name() == spec_.output_model() && absl::StrContains(info.training_summary(), mark)) {
      return info.version();
    }
  }
  return std::nullopt;
}

ExperimentRun::Result PriorTrainingRun::Run() {
  if (std::optional<int64_t> stored = StoredEarlier()) {
    // the model is what the experiment was for: record its end instead of training it again
    RemoveCheckpoint();
    PRL_LOG(INFO) << experiment_.id() << ": " << spec_.output_model() << " v" << *stored
                  << " was stored before the learner restarted";
    return Succeed(*stored, options_.models->PathOf(spec_.output_model(), *stored),
                   absl::StrCat("stored as v", *stored, " before the learner restarted"));
  }
  if (options_.torch_threads > 0) at::set_num_threads(options_.torch_threads);
  if (absl::Status s = LoadData(); !s.ok()) {
    return {v1::EXPERIMENT_STATE_FAILED, absl::StrCat("dataset: ", s.message())};
  }
  absl::StatusOr<int64_t> version = options_.models->Reserve(spec_.output_model());
  if (!version.ok()) {
    return {v1::EXPERIMENT_STATE_FAILED, absl::StrCat("model store: ", version.status().message())};
  }
  version_ = *version;
  PriorModelRequest request;
  request.spec = spec_;
  request.obs_dim = data_->obs_dim();
  request.act_dim = data_->act_dim();
  request.device = ResolveDevice(experiment_.spec().resources().learner_device().empty()
                                     ? options_.device
                                     : experiment_.spec().resources().learner_device());
  absl::StatusOr<std::unique_ptr<models::PriorModel>> model = options_.factory(request);
  if (!model.ok()) {
    options_.models->Release(spec_.output_model(), version_);
    return {v1::EXPERIMENT_STATE_FAILED, absl::StrCat("model: ", model.status().message())};
  }
  model_ = std::move(*model);

  const int64_t steps_per_epoch = std::max<int64_t>(1, data_->train_windows() / spec_.batch_size());
  int64_t total = spec_.max_steps();
  if (spec_.epochs() > 0) {
    const int64_t by_epochs = spec_.epochs() * steps_per_epoch;
    total = total > 0 ? std::min(total, by_epochs) : by_epochs;
  }
  PRL_LOG(INFO) << experiment_.id() << ": training " << spec_.output_model() << " v" << version_
                << " for " << total << " steps (" << steps_per_epoch << " per epoch) on "
                << data_->train_windows() << " windows of " << spec_.dataset();
  const int64_t resumed = std::min(Resume(request), total);
  absl::Time last_report = absl::InfinitePast();
  absl::Time window_start = absl::Now();
  absl::Time last_checkpoint = absl::Now();
  int64_t window_steps = 0;
  double samples_per_second = 0;
  for (int64_t step = resumed + 1; step <= total; ++step) {
    if (std::optional<Result> stopped = stop_.Get()) {
      options_.models->Release(spec_.output_model(), version_);
      if (stopped->state == v1::EXPERIMENT_STATE_RUNNING && !options_.checkpoint_path.empty()) {
        // a shutdown: keep what was trained for the next start
        if (absl::Status s = Checkpoint(step - 1); !s.ok()) {
          PRL_LOG(WARNING) << experiment_.id() << ": checkpoint at shutdown: " << s;
        }
      } else {
        RemoveCheckpoint();
      }
      return *stopped;
    }
    if (!options_.checkpoint_path.empty() && step > resumed + 1 &&
        absl::Now() - last_checkpoint >= options_.checkpoint_period) {
      if (absl::Status s = Checkpoint(step - 1); !s.ok()) {
        PRL_LOG(WARNING) << experiment_.id() << ": checkpoint: " << s;
      }
      last_checkpoint = absl::Now();
    }
    const absl::Time begin = absl::Now();
    std::mt19937_64 rng = StepRng(spec_.seed(), step);
    absl::StatusOr<models::Losses> losses =
        model_->TrainStep(data_->SampleTrain(spec_.batch_size(), rng));
    if (!losses.ok()) {
      options_.models->Release(spec_.output_model(), version_);
      RemoveCheckpoint();
      return {v1::EXPERIMENT_STATE_FAILED,
              absl::StrCat("training step ", step, ": ", losses.status().message())};
    }
    train_losses_.clear();
    for (const auto& [name, value] : *losses) train_losses_["train_" + name] = value;
    window_steps++;
    if (metrics_) {
      metrics_->update_duration->Observe(absl::ToDoubleSeconds(absl::Now() - begin));
      metrics_->updates->Increment();
      metrics_->SetScalars(*losses);
    }
    if (step % steps_per_epoch == 0 || step == total) {
      absl::StatusOr<models::Losses> validation = Validate();
      if (!validation.ok()) {
        options_.models->Release(spec_.output_model(), version_);
        RemoveCheckpoint();
        return {v1::EXPERIMENT_STATE_FAILED,
                absl::StrCat("validation: ", validation.status().message())};
      }
      validation_losses_ = *validation;
    }
    const absl::Time now = absl::Now();
    if (now - last_report >= options_.progress_period || step == total) {
      const double seconds = absl::ToDoubleSeconds(now - window_start);
      if (seconds > 0) samples_per_second = window_steps * spec_.batch_size() / seconds;
      window_start = now;
      window_steps = 0;
      Report(step, total, step / steps_per_epoch, samples_per_second);
      last_report = now;
    }
  }
  if (validation_losses_.empty()) {
    // resumed at the very end: the final validation was not kept
    absl::StatusOr<models::Losses> validation = Validate();
    if (validation.ok()) validation_losses_ = *validation;
  }
  absl::StatusOr<std::string> path = Store(validation_losses_);
  RemoveCheckpoint();
  if (!path.ok()) {
    options_.models->Release(spec_.output_model(), version_);
    return {v1::EXPERIMENT_STATE_FAILED,
            absl::StrCat("storing the model: ", path.status().message())};
  }
  PRL_LOG(INFO) << experiment_.id() << ": stored " << spec_.output_model() << " v" << version_
                << " at " << *path;
  return Succeed(
      version_, *path,
      spec_.max_steps() > 0 && total == spec_.max_steps() ? "max_steps reached" : "epochs done");
}

ExperimentRun::Result PriorTrainingRun::Succeed(int64_t version, const std::string& path,
                                                std::string reason) {
  v1::ExperimentOutputs outputs;
  outputs.mutable_prior_model()->set_name(spec_.output_model());
  outputs.mutable_prior_model()->set_version(version);
  context_->SetOutputs(outputs);
  if (spec_.publish()) {
    // the model is stored whatever happens here: a failed publish is said, not fatal
    if (options_.publish == nullptr) {
      absl::StrAppend(&reason, "; not published: this learner has no prior server to publish to");
    } else if (absl::Status s = options_.publish(spec_.output_model(), version, path); !s.ok()) {
      absl::StrAppend(&reason, "; publishing to the prior server failed: ", s.message(),
                      " (prlctl load-model ", spec_.output_model(), " serves it by hand)");
      PRL_LOG(WARNING) << experiment_.id() << ": publishing " << spec_.output_model() << " v"
                       << version << ": " << s;
    } else {
      absl::StrAppend(&reason, "; published to the prior server");
    }
  }
  return {v1::EXPERIMENT_STATE_SUCCEEDED, reason};
}

}  // namespace

absl::StatusOr<std::unique_ptr<ExperimentRun>> CreatePriorTrainingRun(
    const v1::Experiment& experiment, RunContext* context, const PriorTrainingRunOptions& options) {
  if (options.models == nullptr || options.factory == nullptr) {
    return absl::InvalidArgumentError("PriorTrainingRunOptions needs models and factory");
  }
  if (experiment.spec().kind() != v1::ExperimentSpec::KIND_TRAIN_PRIOR) {
    return absl::InvalidArgumentError("a prior-training run runs KIND_TRAIN_PRIOR experiments");
  }
  return std::make_unique<PriorTrainingRun>(experiment, context, options);
}

}  // namespace prl::learner
