#include "learner/actor_registry.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/field_error.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace prl::learner {

ActorRegistry::ActorRegistry(ActorRegistryOptions options)
    : options_(std::move(options)), incarnation_(absl::ToUnixMicros(options_.clock())) {}

void ActorRegistry::AssignIdle(Actor& actor) {
  actor.slot = -1;
  actor.generation++;
  actor.assignment.Clear();
  actor.assignment.set_generation(actor.generation);
  actor.reported_env_steps = 0;
  actor.counted_at = options_.clock();
  actor.next_episode = 1;
  actor.evaluation.Clear();
}

void ActorRegistry::AssignSlot(Actor& actor, int slot) {
  actor.slot = slot;
  actor.generation++;
  actor.assignment = job_.assignment;
  actor.assignment.set_generation(actor.generation);
  actor.assignment.set_experiment_id(job_.experiment_id);
  actor.assignment.set_env_index_offset(int64_t{slot} * job_.envs_per_actor);
  actor.assignment.set_num_envs(std::min(job_.envs_per_actor, actor.num_envs));
  actor.reported_env_steps = 0;
  actor.counted_at = options_.clock();
  actor.next_episode = 1;
  actor.evaluation.Clear();
  slots_[slot] = actor.id;
  // the rest of the share of an actor that died in the middle of an evaluation round
  if (eval_round_ > 0 && slot < static_cast<int>(eval_share_.size())) {
    const int outstanding = eval_share_[slot] - eval_done_[slot];
    if (outstanding > 0) {
      actor.evaluation.set_round(eval_round_);
      actor.evaluation.set_episodes(outstanding);
      actor.evaluation.set_min_policy_version(eval_min_version_);
      PRL_LOG(INFO) << "actor " << actor.name << " takes over " << outstanding
                    << " episodes of evaluation round " << eval_round_ << " in slot " << slot;
    }
  }
  PRL_LOG(INFO) << "actor " << actor.name << " (" << actor.id << ") assigned to "
                << job_.experiment_id << " slot " << slot << ", generation " << actor.generation;
}

void ActorRegistry::FillSlots() {
  if (!has_job_) return;
  for (size_t slot = 0; slot < slots_.size(); ++slot) {
    if (!slots_[slot].empty()) continue;
    for (auto& [id, actor] : actors_) {
      if (actor.slot < 0) {
        AssignSlot(actor, static_cast<int>(slot));
        break;
      }
    }
  }
}

void ActorRegistry::RemoveLocked(const std::string& id) {
  auto it = actors_.find(id);
  if (it == actors_.end()) return;
  if (it->second.slot >= 0) slots_[it->second.slot].clear();
  actors_.erase(it);
  FillSlots();
}

void ActorRegistry::ExpireLocked() {
  const absl::Time cutoff =
      options_.clock() - options_.heartbeat_interval * options_.missed_heartbeats;
  std::vector<std::string> expired;
  for (const auto& [id, actor] : actors_) {
    if (actor.last_seen < cutoff) expired.push_back(id);
  }
  for (const std::string& id : expired) {
    PRL_LOG(WARNING) << "actor " << actors_[id].name << " (" << id
                     << ") missed its heartbeats; dropped";
    RemoveLocked(id);
  }
}

void ActorRegistry::Expire() {
  absl::MutexLock lock(&mu_);
  ExpireLocked();
}

