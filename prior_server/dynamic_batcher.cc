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
    : name_(std::move(name)), options_(options), run_(std::move(run)), observer_(observer) {}

DynamicBatcher::~DynamicBatcher() = default;

bool DynamicBatcher::FullBatchReady() const {
  return running_ < options_.instances && !queue_.empty() &&
         (queued_rows_ >= options_.max_batch_rows ||
          options_.max_queue_delay == absl::ZeroDuration());
}

std::vector<std::shared_ptr<DynamicBatcher::Pending>> DynamicBatcher::TakeBatch() {
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
  return batch;
}

absl::StatusOr<std::vector<HostTensor>> DynamicBatcher::Call(
    std::vector<HostTensor> inputs, int64_t rows, absl::Time deadline,
    const std::function<bool()>& cancelled) {
  auto pending = std::make_shared<Pending>();
  pending->inputs = std::move(inputs);
  pending->rows = rows;
  absl::MutexLock lock(&mu_);
  if (!queue_.empty() && queued_rows_ + rows > options_.max_queue_rows) {
    ++stats_.refused;
    return absl::ResourceExhaustedError(absl::StrCat(
        name_, ": the queue is full (", queued_rows_, " rows queued, this call adds ", rows,
        ", the limit is ", options_.max_queue_rows, " rows); retry with backoff"));
  }
  pending->enqueued = absl::Now();
  queue_.push_back(pending);
  queued_rows_ += rows;

  struct WakeArgs {
    DynamicBatcher* batcher;
    Pending* pending;
  } wake_args{this, pending.get()};
  // The queue's timer (the one caller waiting for the oldest call's delay to run out) wakes when
  // its call is done or a batch is ready at once.
  const absl::Condition timer_wake(
      +[](WakeArgs* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return a->pending->done || a->batcher->FullBatchReady();
      },
      &wake_args);
  // Every other caller also wakes when the queue needs a new timer.
  const absl::Condition wake(
      +[](WakeArgs* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        DynamicBatcher* b = a->batcher;
        return a->pending->done || b->FullBatchReady() ||
               (!b->timer_armed_ && b->running_ < b->options_.instances && !b->queue_.empty());
      },
      &wake_args);
  for (;;) {
    if (pending->done) break;
    const absl::Time now = absl::Now();
    const bool can_run = running_ < options_.instances && !queue_.empty();
    // Lead: an instance is free and the oldest call's delay is up (or the batch is full).
    if (can_run && (queued_rows_ >= options_.max_batch_rows ||
                    now >= queue_.front()->enqueued + options_.max_queue_delay)) {
      std::vector<std::shared_ptr<Pending>> batch = TakeBatch();
      ++running_;
      mu_.Unlock();
      RunBatch(batch);
      mu_.Lock();
      --running_;
      continue;
    }
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
    // Wake at least every 20 ms to notice a cancelled RPC.
    const absl::Time poll = std::min(deadline, now + absl::Milliseconds(20));
    if (can_run && !timer_armed_) {
      timer_armed_ = true;
      mu_.AwaitWithDeadline(timer_wake,
                            std::min(poll, queue_.front()->enqueued + options_.max_queue_delay));
      timer_armed_ = false;
    } else {
      mu_.AwaitWithDeadline(wake, poll);
    }
  }
  return std::move(pending->result);
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
