// Executes one assignment of an actor (proto/actor.proto, Assignment) on the acting thread:
// builds the batched envs from the env spec, then
//   MODE_TRAIN     acts (uniform warm-up actions, then the published policy), inserts each
//                  transition into replay with the table's signature, reports finished episodes,
//                  and runs evaluation rounds when the learner asks;
//   MODE_COLLECT   acts with the collector (random, the point_maze planner, or the published
//                  policy), inserts transitions and reports episodes;
//   MODE_EVALUATE  runs the evaluation rounds the learner asks for, inserting nothing;
// until its host says it is interrupted (stop, or a different assignment). Learner calls go
// through the host (RunnerHost), which owns the connection and the heartbeat counters, and the
// policy is kept current by a PolicyFetcher; replay inserts go through a ShardedReplayClient the
// runner owns, so a shard that is down is skipped.
//
// Env j is seeded env.seed + env_index_offset + j (evaluation envs 2^32 further, fresh for each
// round) and runs task (env_index_offset + j) mod tasks_size when the assignment has MCAT tasks.
// When no shard takes an insert (all down, or the rate limiter holds it back past the
// deadline), the runner retries with backoff and acting pauses meanwhile; the loop's heartbeats
// go on. Finished episodes wait for the learner (up to 10,000) and are retried, so a report may
// arrive twice when an answer was lost.
//
// Latent policies (OUTPUT_DECODED_LATENT: spirl) act through the assignment's prior
// (RunnerOptions.prior_connector: in-process or the prior server): every decision_horizon env
// steps (or when an episode ends) the policy — or, during warm-up, the prior p(z|s) — picks z
// per env; every env step the closed-loop decoder turns (state, z) into the action (clipped to
// [-1, 1]) — or, for an open-loop decoder (a CVAE of horizon k: eap), one Decode call at the
// decision's state gives its k actions, played back in order; each decision becomes one row
// (state at the decision, z, reward summed over its steps, discount, state after it, env steps).
// A horizon-1 CVAE (latent SAC) is a closed-loop decoder with decisions of one step. Flow latents
// (OUTPUT_FLOW_LATENT: parrot) act the same way with a horizon of 1 and the flow's Forward,
// a = f(z; s), warm-up z from N(0, I).
//
// MCAT (paper §3.4; OUTPUT_ACTION policies only): each training env keeps a ring of the last
// transitions of its current episode (TransitionHistory: max(policy.context_history K, the
// signature's history W) of them, empty at each episode start). A policy whose
// context_history() is K > 0 acts through ActInContext with each env's last K transitions and
// task index, batched over the envs as Act is, in training and in evaluation (from rings of the
// evaluation envs' own, deterministic unless stochastic_eval); warm-up actions stay uniform. An
// episode is reported transferred (EpisodeSummary.transferred) when the first action the policy
// chose for it was translated: the learner's transfer plan is fixed per policy version, so an
// episode follows the plan in force when the policy took it over (warm-up steps before that do not
// count). Rows get the history columns the signature names. With Assignment.episode_table
// (MODE_TRAIN), every training episode that ends (terminated or truncated) is inserted once more,
// whole, into that table with a "return" column: R_t = r_t + episode_discount · R_{t+1}, 0 after
// the last row. Evaluation episodes, episodes abandoned by a switch or a stop, and episodes longer
// than 10,000 rows (or 64 MiB of rows) are not. Those rows go through the same replay client as the
// main table's, each flush in requests of at most 16 MiB, so an episode normally lands on one
// shard, but not necessarily the one its main-table rows went to.
//
// Not thread-safe: created and run on the acting thread.
#ifndef PRL_ACTOR_ASSIGNMENT_RUNNER_H_
#define PRL_ACTOR_ASSIGNMENT_RUNNER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "actor/actor_metrics.h"
#include "actor/backoff.h"
#include "actor/collect/policy.h"
#include "actor/envs/batched_env.h"
#include "actor/envs/env_factory.h"
#include "actor/n_step.h"
#include "actor/policy_fetcher.h"
#include "actor/runner_host.h"
#include "actor/transition_buffer.h"
#include "actor/transition_history.h"
#include "models/acting_policy.h"
#include "models/prior_inference.h"
#include "proto/actor.pb.h"
#include "replay/replay_client.h"