v1::JoinResponse ActorRegistry::Join(const v1::JoinRequest& request) {
  absl::MutexLock lock(&mu_);
  ExpireLocked();
  // a restarted actor replaces its old registration
  for (auto it = actors_.begin(); it != actors_.end(); ++it) {
    if (it->second.name == request.actor_name()) {
      RemoveLocked(it->first);
      break;
    }
  }
  Actor actor;
  actor.id = absl::StrFormat("actor-%x-%d", incarnation_, next_id_++);
  actor.generation = incarnation_;
  actor.name = request.actor_name();
  actor.num_envs = std::max(1, request.num_envs());
  actor.last_seen = options_.clock();
  const std::string id = actor.id;
  Actor& stored = actors_[id] = std::move(actor);
  AssignIdle(stored);
  FillSlots();
  PRL_LOG(INFO) << "actor " << stored.name << " joined as " << id << " with " << stored.num_envs
                << " envs";
  v1::JoinResponse response;
  response.set_actor_id(id);
  *response.mutable_assignment() = stored.assignment;
  response.mutable_heartbeat_interval()->set_seconds(
      absl::ToInt64Seconds(options_.heartbeat_interval));
  response.mutable_heartbeat_interval()->set_nanos(
      static_cast<int32_t>(absl::ToInt64Nanoseconds(options_.heartbeat_interval) % 1000000000));
  return response;
}

namespace {

// Env steps an actor can plausibly take per second since its last counted report (a fast
// batched env does some 10^5): a larger jump is a broken or hostile client, not progress.
constexpr int64_t kMaxEnvStepsPerSecond = 1000000;
// Episode returns beyond this are not rewards an env gives; the mean of a few would overflow.
constexpr double kMaxAbsEpisodeReturn = 1e15;

absl::Status CheckCount(absl::string_view field, int64_t value) {
  if (value < 0) return FieldError(field, value, ">= 0");
  return absl::OkStatus();
}

absl::Status CheckStatus(const v1::ActorStatus& s) {
  PRL_RETURN_IF_ERROR(CheckCount("status.env_steps", s.env_steps()));
  PRL_RETURN_IF_ERROR(CheckCount("status.episodes", s.episodes()));
  PRL_RETURN_IF_ERROR(CheckCount("status.policy_version", s.policy_version()));
  PRL_RETURN_IF_ERROR(CheckCount("status.items_inserted", s.items_inserted()));
  if (!std::isfinite(s.env_steps_per_second()) || s.env_steps_per_second() < 0) {
    return FieldError("status.env_steps_per_second", s.env_steps_per_second(), "finite and >= 0");
  }
  return absl::OkStatus();
}

absl::Status CheckEpisodes(const v1::ReportEpisodesRequest& request) {
  PRL_RETURN_IF_ERROR(CheckCount("env_steps", request.env_steps()));
  for (int i = 0; i < request.episodes_size(); ++i) {
    const v1::EpisodeSummary& e = request.episodes(i);
    const std::string at = absl::StrCat("episodes[", i, "].");
    if (!std::isfinite(e.episode_return()) || std::abs(e.episode_return()) > kMaxAbsEpisodeReturn) {
      return FieldError(at + "episode_return", e.episode_return(),
                        absl::StrCat("finite and within +-", kMaxAbsEpisodeReturn));
    }
    PRL_RETURN_IF_ERROR(CheckCount(at + "length", e.length()));
    PRL_RETURN_IF_ERROR(CheckCount(at + "env_steps", e.env_steps()));
    PRL_RETURN_IF_ERROR(CheckCount(at + "eval_round", e.eval_round()));
    PRL_RETURN_IF_ERROR(CheckCount(at + "policy_version", e.policy_version()));
  }
  return absl::OkStatus();
}

// INVALID_ARGUMENT naming `field` when the cumulative count jumps further past the actor's
// last counted report (`last`, `elapsed` ago) than kMaxEnvStepsPerSecond allows (a second at
// least).
absl::Status CheckJump(int64_t last, absl::Duration elapsed, int64_t cumulative,
                       absl::string_view field) {
  const double seconds = std::max(1.0, absl::ToDoubleSeconds(elapsed));
  const double allowed = seconds * static_cast<double>(kMaxEnvStepsPerSecond);
  if (static_cast<double>(cumulative) - static_cast<double>(last) > allowed) {
    return FieldError(field, cumulative,
                      absl::StrCat("at most ", kMaxEnvStepsPerSecond,
                                   " env steps per second more than the last report (", last, ", ",
                                   absl::FormatDuration(elapsed), " ago)"));
  }
  return absl::OkStatus();
}

}  // namespace

