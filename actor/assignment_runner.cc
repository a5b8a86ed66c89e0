#include "actor/assignment_runner.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "actor/collect/maze_planner.h"
#include "actor/policy_fetcher.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "env_desc/env_spec.h"

namespace prl::actor {
namespace {

// Evaluation envs are seeded this far from the training envs (env.seed + env_index_offset + j),
// so no evaluation episode replays a training episode's start.
constexpr uint64_t kEvalSeedOffset = uint64_t{1} << 32;
// ReportEpisodesRequest takes at most this many episodes; the actor keeps no more pending.
constexpr size_t kMaxReportEpisodes = 10'000;
// MCAT self-imitation: an env's episode is kept for the episode table while it has at most this
// many rows and bytes; longer ones reach the main table only.
constexpr int64_t kMaxEpisodeRows = 10'000;
constexpr int64_t kMaxEpisodeBytes = int64_t{64} << 20;
// Replay inserts carry at most this many bytes of rows per request (at least one row).
constexpr int64_t kMaxInsertBytes = int64_t{16} << 20;

// Failures worth retrying: the peer is down, slow, or lost state it gets back (a shard that
// restarted before the learner re-created its table).
bool Retryable(const absl::Status& status) {
  return absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status) ||
         absl::IsNotFound(status) || absl::IsCancelled(status) ||
         absl::IsResourceExhausted(status) || absl::IsAborted(status);
}

void SetNow(google::protobuf::Timestamp* timestamp) {
  const int64_t nanos = absl::ToUnixNanos(absl::Now());
  timestamp->set_seconds(nanos / 1'000'000'000);
  timestamp->set_nanos(static_cast<int32_t>(nanos % 1'000'000'000));
}

const char* ModeName(v1::Assignment::Mode mode) {
  switch (mode) {
    case v1::Assignment::MODE_TRAIN:
      return "MODE_TRAIN";
    case v1::Assignment::MODE_COLLECT:
      return "MODE_COLLECT";
    case v1::Assignment::MODE_EVALUATE:
      return "MODE_EVALUATE";
    default:
      return "MODE_UNSPECIFIED";
  }
}

}  // namespace

AssignmentRunner::AssignmentRunner(const v1::Assignment& assignment, const RunnerOptions& options,
                                   RunnerHost* host, ActorMetrics* metrics)
    : assignment_(assignment),
      options_(options),
      host_(host),
      metrics_(metrics),
      decode_backoff_(options.initial_backoff, options.max_backoff),
      report_backoff_(options.initial_backoff, options.max_backoff),
      rng_(static_cast<uint64_t>(assignment.env().seed()) * 0x9e3779b97f4a7c15ULL ^
           static_cast<uint64_t>(assignment.env_index_offset())) {
  std::random_device device;
  episode_id_base_ = (uint64_t{device()} << 32) ^ device();
}

int64_t AssignmentRunner::NextEpisodeId() {
  while (true) {
    // splitmix64's finaliser: a bijection, so distinct counters give distinct ids
    uint64_t z = episode_id_base_ + 0x9e3779b97f4a7c15ULL * ++episodes_started_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    const int64_t id = static_cast<int64_t>(z >> 1);
    if (id != 0) return id;
  }
}

absl::StatusOr<std::unique_ptr<AssignmentRunner>> AssignmentRunner::Create(
    const v1::Assignment& assignment, const RunnerOptions& options, RunnerHost* host,
    ActorMetrics* metrics) {
  std::unique_ptr<AssignmentRunner> runner(
      new AssignmentRunner(assignment, options, host, metrics));
  PRL_RETURN_IF_ERROR(runner->Build());
  return runner;
}

absl::Status AssignmentRunner::Build() {
  const v1::Assignment& a = assignment_;
  if (a.num_envs() < 1 || a.num_envs() > options_.max_envs) {
    return absl::InvalidArgumentError(absl::StrCat(
        "assignment.num_envs: ", a.num_envs(), " is not allowed; this actor joined with ",
        options_.max_envs, " envs, so it must be 1..", options_.max_envs));
  }
  PRL_RETURN_IF_ERROR(BuildEnvFactories());
  PRL_RETURN_IF_ERROR(BuildActionSource());
  PRL_RETURN_IF_ERROR(BuildPrior());
  PRL_RETURN_IF_ERROR(BuildTranslator());
  PolicyFetcherOptions fetcher;
  fetcher.experiment_id = a.experiment_id();
  fetcher.obs_dim = obs_dim_;
  fetcher.action_dim = latent_ ? latent_dim_ : act_dim_;
  fetcher.poll_timeout = options_.policy_poll_timeout;
  fetcher.rpc_timeout = options_.rpc_timeout;
  fetcher.refresh_interval = options_.policy_refresh_interval;
  fetcher.initial_backoff = options_.initial_backoff;
  fetcher.max_backoff = options_.max_backoff;
  fetcher.factory = options_.policy_factory;
  policies_ = std::make_unique<PolicyFetcher>(std::move(fetcher), host_, metrics_);
  if (a.mode() == v1::Assignment::MODE_EVALUATE) return absl::OkStatus();
  PRL_RETURN_IF_ERROR(BuildReplay());
  if (!latent_) {
    // MCAT: rings as long as the policy's context or the rows' history needs (empty otherwise)
    const int context = a.policy().context_dim() > 0 ? a.policy().context_history() : 0;
    history_.emplace(a.num_envs(), std::max(context, history_window_), obs_dim_, act_dim_);
  }
  PRL_ASSIGN_OR_RETURN(envs_, MakeEnvs(a.num_envs(), static_cast<uint64_t>(a.env().seed())));
  return absl::OkStatus();
}

absl::Status AssignmentRunner::BuildEnvFactories() {
  const v1::Assignment& a = assignment_;
  // one factory per MCAT task (each replaces env.dynamics), else one.
  const int num_specs = std::max(1, a.tasks_size());
  for (int i = 0; i < num_specs; ++i) {
    v1::EnvSpec spec = a.env();
    std::string field = "assignment.env";
    if (a.tasks_size() > 0) {
      *spec.mutable_dynamics() = a.tasks(i);
      field = absl::StrCat("assignment.tasks[", i, "]");
    }
    PRL_ASSIGN_OR_RETURN(env_desc::EnvConfig config, env_desc::ResolveEnvSpec(spec, field));
    if (a.mode() == v1::Assignment::MODE_COLLECT && a.collect().randomize_start_goal()) {
      if (!config.maze) {
        return absl::InvalidArgumentError(
            "assignment.collect.randomize_start_goal applies to point_maze only");
      }
      config.randomize_start_goal = true;
    }
    obs_dim_ = config.domain->obs_dim;
    act_dim_ = config.domain->act_dim;
    PRL_ASSIGN_OR_RETURN(auto factory, EnvFactory::Create(config));
    factories_.push_back(std::move(factory));
  }
  for (int i = 0; i < a.eval_tasks_size(); ++i) {
    v1::EnvSpec spec = a.env();
    *spec.mutable_dynamics() = a.eval_tasks(i);
    PRL_ASSIGN_OR_RETURN(
        env_desc::EnvConfig config,
        env_desc::ResolveEnvSpec(spec, absl::StrCat("assignment.eval_tasks[", i, "]")));
    if (config.domain->obs_dim != obs_dim_ || config.domain->act_dim != act_dim_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "assignment.eval_tasks[", i, "]: its env's dimensions differ from the training tasks'"));
    }
    PRL_ASSIGN_OR_RETURN(auto factory, EnvFactory::Create(config));
    eval_factories_.push_back(std::move(factory));
  }
  return absl::OkStatus();
}

absl::Status AssignmentRunner::BuildReplay() {
  const v1::Assignment& a = assignment_;
  if (a.replay_addresses().empty() || a.table().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "assignment.replay_addresses and assignment.table are required in ", ModeName(a.mode()),
        " (got ", a.replay_addresses_size(), " addresses and table '", a.table(), "')"));
  }
  PRL_ASSIGN_OR_RETURN(TransitionBuffer rows,
                       TransitionBuffer::Create(a.table(), a.signature(), obs_dim_,
                                                latent_ ? latent_dim_ : act_dim_));
  rows_.emplace(std::move(rows));
  history_window_ = rows_->history_window();
  if (latent_ && history_window_ > 0) {
    return absl::InvalidArgumentError(
        "assignment.signature: the history columns are for OUTPUT_ACTION policies; a latent "
        "policy's rows are decisions, not env steps");
  }
  if (a.mode() == v1::Assignment::MODE_COLLECT && a.collect().success_only()) {
    episode_rows_.assign(a.num_envs(), *rows_);
  }
  PRL_RETURN_IF_ERROR(BuildEpisodeTable());
  PRL_RETURN_IF_ERROR(BuildNStep());
  replay::ReplayClientOptions replay;
  replay.addresses.assign(a.replay_addresses().begin(), a.replay_addresses().end());
  replay.channel = options_.channel;
  replay.call.timeout = options_.insert_timeout;
  replay.call.auth_token = options_.auth_token;
  replay.initial_backoff = options_.initial_backoff;
  replay.max_backoff = options_.max_backoff;
  PRL_ASSIGN_OR_RETURN(replay_, replay::ShardedReplayClient::Create(replay));
  return absl::OkStatus();
}

