// The learner's view of its actors: who joined, what each is assigned, their liveness, and the
// progress they report. An experiment run hands the registry a Job (how many actors, what
// assignment each gets, where its events go); the registry assigns free actors to the job's
// slots as they join, frees a slot when its actor leaves or misses heartbeats, and passes env
// step counts (as differences of cumulative counters, so retries never count twice) and
// finished episodes to the job's sink.
//
// Thread-safe: ActorService handlers and the run call it concurrently. The sink is called with
// no registry lock held, from the handler's thread.
#ifndef PRL_LEARNER_ACTOR_REGISTRY_H_
#define PRL_LEARNER_ACTOR_REGISTRY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/actor.pb.h"

namespace prl::learner {

// Receives what the actors of a job report.
class ActorEventSink {
 public:
  virtual ~ActorEventSink() = default;
  // New env steps in training (or collection) episodes since the last call.
  virtual void OnEnvSteps(int64_t delta) = 0;
  // Finished episodes, in the order they ended.
  virtual void OnEpisodes(const std::vector<v1::EpisodeSummary>& episodes) = 0;
};

struct ActorJob {
  std::string experiment_id;
  int num_actors = 1;
  int envs_per_actor = 1;
  // The assignment every actor of the job gets; the registry fills generation,
  // env_index_offset and num_envs per slot.
  v1::Assignment assignment;
  ActorEventSink* sink = nullptr;  // not owned; must outlive the job
};

struct ActorRegistryOptions {
  absl::Duration heartbeat_interval = absl::Seconds(2);
  // An actor silent for this many intervals is dropped.
  int missed_heartbeats = 3;
  std::function<absl::Time()> clock = [] { return absl::Now(); };
};

class ActorRegistry {
 public:
  explicit ActorRegistry(ActorRegistryOptions options = {});

  // ActorService.Join. A name already joined replaces that actor (its id stops being valid).
  v1::JoinResponse Join(const v1::JoinRequest& request) ABSL_LOCKS_EXCLUDED(mu_);
  // ActorService.Heartbeat. NOT_FOUND for an unknown (or expired) actor id.
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request)
      ABSL_LOCKS_EXCLUDED(mu_);
  // ActorService.ReportEpisodes. NOT_FOUND for an unknown actor id.
  absl::StatusOr<v1::ReportEpisodesResponse> ReportEpisodes(
      const v1::ReportEpisodesRequest& request) ABSL_LOCKS_EXCLUDED(mu_);
  // ActorService.Leave. NOT_FOUND for an unknown actor id.
  absl::Status Leave(const std::string& actor_id) ABSL_LOCKS_EXCLUDED(mu_);

  // Starts a job (replacing any other): free actors are assigned at once, more as they join.
  void StartJob(const ActorJob& job) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends the job: its actors get an idle assignment. No sink calls after this returns.
  void EndJob() ABSL_LOCKS_EXCLUDED(mu_);
  // Asks the job's actors for evaluation round `round`: `episodes` split over the assigned
  // actors, acting with at least `min_policy_version`. Returns the episodes requested in all
  // (0 when no actor is assigned). The registry follows the round per slot: when an actor
  // leaves or misses its heartbeats before finishing its share, the actor that takes its slot
  // runs the rest of that share.
  int RequestEvaluation(int64_t round, int episodes, int64_t min_policy_version)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Evaluation episodes of `round` the run can still expect in all: those already reported
  // plus the outstanding shares of slots that have an actor. A share whose actor died and whose
  // slot no actor took is not expected (the run need not wait for it). -1 for a round other
  // than the latest requested.
  // Drops actors that missed their heartbeats first.
  int ExpectedEvaluationEpisodes(int64_t round) ABSL_LOCKS_EXCLUDED(mu_);

  // Actors working for the job now.
  int assigned_actors() const ABSL_LOCKS_EXCLUDED(mu_);
  // Actors joined.
  int joined_actors() const ABSL_LOCKS_EXCLUDED(mu_);
  // Drops actors that missed their heartbeats (also done on every call).
  void Expire() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Actor {
    std::string id;
    std::string name;
    int num_envs = 1;
    int64_t generation = 0;
    v1::Assignment assignment;
    int slot = -1;  // job slot, -1 when idle
    absl::Time last_seen;
    int64_t reported_env_steps = 0;  // cumulative, current generation
    absl::Time counted_at;           // when reported_env_steps last grew (or was reset)
    int64_t next_episode = 1;        // first episode number not yet recorded, this generation
    v1::EvaluationRequest evaluation;
  };

  // Gives free actors the job's open slots. Returns nothing; callers hold mu_.
  void FillSlots() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AssignIdle(Actor& actor) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AssignSlot(Actor& actor, int slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExpireLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveLocked(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Env-step difference for `actor` given a new cumulative count.
  int64_t TakeEnvSteps(Actor& actor, int64_t cumulative) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ActorRegistryOptions options_;
  // This registry's incarnation: actor ids and generations start from it, so after a learner
  // restart no id or generation of the previous learner is valid again (a late report or
  // heartbeat of an actor that has not rejoined yet is NOT_FOUND or an old generation, never
  // taken for a current one), and generations keep increasing across restarts.
  const int64_t incarnation_;
  mutable absl::Mutex mu_;
  std::map<std::string, Actor> actors_ ABSL_GUARDED_BY(mu_);  // by id
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool has_job_ ABSL_GUARDED_BY(mu_) = false;
  ActorJob job_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> slots_ ABSL_GUARDED_BY(mu_);  // actor id per slot, "" when open
  // The latest evaluation round: episodes asked of each slot and reported by it.
  int64_t eval_round_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t eval_min_version_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<int> eval_share_ ABSL_GUARDED_BY(mu_);
  std::vector<int> eval_done_ ABSL_GUARDED_BY(mu_);
  // Sink calls in flight; EndJob waits for them.
  int sink_calls_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace prl::learner

#endif  // PRL_LEARNER_ACTOR_REGISTRY_H_