namespace prl::actor {

struct RunnerOptions {
  // JoinRequest.num_envs: the most envs an assignment may ask for.
  int max_envs = 1;
  // Threads stepping a batch (the acting thread is one of them).
  int workers = 1;
  // TLS settings and the bearer token for replay; addresses come from the assignment.
  ChannelOptions channel;
  std::string auth_token;
  // Deadline of learner calls.
  absl::Duration rpc_timeout = absl::Seconds(5);
  // Deadline of a replay insert: how long a shard's rate limiter may hold it before the actor
  // retries (with backoff, and with only the rows the shard did not take). A switch or a stop
  // cancels an insert in flight (AssignmentRunner::CancelInserts).
  absl::Duration insert_timeout = absl::Seconds(2);
  // Longest GetPolicy long-poll while waiting for a policy version.
  absl::Duration policy_poll_timeout = absl::Seconds(5);
  // How often to ask for a newer policy.
  absl::Duration policy_refresh_interval = absl::Seconds(2);
  // Finished episodes are reported at least this often, or once report_max_episodes are pending.
  absl::Duration report_interval = absl::Seconds(1);
  int report_max_episodes = 100;
  // Transitions are inserted in requests of this many rows (at least one batch step's rows), or
  // after insert_flush_interval when fewer are pending.
  int insert_batch_rows = 64;
  absl::Duration insert_flush_interval = absl::Seconds(1);
  // Jittered exponential backoff after failed calls.
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  // Builds the policy from GetPolicy's answer.
  models::ActingPolicyFactory policy_factory;
  // Builds the prior a latent policy's assignment names (Assignment.prior, prior_address):
  // in-process or a client of the prior server. Unset: latent assignments are refused.
  std::function<absl::StatusOr<std::unique_ptr<models::PriorInference>>(const v1::Assignment&)>
      prior_connector;
};

class AssignmentRunner {
 public:
  // Checks the assignment and builds its envs, replay client and transition buffer. Errors:
  // INVALID_ARGUMENT naming the assignment field at fault (env spec, num_envs, signature,
  // policy dimensions or context_history, missing replay addresses or table, episode_table
  // outside MODE_TRAIN, episode_discount); UNIMPLEMENTED for the unsupported policies and
  // collectors named above and for an episode_table with a latent policy.
  static absl::StatusOr<std::unique_ptr<AssignmentRunner>> Create(const v1::Assignment& assignment,
                                                                  const RunnerOptions& options,
                                                                  RunnerHost* host,
                                                                  ActorMetrics* metrics);

  // Runs the assignment until the host is interrupted, then reports pending episodes once.
  void Run();

  // Ends a replay insert in flight (one a shard's rate limiter holds) and makes later ones fail
  // at once; its rows are dropped. For the host, from another thread, once it has interrupted
  // the runner. Thread-safe.
  void CancelInserts() { insert_canceller_.Cancel(); }

 private:
  struct Episode {
    double episode_return = 0;
    int32_t length = 0;
    // Transition::episode of its rows; 0 until its first row (NextEpisodeId).
    int64_t id = 0;
    // MCAT: whether the policy has acted in it yet, and whether its first action from the
    // policy was translated (EpisodeSummary.transferred).
    bool policy_acted = false;
    bool transferred = false;
  };

  AssignmentRunner(const v1::Assignment& assignment, const RunnerOptions& options, RunnerHost* host,
                   ActorMetrics* metrics);
  absl::Status Build();
  // One env factory per MCAT task (one without tasks); sets obs_dim_ and act_dim_.
  absl::Status BuildEnvFactories();
  // The collector (MODE_COLLECT) or the checks of the policy architecture.
  absl::Status BuildActionSource();
  // The transition buffer and replay client (MODE_TRAIN, MODE_COLLECT).
  absl::Status BuildReplay();
  // MCAT self-imitation: the episode buffers of Assignment.episode_table, when it is set.
  absl::Status BuildEpisodeTable();
  absl::Status BuildNStep();
  absl::Status CheckPolicyArchitecture() const;
  int64_t TaskIndex(int env) const;
  // MCAT: the index into eval_tasks of evaluation env `env` (when eval_tasks is set).
  int64_t EvalTaskIndex(int env) const;
  // Envs of the training tasks, or (`eval_tasks`) of Assignment.eval_tasks.
  absl::StatusOr<std::unique_ptr<BatchedEnv>> MakeEnvs(int n, uint64_t seed_base,
                                                       bool eval_tasks = false) const;

