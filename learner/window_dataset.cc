#include "learner/window_dataset.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/field_error.h"
#include "common/status_macros.h"
#include "torch/torch.h"

namespace prl::learner {
namespace {

// The first non-finite value of `values` (rows of `dim`), as "column[row]".
std::string FirstNonFinite(const std::vector<float>& values, int dim, const char* column) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) return absl::StrCat(column, "[", i / dim, "]");
  }
  return "";
}

}  // namespace

namespace {

// One dataset's windows, split by episode.
struct Windows {
  std::vector<int64_t> train, validation;  // first rows, ascending
  int64_t episodes = 0;                    // with at least one window
};

// Checks `data` (named `source`) and splits its episodes; window starts are offset by `offset`
// rows.
absl::StatusOr<Windows> SplitWindows(const Dataset& data, const WindowDatasetOptions& options,
                                     const std::string& source, int64_t offset) {
  if (data.size == 0 || data.obs_dim < 1 || data.act_dim < 1) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": the dataset is empty"));
  }
  for (const auto& [values, dim, name] :
       {std::make_tuple(&data.observations, data.obs_dim, "observations"),
        std::make_tuple(&data.actions, data.act_dim, "actions")}) {
    const std::string bad = FirstNonFinite(*values, dim, name);
    if (!bad.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": ", bad, " is not finite; the dataset cannot be trained on"));
    }
  }
  const int horizon = options.horizon;
  // windows per episode, then a seeded split of the episodes that have any
  std::vector<std::pair<int64_t, int64_t>> episodes;  // [begin, end) with >= horizon steps
  int64_t begin = 0, longest = 0;
  for (int64_t end : data.EpisodeEnds()) {
    longest = std::max(longest, end - begin);
    if (end - begin >= horizon) episodes.emplace_back(begin, end);
    begin = end;
  }
  if (episodes.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": no episode has ", horizon, " steps (the horizon); the longest has ", longest));
  }
  Windows out;
  out.episodes = static_cast<int64_t>(episodes.size());
  std::vector<size_t> order(episodes.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::mt19937_64 rng(options.seed);
  std::shuffle(order.begin(), order.end(), rng);
  size_t held_out = static_cast<size_t>(std::floor(options.validation_fraction * order.size()));
  if (options.validation_fraction > 0 && held_out == 0 && order.size() >= 2) held_out = 1;
  for (size_t k = 0; k < order.size(); ++k) {
    const auto [b, e] = episodes[order[k]];
    std::vector<int64_t>& into = k < held_out ? out.validation : out.train;
    for (int64_t s = b; s + horizon <= e; ++s) into.push_back(offset + s);
  }
  std::sort(out.train.begin(), out.train.end());
  std::sort(out.validation.begin(), out.validation.end());
  return out;
}

