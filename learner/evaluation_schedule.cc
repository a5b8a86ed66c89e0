#include "learner/evaluation_schedule.h"

#include <algorithm>
#include <numeric>

#include "common/logging.h"

namespace prl::learner {
namespace {

template <typename Container>
double Mean(const Container& v) {
  return v.empty() ? 0.0 : std::accumulate(v.begin(), v.end(), 0.0) / v.size();
}

}  // namespace

EvaluationSchedule::EvaluationSchedule(const v1::ExperimentSpec& spec, absl::Duration round_timeout)
    : spec_(spec), round_timeout_(round_timeout) {
  absl::MutexLock lock(&mu_);
  next_curve_at_ = spec_.evaluation().every_env_steps();
}

void EvaluationSchedule::OnEpisodes(const std::vector<v1::EpisodeSummary>& episodes) {
  absl::MutexLock lock(&mu_);
  for (const v1::EpisodeSummary& e : episodes) {
    if (e.is_eval()) {
      if (round_in_flight_ && e.eval_round() == eval_round_) {
        eval_returns_.push_back(e.episode_return());
        eval_successes_ += e.success();
      }
      continue;
    }
    episodes_++;
    recent_returns_.push_back(e.episode_return());
    if (recent_returns_.size() > kRecentReturns) recent_returns_.pop_front();
    curve_train_returns_.push_back(e.episode_return());
  }
}

double EvaluationSchedule::RecentMean() const { return Mean(recent_returns_); }

EvaluationSchedule::Due EvaluationSchedule::Advance(int64_t env_steps, int64_t updates,
                                                    double elapsed_seconds, absl::Time now,
                                                    int expected_eval_episodes) {
  const v1::EvaluationSpec& evaluation = spec_.evaluation();
  const v1::StopCondition& stop = spec_.stop();
  Due due;
  absl::MutexLock lock(&mu_);
  if (round_in_flight_) {
    const int wanted = expected_eval_episodes >= 0
                           ? std::min(round_requested_, expected_eval_episodes)
                           : round_requested_;
    const bool complete = static_cast<int>(eval_returns_.size()) >= wanted;
    const bool expired = now - round_started_ > round_timeout_;
    if (!complete && !expired) return due;
    round_in_flight_ = false;
    if (complete && wanted < round_requested_) {
      PRL_LOG(WARNING) << "evaluation round " << eval_round_ << " ends with "
                       << eval_returns_.size() << " of " << round_requested_
                       << " episodes: the actors that had the rest are gone";
    }
    if (expired && !complete) {
      PRL_LOG(WARNING) << "evaluation round " << eval_round_ << " timed out with "
                       << eval_returns_.size() << " of " << round_requested_ << " episodes";
    }
    due.point.emplace();
    due.point->set_env_steps(round_env_steps_);
    if (!eval_returns_.empty()) {
      latest_eval_return_ = Mean(eval_returns_);
      latest_eval_success_rate_ = static_cast<double>(eval_successes_) / eval_returns_.size();
      best_eval_return_ =
          eval_round_ == 1 ? latest_eval_return_ : std::max(best_eval_return_, latest_eval_return_);
      due.point->set_eval_return(latest_eval_return_);
      due.point->set_eval_episodes(static_cast<int>(eval_returns_.size()));
      due.point->set_eval_success_rate(latest_eval_success_rate_);
      if (stop.has_target_return() && latest_eval_return_ >= stop.target_return()) {
        target_return_reached_ = true;
      }
    }
  } else if (env_steps >= next_curve_at_) {
    next_curve_at_ = (env_steps / evaluation.every_env_steps() + 1) * evaluation.every_env_steps();
    if (evaluation.disabled()) {
      due.point.emplace();
      due.point->set_env_steps(env_steps);
      if (stop.has_target_return() && recent_returns_.size() >= kRecentReturns &&
          RecentMean() >= stop.target_return()) {
        target_return_reached_ = true;
      }
    } else {
      due.start_round = ++eval_round_;
      round_env_steps_ = env_steps;
      // in flight until RoundStarted says how many episodes were asked for
      round_in_flight_ = true;
      round_requested_ = 0;
      round_started_ = now;
      eval_returns_.clear();
      eval_successes_ = 0;
    }
  }
  if (due.point) {
    due.point->set_elapsed_seconds(elapsed_seconds);
    due.point->set_updates(updates);
    due.point->set_train_return(Mean(curve_train_returns_));
    due.point->set_train_episodes(static_cast<int>(curve_train_returns_.size()));
    curve_train_returns_.clear();
  }
  return due;
}

void EvaluationSchedule::RoundStarted(int64_t round, int requested, absl::Time now) {
  absl::MutexLock lock(&mu_);
  if (round != eval_round_) return;
  round_requested_ = requested;
  round_started_ = now;
  round_in_flight_ = requested > 0;
  if (requested == 0) eval_round_--;  // no actor to run it; try again at the next point
}

bool EvaluationSchedule::PointDue(int64_t env_steps) const {
  absl::MutexLock lock(&mu_);
  return env_steps >= next_curve_at_;
}

bool EvaluationSchedule::round_in_flight() const {
  absl::MutexLock lock(&mu_);
  return round_in_flight_;
}

int64_t EvaluationSchedule::round() const {
  absl::MutexLock lock(&mu_);
  return eval_round_;
}

bool EvaluationSchedule::target_return_reached() const {
  absl::MutexLock lock(&mu_);
  return target_return_reached_;
}

int64_t EvaluationSchedule::episodes() const {
  absl::MutexLock lock(&mu_);
  return episodes_;
}

double EvaluationSchedule::latest_train_return() const {
  absl::MutexLock lock(&mu_);
  return RecentMean();
}

void EvaluationSchedule::FillProgress(v1::Progress* p) const {
  absl::MutexLock lock(&mu_);
  p->set_episodes(episodes_);
  p->set_latest_train_return(RecentMean());
  p->set_latest_eval_return(latest_eval_return_);
  p->set_best_eval_return(best_eval_return_);
  p->set_latest_eval_success_rate(latest_eval_success_rate_);
  p->set_eval_rounds(eval_round_ - (round_in_flight_ ? 1 : 0));
}

void EvaluationSchedule::Save(TrainingCheckpoint* checkpoint) const {
  absl::MutexLock lock(&mu_);
  checkpoint->set_episodes(episodes_);
  checkpoint->set_eval_rounds(eval_round_ - (round_in_flight_ ? 1 : 0));
  checkpoint->set_next_curve_at(next_curve_at_);
  checkpoint->set_latest_eval_return(latest_eval_return_);
  checkpoint->set_best_eval_return(best_eval_return_);
  checkpoint->set_latest_eval_success_rate(latest_eval_success_rate_);
  checkpoint->clear_recent_train_returns();
  for (double r : recent_returns_) checkpoint->add_recent_train_returns(r);
}

void EvaluationSchedule::Restore(const TrainingCheckpoint& checkpoint) {
  absl::MutexLock lock(&mu_);
  episodes_ = checkpoint.episodes();
  eval_round_ = checkpoint.eval_rounds();
  round_in_flight_ = false;
  next_curve_at_ = checkpoint.next_curve_at();
  latest_eval_return_ = checkpoint.latest_eval_return();
  best_eval_return_ = checkpoint.best_eval_return();
  latest_eval_success_rate_ = checkpoint.latest_eval_success_rate();
  recent_returns_.assign(checkpoint.recent_train_returns().begin(),
                         checkpoint.recent_train_returns().end());
}

}  // namespace prl::learner
