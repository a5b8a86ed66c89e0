// The client actors and the learner use to reach a set of replay shards as one replay:
// inserts are spread over the shards whose rate limiters take them (round-robin, a short wait
// on each, the rest of a batch offered to the next shard), samples are split over the shards by
// what each one's rate limiter can give and by size (rate_limiter.h's SplitSampleBatch) and
// merged into one batch, and item keys carry their shard so priority updates find their way
// back; so the update-to-data ratio holds over the whole set of shards and neither side stalls
// on one shard (docs/replay.md, "The sharded client"). A shard that answers UNAVAILABLE is
// skipped and retried after a jittered exponential backoff, so the client keeps working with
// the shards that are up and picks a restarted shard up again; a shard that lost a table the
// client created (restarted without a checkpoint) gets it re-created. Every call has a
// deadline. Inserts are encoded straight from the caller's buffers (InsertBatch) into one send
// buffer per request; InsertStream streams many batches to one shard that way.
//
// ShardedReplayClient is thread-safe: calls may come from several threads; each shard's state
// is guarded by mu_. InsertStream is not: one stream per thread.
#ifndef PRL_REPLAY_REPLAY_CLIENT_H_
#define PRL_REPLAY_REPLAY_CLIENT_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/client.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/sync_stream.h"
#include "proto/replay.grpc.pb.h"
#include "replay/insert_batch.h"

namespace prl::replay {

struct ReplayClientOptions {
  // "host:port" of every shard; at most 255.
  std::vector<std::string> addresses;
  // TLS settings applied to every shard (the address field is ignored).
  ChannelOptions channel;
  // Deadline of each RPC and the bearer token.
  CallOptions call;
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  // With more than one shard: how long an insert first waits on one shard's rate limiter
  // before the rows it did not take are offered to the next shard (the wait doubles with each
  // round over the shards, up to 1 s). Zero turns this off: each insert then waits on one shard.
  absl::Duration insert_probe_wait = absl::Milliseconds(20);
};

// One Insert stream to one replay shard, for a writer that streams many batches. Write(batch)
// encodes the batch straight from the buffers it views into one send buffer (the only copy of
// the tensors on this side); Write(shared request) sends the request's large tensors from where
// they lie (no copy). Either returns once gRPC has taken the request; flow control, and through
// it the shard's rate limiter, make Write wait. Owns its call; destroying the stream before
// Finish cancels it.
class InsertStream {
 public:
  // Starts an Insert call on `channel` with `call`'s deadline and bearer token. Connection
  // errors show in Write and Finish.
  static std::unique_ptr<InsertStream> Open(std::shared_ptr<grpc::Channel> channel,
                                            const CallOptions& call);

  // Sends one batch (one InsertRequest); its buffers may be reused once Write returns. False
  // when the stream is broken (the shard ended it, the deadline passed, the connection failed);
  // Finish() then says why.
  bool Write(const InsertBatch& batch);

  // Sends `request` without copying its tensors of 32 KiB and more: gRPC sends their bytes from
  // the request, which the stream keeps alive until gRPC lets go of them. The request must not
  // change after this call. False as above.
  bool Write(const std::shared_ptr<const v1::InsertRequest>& request);

  // Closes the stream and returns the shard's InsertResponse. Errors: the shard's status, e.g.
  // INVALID_ARGUMENT naming the request index and field, NOT_FOUND for an unknown table,
  // DEADLINE_EXCEEDED, UNAVAILABLE. Call once.
  absl::StatusOr<v1::InsertResponse> Finish();

  // After Finish: rows the shard stored from this stream, also when Finish failed (the stream's
  // first rows, in order; 0 when the shard's answer did not arrive, e.g. the connection broke
  // or the call was cancelled).
  int64_t rows_inserted() const { return rows_inserted_; }

  // Cancels the call: a Write or Finish waiting in another thread returns (Finish with
  // CANCELLED). Thread-safe; any time before the stream is destroyed.
  void Cancel() { context_.TryCancel(); }

 private:
  InsertStream() = default;