absl::Status AssignmentRunner::BuildEpisodeTable() {
  const v1::Assignment& a = assignment_;
  if (a.episode_table().empty()) return absl::OkStatus();
  if (a.mode() != v1::Assignment::MODE_TRAIN) {
    return absl::InvalidArgumentError(
        absl::StrCat("assignment.episode_table: self-imitation episodes are for MODE_TRAIN, not ",
                     ModeName(a.mode())));
  }
  if (latent_) {
    return absl::UnimplementedError(
        "assignment.episode_table: self-imitation episodes are for OUTPUT_ACTION policies");
  }
  if (a.episode_table() == a.table()) {
    return absl::InvalidArgumentError(absl::StrCat("assignment.episode_table: '", a.episode_table(),
                                                   "' is the main table as well"));
  }
  const int64_t row_bytes = rows_->row_bytes() + static_cast<int64_t>(sizeof(float));
  const int64_t max_rows = std::clamp<int64_t>(kMaxEpisodeBytes / row_bytes, 1, kMaxEpisodeRows);
  PRL_ASSIGN_OR_RETURN(EpisodeBuffer episodes,
                       EpisodeBuffer::Create(a.episode_table(), a.signature(), obs_dim_, act_dim_,
                                             a.num_envs(), a.episode_discount(), max_rows));
  imitation_.emplace(std::move(episodes));
  return absl::OkStatus();
}

absl::Status AssignmentRunner::BuildNStep() {
  const v1::Assignment& a = assignment_;
  if (a.n_step() <= 1) return absl::OkStatus();
  const auto refuse = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("assignment.n_step: ", a.n_step(), " is not allowed ", why));
  };
  if (a.n_step() > NStepWindows::kMaxSteps) {
    return refuse(absl::StrCat("(at most ", NStepWindows::kMaxSteps, ")"));
  }
  if (a.mode() != v1::Assignment::MODE_TRAIN) {
    return refuse(absl::StrCat("in ", ModeName(a.mode()), "; n-step rows are for MODE_TRAIN"));
  }
  if (latent_ && horizon_ > 1) {
    return refuse(absl::StrCat("with decisions of ", horizon_,
                               " env steps; n-step rows are for one-step decisions"));
  }
  if (history_window_ > 0 || imitation_) {
    return refuse("with history columns or an episode table (MCAT's rows are single steps)");
  }
  const double discount = a.n_step_discount();
  if (!(discount > 0 && discount <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("assignment.n_step_discount: ", discount,
                                                   " is not allowed; it must be in (0, 1]"));
  }
  n_step_.emplace(a.num_envs(), a.n_step(), discount, obs_dim_, latent_ ? latent_dim_ : act_dim_);
  return absl::OkStatus();
}

