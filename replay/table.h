// A replay table: items of a fixed signature (named, typed, shaped columns) stored in
// preallocated column chunks up to a capacity, a sampler and a remover (item selectors), and
// a rate limiter holding the sample-to-insert ratio. The core of prl_replay; knows nothing of
// gRPC (it takes and fills the v1 request/response messages, which are plain data, and takes
// inserts as InsertBatch views whose column bytes may lie in several pieces).
//
// Thread-safe: every public method may be called concurrently. Blocking calls (Insert, Sample)
// wait on the table's mutex with a deadline and a cancellation check, and return CANCELLED when
// the table is closed. Lock order: Table::mu_ is a leaf lock.
//
// Checkpoints: column storage is held in copy-on-write chunks, so TakeSnapshot() costs one
// pass over the item index under the lock and writing the snapshot happens outside it while
// inserts and samples go on (a chunk written meanwhile is copied once).
#ifndef PRL_REPLAY_TABLE_H_
#define PRL_REPLAY_TABLE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/tensor.h"
#include "proto/replay.pb.h"
#include "replay/insert_batch.h"
#include "replay/item_selector.h"
#include "replay/rate_limiter.h"
#include "replay/replay_metrics.h"
#include "replay/table_config.h"  // TableLimits, ValidateTableConfig

namespace prl::replay {

// True when a blocking call should give up (e.g. its RPC was cancelled).
using CancelledFn = std::function<bool()>;

// One column's bytes for a run of rows; shared between the table and snapshots.
struct Chunk {
  std::vector<char> bytes;
};

// A consistent copy of a table's state for checkpoints (see table.h's header comment).
struct TableSnapshot {
  struct Item {
    uint64_t key;
    int64_t slot;
    double priority;
    int32_t times_sampled;
  };
  v1::TableConfig config;
  int64_t inserted_total = 0;
  int64_t sampled_total = 0;
  int64_t removed_total = 0;
  uint64_t next_key = 0;
  int64_t limiter_inserted = 0;
  int64_t limiter_sampled = 0;
  std::vector<Item> items;         // in key order
  std::vector<int64_t> row_bytes;  // per column
  int64_t rows_per_chunk = 0;
  std::vector<std::vector<std::shared_ptr<const Chunk>>> chunks;  // [column][chunk]

  // The bytes of `item`'s row in column `column`.
  const char* Row(size_t column, const Item& item) const;
};

class Table {
 public:
  // Validates `config` (see ValidateTableConfig) and creates an empty table that reports to
  // `metrics` (may be null).
  static absl::StatusOr<std::unique_ptr<Table>> Create(
      v1::TableConfig config, const TableLimits& limits,
      std::unique_ptr<TableMetrics> metrics = nullptr);
  // Rebuilds a table from a snapshot (checkpoint restore). Errors: INVALID_ARGUMENT or
  // DATA_LOSS when the snapshot is inconsistent with its config.
  static absl::StatusOr<std::unique_ptr<Table>> FromSnapshot(
      const TableSnapshot& snapshot, const TableLimits& limits,
      std::unique_ptr<TableMetrics> metrics = nullptr);

  Table(const Table&) = delete;
  Table& operator=(const Table&) = delete;

  const v1::TableConfig& config() const { return config_; }
  const std::string& name() const { return config_.name(); }

