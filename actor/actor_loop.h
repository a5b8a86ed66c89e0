// The core of prl_actor: keeps the actor joined to the learner and executes its current
// assignment, surviving learner, replay-shard and network restarts. Two threads, both owned and
// joined by the loop:
//   control  Join (retried with jittered backoff while the learner cannot be reached), then
//            Heartbeat every heartbeat_interval with the counters of the current generation. A
//            heartbeat answering another generation installs its assignment; one carrying a
//            higher evaluation round records it. NOT_FOUND from any call (the learner restarted
//            or dropped the actor) means: join again. A join that returns the assignment already
//            running keeps it running (the counters restart, as the registration is new).
//   acting   runs an AssignmentRunner for the current assignment until it changes or the loop
//            stops; idle for MODE_UNSPECIFIED and for assignments it cannot run (logged, and kept
//            in state().last_error). Building a runner that fails for a reason that may pass
//            (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, NOT_FOUND: a prior
//            server or shard not up yet, a model not pushed yet) is retried with backoff.
// Heartbeats have their own thread so that an acting thread held back by replay's rate limiter
// or a policy long-poll never makes the learner drop the actor. Every call has a deadline.
//
// Thread-safe. Lock order: ActorLoop::mu_ before Caller::mu_.
#ifndef PRL_ACTOR_ACTOR_LOOP_H_
#define PRL_ACTOR_ACTOR_LOOP_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "actor/actor_metrics.h"
#include "actor/assignment_runner.h"
#include "common/client.h"
#include "models/acting_policy.h"
#include "models/prior_inference.h"
#include "prometheus/registry.h"
#include "proto/actor.grpc.pb.h"

namespace prl::actor {

struct ActorLoopOptions {
  // "host:port" of prl_learner.
  std::string learner_address;
  // TLS settings for the learner and the replay shards (the address field is ignored).
  ChannelOptions channel;
  // Bearer token sent on every call to the learner and replay; empty sends none.
  std::string auth_token;

  // What Join tells the learner: the actor's stable name, the most envs it steps, where it runs.
  std::string actor_name;
  int num_envs = 1;
  v1::HostInfo host;
  // Threads stepping the envs (the acting thread is one of them).
  int workers = 1;

  // Deadline of each learner call.
  absl::Duration rpc_timeout = absl::Seconds(5);
  // Deadline of each replay insert (see RunnerOptions::insert_timeout).
  absl::Duration insert_timeout = absl::Seconds(2);
  // Jittered exponential backoff between failed attempts (Join, inserts, policy fetches).
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  // Longest GetPolicy long-poll while waiting for a policy version; how often to ask for a
  // newer one.
  absl::Duration policy_poll_timeout = absl::Seconds(5);
  absl::Duration policy_refresh_interval = absl::Seconds(2);
  // Episode reports: at least this often, or once report_max_episodes are pending.
  absl::Duration report_interval = absl::Seconds(1);
  int report_max_episodes = 100;
  // Replay inserts: requests of this many rows, or after insert_flush_interval.
  int insert_batch_rows = 64;
  absl::Duration insert_flush_interval = absl::Seconds(1);

  // Builds the policy from GetPolicy's answer (LibTorch in prl_actor, fakes in tests).
  models::ActingPolicyFactory policy_factory;
  // Builds the prior of a latent policy's assignment (see RunnerOptions.prior_connector).
  std::function<absl::StatusOr<std::unique_ptr<models::PriorInference>>(const v1::Assignment&)>
      prior_connector;
};

class ActorLoop final : private RunnerHost {
 public:
  // Validates `options` and creates the learner channel (connections are lazy); metrics go to
  // `registry`, which must outlive the loop. Errors: INVALID_ARGUMENT naming the bad option.
  static absl::StatusOr<std::unique_ptr<ActorLoop>> Create(const ActorLoopOptions& options,
                                                           prometheus::Registry& registry);
  // Stops the loop.
  ~ActorLoop() override;
  ActorLoop(const ActorLoop&) = delete;
  ActorLoop& operator=(const ActorLoop&) = delete;

  // Starts both threads. Call once.
  void Start();
  // Stops both threads (cancelling heartbeats and policy long-polls in flight; the acting thread
  // reports its finished episodes once), then sends Leave when joined. Idempotent.
  void Stop();

  // What the loop is doing, for logs and tests.
  struct State {
    // From the latest Join; empty before the first.
    std::string actor_id;
    // Successful joins so far.
    int64_t joins = 0;
    // The assignment being executed (generation 0, idle, before the first).
    v1::Assignment assignment;
    // Why the current assignment is not running; empty when it is (or when idle).
    std::string last_error;
    // Heartbeats in a row that failed other than with NOT_FOUND (the learner could not be
    // reached, or answered an error); 0 once one succeeds.
    int64_t heartbeat_failures = 0;
  };
  State state() const ABSL_LOCKS_EXCLUDED(mu_);
  // Waits until `pred` holds for the state, or `timeout`; returns whether it holds. `pred` runs
  // under the loop's lock each time the lock is released, so it must not call the loop. For
  // tests, and for a main that waits for the first join.
  bool AwaitState(const std::function<bool(const State&)>& pred, absl::Duration timeout) const
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  class Caller;