int64_t ActorRegistry::TakeEnvSteps(Actor& actor, int64_t cumulative) {
  const int64_t delta = std::max<int64_t>(0, cumulative - actor.reported_env_steps);
  actor.reported_env_steps = std::max(actor.reported_env_steps, cumulative);
  if (delta > 0) actor.counted_at = options_.clock();
  return delta;
}

absl::StatusOr<v1::HeartbeatResponse> ActorRegistry::Heartbeat(
    const v1::HeartbeatRequest& request) {
  PRL_RETURN_IF_ERROR(CheckStatus(request.status()));
  int64_t delta = 0;
  ActorEventSink* sink = nullptr;
  v1::HeartbeatResponse response;
  {
    absl::MutexLock lock(&mu_);
    ExpireLocked();
    auto it = actors_.find(request.actor_id());
    if (it == actors_.end()) {
      return absl::NotFoundError(
          absl::StrCat("actor_id: ", request.actor_id(), " is not joined; join again"));
    }
    Actor& actor = it->second;
    actor.last_seen = options_.clock();
    response.set_generation(actor.generation);
    if (request.generation() != actor.generation) {
      *response.mutable_assignment() = actor.assignment;
    } else if (actor.slot >= 0 && has_job_) {
      PRL_RETURN_IF_ERROR(CheckJump(actor.reported_env_steps, options_.clock() - actor.counted_at,
                                    request.status().env_steps(), "status.env_steps"));
      delta = TakeEnvSteps(actor, request.status().env_steps());
      if (delta > 0) {
        sink = job_.sink;
        ++sink_calls_;
      }
    }
    *response.mutable_evaluation() = actor.evaluation;
  }
  if (sink != nullptr) {
    sink->OnEnvSteps(delta);
    absl::MutexLock lock(&mu_);
    --sink_calls_;
  }
  return response;
}

absl::StatusOr<v1::ReportEpisodesResponse> ActorRegistry::ReportEpisodes(
    const v1::ReportEpisodesRequest& request) {
  if (request.first_sequence() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("first_sequence: ", request.first_sequence(),
                                                   " is negative; allowed: 0 (not numbered) "
                                                   "or the number of episodes[0], from 1"));
  }
  PRL_RETURN_IF_ERROR(CheckEpisodes(request));
  int64_t delta = 0;
  int skip = 0;
  ActorEventSink* sink = nullptr;
  v1::ReportEpisodesResponse response;
  {
    absl::MutexLock lock(&mu_);
    auto it = actors_.find(request.actor_id());
    if (it == actors_.end()) {
      return absl::NotFoundError(
          absl::StrCat("actor_id: ", request.actor_id(), " is not joined; join again"));
    }
    Actor& actor = it->second;
    actor.last_seen = options_.clock();
    response.set_generation(actor.generation);
    const bool current = request.generation() == actor.generation && actor.slot >= 0 && has_job_ &&
                         request.experiment_id() == job_.experiment_id;
    if (!current) return response;  // an old generation's report: acknowledged, ignored
    PRL_RETURN_IF_ERROR(CheckJump(actor.reported_env_steps, options_.clock() - actor.counted_at,
                                  request.env_steps(), "env_steps"));
    delta = TakeEnvSteps(actor, request.env_steps());
    sink = job_.sink;
    ++sink_calls_;
    const int64_t n = request.episodes_size();
    if (request.first_sequence() > 0) {
      // episodes numbered below next_episode were recorded by an earlier copy of this report.
      skip = static_cast<int>(
          std::clamp<int64_t>(actor.next_episode - request.first_sequence(), 0, n));
      actor.next_episode = std::max(actor.next_episode, request.first_sequence() + n);
    }
    response.set_num_accepted(static_cast<int32_t>(n - skip));
    *response.mutable_evaluation() = actor.evaluation;
    if (actor.slot >= 0 && actor.slot < static_cast<int>(eval_done_.size())) {
      for (int64_t i = skip; i < n; ++i) {
        const v1::EpisodeSummary& e = request.episodes(static_cast<int>(i));
        if (e.is_eval() && e.eval_round() == eval_round_) eval_done_[actor.slot]++;
      }
    }
  }
  if (delta > 0) sink->OnEnvSteps(delta);
  if (request.episodes_size() > skip) {
    sink->OnEpisodes({request.episodes().begin() + skip, request.episodes().end()});
  }
  absl::MutexLock lock(&mu_);
  --sink_calls_;
  return response;
}

