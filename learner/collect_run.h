// A COLLECT experiment: actors run the spec's collector (MODE_COLLECT: random, the point_maze
// planner, or a trained policy) and stream their transitions into a FIFO table on the replay
// shards that hands each row out once and never holds inserts back; the run drains that table
// continuously, puts the rows — interleaved over actors, envs and shards — back into episodes
// with the "episode" and "step" columns the actors fill (EpisodeAssembler), writes every
// complete episode to the dataset, and stops the actors once collect.num_episodes episodes or
// collect.num_env_steps transitions are stored (whole episodes only: an episode that is
// incomplete when the run ends, or whose rows stop coming, is never written). The finished
// file goes into the learner's DatasetStore (learner/dataset_store.h) with its record, and the
// experiment's outputs name it.
//
// While collecting, episodes are written to segment files in the experiment's directory
// (<work_dir>/collect-<k>.hdf5, each closed atomically every segment period), so a learner that
// stops or dies resumes with the episodes of its closed segments; at the end the segments are
// joined into the store's staging file and committed. Progress: env_steps and episodes count
// stored transitions and episodes, fraction_done the nearer limit, latest_train_return the mean
// return of the last 10 stored episodes; scalars carry the actors' env steps, the rows drained
// and the episodes dropped as incomplete. The learner's env-step, episode and return metrics
// count stored data.
//
// A stop ends the run STOPPED and stores nothing; a learner shutdown leaves it RUNNING with its
// replay table and segments for the next start; errors (a bad row, the dataset store) end it
// FAILED.
//
// Thread-safety: Run on one thread; RequestStop and the ActorEventSink methods from any.
// EpisodeAssembler is thread-compatible.
#ifndef PRL_LEARNER_COLLECT_RUN_H_
#define PRL_LEARNER_COLLECT_RUN_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/client.h"
#include "learner/actor_registry.h"
#include "learner/dataset_store.h"
#include "learner/experiment_run.h"
#include "learner/learner_metrics.h"
#include "learner/policy_store.h"
#include "proto/actor.pb.h"
#include "proto/experiment.pb.h"
#include "proto/replay.pb.h"

namespace prl::learner {

// The replay table a COLLECT run's actors insert into: `name`, FIFO, each row sampled once, no
// sample-to-insert ratio, min_size_to_sample 1, `capacity` rows; columns observation, action,
// reward, discount, next_observation (as in training), episode, step (int64) and timeout.
v1::TableConfig CollectTableConfig(const std::string& name, int obs_dim, int act_dim,
                                   int64_t capacity);

// Puts rows that arrive in any order (over actors, envs, shards and drains) back into
// episodes. A row belongs to the episode its "episode" column names, at the index its "step"
// column gives; a row with discount 0 (terminated) or timeout 1 (time limit) ends its episode,
// which is complete once every step before it has arrived. A row sent twice (an insert retried
// after its answer was lost) is kept once, also when it comes after its episode completed.
class EpisodeAssembler {
 public:
  // One whole episode, rows in step order, row-major like common/dataset.h.
  struct Episode {
    int64_t id = 0;
    int64_t length = 0;
    std::vector<float> observations, actions, rewards, next_observations;
    // The last row's: one of them is true.
    bool terminated = false;
    bool timed_out = false;
    double episode_return() const;
  };

  EpisodeAssembler(int obs_dim, int act_dim) : obs_dim_(obs_dim), act_dim_(act_dim) {}

  // Adds the rows of one Sample answer, seen at `now`. Errors: INVALID_ARGUMENT naming the
  // column for a missing column, a wrong dtype or shape, a non-finite value, a negative or huge
  // step, or a row after its episode's last; the answer's rows are then all ignored.
  absl::Status Add(const v1::SampleResponse& rows, absl::Time now);
  // The episodes completed since the last call, in the order they completed.
  std::vector<Episode> TakeComplete();
  // Forgets the incomplete episodes whose newest row arrived before `cutoff` (their actor
  // died, or their first rows were drained by a run that did not keep them); returns how many.
  int64_t DropStale(absl::Time cutoff);

  // Incomplete episodes held, and their rows.
  int64_t pending_episodes() const { return static_cast<int64_t>(pending_.size()); }
  int64_t pending_rows() const { return pending_rows_; }
  // Rows seen twice (and kept once).
  int64_t duplicate_rows() const { return duplicate_rows_; }

