// A dataset as a prior-training job reads it: every window of `horizon` consecutive steps that
// lies inside one episode, split by episode into training and validation sets (so no window of
// a validation episode is trained on), gathered into models::WindowBatch tensors. The whole
// dataset is in memory: gathering a batch is a few memcpy's, far below a gradient step, so no
// prefetch thread is needed.
//
// Thread-compatible: const methods may run concurrently (each caller with its own random
// engine).
#ifndef PRL_LEARNER_WINDOW_DATASET_H_
#define PRL_LEARNER_WINDOW_DATASET_H_

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dataset.h"
#include "models/prior_model.h"

namespace prl::learner {

struct WindowDatasetOptions {
  // Steps per window (>= 1).
  int horizon = 10;
  // Fraction of the episodes held out for validation (at least one when there are two or
  // more episodes with a whole window; none when there is one).
  double validation_fraction = 0.1;
  // Seeds which episodes are held out.
  uint64_t seed = 0;
  // Device the batches go to.
  std::string device = "cpu";
};

class WindowDataset {
 public:
  // Indexes `data` (named `source` in errors). Errors: INVALID_ARGUMENT when no episode has
  // `horizon` steps ("<source>: no episode has 10 steps; the longest has 7"), for NaN or
  // infinite observations or actions (naming the column and row), or for a bad option.
  static absl::StatusOr<std::unique_ptr<WindowDataset>> Create(Dataset data,
                                                               const WindowDatasetOptions& options,
                                                               const std::string& source);

  // One dataset per task (an ACTION_TRANSLATOR's source and target), named by `sources`, with
  // equal dimensions; each checked and split into training and validation episodes as Create
  // does, and batches carry WindowBatch::task. Training batches draw row i from task
  // i % tasks; the validation set takes as many windows of each task as the task with the
  // fewest has, interleaved task by task, so every batch and every prefix of it holds the tasks
  // equally.
  // Errors: Create's for each dataset; INVALID_ARGUMENT when the dimensions differ (naming
  // both sources).
  static absl::StatusOr<std::unique_ptr<WindowDataset>> CreateTasks(
      std::vector<Dataset> tasks, const WindowDatasetOptions& options,
      const std::vector<std::string>& sources);

  int obs_dim() const { return data_.obs_dim; }
  int act_dim() const { return data_.act_dim; }
  int horizon() const { return horizon_; }
  int64_t train_windows() const { return static_cast<int64_t>(train_.size()); }
  int64_t validation_windows() const { return static_cast<int64_t>(validation_.size()); }
  int64_t episodes() const { return episodes_; }
  int tasks() const { return static_cast<int>(task_begin_.size()); }

  // `batch_size` training windows drawn uniformly (with replacement) with `rng` (from task
  // i % tasks() for row i).
  models::WindowBatch SampleTrain(int batch_size, std::mt19937_64& rng) const;
  // Validation windows [begin, begin + n) (n clipped to what is there).
  models::WindowBatch Validation(int64_t begin, int64_t n) const;

 private:
  WindowDataset(Dataset data, int horizon, std::string device)
      : data_(std::move(data)), horizon_(horizon), device_(std::move(device)) {}
  models::WindowBatch Gather(const std::vector<int64_t>& starts) const;

  Dataset data_;
  const int horizon_;
  const std::string device_;
  int64_t episodes_ = 0;
  // First row of each window: all of them, and the training windows of each task.
  std::vector<int64_t> train_, validation_;
  std::vector<std::vector<int64_t>> task_train_;
  // First row of each task's data (one entry {0} for a single dataset).
  std::vector<int64_t> task_begin_;
};

}  // namespace prl::learner

#endif  // PRL_LEARNER_WINDOW_DATASET_H_