// The policy's own architecture arrives with GetPolicy (and is checked when it is built); this
// refuses early what the assignment already says the actor cannot run. Unset fields pass.
absl::Status AssignmentRunner::CheckPolicyArchitecture() const {
  const v1::PolicyArchitecture& p = assignment_.policy();
  if (p.output() == v1::PolicyArchitecture::OUTPUT_DECODED_LATENT ||
      p.output() == v1::PolicyArchitecture::OUTPUT_FLOW_LATENT) {
    if (!assignment_.has_prior() || assignment_.prior().name().empty()) {
      return absl::InvalidArgumentError(
          "assignment.prior: unset, but the policy's output is a latent the prior maps to "
          "actions");
    }
    if (assignment_.decision_horizon() < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("assignment.decision_horizon: ", assignment_.decision_horizon(),
                       " is not allowed; it must be >= 1"));
    }
    if (p.context_dim() > 0) {
      return absl::UnimplementedError("assignment.policy.context_dim: not with a latent policy");
    }
    if (p.obs_dim() != 0 && p.obs_dim() != obs_dim_) {
      return absl::InvalidArgumentError(absl::StrCat("assignment.policy.obs_dim: ", p.obs_dim(),
                                                     " does not match the env's ", obs_dim_));
    }
    return absl::OkStatus();
  }
  if (p.context_dim() > 0 &&
      (p.context_history() < 1 || p.context_history() > TransitionBuffer::kMaxHistoryWindow)) {
    return absl::InvalidArgumentError(
        absl::StrCat("assignment.policy.context_history: ", p.context_history(),
                     " is not allowed for a context-conditioned policy (context_dim ",
                     p.context_dim(), "); it must be 1..", TransitionBuffer::kMaxHistoryWindow));
  }
  if (assignment_.decision_horizon() > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("assignment.decision_horizon: ", assignment_.decision_horizon(),
                     " is not allowed for an OUTPUT_ACTION policy; it must be 1"));
  }
  const std::pair<const char*, int> dims[] = {
      {"obs_dim", p.obs_dim()}, {"output_dim", p.output_dim()}, {"action_dim", p.action_dim()}};
  for (const auto& [name, value] : dims) {
    const int want = std::string(name) == "obs_dim" ? obs_dim_ : act_dim_;
    if (value != 0 && value != want) {
      return absl::InvalidArgumentError(absl::StrCat("assignment.policy.", name, ": ", value,
                                                     " does not match the env's ", want));
    }
  }
  return absl::OkStatus();
}

absl::Status AssignmentRunner::BuildActionSource() {
  const v1::Assignment& a = assignment_;
  if (a.mode() != v1::Assignment::MODE_COLLECT) return CheckPolicyArchitecture();
  const v1::CollectSpec& collect = a.collect();
  const uint64_t seed = rng_();
  switch (collect.collector()) {
    case v1::CollectSpec::COLLECTOR_RANDOM:
      collector_ = std::make_unique<RandomPolicy>(seed);
      return absl::OkStatus();
    case v1::CollectSpec::COLLECTOR_SCRIPTED:
      if ((collect.script().empty() || collect.script() == "planner") &&
          a.env().domain() == v1::EnvSpec::DOMAIN_POINT_MAZE) {
        collector_ = std::make_unique<MazePlannerPolicy>(a.num_envs());
        return absl::OkStatus();
      }
      return absl::UnimplementedError(absl::StrCat(
          "assignment.collect.script: '", collect.script(), "' is not a scripted collector for ",
          v1::EnvSpec::Domain_Name(a.env().domain()), "; the actor knows 'planner' (point_maze)"));
    case v1::CollectSpec::COLLECTOR_POLICY:
      return CheckPolicyArchitecture();
    default:
      return absl::InvalidArgumentError(
          "assignment.collect.collector is unset; expected RANDOM, SCRIPTED or POLICY");
  }
}

int64_t AssignmentRunner::TaskIndex(int env) const {
  if (assignment_.tasks_size() == 0) return 0;
  return (assignment_.env_index_offset() + env) % assignment_.tasks_size();
}

int64_t AssignmentRunner::EvalTaskIndex(int env) const {
  if (assignment_.eval_tasks_size() == 0) return 0;
  return (assignment_.env_index_offset() + env) % assignment_.eval_tasks_size();
}

absl::StatusOr<std::unique_ptr<BatchedEnv>> AssignmentRunner::MakeEnvs(int n, uint64_t seed_base,
                                                                       bool eval_tasks) const {
  std::vector<std::unique_ptr<Env>> envs;
  for (int j = 0; j < n; ++j) {
    const uint64_t index = static_cast<uint64_t>(assignment_.env_index_offset() + j);
    const EnvFactory& factory =
        eval_tasks ? *eval_factories_[EvalTaskIndex(j)] : *factories_[TaskIndex(j)];
    envs.push_back(factory.Make(seed_base + index));
  }
  return std::make_unique<BatchedEnv>(std::move(envs), options_.workers);
}

void AssignmentRunner::Run() {
  PRL_LOG(INFO) << "running generation " << assignment_.generation() << " of experiment "
                << assignment_.experiment_id() << ": " << ModeName(assignment_.mode()) << " with "
                << assignment_.num_envs() << " envs";
  const absl::Time now = absl::Now();
  next_report_ = now + options_.report_interval;
  next_insert_flush_ = now + options_.insert_flush_interval;
  if (assignment_.mode() == v1::Assignment::MODE_EVALUATE) {
    RunEvaluationOnly();
  } else {
    RunTraining();
  }
  // one last attempt for finished episodes; rows not yet inserted are dropped with the runner.
  FlushReports(/*force=*/true, /*final_attempt=*/true);
}

void AssignmentRunner::RunTraining() {
  envs_->Reset(&out_);
  episodes_.assign(envs_->size(), Episode());
  if (collector_) {
    for (int j = 0; j < envs_->size(); ++j) collector_->OnEpisodeStart(j, envs_->env(j));
  }
  while (!host_->Interrupted()) {
    if (assignment_.mode() == v1::Assignment::MODE_TRAIN) MaybeRunEvaluation();
    policies_->MaybeRefresh();
    TrainStep();
    FlushInserts(/*force=*/false);
    FlushReports(/*force=*/false);
  }
}

void AssignmentRunner::RunEvaluationOnly() {
  while (!host_->Interrupted()) {
    std::optional<v1::EvaluationRequest> request =
        host_->Evaluation(last_eval_round_, options_.report_interval);
    if (request) {
      last_eval_round_ = request->round();
      RunEvaluationRound(*request);
    }
    FlushReports(/*force=*/false);
  }
}

void AssignmentRunner::SetActingVersion(int64_t version) {
  if (version == acting_version_) return;
  acting_version_ = version;
  host_->SetActingVersion(version);
}

void AssignmentRunner::AddActionNoise() {
  const double noise = assignment_.collect().action_noise();
  if (noise <= 0) return;
  std::normal_distribution<float> normal(0.0f, static_cast<float>(noise));
  for (float& a : actions_) a = std::clamp(a + normal(rng_), -1.0f, 1.0f);
}

