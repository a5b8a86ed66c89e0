#include "learner/evaluate_run.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "env_desc/env_spec.h"

namespace prl::learner {
namespace {

void SetNow(google::protobuf::Timestamp* ts) {
  const absl::Time now = absl::Now();
  ts->set_seconds(absl::ToUnixSeconds(now));
  ts->set_nanos(static_cast<int32_t>(absl::ToUnixNanos(now) % 1000000000));
}

class EvaluateRun final : public ExperimentRun, public ActorEventSink {
 public:
  EvaluateRun(const v1::Experiment& experiment, RunContext* context, EvaluateRunOptions options)
      : experiment_(experiment),
        spec_(experiment.spec()),
        evaluate_(experiment.spec().evaluate()),
        context_(context),
        options_(std::move(options)) {
    if (options_.metrics != nullptr) metrics_ = options_.metrics->ForExperiment(experiment.id());
  }

  Result Run() override;

  void RequestStop(const std::string& reason, bool shutdown) override {
    stop_.Request(reason, shutdown);
  }

  void OnEnvSteps(int64_t) override {}  // evaluation steps are not reported as env steps
  void OnEpisodes(const std::vector<v1::EpisodeSummary>& episodes) override {
    absl::MutexLock lock(&mu_);
    for (const v1::EpisodeSummary& e : episodes) {
      // episodes of the rounds this run asked for, up to the number wanted
      if (!e.is_eval() || e.eval_round() < 1 || e.eval_round() > round_) continue;
      ++round_episodes_[e.eval_round()];
      if (static_cast<int64_t>(done_.size()) < evaluate_.episodes()) done_.push_back(e);
    }
  }

 private:
  // Publishes the policy under this experiment and fills the assignment.
  absl::Status Setup();
  // Resolves EvaluateSpec.translator into the assignment.
  absl::Status SetUpTranslator(bool flat_policy, const env_desc::DomainInfo& domain);
  // Starts the next round for the episodes still missing when the current one cannot deliver
  // them (an actor left) or delivers nothing for round_timeout; returns a message while no
  // actor is there to ask. DEADLINE_EXCEEDED after max_stalled_rounds rounds without an
  // episode.
  absl::StatusOr<std::string> MaybeStartRound() ABSL_LOCKS_EXCLUDED(mu_);
  int64_t done() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return static_cast<int64_t>(done_.size());
  }
  v1::EvaluationResult Summarize() ABSL_LOCKS_EXCLUDED(mu_);
  void ReportProgress(const std::string& waiting) ABSL_LOCKS_EXCLUDED(mu_);

  const v1::Experiment experiment_;
  const v1::ExperimentSpec spec_;
  const v1::EvaluateSpec evaluate_;
  RunContext* const context_;
  const EvaluateRunOptions options_;
  std::optional<RunMetrics> metrics_;

  std::shared_ptr<const v1::Policy> policy_;  // as loaded (its own experiment and version)
  v1::PriorRef translator_;                   // resolved; empty without one
  int64_t published_version_ = 0;
  ActorJob job_;
  // when an episode last arrived (or the round started), and rounds since that gave none
  int64_t done_seen_ = 0;
  absl::Time last_progress_ = absl::Now();
  int stalled_rounds_ = 0;