  ActorLoop(const ActorLoopOptions& options, prometheus::Registry& registry);
  State StateLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void ControlLoop();
  bool Join() ABSL_LOCKS_EXCLUDED(mu_);
  void Heartbeat() ABSL_LOCKS_EXCLUDED(mu_);
  // Waits until a heartbeat is due; false when the loop stops or must join first.
  bool WaitForHeartbeat() ABSL_LOCKS_EXCLUDED(mu_);
  // Makes `assignment` current: counters restart; unless it equals the running one (a re-join),
  // the acting thread switches to it.
  void InstallAssignmentLocked(const v1::Assignment& assignment, bool keep_if_same)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Asks the control thread to join again, unless `actor_id` (the id a call that answered
  // NOT_FOUND used) was already replaced.
  void RequestRejoin(const std::string& actor_id) ABSL_LOCKS_EXCLUDED(mu_);

  void ActLoop();
  void Execute(const v1::Assignment& assignment, int64_t serial);
  bool InterruptedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // RunnerHost, for the acting thread's runner.
  bool Interrupted() override ABSL_LOCKS_EXCLUDED(mu_);
  bool Wait(absl::Duration timeout) override ABSL_LOCKS_EXCLUDED(mu_);
  std::optional<v1::EvaluationRequest> Evaluation(int64_t after_round,
                                                  absl::Duration timeout) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::GetPolicyResponse> GetPolicy(const v1::GetPolicyRequest& request,
                                                  absl::Duration timeout) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::ReportEpisodesResponse> ReportEpisodes(v1::ReportEpisodesRequest request,
                                                            absl::Duration timeout) override
      ABSL_LOCKS_EXCLUDED(mu_);
  int64_t AddProgress(int64_t env_steps, int64_t episodes, int64_t items_inserted) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void SetActingVersion(int64_t version) override ABSL_LOCKS_EXCLUDED(mu_);
  int64_t NumberEpisode() override { return ++episode_numbers_; }

  const ActorLoopOptions options_;
  RunnerOptions runner_options_;
  // Episodes numbered so far (NumberEpisode).
  std::atomic<int64_t> episode_numbers_{0};
  ActorMetrics metrics_;
  std::unique_ptr<v1::ActorService::Stub> stub_;
  // Join and Heartbeat (cancelled by Stop); GetPolicy (cancelled by Stop and when the assignment
  // changes); ReportEpisodes and Leave (never cancelled).
  std::unique_ptr<Caller> control_calls_;
  std::unique_ptr<Caller> policy_calls_;
  std::unique_ptr<Caller> report_calls_;
  std::thread control_thread_;
  std::thread acting_thread_;
  // Join failures in a row, for logging; used by the control thread only.
  int join_failures_ = 0;

  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::string actor_id_ ABSL_GUARDED_BY(mu_);
  int64_t joins_ ABSL_GUARDED_BY(mu_) = 0;
  bool need_join_ ABSL_GUARDED_BY(mu_) = true;
  bool heartbeat_now_ ABSL_GUARDED_BY(mu_) = false;
  absl::Duration heartbeat_interval_ ABSL_GUARDED_BY(mu_) = absl::Seconds(5);
  absl::Time next_heartbeat_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // The current assignment; serial_ counts switches, running_serial_ is what the acting thread
  // executes (they differ while it switches).
  v1::Assignment assignment_ ABSL_GUARDED_BY(mu_);
  int64_t serial_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t running_serial_ ABSL_GUARDED_BY(mu_) = -1;
  // The runner the acting thread is running, if any: a stop or a switch cancels its replay
  // insert in flight.
  AssignmentRunner* running_runner_ ABSL_GUARDED_BY(mu_) = nullptr;
  v1::EvaluationRequest evaluation_ ABSL_GUARDED_BY(mu_);
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  // Heartbeat failures in a row (State::heartbeat_failures).
  int64_t heartbeat_failures_ ABSL_GUARDED_BY(mu_) = 0;
  // Heartbeat counters of the current registration and generation.
  v1::ActorStatus status_ ABSL_GUARDED_BY(mu_);
  int64_t acting_version_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t rate_env_steps_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time rate_time_ ABSL_GUARDED_BY(mu_);
};

}  // namespace prl::actor

#endif  // PRL_ACTOR_ACTOR_LOOP_H_
