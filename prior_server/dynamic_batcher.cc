#include "prior_server/dynamic_batcher.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "models/prior_inference.h"

namespace prl::prior_server {

struct DynamicBatcher::Pending {
  std::vector<HostTensor> inputs;
  int64_t rows = 0;
  absl::Time enqueued;
  bool queued = true;  // still in queue_ (guarded by the batcher's mu_)
  bool done = false;   // result is set (guarded by the batcher's mu_)
  absl::StatusOr<std::vector<HostTensor>> result;
};

absl::Status ValidateBatchingOptions(const BatchingOptions& options, const std::string& prefix) {
  auto bad = [&prefix](absl::string_view field, auto value, absl::string_view allowed) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, field, ": ", value, " is not allowed; it must be ", allowed));
  };
  if (options.max_batch_rows < 1) return bad("max_batch_rows", options.max_batch_rows, ">= 1");
  if (options.max_queue_delay < absl::ZeroDuration() ||
      options.max_queue_delay > absl::Seconds(1)) {
    return bad("max_queue_delay_us", absl::ToInt64Microseconds(options.max_queue_delay),
               "in 0..1000000");
  }
  if (options.max_queue_rows < options.max_batch_rows) {
    return bad("max_queue_rows", options.max_queue_rows,
               absl::StrCat(">= max_batch_rows (", options.max_batch_rows, ")"));
  }
  if (options.instances < 1 || options.instances > 64) {
    return bad("instances", options.instances, "in 1..64");
  }
  return absl::OkStatus();
}