  StopRequest stop_;
  absl::Mutex mu_;
  int64_t round_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<int64_t, int64_t> round_episodes_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::EpisodeSummary> done_ ABSL_GUARDED_BY(mu_);
};

absl::Status EvaluateRun::Setup() {
  const env_desc::DomainInfo* domain = env_desc::FindDomain(spec_.env().domain());
  if (domain == nullptr) return absl::InvalidArgumentError("env.domain: not set");
  PRL_ASSIGN_OR_RETURN(CollectPolicy loaded, options_.policy_loader(evaluate_.policy()));
  const v1::PolicyArchitecture& architecture = loaded.policy->architecture();
  const bool flat = architecture.output() == v1::PolicyArchitecture::OUTPUT_ACTION;
  if (architecture.obs_dim() != domain->obs_dim ||
      (flat && architecture.action_dim() != domain->act_dim)) {
    return absl::InvalidArgumentError(
        absl::StrCat("evaluate.policy: the policy takes ", architecture.obs_dim(),
                     "-dimensional observations and gives ", architecture.action_dim(),
                     "-dimensional outputs; env ", v1::EnvSpec::Domain_Name(spec_.env().domain()),
                     " has ", domain->obs_dim, "-dimensional observations and ", domain->act_dim,
                     "-dimensional actions"));
  }
  policy_ = loaded.policy;

  job_.experiment_id = experiment_.id();
  job_.num_actors = std::max(1, spec_.resources().num_actors());
  job_.envs_per_actor = std::max(1, spec_.resources().envs_per_actor());
  job_.sink = this;
  // the acting part the TRAIN run gave (prior, prior server, decision horizon), in MODE_EVALUATE
  // on this spec's env; MCAT's task variants are left out: the env's dynamics are the task
  v1::Assignment& a = job_.assignment;
  a = loaded.acting;
  a.clear_tasks();
  a.clear_eval_tasks();
  a.clear_replay_addresses();
  a.clear_table();
  a.clear_signature();
  a.clear_episode_table();
  a.clear_collect();
  a.set_warmup_env_steps(0);
  a.set_mode(v1::Assignment::MODE_EVALUATE);
  *a.mutable_env() = spec_.env();
  *a.mutable_policy() = architecture;
  if (a.decision_horizon() < 1) a.set_decision_horizon(1);
  a.set_stochastic_eval(evaluate_.stochastic());
  a.clear_translator();
  if (evaluate_.has_translator()) PRL_RETURN_IF_ERROR(SetUpTranslator(flat, *domain));
  // everything checked: the same weights, published under this experiment for the actors'
  // GetPolicy
  auto policy = std::make_shared<v1::Policy>(*loaded.policy);
  policy->set_experiment_id(experiment_.id());
  published_version_ = options_.policies->version(experiment_.id()) + 1;
  policy->set_version(published_version_);
  SetNow(policy->mutable_create_time());
  options_.policies->Expect(experiment_.id());
  options_.policies->Publish(policy);
  return absl::OkStatus();
}

absl::Status EvaluateRun::SetUpTranslator(bool flat_policy, const env_desc::DomainInfo& domain) {
  const v1::PriorRef& ref = evaluate_.translator();
  if (!flat_policy) {
    return absl::InvalidArgumentError(
        "evaluate.translator: the policy acts through a prior; only flat policies (sac, td3) act "
        "through a translator");
  }
  if (options_.models == nullptr || options_.prior_address.empty()) {
    return absl::UnimplementedError(
        "evaluate.translator: this learner has no model store or prior server to serve it");
  }
  absl::StatusOr<models::ModelArtifact> model = options_.models->Read(ref.name(), ref.version());
  if (!model.ok()) {
    return absl::Status(model.status().code(),
                        absl::StrCat("evaluate.translator: ", model.status().message()));
  }
  const v1::ModelInfo& info = model->info;
  if (info.kind() != v1::PRIOR_KIND_ACTION_TRANSLATOR || info.context_dim() != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "evaluate.translator: ", info.name(), " v", info.version(), " is a ",
        v1::PriorKind_Name(info.kind()), " with context_dim ", info.context_dim(),
        "; it must be a PRIOR_KIND_ACTION_TRANSLATOR between two tasks (context_dim 0, from a "
        "TRAIN_PRIOR experiment)"));
  }
  if (info.obs_dim() != domain.obs_dim || info.action_dim() != domain.act_dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("evaluate.translator: ", info.name(), " v", info.version(), " takes ",
                     info.obs_dim(), "-dimensional states and ", info.action_dim(),
                     "-dimensional actions; env ", v1::EnvSpec::Domain_Name(spec_.env().domain()),
                     " has ", domain.obs_dim, " and ", domain.act_dim));
  }
  translator_.set_name(info.name());
  translator_.set_version(info.version());
  *job_.assignment.mutable_translator() = translator_;
  job_.assignment.set_prior_address(options_.prior_address);
  return absl::OkStatus();
}