  std::shared_ptr<grpc::Channel> channel_;
  grpc::ClientContext context_;
  v1::InsertResponse response_;
  int64_t rows_inserted_ = 0;
  std::unique_ptr<grpc::ClientWriter<grpc::ByteBuffer>> writer_;
};

// Lets another thread end a ShardedReplayClient's inserts, e.g. an actor whose assignment
// changed while an insert waits on a shard's rate limiter: Cancel() cancels the inserts in flight
// that were given this canceller and makes every later one fail at once, with CANCELLED. Rows a
// cancelled insert had stored stay stored, and the caller is not told how many; a shard may
// still store some until it sees the cancellation (the next time its rate limiter wakes the
// insert). Thread-safe.
class InsertCanceller {
 public:
  void Cancel() ABSL_LOCKS_EXCLUDED(mu_);
  bool cancelled() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  friend class ShardedReplayClient;
  // Registers `stream` for the time of its call; false, registering nothing, once cancelled.
  bool Add(InsertStream* stream) ABSL_LOCKS_EXCLUDED(mu_);
  void Remove(InsertStream* stream) ABSL_LOCKS_EXCLUDED(mu_);

  mutable absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<InsertStream*> in_flight_ ABSL_GUARDED_BY(mu_);
};

class ShardedReplayClient {
 public:
  // Errors: INVALID_ARGUMENT for no addresses, more than 255, or a bad channel option.
  static absl::StatusOr<std::unique_ptr<ShardedReplayClient>> Create(
      const ReplayClientOptions& options);

  // Creates the table on every shard that is up. Errors: the first error other than
  // UNAVAILABLE; UNAVAILABLE when no shard could be reached.
  absl::Status CreateTable(const v1::TableConfig& config) ABSL_LOCKS_EXCLUDED(mu_);

  // Deletes the table on every shard that is up (a shard without it counts as done) and
  // forgets its config (a shard that restarts does not get it back). Returns the items
  // removed. Errors: the first error other than UNAVAILABLE and NOT_FOUND.
  absl::StatusOr<int64_t> DeleteTable(const std::string& table) ABSL_LOCKS_EXCLUDED(mu_);