bool AssignmentRunner::ChooseActions(absl::Span<const float> obs, int n, bool deterministic) {
  actions_.resize(static_cast<size_t>(n) * act_dim_);
  const bool collect = assignment_.mode() == v1::Assignment::MODE_COLLECT;
  if (collector_) {
    collector_->Act(obs, absl::MakeSpan(actions_));
    AddActionNoise();
    SetActingVersion(0);
    return true;
  }
  if (!collect && steps_ < assignment_.warmup_env_steps()) {
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    for (float& a : actions_) a = uniform(rng_);
    SetActingVersion(0);
    return true;
  }
  if (!policies_->Ensure(1)) return false;
  ActWithPolicy(*policies_->policy(), obs, n, deterministic, &*history_, absl::MakeSpan(actions_),
                &episodes_);
  if (collect) AddActionNoise();
  SetActingVersion(policies_->policy()->version());
  return true;
}

void AssignmentRunner::ActWithPolicy(models::ActingPolicy& policy, absl::Span<const float> obs,
                                     int n, bool deterministic, TransitionHistory* history,
                                     absl::Span<float> actions, std::vector<Episode>* episodes) {
  const int k = policy.context_history();
  transferred_.assign(n, 0);
  if (k <= 0) {
    policy.Act(obs, n, deterministic, actions);
  } else {
    if (k > history->capacity()) {
      PRL_LOG(WARNING) << "policy version " << policy.version() << " reads " << k
                       << " past transitions, more than the assignment's context_history "
                       << history->capacity() << "; older ones show as outside the episode";
      history->Grow(k);
    }
    // each env's last k transitions, ending at its current state, and its task
    context_obs_.resize(static_cast<size_t>(n) * (k + 1) * obs_dim_);
    context_actions_.resize(static_cast<size_t>(n) * k * act_dim_);
    context_mask_.resize(static_cast<size_t>(n) * k);
    context_tasks_.resize(n);
    for (int j = 0; j < n; ++j) {
      history->Fill(
          j, k, obs.subspan(static_cast<size_t>(j) * obs_dim_, obs_dim_),
          absl::MakeSpan(context_obs_)
              .subspan(static_cast<size_t>(j) * (k + 1) * obs_dim_,
                       static_cast<size_t>(k + 1) * obs_dim_),
          absl::MakeSpan(context_actions_)
              .subspan(static_cast<size_t>(j) * k * act_dim_, static_cast<size_t>(k) * act_dim_),
          absl::MakeSpan(context_mask_).subspan(static_cast<size_t>(j) * k, k));
      context_tasks_[j] = static_cast<int>(TaskIndex(j));
    }
    models::ActingPolicy::Context context;
    context.observations = context_obs_;
    context.actions = context_actions_;
    context.mask = context_mask_;
    // without tasks (an EVALUATE of a trained policy on one dynamics, e.g. a held-out task)
    // no transfer plan applies: every env acts with the learned policy on its own context
    if (assignment_.tasks_size() > 0 && !acting_eval_tasks_) {
      context.task_index = context_tasks_;
    }
    policy.ActInContext(obs, n, deterministic, context, actions, absl::MakeSpan(transferred_));
  }
  // an episode follows the plan its first policy action followed
  for (int j = 0; j < n; ++j) {
    Episode& episode = (*episodes)[j];
    if (episode.policy_acted) continue;
    episode.policy_acted = true;
    episode.transferred = transferred_[j] != 0;
  }
}

void AssignmentRunner::FillHistory(int env, Transition* t) {
  const int w = history_window_;
  if (w == 0) return;
  row_history_obs_.resize(static_cast<size_t>(w + 1) * obs_dim_);
  row_history_actions_.resize(static_cast<size_t>(w) * act_dim_);
  row_history_mask_.resize(w);
  history_->Fill(env, w, t->next_observation, absl::MakeSpan(row_history_obs_),
                 absl::MakeSpan(row_history_actions_), absl::MakeSpan(row_history_mask_));
  t->history_observation = row_history_obs_;
  t->history_action = row_history_actions_;
  t->history_mask = row_history_mask_;
}

absl::Status AssignmentRunner::BuildPrior() {
  const v1::Assignment& a = assignment_;
  flow_ = a.policy().output() == v1::PolicyArchitecture::OUTPUT_FLOW_LATENT;
  latent_ = (a.policy().output() == v1::PolicyArchitecture::OUTPUT_DECODED_LATENT || flow_) &&
            !(a.mode() == v1::Assignment::MODE_COLLECT &&
              a.collect().collector() != v1::CollectSpec::COLLECTOR_POLICY);
  if (!latent_) return absl::OkStatus();
  if (!options_.prior_connector) {
    return absl::UnimplementedError(
        "assignment.prior: this actor was built without a way to reach priors");
  }
  PRL_ASSIGN_OR_RETURN(prior_, options_.prior_connector(a));
  const v1::ModelInfo& info = prior_->info();
  const std::string name = models::DescribeModel(info);
  if (flow_ && !models::Answers(info, models::PriorMethod::kForward)) {
    return absl::FailedPreconditionError(
        absl::StrCat("assignment.prior: ", name, " must answer Forward for a flow-latent policy"));
  }
  if (!flow_ && (!models::Answers(info, models::PriorMethod::kDecode) ||
                 !models::Answers(info, models::PriorMethod::kPrior))) {
    return absl::FailedPreconditionError(absl::StrCat(
        "assignment.prior: ", name, " must answer Decode and Prior for a decoded-latent policy"));
  }
  steps_per_decode_ = flow_ ? 1 : static_cast<int>(models::DecodeStepsPerCall(info));
  if (steps_per_decode_ > 1 && a.decision_horizon() != steps_per_decode_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "assignment.decision_horizon: ", a.decision_horizon(), " does not match ", name,
        ", which decodes ", steps_per_decode_, " actions per latent (open loop)"));
  }
  if (info.obs_dim() != obs_dim_ || info.action_dim() != act_dim_) {
    return absl::InvalidArgumentError(
        absl::StrCat("assignment.prior: ", name, " has state ", info.obs_dim(), " and action ",
                     info.action_dim(), " dimensions; the env has ", obs_dim_, " and ", act_dim_));
  }
  latent_dim_ = flow_ ? info.action_dim() : info.latent_dim();
  if (a.policy().output_dim() != 0 && a.policy().output_dim() != latent_dim_) {
    return absl::InvalidArgumentError(
        absl::StrCat("assignment.policy.output_dim: ", a.policy().output_dim(),
                     " does not match the prior's latent_dim ", latent_dim_));
  }
  horizon_ = flow_ ? 1 : a.decision_horizon();
  const int n = a.num_envs();
  z_.assign(static_cast<size_t>(n) * latent_dim_, 0.0f);
  plan_.assign(static_cast<size_t>(n) * steps_per_decode_ * act_dim_, 0.0f);
  decision_obs_.assign(static_cast<size_t>(n) * obs_dim_, 0.0f);
  decision_reward_.assign(n, 0.0f);
  decision_steps_.assign(n, 0);
  return absl::OkStatus();
}