  // One batch step of training or collection: act, step, buffer, finish episodes.
  void TrainStep();
  // TrainStep for a latent policy: decisions every H steps, decoded actions every step.
  void LatentTrainStep();
  // Connects the prior of a latent assignment and checks it fits the policy and the envs.
  absl::Status BuildPrior();
  // MODE_EVALUATE: the assignment's translator (Assignment.translator), when set.
  absl::Status BuildTranslator();
  // Replaces the `n` actions in `actions` with H(obs, actions) through translator_, clipped to
  // [-1, 1]. Errors: the translator's (the actions are then untouched).
  absl::Status TranslateActions(absl::Span<const float> obs, int n, absl::Span<float> actions);
  // Latents for obs (n rows) into `z` (n × latent): the policy's, or the prior's during warm-up
  // (`warmup`); false when interrupted while waiting for a policy.
  bool ChooseLatents(absl::Span<const float> obs, int n, bool deterministic, bool warmup,
                     std::vector<float>* z);
  // Decoded actions for obs and latents (n rows): n × steps_per_decode_ actions, clipped to
  // [-1, 1].
  absl::Status DecodeActions(absl::Span<const float> obs, const std::vector<float>& z, int n,
                             std::vector<float>* actions);
  // The actions (n rows) of n envs running latents `z` from states `obs`, `step[j]` env steps into
  // their decisions. Closed-loop priors (and flows) decode every step at the current state; open
  // loop ones (CVAE, k actions per call) decode a decision's k actions once, at its first step
  // (step[j] == 0), into `plan` (n × k rows), and play them back.
  absl::Status LatentActions(absl::Span<const float> obs, const std::vector<float>& z,
                             const std::vector<int>& step, int n, std::vector<float>* plan,
                             std::vector<float>* actions);
  // Fills actions_ for obs (n rows); false when interrupted while waiting for a policy.
  bool ChooseActions(absl::Span<const float> obs, int n, bool deterministic);
  // Actions (n rows) of `policy` for obs, in context when its context_history() is K > 0: env
  // j's context is history's env j ending at obs row j (the ring grows to K if it is smaller).
  // Marks the episodes in `episodes` (n) the policy had not acted in yet as transferred or not.
  void ActWithPolicy(models::ActingPolicy& policy, absl::Span<const float> obs, int n,
                     bool deterministic, TransitionHistory* history, absl::Span<float> actions,
                     std::vector<Episode>* episodes);
  // Fills t's history columns from history_'s env after its transition was pushed, ending at
  // t.next_observation (a no-op when the signature names none).
  void FillHistory(int env, Transition* t);
  // Inserts every row of `rows` (in requests of at most 16 MiB) and drops them; false when the
  // runner must stop (interrupted while backing off, or inserts were cancelled).
  bool InsertRows(TransitionBuffer* rows);
  void FinishEpisode(int env, const BatchedEnv::Output& out, bool is_eval, int64_t eval_round,
                     int64_t env_steps, int64_t version, Episode* episode);
  void RunEvaluationRound(const v1::EvaluationRequest& request);
  void MaybeRunEvaluation();
  void FlushInserts(bool force);
  void FlushReports(bool force, bool final_attempt = false);
  void RunTraining();
  void RunEvaluationOnly();
  void SetActingVersion(int64_t version);
  void AddActionNoise();
  // A fresh episode id: a bijective mix of a per-runner random base plus a counter, so ids never
  // repeat within the runner and collide across actors and assignments only by chance (2^-63
  // per pair). Positive.
  int64_t NextEpisodeId();