absl::StatusOr<std::string> EvaluateRun::MaybeStartRound() {
  int64_t round, delivered_this_round, done_now;
  {
    absl::MutexLock lock(&mu_);
    round = round_;
    delivered_this_round = round_ > 0 ? round_episodes_[round_] : 0;
    done_now = static_cast<int64_t>(done_.size());
  }
  const absl::Time now = absl::Now();
  if (done_now > done_seen_) {
    done_seen_ = done_now;
    last_progress_ = now;
    stalled_rounds_ = 0;
  }
  const int64_t missing = evaluate_.episodes() - done_now;
  if (missing <= 0) return std::string();
  if (round > 0) {
    // the round goes on while its actors can still deliver what it asked for, and do
    const int expected = options_.registry->ExpectedEvaluationEpisodes(round);
    const bool can_deliver = expected < 0 || delivered_this_round < expected;
    if (can_deliver && now - last_progress_ < options_.round_timeout) return std::string();
    if (can_deliver) {
      // the actors hold the round but nothing arrives (they cannot build the envs, reach the
      // prior server, ...): ask again, and give up after a few such rounds
      if (++stalled_rounds_ >= options_.max_stalled_rounds) {
        return absl::DeadlineExceededError(
            absl::StrCat("no evaluation episode arrived in ", stalled_rounds_, " rounds of ",
                         absl::FormatDuration(options_.round_timeout),
                         " each; the actors cannot run the policy here (see their logs)"));
      }
      PRL_LOG(WARNING) << experiment_.id() << ": evaluation round " << round << " delivered "
                       << delivered_this_round << " of " << expected << " episodes in "
                       << absl::FormatDuration(options_.round_timeout) << "; asking again";
    }
  }
  // the round number is raised before the actors hear of it, so no episode of it is missed
  {
    absl::MutexLock lock(&mu_);
    round_ = round + 1;
  }
  const int requested = options_.registry->RequestEvaluation(
      round + 1, static_cast<int>(std::min<int64_t>(missing, 1 << 30)), published_version_);
  if (requested == 0) {
    absl::MutexLock lock(&mu_);
    round_ = round;
    return std::string("waiting for actors to join the learner");
  }
  last_progress_ = now;
  PRL_LOG(INFO) << experiment_.id() << ": evaluation round " << round + 1 << " asks for "
                << requested << " episodes";
  return std::string();
}

v1::EvaluationResult EvaluateRun::Summarize() {
  absl::MutexLock lock(&mu_);
  v1::EvaluationResult r;
  const int64_t n = static_cast<int64_t>(done_.size());
  r.set_episodes(n);
  r.mutable_policy()->set_experiment_id(policy_->experiment_id());
  r.mutable_policy()->set_version(policy_->version());
  r.set_policy_env_steps(policy_->env_steps());
  if (!translator_.name().empty()) *r.mutable_translator() = translator_;
  if (n == 0) return r;
  double sum = 0, length = 0, successes = 0, truncated = 0;
  double lowest = done_[0].episode_return(), highest = lowest;
  for (const v1::EpisodeSummary& e : done_) {
    sum += e.episode_return();
    length += e.length();
    successes += e.success() ? 1 : 0;
    truncated += e.truncated() ? 1 : 0;
    lowest = std::min(lowest, e.episode_return());
    highest = std::max(highest, e.episode_return());
  }
  const double mean = sum / n;
  double squares = 0;
  for (const v1::EpisodeSummary& e : done_) {
    squares += (e.episode_return() - mean) * (e.episode_return() - mean);
  }
  r.set_mean_return(mean);
  r.set_std_return(std::sqrt(squares / n));
  r.set_min_return(lowest);
  r.set_max_return(highest);
  r.set_success_rate(successes / n);
  r.set_mean_length(length / n);
  r.set_truncated_episodes(static_cast<int64_t>(truncated));
  return r;
}