  // Inserts one batch, within one deadline (options.call.timeout) for the whole call. With
  // several shards, it goes to the shards whose rate limiters take it: in rounds over the
  // shards, round-robin from this insert's turn, each is offered the rows not stored yet and
  // waits at most insert_probe_wait on its limiter (doubling every round, up to 1 s; the last
  // wait runs to the deadline), so a batch may end up split over shards, in order. A shard that
  // turned rows away, or was left full, is passed over in the first round of later inserts for
  // a while (50 ms, doubling to 1 s while it stays full). With one shard, the insert waits on
  // it until the deadline. Shards that are down are skipped. Returns the shard-tagged keys of
  // every row, in order, when batch.return_keys.
  // Errors: a shard's error (INVALID_ARGUMENT etc., not retried elsewhere); UNAVAILABLE when
  // every shard is down; DEADLINE_EXCEEDED when the rate limiters held the rest until the
  // deadline. `rows_stored`, when given, is set to the batch's leading rows the shards stored,
  // also on error (a retry should send only the rest). With a `canceller`, its Cancel() ends
  // the insert (CANCELLED, from any shard; the shard is not taken for down).
  absl::StatusOr<std::vector<uint64_t>> Insert(const InsertBatch& batch,
                                               int64_t* rows_stored = nullptr,
                                               InsertCanceller* canceller = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The same for a request message.
  absl::StatusOr<std::vector<uint64_t>> Insert(const v1::InsertRequest& request)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Samples `batch_size` items across the shards that are up, in parallel, split by
  // SplitSampleBatch over what each shard last reported (its size and the samples its rate
  // limiter can give; shards not heard from are asked with Info first), and merges them:
  // columns concatenated, keys shard-tagged, probabilities the chance of each draw over the
  // union (the shard's part of the batch times the probability within the shard), importance
  // weights from those, table_size the total over every shard that is up (the last size each
  // reported). `timeout` bounds the rate-limiter wait on each shard; the shards that answered
  // are asked once more for what the others could not give. The merged response's
  // rate_limiter is left unset (each shard's is recorded for the next call). Errors: a shard's
  // error other than UNAVAILABLE and DEADLINE_EXCEEDED; UNAVAILABLE when the shards that answered
  // could not give the whole batch.
  absl::StatusOr<v1::SampleResponse> Sample(const std::string& table, int batch_size,
                                            absl::Duration timeout,
                                            double importance_sampling_exponent = 0)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Updates priorities of shard-tagged keys, each on its own shard. Returns keys updated.
  absl::StatusOr<int64_t> UpdatePriorities(const std::string& table,
                                           const std::vector<uint64_t>& keys,
                                           const std::vector<double>& priorities)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Number of shards currently considered up.
  int healthy_shards() const ABSL_LOCKS_EXCLUDED(mu_);

  // Key tagging: the shard index lives in the top 8 bits.
  static uint64_t TagKey(int shard, uint64_t key) { return (uint64_t{1} * shard << 56) | key; }
  static int ShardOfKey(uint64_t tagged) { return static_cast<int>(tagged >> 56); }
  static uint64_t UntagKey(uint64_t tagged) { return tagged & ((uint64_t{1} << 56) - 1); }

 private:
  // What the client knows of one table on one shard.
  struct TableState {
    // The shard's last report (Insert, Sample or Info), when one came.
    std::optional<v1::RateLimiterState> limiter;
    absl::Time reported = absl::InfinitePast();
    // The shard's limiter turned inserts away: later inserts pass it over until full_until
    // (full_backoff doubles while it stays full).
    absl::Time full_until = absl::InfinitePast();
    absl::Duration full_backoff = absl::ZeroDuration();
  };
  struct Shard {
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<v1::ReplayService::Stub> stub;
    bool up = true;
    absl::Time retry_at = absl::InfinitePast();
    absl::Duration backoff;
    std::map<std::string, TableState> tables;
  };
  struct InsertAttempt;
  struct SampleCall;

  explicit ShardedReplayClient(const ReplayClientOptions& options) : options_(options) {}

  // Shards worth calling now: up, or down with their retry time passed.
  std::vector<int> Candidates() ABSL_LOCKS_EXCLUDED(mu_);
  // Records the outcome of a call to `shard`: failures that mean "down" start a backoff.
  void Record(int shard, const grpc::Status& status) ABSL_LOCKS_EXCLUDED(mu_);
  // Re-creates `table` on `shard` if this client created it before; true on success.
  bool Recreate(int shard, const std::string& table) ABSL_LOCKS_EXCLUDED(mu_);
  // Makes `call` on every shard in turn (with the client's call options), recording each
  // shard's health; a failure `skip` accepts moves on to the next shard, any other ends the
  // loop with it. `answered` counts the shards that answered OK.
  absl::Status ForEachShard(
      const std::function<grpc::Status(v1::ReplayService::Stub&, grpc::ClientContext&)>& call,
      const std::function<bool(const grpc::Status&)>& skip, int* answered) ABSL_LOCKS_EXCLUDED(mu_);

  // `candidates` in round-robin order from this insert's turn.
  std::vector<int> Rotation(const std::vector<int>& candidates) ABSL_LOCKS_EXCLUDED(mu_);
  // Those of `shards` that inserts into `table` do not pass over for being full now.
  std::vector<int> NotFull(const std::vector<int>& shards, const std::string& table)
      ABSL_LOCKS_EXCLUDED(mu_);
  // One Insert call of `batch` to shard `index` until `deadline`, waiting at most `max_wait` on
  // its rate limiter (zero: as the batch says, by default until the deadline); re-creates the
  // table once if the shard lost it.
  InsertAttempt InsertOn(int index, const InsertBatch& batch, absl::Duration max_wait,
                         absl::Time deadline, InsertCanceller* canceller) ABSL_LOCKS_EXCLUDED(mu_);
  // Records what a shard said of `table`: its limiter, and whether it took every row offered.
  void NoteInsert(int index, const std::string& table, const v1::InsertResponse& response,
                  bool took_all) ABSL_LOCKS_EXCLUDED(mu_);
  void NoteState(int index, const std::string& table, const v1::RateLimiterState& state)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Sends `calls` (Sample parts and Info refreshes) in parallel, waits for all of them and
  // records what they report.
  void RunSampleCalls(const std::string& table, std::vector<std::unique_ptr<SampleCall>>& calls)
      ABSL_LOCKS_EXCLUDED(mu_);
  // How many items to ask each of `shards` for (SplitSampleBatch over their last reports).
  std::vector<int> PlanSample(const std::string& table, int batch, const std::vector<int>& shards)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Total size of `table` over the shards that are up, as each last reported it.
  int64_t KnownSize(const std::string& table) const ABSL_LOCKS_EXCLUDED(mu_);

  const ReplayClientOptions options_;
  mutable absl::Mutex mu_;
  std::vector<Shard> shards_ ABSL_GUARDED_BY(mu_);
  // Configs of the tables this client created, to re-create them on a shard that lost them.
  std::map<std::string, v1::TableConfig> tables_ ABSL_GUARDED_BY(mu_);
  size_t next_insert_ ABSL_GUARDED_BY(mu_) = 0;
  absl::BitGen rng_ ABSL_GUARDED_BY(mu_);
};

}  // namespace prl::replay

#endif  // PRL_REPLAY_REPLAY_CLIENT_H_
