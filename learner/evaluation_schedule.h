// The learning curve of a training run: when evaluation rounds are due (every
// evaluation.every_env_steps env steps), which episodes belong to the round in flight, when a
// round is complete or abandoned, the curve point each round (or each interval, with
// evaluation disabled) produces, and whether the stop condition's target return was reached.
// No I/O: the run asks Advance what is due and tells RoundStarted what the actors were asked.
//
// Thread-safe: OnEpisodes comes from actor-service threads, the rest from the run's loop.
#ifndef PRL_LEARNER_EVALUATION_SCHEDULE_H_
#define PRL_LEARNER_EVALUATION_SCHEDULE_H_

#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "learner/checkpoint.pb.h"
#include "proto/actor.pb.h"
#include "proto/experiment.pb.h"

namespace prl::learner {

class EvaluationSchedule {
 public:
  // Returns of this many latest training episodes make "latest_train_return".
  static constexpr int kRecentReturns = 10;

  // `spec` must be filled and validated (evaluation.every_env_steps > 0).
  EvaluationSchedule(const v1::ExperimentSpec& spec, absl::Duration round_timeout);

  // Finished episodes from the actors: training returns go to the curve; evaluation episodes
  // of the round in flight count towards it (those of other rounds are ignored).
  void OnEpisodes(const std::vector<v1::EpisodeSummary>& episodes) ABSL_LOCKS_EXCLUDED(mu_);

  // What is due now.
  struct Due {
    // A curve point to record (a finished or abandoned round, or an interval without
    // evaluation).
    std::optional<v1::CurvePoint> point;
    // A new round to ask the actors for (> 0), with the policy published first.
    int64_t start_round = 0;
  };
  // `expected_eval_episodes`: the episodes of the round in flight the actors can still deliver
  // (ActorRegistry::ExpectedEvaluationEpisodes; -1 unknown): a round completes when those have
  // arrived, without waiting for the share of an actor that died.
  Due Advance(int64_t env_steps, int64_t updates, double elapsed_seconds, absl::Time now,
              int expected_eval_episodes = -1) ABSL_LOCKS_EXCLUDED(mu_);
  // The actors were asked for `requested` episodes of round `round` (0: no actor is
  // assigned, the round is dropped and retried at the next point).
  void RoundStarted(int64_t round, int requested, absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);

  bool round_in_flight() const ABSL_LOCKS_EXCLUDED(mu_);
  // True when a curve point (and, with evaluation on, a round) is due at `env_steps`: the run
  // reaching its env-step budget records this last point before it ends.
  bool PointDue(int64_t env_steps) const ABSL_LOCKS_EXCLUDED(mu_);
  // The latest round started (0 before the first).
  int64_t round() const ABSL_LOCKS_EXCLUDED(mu_);
  bool target_return_reached() const ABSL_LOCKS_EXCLUDED(mu_);
  // Training episodes finished (restored with the checkpoint).
  int64_t episodes() const ABSL_LOCKS_EXCLUDED(mu_);
  // Mean of the latest training returns.
  double latest_train_return() const ABSL_LOCKS_EXCLUDED(mu_);

  // Progress fields: episodes, returns, success rate, evaluation rounds finished.
  void FillProgress(v1::Progress* progress) const ABSL_LOCKS_EXCLUDED(mu_);
  // Writes and restores the schedule's part of a training checkpoint (a round in flight is
  // not saved: it is asked again after a restart).
  void Save(TrainingCheckpoint* checkpoint) const ABSL_LOCKS_EXCLUDED(mu_);
  void Restore(const TrainingCheckpoint& checkpoint) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  double RecentMean() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const v1::ExperimentSpec spec_;
  const absl::Duration round_timeout_;

  mutable absl::Mutex mu_;
  int64_t episodes_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<double> recent_returns_ ABSL_GUARDED_BY(mu_);
  std::vector<double> curve_train_returns_ ABSL_GUARDED_BY(mu_);
  int64_t eval_round_ ABSL_GUARDED_BY(mu_) = 0;
  bool round_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  int round_requested_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time round_started_ ABSL_GUARDED_BY(mu_);
  int64_t round_env_steps_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<double> eval_returns_ ABSL_GUARDED_BY(mu_);
  int eval_successes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t next_curve_at_ ABSL_GUARDED_BY(mu_) = 0;
  double latest_eval_return_ ABSL_GUARDED_BY(mu_) = 0;
  double best_eval_return_ ABSL_GUARDED_BY(mu_) = 0;
  double latest_eval_success_rate_ ABSL_GUARDED_BY(mu_) = 0;
  bool target_return_reached_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace prl::learner

#endif  // PRL_LEARNER_EVALUATION_SCHEDULE_H_