absl::Status AssignmentRunner::BuildTranslator() {
  const v1::Assignment& a = assignment_;
  if (!a.has_translator()) return absl::OkStatus();
  if (a.mode() != v1::Assignment::MODE_EVALUATE || latent_) {
    return absl::InvalidArgumentError(
        "assignment.translator: only MODE_EVALUATE with a flat policy (OUTPUT_ACTION) acts "
        "through a translator");
  }
  if (!options_.prior_connector) {
    return absl::UnimplementedError(
        "assignment.translator: this actor was built without a way to reach priors");
  }
  // the connector builds what Assignment.prior names: ask it for the translator
  v1::Assignment as_prior = a;
  *as_prior.mutable_prior() = a.translator();
  PRL_ASSIGN_OR_RETURN(translator_, options_.prior_connector(as_prior));
  const v1::ModelInfo& info = translator_->info();
  const std::string name = models::DescribeModel(info);
  if (info.kind() != v1::PRIOR_KIND_ACTION_TRANSLATOR ||
      !models::Answers(info, models::PriorMethod::kTranslate) || info.context_dim() != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("assignment.translator: ", name,
                     " must be an ACTION_TRANSLATOR between two tasks (context_dim 0) that "
                     "answers Translate"));
  }
  if (info.obs_dim() != obs_dim_ || info.action_dim() != act_dim_) {
    return absl::InvalidArgumentError(
        absl::StrCat("assignment.translator: ", name, " has state ", info.obs_dim(), " and action ",
                     info.action_dim(), " dimensions; the env has ", obs_dim_, " and ", act_dim_));
  }
  return absl::OkStatus();
}

absl::Status AssignmentRunner::TranslateActions(absl::Span<const float> obs, int n,
                                                absl::Span<float> actions) {
  std::vector<HostTensor> in;
  in.push_back(
      HostTensor::FromFloats({n, obs_dim_}, obs.subspan(0, static_cast<size_t>(n) * obs_dim_)));
  in.push_back(
      HostTensor::FromFloats({n, act_dim_}, actions.subspan(0, static_cast<size_t>(n) * act_dim_)));
  PRL_ASSIGN_OR_RETURN(HostTensor none, HostTensor::Zeros(DType::kFloat32, {n, 0}));
  in.push_back(none);
  in.push_back(none);
  PRL_ASSIGN_OR_RETURN(std::vector<HostTensor> out,
                       translator_->Run(models::PriorMethod::kTranslate, in));
  if (out.size() != 1 || out[0].shape() != std::vector<int64_t>{n, act_dim_}) {
    return absl::InternalError(
        absl::StrCat("assignment.translator: ", models::DescribeModel(translator_->info()),
                     " answered Translate with an unexpected shape"));
  }
  absl::Span<const float> translated = out[0].data<float>();
  for (size_t i = 0; i < translated.size(); ++i) {
    actions[i] = std::clamp(translated[i], -1.0f, 1.0f);
  }
  return absl::OkStatus();
}

bool AssignmentRunner::ChooseLatents(absl::Span<const float> obs, int n, bool deterministic,
                                     bool warmup, std::vector<float>* z) {
  z->resize(static_cast<size_t>(n) * latent_dim_);
  const float bound = static_cast<float>(
      assignment_.policy().output_bound() > 0 ? assignment_.policy().output_bound() : 1.0);
  if (warmup && flow_) {
    // z from the flow's base N(0, I), squashed into the policy's bound as the policy squashes
    // (b·tanh(u / s): close to N(0, I) with parrot's scaled squash)
    const float inv_scale = assignment_.policy().squash_scale() > 0
                                ? static_cast<float>(1.0 / assignment_.policy().squash_scale())
                                : 1.0f;
    std::normal_distribution<float> normal;
    for (float& v : *z) v = bound * std::tanh(normal(rng_) * inv_scale);
    SetActingVersion(0);
    return true;
  }
  if (warmup) {
    // z ~ p(z|s), squashed into the policy's bound as SPiRL's random actions are
    std::vector<HostTensor> in = {HostTensor::FromFloats({n, obs_dim_}, obs)};
    absl::StatusOr<std::vector<HostTensor>> prior = prior_->Run(models::PriorMethod::kPrior, in);
    if (!prior.ok()) {
      if (decode_backoff_.fresh()) PRL_LOG(WARNING) << "prior: " << prior.status();
      host_->Wait(decode_backoff_.Next());
      return false;
    }
    decode_backoff_.Reset();
    absl::Span<const float> mean = (*prior)[0].data<float>();
    absl::Span<const float> log_std = (*prior)[1].data<float>();
    std::normal_distribution<float> normal;
    for (size_t i = 0; i < z->size(); ++i) {
      (*z)[i] = bound * std::tanh(mean[i] + std::exp(log_std[i]) * normal(rng_));
    }
    SetActingVersion(0);
    return true;
  }
  if (!policies_->Ensure(1)) return false;
  policies_->policy()->Act(obs, n, deterministic, absl::MakeSpan(*z));
  SetActingVersion(policies_->policy()->version());
  return true;
}

absl::Status AssignmentRunner::DecodeActions(absl::Span<const float> obs,
                                             const std::vector<float>& z, int n,
                                             std::vector<float>* actions) {
  std::vector<HostTensor> in = {HostTensor::FromFloats({n, latent_dim_}, z),
                                HostTensor::FromFloats({n, obs_dim_}, obs)};
  PRL_ASSIGN_OR_RETURN(
      std::vector<HostTensor> out,
      prior_->Run(flow_ ? models::PriorMethod::kForward : models::PriorMethod::kDecode, in));
  absl::Span<const float> decoded = out[0].data<float>();
  if (decoded.size() != static_cast<size_t>(n) * steps_per_decode_ * act_dim_) {
    return absl::InternalError(absl::StrCat("the prior decoded ", decoded.size(), " values for ", n,
                                            " envs of ", steps_per_decode_, " × ", act_dim_,
                                            " actions"));
  }
  actions->resize(decoded.size());
  for (size_t i = 0; i < decoded.size(); ++i) {
    (*actions)[i] = std::clamp(decoded[i], -1.0f, 1.0f);
  }
  return absl::OkStatus();
}

