// A replay shard: the named tables of one prl_replay process, created and deleted at run
// time, with checkpoints (on request, periodically, and on shutdown) and restore on start.
// Knows nothing of gRPC. Thread-safe. Lock order: ReplayShard::mu_ before Table::mu_;
// checkpoint_mu_ before mu_.
#ifndef PRL_REPLAY_SHARD_H_
#define PRL_REPLAY_SHARD_H_

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/directory_lock.h"
#include "prometheus/registry.h"
#include "proto/replay.pb.h"
#include "replay/replay_metrics.h"
#include "replay/table.h"

namespace prl::replay {

struct ShardOptions {
  TableLimits limits;
  int max_tables = 64;
  // Where checkpoints live; empty disables checkpointing (Checkpoint() fails).
  std::string checkpoint_dir;
  // Period of automatic checkpoints; zero disables them.
  absl::Duration checkpoint_period = absl::ZeroDuration();
};

class ReplayShard {
 public:
  // Creates the shard and, when the checkpoint directory holds a checkpoint, restores its
  // tables. The shard holds a lock on the checkpoint directory for its lifetime and removes the
  // temporary files a shard killed mid-checkpoint left there. Errors: DATA_LOSS (naming the
  // file) for a corrupt checkpoint, which is left in place for inspection; FAILED_PRECONDITION
  // when another shard (process) uses the directory; the OS error when it cannot be used.
  static absl::StatusOr<std::unique_ptr<ReplayShard>> Create(const ShardOptions& options,
                                                             prometheus::Registry& registry);
  // Stops periodic checkpoints and closes every table.
  ~ReplayShard();

  // Creates a table (config defaults filled). Idempotent: the same config again returns the
  // existing table with created = false. Errors: INVALID_ARGUMENT for a bad config;
  // ALREADY_EXISTS for the same name with a different config; RESOURCE_EXHAUSTED past
  // max_tables.
  absl::StatusOr<v1::CreateTableResponse> CreateTable(const v1::TableConfig& config)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Deletes a table, failing its blocked calls with CANCELLED; returns its item count. With
  // checkpoints on, the deletion is made durable before this returns (a tombstone file beside
  // the checkpoint, cleared by the next checkpoint), so a shard killed before its next
  // checkpoint does not restore the table. Errors: NOT_FOUND.
  absl::StatusOr<int64_t> DeleteTable(const std::string& name) ABSL_LOCKS_EXCLUDED(mu_);
  // The table called `name`. Errors: NOT_FOUND listing the tables there are.
  absl::StatusOr<std::shared_ptr<Table>> GetTable(const std::string& name) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // Info of one table (NOT_FOUND) or of all, sorted by name, when `name` is empty.
  absl::StatusOr<v1::InfoResponse> Info(const std::string& name) const ABSL_LOCKS_EXCLUDED(mu_);

  // Writes every table to <checkpoint_dir>/replay.ckpt atomically while traffic continues.
  // Errors: FAILED_PRECONDITION when checkpointing is disabled; the writer's errors.
  absl::StatusOr<v1::CheckpointResponse> Checkpoint() ABSL_LOCKS_EXCLUDED(mu_, checkpoint_mu_);

  // The checkpoint file path ("" when disabled).
  std::string checkpoint_path() const;

 private:
  ReplayShard(const ShardOptions& options, prometheus::Registry& registry);
  absl::Status Restore() ABSL_LOCKS_EXCLUDED(mu_);
  void PeriodicCheckpoints();
  // Rewrites the tombstone file from tombstones_ (removes it when there are none).
  absl::Status WriteTombstones() ABSL_LOCKS_EXCLUDED(mu_, tombstone_file_mu_);
  std::string tombstone_path() const;

  const ShardOptions options_;
  ReplayMetrics metrics_;
  std::unique_ptr<DirectoryLock> directory_lock_;

  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Table>> tables_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::string last_checkpoint_ ABSL_GUARDED_BY(mu_);
  // Tables deleted since the checkpoint on disk was snapshotted, with the deletion's number:
  // the checkpoint still holds them, so Restore must not bring them back.
  std::map<std::string, uint64_t> tombstones_ ABSL_GUARDED_BY(mu_);
  uint64_t deletions_ ABSL_GUARDED_BY(mu_) = 0;
  // Serialises tombstone file writes (taken before mu_).
  absl::Mutex tombstone_file_mu_ ABSL_ACQUIRED_BEFORE(mu_);

  // Serialises checkpoints.
  absl::Mutex checkpoint_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::thread checkpointer_;
};

}  // namespace prl::replay

#endif  // PRL_REPLAY_SHARD_H_