  const v1::Assignment assignment_;
  const RunnerOptions options_;
  RunnerHost* const host_;
  ActorMetrics* const metrics_;

  // one factory per task (one when the assignment has no MCAT tasks).
  std::vector<std::unique_ptr<EnvFactory>> factories_;
  // MCAT: one factory per Assignment.eval_tasks entry (held-out tasks of evaluation rounds).
  std::vector<std::unique_ptr<EnvFactory>> eval_factories_;
  // True while an evaluation round runs the held-out tasks: no transfer plan applies.
  bool acting_eval_tasks_ = false;
  std::unique_ptr<BatchedEnv> envs_;
  BatchedEnv::Output out_;
  std::vector<float> obs_;
  std::vector<float> actions_;
  std::vector<Episode> episodes_;
  int obs_dim_ = 0;
  int act_dim_ = 0;

  // Latent policies: the prior, the latent size, the decision horizon and, per training env, the
  // decision under way (its z, the state it started in, reward so far, steps taken).
  std::unique_ptr<models::PriorInference> prior_;
  // MODE_EVALUATE through an action translator: a = H(s, π(s)).
  std::unique_ptr<models::PriorInference> translator_;
  bool latent_ = false;
  bool flow_ = false;  // OUTPUT_FLOW_LATENT: a = f(z; s) every step (horizon 1)
  int latent_dim_ = 0;
  int horizon_ = 1;
  int steps_per_decode_ = 1;  // k of an open-loop decoder, 1 otherwise
  std::vector<float> z_, decision_obs_, all_z_, plan_;
  std::vector<float> decision_reward_;
  std::vector<int> decision_steps_;
  Backoff decode_backoff_;

  // MCAT: the training envs' recent transitions (always there for OUTPUT_ACTION training; empty
  // rings unless the policy or the signature reads them), scratch for contexts and row
  // histories, and the self-imitation episodes when Assignment.episode_table is set.
  std::optional<TransitionHistory> history_;
  int history_window_ = 0;  // W of the signature's history columns
  std::vector<float> context_obs_, context_actions_, context_mask_;
  std::vector<int> context_tasks_;
  std::vector<uint8_t> transferred_;
  std::vector<float> row_history_obs_, row_history_actions_, row_history_mask_;
  std::optional<EpisodeBuffer> imitation_;
  int64_t long_episodes_ = 0;  // episodes too long to keep for the episode table
  // Assignment.n_step > 1: the training envs' rows still waiting for their n steps.
  std::optional<NStepWindows> n_step_;

  std::unique_ptr<replay::ShardedReplayClient> replay_;
  replay::InsertCanceller insert_canceller_;
  std::optional<TransitionBuffer> rows_;
  // MODE_COLLECT with success_only: each env's episode, inserted when it succeeds.
  std::vector<TransitionBuffer> episode_rows_;
  absl::Time next_insert_flush_;

  std::vector<v1::EpisodeSummary> pending_;
  // Number (ReportEpisodesRequest.first_sequence) of pending_[0]; the host numbers episodes, and
  // consecutively while this runner runs (one acting thread).
  int64_t pending_first_sequence_ = 0;
  absl::Time next_report_;
  Backoff report_backoff_;

  std::unique_ptr<PolicyFetcher> policies_;
  // a collector acting instead of the policy (MODE_COLLECT, random or scripted).
  std::unique_ptr<Policy> collector_;
  std::mt19937_64 rng_;

  // episode ids (NextEpisodeId): from std::random_device, not rng_, whose seed a replacement
  // actor in the same slot would share.
  uint64_t episode_id_base_ = 0;
  uint64_t episodes_started_ = 0;

  int64_t steps_ = 0;             // env steps taken by the training envs under this runner
  int64_t dropped_episodes_ = 0;  // unreported episodes dropped when too many were pending
  int64_t last_eval_round_ = 0;
  int64_t acting_version_ = -1;
};

}  // namespace prl::actor

#endif  // PRL_ACTOR_ASSIGNMENT_RUNNER_H_
