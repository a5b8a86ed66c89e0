// A BatchFeed over replay: creates the run's tables on the shards, then a prefetch thread
// samples the actors' table and converts each response into tensors on the algorithm's device,
// keeping up to `prefetch` batches ready. On a CUDA device the conversion stages each column
// through pinned host memory onto a copy stream of its own (learner/device_staging.h), so the
// transfers overlap the learner's updates and Next's caller waits only for its batch's copies. The
// table's rate limiter sets the update-to-data ratio; a shard that is down, restarting or draining,
// a table still filling or a limiter holding samples only delays batches (Next returns nullopt);
// other errors end the feed.
//
// The sampling calls go through ReplaySource, so tests drive the feed without sockets;
// production uses the sharded replay client (NewShardedReplaySource).
//
// Thread-safe (BatchFeed's contract). Owns its thread and joins it in Stop or the destructor.
#ifndef PRL_LEARNER_REPLAY_FEED_H_
#define PRL_LEARNER_REPLAY_FEED_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "learner/batch_feed.h"
#include "learner/device_staging.h"
#include "proto/replay.pb.h"

namespace prl::replay {
class ShardedReplayClient;
}  // namespace prl::replay

namespace prl::learner {

// The replay calls a ReplayFeed makes. Thread-safe.
class ReplaySource {
 public:
  virtual ~ReplaySource() = default;
  // Creates `config` on every shard; UNAVAILABLE when no shard is reachable yet.
  virtual absl::Status CreateTable(const v1::TableConfig& config) = 0;
  // Samples `batch_size` items; `timeout` bounds the rate-limiter wait.
  virtual absl::StatusOr<v1::SampleResponse> Sample(const std::string& table, int batch_size,
                                                    absl::Duration timeout,
                                                    double importance_sampling_exponent) = 0;
  virtual absl::Status UpdatePriorities(const std::string& table, const std::vector<uint64_t>& keys,
                                        const std::vector<double>& priorities) = 0;
  // Deletes `table` on every shard (done when a shard does not have it).
  virtual absl::Status DeleteTable(const std::string& table) = 0;
};

// The sharded replay client as a ReplaySource (not owned; outlives the source).
std::unique_ptr<ReplaySource> NewShardedReplaySource(replay::ShardedReplayClient* client);

struct ReplayFeedOptions {
  // Tables to create; the first is sampled.
  std::vector<v1::TableConfig> tables;
  int batch_size = 256;
  // Importance-sampling exponent for prioritized tables (0: uniform weights).
  double importance_sampling_exponent = 0;
  bool prioritized = false;
  // Device batches go to ("cpu", "cuda:0").
  std::string device = "cpu";
  // On a CUDA device: stage batches through pinned memory on a copy stream (false: synchronous
  // copies from pageable memory, what the feed did before; kept for comparisons). No effect on
  // the CPU.
  bool pinned_staging = true;
  // Further tables (names in `tables`) sampled after each batch of the first, without waiting:
  // Batch::extra gets one batch per entry, without columns while that table cannot be sampled.
  struct ExtraTable {
    std::string table;
    int batch_size = 256;
    bool prioritized = false;
    double importance_sampling_exponent = 0;
  };
  std::vector<ExtraTable> extra;
  // Batches kept ready.
  int prefetch = 2;
  // Rate-limiter wait per Sample call (short, so a stop is noticed soon).
  absl::Duration sample_timeout = absl::Milliseconds(500);
  // Start retries CreateTable while no shard is reachable (or a shard's drain cancels it),
  // first after `create_retry`, doubling up to `create_retry_max`, until it succeeds or Stop.
  absl::Duration create_retry = absl::Milliseconds(250);
  absl::Duration create_retry_max = absl::Seconds(5);
  // After a Sample fails with a transient error at once (every shard restarting: UNAVAILABLE
  // without a call), the next try waits until `sample_retry` has passed since the failed one
  // began, doubling up to `sample_retry_max` while failures go on, back to `sample_retry` after
  // a batch: a shard's restart is waited out without spinning a core.
  absl::Duration sample_retry = absl::Milliseconds(5);
  absl::Duration sample_retry_max = absl::Milliseconds(250);
};

class ReplayFeed final : public BatchFeed {
 public:
  // `source` is owned by the feed.
  ReplayFeed(std::unique_ptr<ReplaySource> source, ReplayFeedOptions options);
  ~ReplayFeed() override;

  absl::Status Start() override;
  // On a CUDA device, the batch's tensors are ready for work queued on the caller's current
  // stream from now on; work on another stream must join the caller's stream before the batch
  // is freed (GraphStream::Run does). Errors: as BatchFeed's, and INTERNAL for a CUDA failure.
  absl::StatusOr<std::optional<Batch>> Next(absl::Duration timeout) override;
  void UpdatePriorities(const std::vector<uint64_t>& keys,
                        const std::vector<double>& priorities) override;
  void UpdateExtraPriorities(int index, const std::vector<uint64_t>& keys,
                             const std::vector<double>& priorities) override;
  int64_t size() const override;
  void Stop() override;
  // Deletes the feed's tables (after Stop).
  absl::Status Release() override;

  // Converts a sample response into a Batch on `device`. With a `stager` (for a CUDA `device`)
  // the columns are staged through it, and may be used once a fence taken afterwards has been
  // adopted. Errors: INVALID_ARGUMENT for a malformed column (ViewTensorProto's message);
  // INTERNAL for a failed copy to the device.
  static absl::StatusOr<Batch> ToBatch(const v1::SampleResponse& response,
                                       const std::string& device, bool prioritized,
                                       DeviceStager* stager = nullptr);

 private:
  // A batch in the queue, with the fence after its copies when it was staged.
  struct Staged {
    Batch batch;
    std::unique_ptr<StagingFence> fence;
  };

  void PrefetchLoop();
  // A batch of `extra` for the prefetch loop (no columns when it cannot be sampled now).
  Batch SampleExtra(const ReplayFeedOptions::ExtraTable& extra);
  void WarnExtra(const std::string& table, const absl::Status& status);

  const std::unique_ptr<ReplaySource> source_;
  const ReplayFeedOptions options_;
  std::thread thread_;
  absl::Time last_extra_warning_ = absl::InfinitePast();  // prefetch thread only
  std::unique_ptr<DeviceStager> stager_;                  // set in Start; prefetch thread only

  mutable absl::Mutex mu_;
  std::deque<Staged> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  int64_t size_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace prl::learner

#endif  // PRL_LEARNER_REPLAY_FEED_H_
