// The dynamic batcher of one (model version, method): concurrent calls are queued, coalesced
// into one batch of rows — dispatched when the queue holds max_batch_rows rows or when the
// oldest call has waited max_queue_delay — run once, and each caller gets its own rows back.
// The semantics follow Triton's dynamic batcher (max_queue_delay_microseconds, a bounded queue,
// per-request timeouts) and Ray Serve's @serve.batch (max_batch_size, batch_wait_timeout_s),
// counted in rows rather than requests, since an actor's call carries one row per env.
//
//   - A call larger than max_batch_rows runs as a batch of its own (the service bounds a call's
//     rows separately).
//   - The queue is bounded: a call that would take it past max_queue_rows is refused with
//     RESOURCE_EXHAUSTED at once (unless the queue is empty), so overload sheds load instead of
//     growing latency without limit.
//   - Deadlines hold while queued: a caller whose deadline passes, or whose RPC is cancelled,
//     leaves the queue and gets DEADLINE_EXCEEDED or CANCELLED; its rows never reach the model.
//   - `instances` batches may compute at once (Triton's instance count); one by default.
//   - No threads of its own: the calling threads run the batches (a waiting caller whose queue
//     is ready and finds an instance free takes the oldest calls — its own or others' — runs
//     them and hands out the rows). A lone caller thus computes on its own thread with no
//     hand-off, and under load each batch costs one wake-up per call instead of three.
//   - The owner destroys a batcher only when no Call is in progress (the prior server holds
//     the model, and with it its batchers, by a shared_ptr each call keeps until it returns, so
//     unloading a model drops no call).
//
// No LibTorch and no Prometheus here: the batch function and an observer are passed in.
// Thread-safe.
#ifndef PRL_PRIOR_SERVER_DYNAMIC_BATCHER_H_
#define PRL_PRIOR_SERVER_DYNAMIC_BATCHER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/tensor.h"

namespace prl::prior_server {

struct BatchingOptions {
  // Rows one batch may hold, >= 1.
  int64_t max_batch_rows = 256;
  // How long the oldest queued call may wait for others to join it; 0 dispatches at once
  // (calls still coalesce while a previous batch computes). At most 1 s.
  absl::Duration max_queue_delay = absl::Microseconds(200);
  // Rows that may wait in the queue, >= max_batch_rows.
  int64_t max_queue_rows = 16384;
  // Batches computing at once, 1..64.
  int instances = 1;
};

// Errors: INVALID_ARGUMENT naming the field under `prefix` ("batching.max_batch_rows: 0 is not
// allowed; it must be >= 1").
absl::Status ValidateBatchingOptions(const BatchingOptions& options, const std::string& prefix);

// Told about each batch (metrics); called on a worker thread, must be thread-safe and quick.
class BatchObserver {
 public:
  virtual ~BatchObserver() = default;
  // A call left the queue for a batch after waiting `queued`.
  virtual void OnDequeued(absl::Duration queued) = 0;
  // A batch of `rows` rows from `calls` calls computed in `compute`.
  virtual void OnBatch(int64_t rows, int calls, absl::Duration compute) = 0;
};

class DynamicBatcher {
 public:
  // Runs one batch: the calls' inputs concatenated along rows; returns outputs whose first
  // dimension is the batch's rows.
  using BatchFn =
      std::function<absl::StatusOr<std::vector<HostTensor>>(const std::vector<HostTensor>& inputs)>;

  // `name` names the batcher in messages ("model 'skills' v3 Decode"). `observer` may be null
  // and must outlive the batcher. Options must be valid (ValidateBatchingOptions).
  DynamicBatcher(std::string name, const BatchingOptions& options, BatchFn run,
                 BatchObserver* observer);
  ~DynamicBatcher();
  DynamicBatcher(const DynamicBatcher&) = delete;
  DynamicBatcher& operator=(const DynamicBatcher&) = delete;

  // Queues `inputs` (float32, each with `rows` rows and the same trailing shapes as every other
  // call's) and blocks until its rows are computed, `deadline` passes or `cancelled` returns
  // true (polled every few milliseconds; may be empty). Returns this call's rows of each
  // output. Errors: RESOURCE_EXHAUSTED for a full queue; DEADLINE_EXCEEDED; CANCELLED; the
  // batch function's error (every call of that batch gets it).
  absl::StatusOr<std::vector<HostTensor>> Call(std::vector<HostTensor> inputs, int64_t rows,
                                               absl::Time deadline,
                                               const std::function<bool()>& cancelled);

  struct Stats {
    int64_t batches = 0;
    int64_t calls = 0;  // calls computed (not those refused or expired)
    int64_t rows = 0;
    int64_t max_batch_calls = 0;  // the most calls one batch coalesced
    int64_t refused = 0;          // RESOURCE_EXHAUSTED
    int64_t expired = 0;          // left the queue on a deadline or cancellation
    int64_t queued_calls = 0;     // waiting in the queue now
  };
  Stats stats() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Pending;

  // True when an instance is free and the queue holds a full batch, or holds anything and the
  // queue delay is zero.
  bool FullBatchReady() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Takes the next batch off the queue (at least one call, at most max_batch_rows rows unless
  // the first call alone is larger).
  std::vector<std::shared_ptr<Pending>> TakeBatch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs `batch` and hands each call its rows.
  void RunBatch(const std::vector<std::shared_ptr<Pending>>& batch) ABSL_LOCKS_EXCLUDED(mu_);

  const std::string name_;
  const BatchingOptions options_;
  const BatchFn run_;
  BatchObserver* const observer_;

  mutable absl::Mutex mu_;
  std::deque<std::shared_ptr<Pending>> queue_ ABSL_GUARDED_BY(mu_);
  int64_t queued_rows_ ABSL_GUARDED_BY(mu_) = 0;
  int running_ ABSL_GUARDED_BY(mu_) = 0;           // batches computing now
  bool timer_armed_ ABSL_GUARDED_BY(mu_) = false;  // a caller waits for the queue delay
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace prl::prior_server

#endif  // PRL_PRIOR_SERVER_DYNAMIC_BATCHER_H_