absl::Status AssignmentRunner::LatentActions(absl::Span<const float> obs,
                                             const std::vector<float>& z,
                                             const std::vector<int>& step, int n,
                                             std::vector<float>* plan,
                                             std::vector<float>* actions) {
  if (steps_per_decode_ == 1) return DecodeActions(obs, z, n, actions);
  // open loop: decode the decisions that start now, then play every env's plan
  const size_t plan_row = static_cast<size_t>(steps_per_decode_) * act_dim_;
  plan->resize(static_cast<size_t>(n) * plan_row);
  std::vector<int> starting;
  std::vector<float> start_obs, start_z, decoded;
  for (int j = 0; j < n; ++j) {
    if (step[j] != 0) continue;
    starting.push_back(j);
    start_obs.insert(start_obs.end(), obs.begin() + static_cast<size_t>(j) * obs_dim_,
                     obs.begin() + static_cast<size_t>(j + 1) * obs_dim_);
    start_z.insert(start_z.end(), z.begin() + static_cast<size_t>(j) * latent_dim_,
                   z.begin() + static_cast<size_t>(j + 1) * latent_dim_);
  }
  if (!starting.empty()) {
    const int m = static_cast<int>(starting.size());
    PRL_RETURN_IF_ERROR(DecodeActions(start_obs, start_z, m, &decoded));
    for (int i = 0; i < m; ++i) {
      std::copy_n(decoded.begin() + static_cast<size_t>(i) * plan_row, plan_row,
                  plan->begin() + static_cast<size_t>(starting[i]) * plan_row);
    }
  }
  actions->resize(static_cast<size_t>(n) * act_dim_);
  for (int j = 0; j < n; ++j) {
    const int t = std::min(step[j], steps_per_decode_ - 1);
    std::copy_n(
        plan->begin() + static_cast<size_t>(j) * plan_row + static_cast<size_t>(t) * act_dim_,
        act_dim_, actions->begin() + static_cast<size_t>(j) * act_dim_);
  }
  return absl::OkStatus();
}

void AssignmentRunner::LatentTrainStep() {
  const int n = envs_->size();
  obs_ = out_.obs;
  bool any_due = false;
  for (int j = 0; j < n; ++j) any_due |= decision_steps_[j] == 0;
  if (any_due) {
    const bool warmup = steps_ < assignment_.warmup_env_steps();
    if (!ChooseLatents(obs_, n, /*deterministic=*/false, warmup, &all_z_)) return;
    for (int j = 0; j < n; ++j) {
      if (decision_steps_[j] != 0) continue;
      std::copy_n(all_z_.begin() + static_cast<size_t>(j) * latent_dim_, latent_dim_,
                  z_.begin() + static_cast<size_t>(j) * latent_dim_);
      std::copy_n(obs_.begin() + static_cast<size_t>(j) * obs_dim_, obs_dim_,
                  decision_obs_.begin() + static_cast<size_t>(j) * obs_dim_);
      decision_reward_[j] = 0;
    }
  }
  if (absl::Status s = LatentActions(obs_, z_, decision_steps_, n, &plan_, &actions_); !s.ok()) {
    if (decode_backoff_.fresh()) PRL_LOG(WARNING) << "decoding latents: " << s;
    host_->Wait(decode_backoff_.Next());
    return;
  }
  decode_backoff_.Reset();
  envs_->Step(actions_, &out_);
  steps_ += n;
  metrics_->env_steps.Increment(n);
  int finished = 0;
  for (int j = 0; j < n; ++j) finished += out_.terminated[j] || out_.truncated[j];
  const int64_t env_steps = host_->AddProgress(n, finished, 0);
  for (int j = 0; j < n; ++j) {
    decision_reward_[j] += out_.rewards[j];
    ++decision_steps_[j];
    episodes_[j].episode_return += out_.rewards[j];
    ++episodes_[j].length;
    const bool ended = out_.terminated[j] || out_.truncated[j];
    if (decision_steps_[j] >= horizon_ || ended) {
      Transition t;
      t.observation =
          absl::MakeConstSpan(decision_obs_).subspan(static_cast<size_t>(j) * obs_dim_, obs_dim_);
      t.action = absl::MakeConstSpan(z_).subspan(static_cast<size_t>(j) * latent_dim_, latent_dim_);
      t.reward = decision_reward_[j];
      t.discount = out_.terminated[j] ? 0.0f : 1.0f;
      t.next_observation =
          absl::MakeConstSpan(out_.next_obs).subspan(static_cast<size_t>(j) * obs_dim_, obs_dim_);
      t.env_steps = decision_steps_[j];
      t.task_index = TaskIndex(j);
      if (n_step_) {
        n_step_->Add(j, t, ended, [this](const Transition& row) { rows_->Add(row); });
      } else {
        rows_->Add(t);
      }
      decision_steps_[j] = 0;
    }
    if (ended)
      FinishEpisode(j, out_, /*is_eval=*/false, 0, env_steps, acting_version_, &episodes_[j]);
  }
}