 private:
  struct Pending {
    std::vector<float> observations, actions, rewards, next_observations;
    std::vector<uint8_t> present;
    int64_t have = 0;
    int64_t length = -1;  // known once the last row arrived
    bool terminated = false;
    absl::Time last_row;
  };

  const int obs_dim_;
  const int act_dim_;
  std::map<int64_t, Pending> pending_;
  // episodes completed or dropped: rows of theirs that come late (sent twice) are ignored
  absl::flat_hash_set<int64_t> finished_;
  std::vector<Episode> complete_;
  int64_t pending_rows_ = 0;
  int64_t duplicate_rows_ = 0;
};

// The replay calls a COLLECT run makes. Thread-compatible (the run's thread).
class CollectSource {
 public:
  virtual ~CollectSource() = default;
  // Creates the table on every shard (idempotent). UNAVAILABLE while no shard is reachable.
  virtual absl::Status CreateTable(const v1::TableConfig& config) = 0;
  // Takes up to `max_rows` rows out of `table` (the table hands each row out once), without
  // waiting for rows that are not there: none is an empty result. Shards that are down are
  // skipped. Errors: NOT_FOUND when a shard lost the table (restarted without a checkpoint: the
  // run creates it again); UNAVAILABLE when no shard answered; a shard's other errors.
  virtual absl::StatusOr<std::vector<v1::SampleResponse>> Drain(const std::string& table,
                                                                int max_rows) = 0;
  // Deletes the table on every shard that is up.
  virtual absl::Status DeleteTable(const std::string& table) = 0;
};

// The replay shards at `addresses` as a CollectSource: Info and Sample per shard, each call
// with `call`'s deadline and token.
absl::StatusOr<std::unique_ptr<CollectSource>> NewShardedCollectSource(
    const std::vector<std::string>& addresses, const ChannelOptions& channel,
    const CallOptions& call);

// What COLLECTOR_POLICY acts with: the policy (published to the actors under the COLLECT
// experiment's id) and the acting part of its assignment (policy architecture, prior, decision
// horizon), as the TRAIN run that trained it would have given.
struct CollectPolicy {
  std::shared_ptr<const v1::Policy> policy;
  v1::Assignment acting;
};
// Resolves CollectSpec.policy. Errors name collect.policy's fields.
using CollectPolicyLoader =
    std::function<absl::StatusOr<CollectPolicy>(const v1::PolicyRef& policy)>;

struct CollectRunOptions {
  // Replay shards (host:port) and how to reach them; used when `source_factory` is unset.
  std::vector<std::string> replay_addresses;
  ChannelOptions channel;
  CallOptions call;
  // Builds the run's source for the shards it uses instead of the sharded replay (tests).
  std::function<absl::StatusOr<std::unique_ptr<CollectSource>>(
      const std::vector<std::string>& addresses)>
      source_factory;
  // Not owned; must outlive the run. `policies` and `policy_loader` only for COLLECTOR_POLICY
  // (without them such a run fails as unsupported).
  ActorRegistry* registry = nullptr;
  DatasetStore* datasets = nullptr;
  PolicyStore* policies = nullptr;
  CollectPolicyLoader policy_loader;
  // Optional: the learner's metrics.
  LearnerMetrics* metrics = nullptr;
  // The experiment's directory (<state_dir>/experiments/<id>), for the segment files.
  std::string work_dir;
  // Rows asked of the shards per drain.
  int drain_rows = 4096;
  // Wait between drains that found nothing.
  absl::Duration idle_wait = absl::Milliseconds(200);
  // Segments are closed first after `first_segment_period`, then every `segment_period`.
  absl::Duration first_segment_period = absl::Seconds(10);
  absl::Duration segment_period = absl::Minutes(2);
  // An incomplete episode with no new row for this long is dropped.
  absl::Duration incomplete_timeout = absl::Minutes(5);
  absl::Duration progress_period = absl::Seconds(1);
  // Retries of CreateTable while no shard is reachable: first after this, doubling to 5 s.
  absl::Duration create_retry = absl::Milliseconds(250);
};

// Builds the run for a validated COLLECT experiment. Errors: INVALID_ARGUMENT for options
// without registry, datasets or work_dir, or a spec of another kind.
absl::StatusOr<std::unique_ptr<ExperimentRun>> CreateCollectRun(const v1::Experiment& experiment,
                                                                RunContext* context,
                                                                const CollectRunOptions& options);

}  // namespace prl::learner

#endif  // PRL_LEARNER_COLLECT_RUN_H_
