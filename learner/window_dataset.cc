#include "learner/window_dataset.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/field_error.h"
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

absl::StatusOr<std::unique_ptr<WindowDataset>> WindowDataset::Create(
    Dataset data, const WindowDatasetOptions& options, const std::string& source) {
  if (options.horizon < 1) return FieldError("horizon", options.horizon, ">= 1");
  if (!(options.validation_fraction >= 0 && options.validation_fraction < 1)) {
    return FieldError("validation_fraction", options.validation_fraction, "in [0, 1)");
  }
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
  std::unique_ptr<WindowDataset> out(new WindowDataset(std::move(data), horizon, options.device));
  // windows per episode, then a seeded split of the episodes that have any
  std::vector<std::pair<int64_t, int64_t>> episodes;  // [begin, end) with >= horizon steps
  int64_t begin = 0, longest = 0;
  for (int64_t end : out->data_.EpisodeEnds()) {
    longest = std::max(longest, end - begin);
    if (end - begin >= horizon) episodes.emplace_back(begin, end);
    begin = end;
  }
  if (episodes.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": no episode has ", horizon, " steps (the horizon); the longest has ", longest));
  }
  out->episodes_ = static_cast<int64_t>(episodes.size());
  std::vector<size_t> order(episodes.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::mt19937_64 rng(options.seed);
  std::shuffle(order.begin(), order.end(), rng);
  size_t held_out = static_cast<size_t>(std::floor(options.validation_fraction * order.size()));
  if (options.validation_fraction > 0 && held_out == 0 && order.size() >= 2) held_out = 1;
  for (size_t k = 0; k < order.size(); ++k) {
    const auto [b, e] = episodes[order[k]];
    std::vector<int64_t>& into = k < held_out ? out->validation_ : out->train_;
    for (int64_t s = b; s + horizon <= e; ++s) into.push_back(s);
  }
  std::sort(out->train_.begin(), out->train_.end());
  std::sort(out->validation_.begin(), out->validation_.end());
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
  return {obs.to(device), act.to(device)};
}

models::WindowBatch WindowDataset::SampleTrain(int batch_size, std::mt19937_64& rng) const {
  std::uniform_int_distribution<size_t> pick(0, train_.size() - 1);
  std::vector<int64_t> starts(batch_size);
  for (int64_t& s : starts) s = train_[pick(rng)];
  return Gather(starts);
}

models::WindowBatch WindowDataset::Validation(int64_t begin, int64_t n) const {
  begin = std::clamp<int64_t>(begin, 0, validation_windows());
  n = std::clamp<int64_t>(n, 0, validation_windows() - begin);
  return Gather({validation_.begin() + begin, validation_.begin() + begin + n});
}

}  // namespace prl::learner