void AssignmentRunner::TrainStep() {
  if (latent_) {
    LatentTrainStep();
    return;
  }
  const int n = envs_->size();
  obs_ = out_.obs;
  if (!ChooseActions(obs_, n, /*deterministic=*/false)) return;
  envs_->Step(actions_, &out_);
  steps_ += n;
  metrics_->env_steps.Increment(n);
  int finished = 0;
  for (int j = 0; j < n; ++j) finished += out_.terminated[j] || out_.truncated[j];
  const int64_t env_steps = host_->AddProgress(n, finished, 0);
  for (int j = 0; j < n; ++j) {
    const size_t o = static_cast<size_t>(j) * obs_dim_;
    Transition t;
    t.observation = absl::MakeConstSpan(obs_).subspan(o, obs_dim_);
    t.action = absl::MakeConstSpan(actions_).subspan(static_cast<size_t>(j) * act_dim_, act_dim_);
    t.reward = out_.rewards[j];
    t.discount = out_.terminated[j] ? 0.0f : 1.0f;
    t.next_observation = absl::MakeConstSpan(out_.next_obs).subspan(o, obs_dim_);
    t.task_index = TaskIndex(j);
    // where the row lies in its episode (the columns a collection table names)
    if (episodes_[j].id == 0) episodes_[j].id = NextEpisodeId();
    t.episode = episodes_[j].id;
    t.step = episodes_[j].length;
    t.timeout = out_.truncated[j] && !out_.terminated[j] ? 1.0f : 0.0f;
    // MCAT: the env's recent transitions, this one last
    history_->Push(j, t.observation, t.action);
    FillHistory(j, &t);
    if (n_step_) {
      n_step_->Add(j, t, out_.terminated[j] || out_.truncated[j],
                   [this](const Transition& row) { rows_->Add(row); });
    } else {
      (episode_rows_.empty() ? *rows_ : episode_rows_[j]).Add(t);
    }
    if (imitation_) imitation_->Add(j, t);
    episodes_[j].episode_return += out_.rewards[j];
    ++episodes_[j].length;
    if (!out_.terminated[j] && !out_.truncated[j]) continue;
    history_->Reset(j);
    if (!episode_rows_.empty()) {
      if (out_.success[j]) rows_->Append(episode_rows_[j]);
      episode_rows_[j].Clear();
    }
    if (imitation_ && !imitation_->Finish(j) && long_episodes_++ % 100 == 0) {
      PRL_LOG(WARNING) << "an episode of " << episodes_[j].length
                       << " steps is too long to keep for " << assignment_.episode_table() << " ("
                       << long_episodes_ << " so far); only the main table has its rows";
    }
    FinishEpisode(j, out_, /*is_eval=*/false, 0, env_steps, acting_version_, &episodes_[j]);
    if (collector_) collector_->OnEpisodeStart(j, envs_->env(j));
  }
}

void AssignmentRunner::FinishEpisode(int env, const BatchedEnv::Output& out, bool is_eval,
                                     int64_t eval_round, int64_t env_steps, int64_t version,
                                     Episode* episode) {
  v1::EpisodeSummary summary;
  summary.set_episode_return(episode->episode_return);
  summary.set_length(episode->length);
  summary.set_success(out.success[env] != 0);
  summary.set_is_eval(is_eval);
  summary.set_eval_round(eval_round);
  summary.set_policy_version(std::max<int64_t>(0, version));
  summary.set_env_steps(env_steps);
  summary.set_env_index(env);
  summary.set_task_index(static_cast<int32_t>(is_eval && !eval_factories_.empty()
                                                  ? assignment_.tasks_size() + EvalTaskIndex(env)
                                                  : TaskIndex(env)));
  summary.set_truncated(out.truncated[env] && !out.terminated[env]);
  summary.set_transferred(episode->transferred);
  SetNow(summary.mutable_end_time());
  (is_eval ? metrics_->eval_episodes : metrics_->train_episodes).Increment();
  (is_eval ? metrics_->eval_return : metrics_->train_return).Set(episode->episode_return);
  if (pending_.size() >= kMaxReportEpisodes) {
    if (dropped_episodes_++ % 1000 == 0) {
      PRL_LOG(WARNING) << "the learner has not taken episode reports for a while; dropped "
                       << dropped_episodes_ << " unreported episodes so far";
    }
    pending_.erase(pending_.begin());
    ++pending_first_sequence_;
  }
  const int64_t number = host_->NumberEpisode();
  if (pending_.empty()) pending_first_sequence_ = number;
  pending_.push_back(std::move(summary));
  *episode = Episode();
}

void AssignmentRunner::MaybeRunEvaluation() {
  std::optional<v1::EvaluationRequest> request =
      host_->Evaluation(last_eval_round_, absl::ZeroDuration());
  if (!request) return;
  last_eval_round_ = request->round();
  RunEvaluationRound(*request);
}

void AssignmentRunner::RunEvaluationRound(const v1::EvaluationRequest& request) {
  const int episodes = request.episodes();
  if (episodes <= 0) return;
  if (!policies_->Ensure(request.min_policy_version())) return;
  FlushInserts(/*force=*/true);
  const int k = std::min(episodes, assignment_.num_envs());
  const bool eval_tasks = !eval_factories_.empty();
  absl::StatusOr<std::unique_ptr<BatchedEnv>> envs =
      MakeEnvs(k, static_cast<uint64_t>(assignment_.env().seed()) + kEvalSeedOffset, eval_tasks);
  acting_eval_tasks_ = eval_tasks;
  absl::Cleanup not_eval_tasks = [this] { acting_eval_tasks_ = false; };
  if (!envs.ok()) {
    PRL_LOG(ERROR) << "evaluation round " << request.round() << " skipped: " << envs.status();
    return;
  }
  models::ActingPolicy& policy = *policies_->policy();
  PRL_LOG(INFO) << "evaluation round " << request.round() << ": " << episodes
                << " episodes with policy version " << policy.version();
  const bool deterministic = !assignment_.stochastic_eval();
  BatchedEnv::Output out;
  (*envs)->Reset(&out);
  std::vector<Episode> running(k);
  std::vector<bool> active(k, true);
  std::vector<float> actions(static_cast<size_t>(k) * act_dim_);
  int started = k;
  int finished = 0;
  // latent policies: each eval env's z and the steps it has run
  std::vector<float> z(latent_ ? static_cast<size_t>(k) * latent_dim_ : 0), fresh, plan;
  std::vector<int> z_steps(k, 0);
  // context-conditioned policies: each eval env's recent transitions, and the states they left
  std::optional<TransitionHistory> history;
  if (!latent_ && policy.context_history() > 0) {
    history.emplace(k, policy.context_history(), obs_dim_, act_dim_);
  }
  std::vector<float> before;
  while (finished < episodes) {
    if (host_->Interrupted()) return;
    if (!latent_) {
      if (history) before = out.obs;
      ActWithPolicy(policy, out.obs, k, deterministic, history ? &*history : nullptr,
                    absl::MakeSpan(actions), &running);
      if (translator_ != nullptr) {
        if (absl::Status s = TranslateActions(out.obs, k, absl::MakeSpan(actions)); !s.ok()) {
          if (decode_backoff_.fresh()) {
            PRL_LOG(WARNING) << "evaluation round " << request.round() << ": translating: " << s;
          }
          if (host_->Wait(decode_backoff_.Next())) return;
          continue;
        }
        decode_backoff_.Reset();
      }
    } else {
      bool any_due = false;
      for (int j = 0; j < k; ++j) any_due |= z_steps[j] == 0;
      if (any_due) {
        fresh.resize(z.size());
        policy.Act(out.obs, k, deterministic, absl::MakeSpan(fresh));
        for (int j = 0; j < k; ++j) {
          if (z_steps[j] != 0) continue;
          std::copy_n(fresh.begin() + static_cast<size_t>(j) * latent_dim_, latent_dim_,
                      z.begin() + static_cast<size_t>(j) * latent_dim_);
        }
      }
      if (absl::Status s = LatentActions(out.obs, z, z_steps, k, &plan, &actions); !s.ok()) {
        PRL_LOG(WARNING) << "evaluation round " << request.round() << ": decoding: " << s;
        if (host_->Wait(decode_backoff_.Next())) return;
        continue;
      }
      for (int j = 0; j < k; ++j) z_steps[j] = (z_steps[j] + 1) % horizon_;
    }
    (*envs)->Step(actions, &out);
    const int64_t env_steps = host_->AddProgress(0, 0, 0);
    for (int j = 0; j < k && history; ++j) {
      history->Push(
          j, absl::MakeConstSpan(before).subspan(static_cast<size_t>(j) * obs_dim_, obs_dim_),
          absl::MakeConstSpan(actions).subspan(static_cast<size_t>(j) * act_dim_, act_dim_));
      if (out.terminated[j] || out.truncated[j]) history->Reset(j);
    }
    for (int j = 0; j < k; ++j) {
      if (!active[j]) continue;
      metrics_->env_steps.Increment();
      running[j].episode_return += out.rewards[j];
      ++running[j].length;
      if (!out.terminated[j] && !out.truncated[j]) continue;
      FinishEpisode(j, out, /*is_eval=*/true, request.round(), env_steps, policy.version(),
                    &running[j]);
      if (latent_) z_steps[j] = 0;
      ++finished;
      if (started < episodes) {
        ++started;
      } else {
        active[j] = false;
      }
    }
  }
  FlushReports(/*force=*/true);
}