void EvaluateRun::ReportProgress(const std::string& waiting) {
  const v1::EvaluationResult r = Summarize();
  v1::Progress p;
  p.set_episodes(r.episodes());
  p.set_fraction_done(std::min(1.0, static_cast<double>(r.episodes()) / evaluate_.episodes()));
  p.set_active_actors(options_.registry->assigned_actors());
  p.set_policy_version(published_version_);
  if (r.episodes() > 0) {
    p.set_latest_eval_return(r.mean_return());
    p.set_latest_eval_success_rate(r.success_rate());
  }
  int64_t round;
  {
    absl::MutexLock lock(&mu_);
    round = round_;
  }
  p.set_eval_rounds(round);
  std::string message = absl::StrCat(
      "evaluating policy ", policy_->experiment_id(), " v", policy_->version(), " (",
      policy_->env_steps(), " env steps) for ", evaluate_.episodes(), " episodes, ",
      evaluate_.stochastic() ? "sampling" : "acting with its mean",
      translator_.name().empty()
          ? ""
          : absl::StrCat(" through translator ", translator_.name(), " v", translator_.version()),
      ": ", r.episodes(), " done");
  if (!waiting.empty()) absl::StrAppend(&message, "; ", waiting);
  p.set_message(message);
  context_->ReportProgress(p);
}

ExperimentRun::Result EvaluateRun::Run() {
  if (absl::Status s = Setup(); !s.ok()) {
    return {v1::EXPERIMENT_STATE_FAILED, absl::StrCat("setup: ", s.message())};
  }
  options_.registry->StartJob(job_);
  PRL_LOG(INFO) << experiment_.id() << ": evaluating " << policy_->experiment_id() << " v"
                << policy_->version() << " for " << evaluate_.episodes() << " episodes";
  Result result{v1::EXPERIMENT_STATE_SUCCEEDED, ""};
  absl::Time last_progress = absl::InfinitePast();
  while (done() < evaluate_.episodes()) {
    if (std::optional<Result> stopped = stop_.Get()) {
      result = *stopped;
      break;
    }
    absl::StatusOr<std::string> waiting = MaybeStartRound();
    if (!waiting.ok()) {
      result = {v1::EXPERIMENT_STATE_FAILED, std::string(waiting.status().message())};
      break;
    }
    const absl::Time now = absl::Now();
    if (now - last_progress >= options_.progress_period) {
      ReportProgress(*waiting);
      last_progress = now;
    }
    stop_.WaitFor(options_.poll_period);
  }
  options_.registry->EndJob();
  ReportProgress("");
  if (!result.reason.empty()) return result;

  const v1::EvaluationResult r = Summarize();
  v1::ExperimentOutputs outputs;
  *outputs.mutable_evaluation() = r;
  context_->SetOutputs(outputs);
  v1::CurvePoint point;
  point.set_env_steps(r.policy_env_steps());
  point.set_updates(policy_->updates());
  point.set_eval_return(r.mean_return());
  point.set_eval_episodes(static_cast<int32_t>(r.episodes()));
  point.set_eval_success_rate(r.success_rate());
  context_->AddCurvePoint(point);
  if (metrics_) metrics_->eval_return->Set(r.mean_return());
  result.reason = absl::StrCat(r.episodes(), " episodes: mean return ", r.mean_return(), " ± ",
                               r.std_return(), ", success rate ", r.success_rate());
  PRL_LOG(INFO) << experiment_.id() << ": " << result.reason;
  return result;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ExperimentRun>> CreateEvaluateRun(
    const v1::Experiment& experiment, RunContext* context, const EvaluateRunOptions& options) {
  if (options.registry == nullptr || options.policies == nullptr ||
      options.policy_loader == nullptr) {
    return absl::InvalidArgumentError(
        "EvaluateRunOptions needs registry, policies and policy_loader");
  }
  if (experiment.spec().kind() != v1::ExperimentSpec::KIND_EVALUATE) {
    return absl::InvalidArgumentError("an evaluate run runs KIND_EVALUATE experiments");
  }
  return std::make_unique<EvaluateRun>(experiment, context, options);
}

}  // namespace prl::learner