absl::Status ActorRegistry::Leave(const std::string& actor_id) {
  absl::MutexLock lock(&mu_);
  if (actors_.find(actor_id) == actors_.end()) {
    return absl::NotFoundError(absl::StrCat("actor_id: ", actor_id, " is not joined"));
  }
  PRL_LOG(INFO) << "actor " << actors_[actor_id].name << " (" << actor_id << ") left";
  RemoveLocked(actor_id);
  return absl::OkStatus();
}

void ActorRegistry::StartJob(const ActorJob& job) {
  absl::MutexLock lock(&mu_);
  for (auto& [id, actor] : actors_) {
    if (actor.slot >= 0) AssignIdle(actor);
  }
  job_ = job;
  has_job_ = true;
  slots_.assign(std::max(1, job.num_actors), "");
  eval_round_ = 0;
  eval_share_.assign(slots_.size(), 0);
  eval_done_.assign(slots_.size(), 0);
  FillSlots();
}

void ActorRegistry::EndJob() {
  absl::MutexLock lock(&mu_);
  if (!has_job_) return;
  has_job_ = false;
  for (auto& [id, actor] : actors_) {
    if (actor.slot >= 0) AssignIdle(actor);
  }
  slots_.clear();
  eval_round_ = 0;
  eval_share_.clear();
  eval_done_.clear();
  const auto idle = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return sink_calls_ == 0; };
  mu_.Await(absl::Condition(&idle));
}

int ActorRegistry::RequestEvaluation(int64_t round, int episodes, int64_t min_policy_version) {
  absl::MutexLock lock(&mu_);
  ExpireLocked();
  std::vector<Actor*> assigned;
  for (auto& [id, actor] : actors_) {
    if (actor.slot >= 0) assigned.push_back(&actor);
  }
  if (assigned.empty()) return 0;
  eval_round_ = round;
  eval_min_version_ = min_policy_version;
  eval_share_.assign(slots_.size(), 0);
  eval_done_.assign(slots_.size(), 0);
  const int n = static_cast<int>(assigned.size());
  int requested = 0;
  for (int i = 0; i < n; ++i) {
    const int share = episodes / n + (i < episodes % n ? 1 : 0);
    v1::EvaluationRequest& e = assigned[i]->evaluation;
    e.set_round(round);
    e.set_episodes(share);
    e.set_min_policy_version(min_policy_version);
    eval_share_[assigned[i]->slot] = share;
    requested += share;
  }
  return requested;
}

int ActorRegistry::ExpectedEvaluationEpisodes(int64_t round) {
  absl::MutexLock lock(&mu_);
  ExpireLocked();
  if (round != eval_round_ || round == 0) return -1;
  int expected = 0;
  for (size_t slot = 0; slot < slots_.size() && slot < eval_share_.size(); ++slot) {
    expected +=
        slots_[slot].empty() ? eval_done_[slot] : std::max(eval_share_[slot], eval_done_[slot]);
  }
  return expected;
}

int ActorRegistry::assigned_actors() const {
  absl::MutexLock lock(&mu_);
  int n = 0;
  for (const auto& [id, actor] : actors_) n += actor.slot >= 0;
  return n;
}

int ActorRegistry::joined_actors() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(actors_.size());
}

}  // namespace prl::learner