void AssignmentRunner::FlushInserts(bool force) {
  const bool main_due =
      rows_ && rows_->rows() > 0 &&
      (force || rows_->rows() >= options_.insert_batch_rows || absl::Now() >= next_insert_flush_);
  // finished self-imitation episodes go at once: they come whole, at most one batch step apart
  const bool episodes_due = imitation_ && imitation_->finished().rows() > 0;
  if (!main_due && !episodes_due) return;
  if (main_due && !InsertRows(&*rows_)) return;
  if (episodes_due && !InsertRows(&imitation_->finished())) return;
  next_insert_flush_ = absl::Now() + options_.insert_flush_interval;
}

bool AssignmentRunner::InsertRows(TransitionBuffer* rows) {
  const int64_t per_request = std::max<int64_t>(1, kMaxInsertBytes / rows->row_bytes());
  Backoff backoff(options_.initial_backoff, options_.max_backoff);
  while (rows->rows() > 0) {
    const int64_t n = std::min(rows->rows(), per_request);
    int64_t stored = 0;
    absl::StatusOr<std::vector<uint64_t>> keys =
        replay_->Insert(rows->Batch(n), &stored, &insert_canceller_);
    if (keys.ok()) {
      stored = n;
    } else if (insert_canceller_.cancelled()) {
      rows->Clear();  // the runner is done; its assignment is over
      return false;
    }
    // the shard kept the leading rows (on failure: its rate limiter let them in before the
    // deadline): only the rest is sent again, so no transition is stored twice.
    if (stored > 0) {
      metrics_->inserted_items.Increment(static_cast<double>(stored));
      host_->AddProgress(0, 0, stored);
      rows->DropFront(stored);
    }
    if (keys.ok()) continue;
    metrics_->RpcError("Insert");
    if (rows->rows() == 0) break;
    if (!Retryable(keys.status())) {
      PRL_LOG(ERROR) << "replay refused " << rows->rows() << " transitions for table "
                     << rows->table() << "; dropping them: " << keys.status();
      rows->Clear();
      return true;
    }
    if (backoff.fresh()) {
      PRL_LOG(WARNING) << "replay insert failed; retrying with backoff: " << keys.status();
    }
    // waits (and so slows acting) until a shard takes the rows; heartbeats go on meanwhile.
    if (host_->Wait(backoff.Next())) return false;
  }
  return true;
}

void AssignmentRunner::FlushReports(bool force, bool final_attempt) {
  if (pending_.empty()) return;
  const absl::Time now = absl::Now();
  // a full batch goes out early, unless reports are failing (then the backoff decides).
  const bool full = static_cast<int>(pending_.size()) >= options_.report_max_episodes;
  if (!force && now < next_report_ && (!full || !report_backoff_.fresh())) return;
  v1::ReportEpisodesRequest request;
  request.set_experiment_id(assignment_.experiment_id());
  request.set_generation(assignment_.generation());
  const size_t count = std::min(pending_.size(), kMaxReportEpisodes);
  request.set_first_sequence(pending_first_sequence_);
  for (size_t i = 0; i < count; ++i) *request.add_episodes() = pending_[i];
  const absl::Duration timeout =
      final_attempt ? std::min(options_.rpc_timeout, absl::Seconds(1)) : options_.rpc_timeout;
  absl::StatusOr<v1::ReportEpisodesResponse> response =
      host_->ReportEpisodes(std::move(request), timeout);
  if (response.ok() || !Retryable(response.status())) {
    if (!response.ok()) {
      metrics_->RpcError("ReportEpisodes");
      PRL_LOG(ERROR) << "the learner refused " << count
                     << " episode reports; dropping them: " << response.status();
    }
    pending_.erase(pending_.begin(), pending_.begin() + count);
    pending_first_sequence_ += static_cast<int64_t>(count);
    report_backoff_.Reset();
    next_report_ = now + options_.report_interval;
    return;
  }
  metrics_->RpcError("ReportEpisodes");
  if (report_backoff_.fresh()) {
    PRL_LOG(WARNING) << "reporting " << count
                     << " episodes failed; keeping them for a retry: " << response.status();
  }
  next_report_ = now + std::max(options_.report_interval, report_backoff_.Next());
}

}  // namespace prl::actor