absl::Status CheckOptions(const WindowDatasetOptions& options) {
  if (options.horizon < 1) return FieldError("horizon", options.horizon, ">= 1");
  if (!(options.validation_fraction >= 0 && options.validation_fraction < 1)) {
    return FieldError("validation_fraction", options.validation_fraction, "in [0, 1)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<WindowDataset>> WindowDataset::Create(
    Dataset data, const WindowDatasetOptions& options, const std::string& source) {
  PRL_RETURN_IF_ERROR(CheckOptions(options));
  PRL_ASSIGN_OR_RETURN(Windows windows, SplitWindows(data, options, source, 0));
  std::unique_ptr<WindowDataset> out(
      new WindowDataset(std::move(data), options.horizon, options.device));
  out->episodes_ = windows.episodes;
  out->train_ = std::move(windows.train);
  out->validation_ = std::move(windows.validation);
  out->task_begin_ = {0};
  return out;
}

absl::StatusOr<std::unique_ptr<WindowDataset>> WindowDataset::CreateTasks(
    std::vector<Dataset> tasks, const WindowDatasetOptions& options,
    const std::vector<std::string>& sources) {
  PRL_RETURN_IF_ERROR(CheckOptions(options));
  if (tasks.empty() || sources.size() != tasks.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("WindowDataset::CreateTasks: ", tasks.size(), " datasets and ", sources.size(),
                     " names; give one name per dataset, at least one"));
  }
  Dataset all;
  all.obs_dim = tasks[0].obs_dim;
  all.act_dim = tasks[0].act_dim;
  std::vector<Windows> windows;
  std::vector<int64_t> begins;
  for (size_t t = 0; t < tasks.size(); ++t) {
    const Dataset& d = tasks[t];
    if (t > 0 && d.size > 0 && (d.obs_dim != all.obs_dim || d.act_dim != all.act_dim)) {
      return absl::InvalidArgumentError(absl::StrCat(
          sources[t], ": observations of ", d.obs_dim, " and actions of ", d.act_dim,
          " dimensions do not match ", sources[0], "'s ", all.obs_dim, " and ", all.act_dim,
          "; the tasks' datasets must come from environments with the same spaces"));
    }
    PRL_ASSIGN_OR_RETURN(Windows w, SplitWindows(d, options, sources[t], all.size));
    begins.push_back(all.size);
    windows.push_back(std::move(w));
    // only the columns windows read are kept
    all.observations.insert(all.observations.end(), d.observations.begin(), d.observations.end());
    all.actions.insert(all.actions.end(), d.actions.begin(), d.actions.end());
    all.size += d.size;
    tasks[t] = Dataset();  // release it as we go
  }
  std::unique_ptr<WindowDataset> out(
      new WindowDataset(std::move(all), options.horizon, options.device));
  out->task_begin_ = std::move(begins);
  // the validation windows interleaved task by task, as many of each task as the task with the
  // fewest has: every batch of them is balanced (terms that are means over one task's rows
  // then average correctly over batches)
  size_t fewest = windows[0].validation.size();
  for (const Windows& w : windows) fewest = std::min(fewest, w.validation.size());
  for (size_t i = 0; i < fewest; ++i) {
    for (const Windows& w : windows) {
      if (i < w.validation.size()) out->validation_.push_back(w.validation[i]);
    }
  }
  for (Windows& w : windows) {
    out->episodes_ += w.episodes;
    out->train_.insert(out->train_.end(), w.train.begin(), w.train.end());
    out->task_train_.push_back(std::move(w.train));
  }
  for (size_t t = 0; t < out->task_train_.size(); ++t) {
    if (out->task_train_[t].empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          sources[t], ": every episode with a whole window was held out for validation; ",
          "give it more episodes"));
    }
  }
  return out;
}

models::WindowBatch WindowDataset::Gather(const std::vector<int64_t>& starts) const {
  const int64_t b = static_cast<int64_t>(starts.size());
  at::Tensor obs = torch::empty({b, horizon_, data_.obs_dim}, torch::kFloat32);
  at::Tensor act = torch::empty({b, horizon_, data_.act_dim}, torch::kFloat32);
  float* o = obs.data_ptr<float>();
  float* a = act.data_ptr<float>();
  const size_t obs_bytes = sizeof(float) * horizon_ * data_.obs_dim;
  const size_t act_bytes = sizeof(float) * horizon_ * data_.act_dim;
  for (int64_t i = 0; i < b; ++i) {
    // a window's rows are contiguous in the dataset's row-major columns
    std::memcpy(o + i * horizon_ * data_.obs_dim,
                data_.observations.data() + starts[i] * data_.obs_dim, obs_bytes);
    std::memcpy(a + i * horizon_ * data_.act_dim, data_.actions.data() + starts[i] * data_.act_dim,
                act_bytes);
  }
  const torch::Device device(device_);
  models::WindowBatch batch{obs.to(device), act.to(device), at::Tensor()};
  if (task_train_.empty()) return batch;
  batch.task = torch::empty({b}, torch::kLong);
  int64_t* task = batch.task.data_ptr<int64_t>();
  for (int64_t i = 0; i < b; ++i) {
    task[i] = (std::upper_bound(task_begin_.begin(), task_begin_.end(), starts[i]) -
               task_begin_.begin()) -
              1;
  }
  return batch;
}

models::WindowBatch WindowDataset::SampleTrain(int batch_size, std::mt19937_64& rng) const {
  std::vector<int64_t> starts(batch_size);
  if (task_train_.empty()) {
    std::uniform_int_distribution<size_t> pick(0, train_.size() - 1);
    for (int64_t& s : starts) s = train_[pick(rng)];
  } else {
    for (int i = 0; i < batch_size; ++i) {
      const std::vector<int64_t>& from = task_train_[i % task_train_.size()];
      starts[i] = from[std::uniform_int_distribution<size_t>(0, from.size() - 1)(rng)];
    }
  }
  return Gather(starts);
}

models::WindowBatch WindowDataset::Validation(int64_t begin, int64_t n) const {
  begin = std::clamp<int64_t>(begin, 0, validation_windows());
  n = std::clamp<int64_t>(n, 0, validation_windows() - begin);
  return Gather({validation_.begin() + begin, validation_.begin() + begin + n});
}

}  // namespace prl::learner