  // Validates every column and priority of `batch` first — on an error nothing is stored —
  // then inserts its rows, waiting on the rate limiter item by item until `deadline`. Rows
  // inserted before a DEADLINE_EXCEEDED or CANCELLED stay inserted; `*inserted` counts them.
  // Appends the new keys to `keys` when it is not null. Each row's bytes are copied once, from
  // the batch's pieces into the table's storage. `batch.table` is not looked at.
  absl::Status Insert(const InsertBatch& batch, absl::Time deadline, const CancelledFn& cancelled,
                      int64_t* inserted, std::vector<uint64_t>* keys) ABSL_LOCKS_EXCLUDED(mu_);
  // The same for a request message.
  absl::Status Insert(const v1::InsertRequest& request, absl::Time deadline,
                      const CancelledFn& cancelled, int64_t* inserted, std::vector<uint64_t>* keys)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Samples `request.batch_size()` items (at most the shard's max_batch_rows, and at most
  // max_message_bytes of data) into `response` (columns [B, ...], keys, probabilities,
  // importance weights, times sampled), waiting on the rate limiter until the request's
  // timeout or `deadline`, whichever is first. Uniform and prioritized sampling is with
  // replacement; FIFO and LIFO take distinct items within a batch, and an item never comes
  // back more often than max_times_sampled allows. A batch is all or nothing: on
  // DEADLINE_EXCEEDED / CANCELLED nothing is returned and nothing counts as sampled. Errors:
  // INVALID_ARGUMENT for a bad batch size, exponent or timeout.
  absl::Status Sample(const v1::SampleRequest& request, absl::Time deadline,
                      const CancelledFn& cancelled, v1::SampleResponse* response)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Sets priorities by key; keys not present are counted in `*missing`. Errors:
  // INVALID_ARGUMENT (lengths differ, a priority negative or not finite) with nothing changed.
  absl::Status UpdatePriorities(const v1::UpdatePrioritiesRequest& request, int64_t* updated,
                                int64_t* missing) ABSL_LOCKS_EXCLUDED(mu_);

  v1::TableInfo Info() const ABSL_LOCKS_EXCLUDED(mu_);
  int64_t size() const ABSL_LOCKS_EXCLUDED(mu_);

  TableSnapshot TakeSnapshot() const ABSL_LOCKS_EXCLUDED(mu_);

  // Wakes and fails every waiting call with CANCELLED and refuses new ones (table deleted or
  // shard shutting down).
  void Close() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Item {
    int64_t slot;
    double priority;
    int32_t times_sampled;
  };

  Table(v1::TableConfig config, const TableLimits& limits, std::unique_ptr<TableMetrics> metrics);

  // INVALID_ARGUMENT naming priorities[index] unless it is a usable priority.
  absl::Status CheckPriority(double priority, int index) const;
  int64_t InsertPermitsLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sample permits left after the batches other calls have reserved.
  int64_t SamplePermitsLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Puts keys a Sample call withdrew from the sampler back, if they are still stored.
  void ReturnWithdrawnLocked(const std::vector<uint64_t>& keys) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Sample's steps: ValidateSample and AddSampleColumns, then under mu_ WaitToSampleLocked
  // and PickLocked until the batch is full, then CommitSampleLocked (AbandonSampleLocked when
  // the wait fails).
  struct SampleBatch;  // a Sample call's picks and what they reserve (table.cc)
  // INVALID_ARGUMENT unless `request` asks for a batch this table may return.
  absl::Status ValidateSample(const v1::SampleRequest& request) const;
  // Adds the response's columns, shaped [batch, ...]; returns where each column's bytes start.
  std::vector<char*> AddSampleColumns(int64_t batch, v1::SampleResponse* response) const;
  // Waits for a sample permit; adds the time waited to `*call_waited` and the table's totals.
  absl::Status WaitToSampleLocked(absl::Time deadline, const CancelledFn& cancelled,
                                  double* call_waited) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Picks items into `batch` while permits last: copies their rows into the response columns
  // and reserves them (pending_samples_; withdrawn_ for FIFO/LIFO and items about to reach
  // max_times_sampled, which also go in doomed_).
  void PickLocked(SampleBatch* batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Releases what `batch` reserved, leaving the table as the call found it.
  void AbandonSampleLocked(const SampleBatch& batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Counts `batch` as sampled (times_sampled, removals at max_times_sampled, the limiter,
  // totals, metrics) and fills the response's keys, probabilities, times sampled and size.
  void CommitSampleLocked(const SampleBatch& batch, v1::SampleResponse* response)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Waits until `ready` holds, the table closes, `cancelled` or `deadline`.
  absl::Status WaitLocked(const std::function<bool()>& ready, absl::Time deadline,
                          const CancelledFn& cancelled, absl::string_view what,
                          double* waited_seconds) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Checks a batch before anything of it is stored; `*order` maps signature columns to batch
  // columns and `*rows` is the batch size.
  absl::Status ValidateInsert(const InsertBatch& batch, std::vector<size_t>* order,
                              int64_t* rows) const;
  // Stores one row, read from the next bytes of each column's reader in signature order
  // (evicting first when full); returns its key.
  uint64_t InsertRowLocked(std::vector<ScatteredReader>& columns, double priority)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveLocked(uint64_t key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A writable pointer to `slot`'s bytes in `column`, copying a chunk a snapshot shares.
  char* MutableRowLocked(size_t column, int64_t slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const char* RowLocked(size_t column, int64_t slot) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const v1::TableConfig config_;
  const TableLimits limits_;
  const std::unique_ptr<TableMetrics> metrics_;  // null in tests that do not need it
  // Per column: bytes per item and the spec each inserted batch must match.
  std::vector<int64_t> row_bytes_;
  int64_t item_bytes_ = 0;  // sum of row_bytes_
  std::vector<TensorSpec> column_specs_;
  int64_t rows_per_chunk_ = 0;

  mutable absl::Mutex mu_;
  std::vector<std::vector<std::shared_ptr<Chunk>>> chunks_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, Item> items_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> free_slots_ ABSL_GUARDED_BY(mu_);
  int64_t next_slot_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_key_ ABSL_GUARDED_BY(mu_) = 1;
  std::unique_ptr<ItemSelector> sampler_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<ItemSelector> remover_ ABSL_GUARDED_BY(mu_);
  RateLimiter limiter_ ABSL_GUARDED_BY(mu_);
  // Keys in-flight Sample calls took out of sampler_ (FIFO/LIFO batches, max_times_sampled).
  absl::flat_hash_set<uint64_t> withdrawn_ ABSL_GUARDED_BY(mu_);
  // Keys in-flight Sample calls will remove when they commit (max_times_sampled reached): they
  // no longer count towards the size the rate limiter sees, so one batch cannot take the table
  // below min_size_to_sample.
  absl::flat_hash_set<uint64_t> doomed_ ABSL_GUARDED_BY(mu_);
  // Items in-flight Sample calls have reserved but not yet committed.
  int64_t pending_samples_ ABSL_GUARDED_BY(mu_) = 0;
  // Largest priority seen: the default priority of rows inserted without one.
  double max_priority_ ABSL_GUARDED_BY(mu_) = 0;
  absl::BitGen rng_ ABSL_GUARDED_BY(mu_);
  int64_t inserted_total_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t sampled_total_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t removed_total_ ABSL_GUARDED_BY(mu_) = 0;
  double insert_wait_seconds_ ABSL_GUARDED_BY(mu_) = 0;
  double sample_wait_seconds_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t allocated_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace prl::replay

#endif  // PRL_REPLAY_TABLE_H_