DynamicBatcher::DynamicBatcher(std::string name, const BatchingOptions& options, BatchFn run,
                               BatchObserver* observer)
    : name_(std::move(name)), options_(options), run_(std::move(run)), observer_(observer) {
  for (int i = 0; i < options_.instances; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

DynamicBatcher::~DynamicBatcher() {
  {
    absl::MutexLock lock(&mu_);
    shutdown_ = true;
  }
  for (std::thread& t : workers_) t.join();
}

bool DynamicBatcher::ReadyOrIdle() const {
  return shutdown_ || queue_.empty() || queued_rows_ >= options_.max_batch_rows;
}

absl::StatusOr<std::vector<HostTensor>> DynamicBatcher::Call(
    std::vector<HostTensor> inputs, int64_t rows, absl::Time deadline,
    const std::function<bool()>& cancelled) {
  auto pending = std::make_shared<Pending>();
  pending->inputs = std::move(inputs);
  pending->rows = rows;
  absl::MutexLock lock(&mu_);
  if (shutdown_) {
    return absl::UnavailableError(absl::StrCat(name_, " is shutting down"));
  }
  if (!queue_.empty() && queued_rows_ + rows > options_.max_queue_rows) {
    ++stats_.refused;
    return absl::ResourceExhaustedError(absl::StrCat(
        name_, ": the queue is full (", queued_rows_, " rows queued, this call adds ", rows,
        ", the limit is ", options_.max_queue_rows, " rows); retry with backoff"));
  }
  pending->enqueued = absl::Now();
  queue_.push_back(pending);
  queued_rows_ += rows;

  const absl::Condition done(&pending->done);
  for (;;) {
    if (pending->done) break;
    const absl::Time now = absl::Now();
    const bool expired = now >= deadline;
    const bool gone = !expired && cancelled && cancelled();
    if (expired || gone) {
      const bool in_queue = pending->queued;
      if (in_queue) {
        queue_.erase(std::find(queue_.begin(), queue_.end(), pending));
        queued_rows_ -= rows;
        pending->queued = false;
        ++stats_.expired;
      }
      const absl::Duration waited = now - pending->enqueued;
      if (gone) {
        return absl::CancelledError(
            absl::StrCat(name_, ": the call was cancelled after ", absl::FormatDuration(waited)));
      }
      return absl::DeadlineExceededError(
          absl::StrCat(name_, ": the deadline passed after ", absl::FormatDuration(waited),
                       in_queue ? " in the queue" : " while its batch computed"));
    }
    if (mu_.AwaitWithDeadline(done, std::min(deadline, now + absl::Milliseconds(20)))) break;
  }
  return std::move(pending->result);
}

void DynamicBatcher::WorkerLoop() {
  mu_.Lock();
  for (;;) {
    mu_.Await(absl::Condition(
        +[](DynamicBatcher* b)
             ABSL_SHARED_LOCKS_REQUIRED(b->mu_) { return b->shutdown_ || !b->queue_.empty(); },
        this));
    if (queue_.empty()) break;  // shutdown with nothing left to finish
    if (!shutdown_ && queued_rows_ < options_.max_batch_rows) {
      const absl::Time flush_at = queue_.front()->enqueued + options_.max_queue_delay;
      mu_.AwaitWithDeadline(absl::Condition(this, &DynamicBatcher::ReadyOrIdle), flush_at);
      if (queue_.empty()) continue;
    }
    std::vector<std::shared_ptr<Pending>> batch;
    int64_t rows = 0;
    const absl::Time now = absl::Now();
    while (!queue_.empty() &&
           (batch.empty() || rows + queue_.front()->rows <= options_.max_batch_rows)) {
      std::shared_ptr<Pending> p = std::move(queue_.front());
      queue_.pop_front();
      p->queued = false;
      rows += p->rows;
      if (observer_ != nullptr) observer_->OnDequeued(now - p->enqueued);
      batch.push_back(std::move(p));
    }
    queued_rows_ -= rows;
    mu_.Unlock();
    RunBatch(batch);
    mu_.Lock();
  }
  mu_.Unlock();
}

void DynamicBatcher::RunBatch(const std::vector<std::shared_ptr<Pending>>& batch) {
  int64_t rows = 0;
  for (const auto& p : batch) rows += p->rows;
  const absl::Time start = absl::Now();
  absl::StatusOr<std::vector<HostTensor>> outputs;
  if (batch.size() == 1) {
    outputs = run_(batch[0]->inputs);
  } else {
    const size_t num_inputs = batch[0]->inputs.size();
    std::vector<HostTensor> inputs;
    inputs.reserve(num_inputs);
    for (size_t i = 0; i < num_inputs; ++i) {
      std::vector<const HostTensor*> parts;
      parts.reserve(batch.size());
      for (const auto& p : batch) parts.push_back(&p->inputs[i]);
      inputs.push_back(models::ConcatRows(parts));
    }
    outputs = run_(inputs);
  }
  const absl::Duration compute = absl::Now() - start;
  if (outputs.ok()) {
    for (const HostTensor& out : *outputs) {
      if (out.shape().empty() || out.shape()[0] != rows) {
        outputs = absl::InternalError(
            absl::StrCat(name_, ": the model returned an output of shape ",
                         ShapeString(out.shape()), " for a batch of ", rows, " rows"));
        break;
      }
    }
  }
  // Split outside the lock; publish under it.
  std::vector<absl::StatusOr<std::vector<HostTensor>>> results;
  results.reserve(batch.size());
  if (!outputs.ok()) {
    results.assign(batch.size(), outputs.status());
  } else if (batch.size() == 1) {
    results.push_back(std::move(outputs));
  } else {
    int64_t offset = 0;
    for (const auto& p : batch) {
      std::vector<HostTensor> mine;
      mine.reserve(outputs->size());
      for (const HostTensor& out : *outputs) {
        mine.push_back(models::SliceRows(out, offset, p->rows));
      }
      offset += p->rows;
      results.push_back(std::move(mine));
    }
  }
  if (observer_ != nullptr) observer_->OnBatch(rows, static_cast<int>(batch.size()), compute);
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < batch.size(); ++i) {
    batch[i]->result = std::move(results[i]);
    batch[i]->done = true;
  }
  ++stats_.batches;
  stats_.calls += static_cast<int64_t>(batch.size());
  stats_.rows += rows;
  stats_.max_batch_calls = std::max<int64_t>(stats_.max_batch_calls, batch.size());
}

DynamicBatcher::Stats DynamicBatcher::stats() const {
  absl::MutexLock lock(&mu_);
  Stats stats = stats_;
  stats.queued_calls = static_cast<int64_t>(queue_.size());
  return stats;
}

}  // namespace prl::prior_server
