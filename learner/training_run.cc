#include "learner/training_run.h"

#include <sys/stat.h>

#include <algorithm>
#include <deque>
#include <map>
#include <numeric>
#include <optional>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/checksummed_file.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/tensor.h"
#include "common/torch_tensor.h"
#include "env_desc/env_spec.h"
#include "learner/agent.h"
#include "learner/checkpoint.pb.h"
#include "replay/replay_client.h"
#include "torch/torch.h"

namespace prl::learner {
namespace {

constexpr int kRecentReturns = 10;

void SetNow(google::protobuf::Timestamp* ts) {
  const absl::Time now = absl::Now();
  ts->set_seconds(absl::ToUnixSeconds(now));
  ts->set_nanos(static_cast<int32_t>(absl::ToUnixNanos(now) % 1000000000));
}

v1::ColumnSpec Column(const std::string& name, int64_t dim) {
  v1::ColumnSpec c;
  c.set_name(name);
  c.set_dtype(v1::Tensor::DTYPE_FLOAT32);
  if (dim > 0) c.add_shape(dim);
  return c;
}

double Mean(const std::vector<double>& v) {
  return v.empty() ? 0.0 : std::accumulate(v.begin(), v.end(), 0.0) / v.size();
}

// A sampled batch on its way from the prefetch thread to the update loop.
struct Prefetched {
  TransitionBatch batch;
  std::vector<uint64_t> keys;
  int64_t table_size = 0;
};

class TrainingRun final : public ExperimentRun, public ActorEventSink {
 public:
  TrainingRun(const v1::Experiment& experiment, RunContext* context, TrainingRunOptions options)
      : experiment_(experiment),
        spec_(experiment.spec()),
        context_(context),
        options_(std::move(options)),
        table_(experiment.id()) {}

  ~TrainingRun() override { StopPrefetch(); }

  Result Run() override;

  void RequestStop(const std::string& reason, bool shutdown) override {
    absl::MutexLock lock(&mu_);
    if (stop_requested_) return;
    stop_requested_ = true;
    stop_reason_ = reason;
    stop_for_shutdown_ = shutdown;
  }

  void OnEnvSteps(int64_t delta) override {
    absl::MutexLock lock(&mu_);
    env_steps_ += delta;
  }

  void OnEpisodes(const std::vector<v1::EpisodeSummary>& episodes) override {
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

 private:
  absl::Status Setup();
  absl::Status CreateTable();
  absl::Status Restore();
  absl::Status Checkpoint();
  absl::Status Publish();
  void StartPrefetch();
  void StopPrefetch();
  void PrefetchLoop();
  // Converts a SampleResponse into tensors on the agent's device.
  absl::StatusOr<Prefetched> ToBatch(v1::SampleResponse& response) const;
  // Evaluation rounds and curve points due at the current env step count.
  void ScheduleCurve() ABSL_LOCKS_EXCLUDED(mu_);
  // Why the run should end now, or "" to go on.
  std::string StopReason() ABSL_LOCKS_EXCLUDED(mu_);
  void ReportProgress() ABSL_LOCKS_EXCLUDED(mu_);
  double ElapsedSeconds() const {
    return elapsed_before_ + absl::ToDoubleSeconds(absl::Now() - start_);
  }

  const v1::Experiment experiment_;
  const v1::ExperimentSpec spec_;
  RunContext* const context_;
  const TrainingRunOptions options_;
  const std::string table_;

  std::vector<std::string> addresses_;
  std::unique_ptr<replay::ShardedReplayClient> replay_;
  std::unique_ptr<Agent> agent_;
  int obs_dim_ = 0;
  int act_dim_ = 0;
  int64_t policy_version_ = 0;
  int64_t last_published_updates_ = -1;
  v1::PolicyArchitecture architecture_;
  absl::Time start_ = absl::Now();
  double elapsed_before_ = 0;
  UpdateStats last_stats_;
  double updates_per_second_ = 0;
  double env_steps_per_second_ = 0;

  // prefetching
  std::thread prefetch_thread_;
  absl::Mutex queue_mu_;
  std::deque<Prefetched> queue_ ABSL_GUARDED_BY(queue_mu_);
  bool prefetch_stop_ ABSL_GUARDED_BY(queue_mu_) = false;
  absl::Status prefetch_error_ ABSL_GUARDED_BY(queue_mu_);
  int64_t replay_size_ ABSL_GUARDED_BY(queue_mu_) = 0;

  absl::Mutex mu_;
  bool stop_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_for_shutdown_ ABSL_GUARDED_BY(mu_) = false;
  std::string stop_reason_ ABSL_GUARDED_BY(mu_);
  int64_t env_steps_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t episodes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t updates_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<double> recent_returns_ ABSL_GUARDED_BY(mu_);
  std::vector<double> curve_train_returns_ ABSL_GUARDED_BY(mu_);
  // evaluation
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

absl::Status TrainingRun::CreateTable() {
  const v1::ReplaySpec& r = spec_.replay();
  v1::TableConfig config;
  config.set_name(table_);
  *config.add_signature() = Column("observation", obs_dim_);
  *config.add_signature() = Column("action", act_dim_);
  *config.add_signature() = Column("reward", 0);
  *config.add_signature() = Column("discount", 0);
  *config.add_signature() = Column("next_observation", obs_dim_);
  const int shards = static_cast<int>(addresses_.size());
  config.set_capacity(std::max<int64_t>(1, r.capacity() / shards));
  config.set_sampler(r.sampler());
  config.set_priority_exponent(r.priority_exponent());
  config.set_max_times_sampled(r.max_times_sampled());
  v1::RateLimiterConfig* limiter = config.mutable_rate_limiter();
  limiter->set_min_size_to_sample(std::max<int64_t>(1, r.min_size_to_sample() / shards));
  if (r.samples_per_insert() > 0) {
    limiter->set_samples_per_insert(r.samples_per_insert());
    limiter->set_error_buffer(std::max(r.error_buffer(), std::max(1.0, r.samples_per_insert())));
  }
  // shards may still be starting: retry UNAVAILABLE for a while
  const absl::Time deadline = absl::Now() + absl::Minutes(1);
  while (true) {
    absl::Status s = replay_->CreateTable(config);
    if (s.ok() || s.code() != absl::StatusCode::kUnavailable || absl::Now() > deadline) return s;
    {
      absl::MutexLock lock(&mu_);
      if (stop_requested_) return s;
    }
    absl::SleepFor(absl::Milliseconds(500));
  }
}

absl::Status TrainingRun::Setup() {
  const env_desc::DomainInfo* domain = env_desc::FindDomain(spec_.env().domain());
  if (domain == nullptr) return absl::InvalidArgumentError("env.domain: not set");
  obs_dim_ = domain->obs_dim;
  act_dim_ = domain->act_dim;
  if (options_.replay_addresses.empty()) {
    return absl::FailedPreconditionError(
        "the learner has no replay shards (--learner_replay) to train with");
  }
  const int wanted = spec_.replay().num_shards();
  addresses_ = options_.replay_addresses;
  if (wanted > 0 && wanted < static_cast<int>(addresses_.size())) addresses_.resize(wanted);
  replay::ReplayClientOptions replay_options;
  replay_options.addresses = addresses_;
  replay_options.channel = options_.channel;
  replay_options.call = options_.call;
  PRL_ASSIGN_OR_RETURN(replay_, replay::ShardedReplayClient::Create(replay_options));
  AgentOptions agent_options;
  agent_options.obs_dim = obs_dim_;
  agent_options.act_dim = act_dim_;
  agent_options.algorithm = spec_.algorithm();
  agent_options.device = spec_.resources().learner_device().empty()
                             ? options_.device
                             : spec_.resources().learner_device();
  agent_options.seed = static_cast<uint64_t>(spec_.algorithm().seed());
  agent_options.num_threads = options_.torch_threads;
  PRL_ASSIGN_OR_RETURN(agent_, Agent::Create(agent_options));
  PRL_RETURN_IF_ERROR(Restore());
  PRL_RETURN_IF_ERROR(CreateTable());
  return absl::OkStatus();
}

absl::Status TrainingRun::Restore() {
  absl::MutexLock lock(&mu_);
  next_curve_at_ = spec_.evaluation().every_env_steps();
  struct stat st;
  if (stat(options_.checkpoint_path.c_str(), &st) != 0) return absl::OkStatus();
  PRL_ASSIGN_OR_RETURN(std::string bytes, ReadChecksummedFile(options_.checkpoint_path));
  TrainingCheckpoint checkpoint;
  if (!checkpoint.ParseFromString(bytes)) {
    return absl::DataLossError(
        absl::StrCat(options_.checkpoint_path, " is not a training checkpoint"));
  }
  if (checkpoint.experiment_id() != experiment_.id()) {
    return absl::DataLossError(absl::StrCat(options_.checkpoint_path, " belongs to ",
                                            checkpoint.experiment_id(), ", not ",
                                            experiment_.id()));
  }
  PRL_RETURN_IF_ERROR(agent_->RestoreState(checkpoint.agent_state()));
  env_steps_ = checkpoint.env_steps();
  updates_ = checkpoint.updates();
  episodes_ = checkpoint.episodes();
  policy_version_ = checkpoint.policy_version();
  eval_round_ = checkpoint.eval_rounds();
  next_curve_at_ = checkpoint.next_curve_at();
  latest_eval_return_ = checkpoint.latest_eval_return();
  best_eval_return_ = checkpoint.best_eval_return();
  latest_eval_success_rate_ = checkpoint.latest_eval_success_rate();
  recent_returns_.assign(checkpoint.recent_train_returns().begin(),
                         checkpoint.recent_train_returns().end());
  elapsed_before_ = checkpoint.elapsed_seconds();
  PRL_LOG(INFO) << experiment_.id() << ": resumed from " << options_.checkpoint_path << " at "
                << env_steps_ << " env steps, " << updates_ << " updates, policy v"
                << policy_version_;
  return absl::OkStatus();
}

absl::Status TrainingRun::Checkpoint() {
  TrainingCheckpoint checkpoint;
  checkpoint.set_experiment_id(experiment_.id());
  PRL_ASSIGN_OR_RETURN(*checkpoint.mutable_agent_state(), agent_->SaveState());
  {
    absl::MutexLock lock(&mu_);
    checkpoint.set_env_steps(env_steps_);
    checkpoint.set_updates(updates_);
    checkpoint.set_episodes(episodes_);
    checkpoint.set_eval_rounds(eval_round_ - (round_in_flight_ ? 1 : 0));
    checkpoint.set_next_curve_at(next_curve_at_);
    checkpoint.set_latest_eval_return(latest_eval_return_);
    checkpoint.set_best_eval_return(best_eval_return_);
    checkpoint.set_latest_eval_success_rate(latest_eval_success_rate_);
    for (double r : recent_returns_) checkpoint.add_recent_train_returns(r);
  }
  checkpoint.set_policy_version(policy_version_);
  checkpoint.set_elapsed_seconds(ElapsedSeconds());
  PRL_RETURN_IF_ERROR(
      WriteChecksummedFile(options_.checkpoint_path, checkpoint.SerializeAsString()));
  v1::ExperimentOutputs outputs;
  outputs.set_checkpoint_path(options_.checkpoint_path);
  outputs.set_policy_version(policy_version_);
  context_->SetOutputs(outputs);
  return absl::OkStatus();
}

absl::Status TrainingRun::Publish() {
  auto policy = std::make_shared<v1::Policy>();
  std::vector<std::pair<std::string, HostTensor>> weights;
  PRL_RETURN_IF_ERROR(agent_->ExportPolicy(policy->mutable_architecture(), &weights));
  architecture_ = policy->architecture();
  for (auto& [name, tensor] : weights) {
    v1::NamedTensor* named = policy->add_weights();
    named->set_name(name);
    TensorToProto(std::move(tensor), named->mutable_tensor());
  }
  policy->set_experiment_id(experiment_.id());
  policy->set_version(++policy_version_);
  SetNow(policy->mutable_create_time());
  {
    absl::MutexLock lock(&mu_);
    policy->set_env_steps(env_steps_);
    policy->set_updates(updates_);
    last_published_updates_ = updates_;
  }
  options_.policies->Publish(std::move(policy));
  return absl::OkStatus();
}

absl::StatusOr<Prefetched> TrainingRun::ToBatch(v1::SampleResponse& response) const {
  Prefetched out;
  out.keys.assign(response.keys().begin(), response.keys().end());
  out.table_size = response.table_size();
  const torch::Device device(agent_->device());
  // columns by name: the table's signature order is not assumed
  std::map<std::string, at::Tensor> columns;
  for (const v1::NamedTensor& column : response.columns()) {
    PRL_ASSIGN_OR_RETURN(TensorView view, ViewTensorProto(column.tensor(), column.name()));
    columns[column.name()] = ToTorch(view).to(device, /*non_blocking=*/true);
  }
  for (const char* name : {"observation", "action", "reward", "discount", "next_observation"}) {
    if (columns.count(name) == 0) {
      return absl::InternalError(absl::StrCat("sampled batch has no '", name, "' column"));
    }
  }
  out.batch.obs = columns["observation"];
  out.batch.action = columns["action"];
  out.batch.reward = columns["reward"];
  out.batch.discount = columns["discount"];
  out.batch.next_obs = columns["next_observation"];
  if (spec_.replay().sampler() == v1::SAMPLER_PRIORITIZED) {
    std::vector<float> weights(response.importance_weights().begin(),
                               response.importance_weights().end());
    out.batch.weight =
        torch::from_blob(weights.data(), {static_cast<int64_t>(weights.size())}, torch::kFloat32)
            .clone()
            .to(device);
  }
  return out;
}

void TrainingRun::PrefetchLoop() {
  const int batch_size = spec_.algorithm().batch_size();
  const double is_exponent = spec_.replay().sampler() == v1::SAMPLER_PRIORITIZED
                                 ? spec_.replay().importance_sampling_exponent()
                                 : 0.0;
  while (true) {
    {
      absl::MutexLock lock(&queue_mu_);
      const auto room = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return prefetch_stop_ || queue_.size() < 2;
      };
      queue_mu_.Await(absl::Condition(&room));
      if (prefetch_stop_) return;
    }
    // short waits so a stop is noticed while the table fills or the limiter holds samples
    absl::StatusOr<v1::SampleResponse> sample =
        replay_->Sample(table_, batch_size, absl::Milliseconds(500), is_exponent);
    if (!sample.ok()) {
      const absl::StatusCode code = sample.status().code();
      if (code == absl::StatusCode::kDeadlineExceeded || code == absl::StatusCode::kUnavailable ||
          code == absl::StatusCode::kResourceExhausted) {
        continue;  // not enough data yet, limiter waiting, or shards restarting
      }
      absl::MutexLock lock(&queue_mu_);
      prefetch_error_ = sample.status();
      return;
    }
    absl::StatusOr<Prefetched> batch = ToBatch(*sample);
    absl::MutexLock lock(&queue_mu_);
    if (!batch.ok()) {
      prefetch_error_ = batch.status();
      return;
    }
    replay_size_ = batch->table_size;
    queue_.push_back(std::move(*batch));
  }
}

void TrainingRun::StartPrefetch() {
  prefetch_thread_ = std::thread([this] { PrefetchLoop(); });
}

void TrainingRun::StopPrefetch() {
  {
    absl::MutexLock lock(&queue_mu_);
    prefetch_stop_ = true;
  }
  if (prefetch_thread_.joinable()) prefetch_thread_.join();
}

void TrainingRun::ScheduleCurve() {
  const v1::EvaluationSpec& evaluation = spec_.evaluation();
  std::optional<v1::CurvePoint> point;
  bool start_round = false;
  int64_t round = 0;
  {
    absl::MutexLock lock(&mu_);
    if (round_in_flight_) {
      const bool complete = static_cast<int>(eval_returns_.size()) >= round_requested_;
      const bool expired = absl::Now() - round_started_ > options_.evaluation_timeout;
      if (!complete && !expired) return;
      round_in_flight_ = false;
      if (expired && !complete) {
        PRL_LOG(WARNING) << experiment_.id() << ": evaluation round " << eval_round_
                         << " timed out with " << eval_returns_.size() << " of " << round_requested_
                         << " episodes";
      }
      point.emplace();
      point->set_env_steps(round_env_steps_);
      if (!eval_returns_.empty()) {
        latest_eval_return_ = Mean(eval_returns_);
        latest_eval_success_rate_ = static_cast<double>(eval_successes_) / eval_returns_.size();
        best_eval_return_ = eval_round_ == 1 ? latest_eval_return_
                                             : std::max(best_eval_return_, latest_eval_return_);
        point->set_eval_return(latest_eval_return_);
        point->set_eval_episodes(static_cast<int>(eval_returns_.size()));
        point->set_eval_success_rate(latest_eval_success_rate_);
        if (spec_.stop().has_target_return() &&
            latest_eval_return_ >= spec_.stop().target_return()) {
          target_return_reached_ = true;
        }
      }
    } else if (env_steps_ >= next_curve_at_) {
      next_curve_at_ =
          (env_steps_ / evaluation.every_env_steps() + 1) * evaluation.every_env_steps();
      if (evaluation.disabled()) {
        point.emplace();
        point->set_env_steps(env_steps_);
        if (spec_.stop().has_target_return() && recent_returns_.size() >= kRecentReturns &&
            Mean({recent_returns_.begin(), recent_returns_.end()}) >=
                spec_.stop().target_return()) {
          target_return_reached_ = true;
        }
      } else {
        start_round = true;
        round = ++eval_round_;
        round_env_steps_ = env_steps_;
      }
    }
    if (point) {
      point->set_elapsed_seconds(ElapsedSeconds());
      point->set_updates(updates_);
      point->set_train_return(Mean(curve_train_returns_));
      point->set_train_episodes(static_cast<int>(curve_train_returns_.size()));
      curve_train_returns_.clear();
    }
  }
  if (point) context_->AddCurvePoint(*point);
  if (!start_round) return;
  // evaluate the newest weights
  if (absl::Status s = Publish(); !s.ok()) PRL_LOG(ERROR) << "publish: " << s;
  const int requested =
      options_.registry->RequestEvaluation(round, evaluation.episodes(), policy_version_);
  absl::MutexLock lock(&mu_);
  round_in_flight_ = requested > 0;
  round_requested_ = requested;
  round_started_ = absl::Now();
  eval_returns_.clear();
  eval_successes_ = 0;
  if (requested == 0) eval_round_--;  // no actor to run it; try again at the next point
}

std::string TrainingRun::StopReason() {
  const v1::StopCondition& stop = spec_.stop();
  absl::MutexLock lock(&mu_);
  if (stop_requested_) return stop_reason_;
  if (target_return_reached_) return "target_return reached";
  // env-step and update limits wait for an evaluation round in flight to finish
  if (round_in_flight_) return "";
  if (stop.max_env_steps() > 0 && env_steps_ >= stop.max_env_steps()) {
    return "max_env_steps reached";
  }
  if (stop.max_updates() > 0 && updates_ >= stop.max_updates()) return "max_updates reached";
  if (stop.max_wall_time_seconds() > 0 && ElapsedSeconds() >= stop.max_wall_time_seconds()) {
    return "max_wall_time_seconds reached";
  }
  return "";
}

void TrainingRun::ReportProgress() {
  const v1::StopCondition& stop = spec_.stop();
  v1::Progress p;
  {
    absl::MutexLock lock(&queue_mu_);
    p.set_replay_size(replay_size_);
  }
  p.set_active_actors(options_.registry->assigned_actors());
  // the manager is called without mu_ held: it calls RequestStop (which takes mu_) under its
  // own lock, so the lock order is manager -> run
  {
    absl::MutexLock lock(&mu_);
    p.set_env_steps(env_steps_);
    p.set_updates(updates_);
    p.set_episodes(episodes_);
    p.set_env_steps_per_second(env_steps_per_second_);
    p.set_updates_per_second(updates_per_second_);
    p.set_latest_train_return(Mean({recent_returns_.begin(), recent_returns_.end()}));
    p.set_latest_eval_return(latest_eval_return_);
    p.set_best_eval_return(best_eval_return_);
    p.set_latest_eval_success_rate(latest_eval_success_rate_);
    p.set_eval_rounds(eval_round_ - (round_in_flight_ ? 1 : 0));
    p.set_policy_version(policy_version_);
    double fraction = 0;
    if (stop.max_env_steps() > 0) {
      fraction = std::max(fraction, static_cast<double>(env_steps_) / stop.max_env_steps());
    }
    if (stop.max_updates() > 0) {
      fraction = std::max(fraction, static_cast<double>(updates_) / stop.max_updates());
    }
    if (stop.max_wall_time_seconds() > 0) {
      fraction = std::max(fraction, ElapsedSeconds() / stop.max_wall_time_seconds());
    }
    p.set_fraction_done(std::min(1.0, fraction));
    auto& scalars = *p.mutable_scalars();
    scalars["critic_loss"] = last_stats_.critic_loss;
    scalars["actor_loss"] = last_stats_.actor_loss;
    scalars["alpha"] = last_stats_.alpha;
    scalars["q_mean"] = last_stats_.q_mean;
    scalars["entropy"] = last_stats_.entropy;
  }
  context_->ReportProgress(p);
}

ExperimentRun::Result TrainingRun::Run() {
  if (absl::Status s = Setup(); !s.ok()) {
    return {v1::EXPERIMENT_STATE_FAILED, absl::StrCat("setup: ", s.message())};
  }
  options_.policies->Expect(experiment_.id());
  if (absl::Status s = Publish(); !s.ok()) {
    return {v1::EXPERIMENT_STATE_FAILED, absl::StrCat("publishing the policy: ", s.message())};
  }
  // the actors' assignment
  ActorJob job;
  job.experiment_id = experiment_.id();
  job.num_actors = spec_.resources().num_actors();
  job.envs_per_actor = spec_.resources().envs_per_actor();
  job.sink = this;
  v1::Assignment& a = job.assignment;
  a.set_mode(v1::Assignment::MODE_TRAIN);
  *a.mutable_env() = spec_.env();
  for (const std::string& address : addresses_) a.add_replay_addresses(address);
  a.set_table(table_);
  *a.mutable_signature()->Add() = Column("observation", obs_dim_);
  *a.mutable_signature()->Add() = Column("action", act_dim_);
  *a.mutable_signature()->Add() = Column("reward", 0);
  *a.mutable_signature()->Add() = Column("discount", 0);
  *a.mutable_signature()->Add() = Column("next_observation", obs_dim_);
  *a.mutable_policy() = architecture_;
  a.set_decision_horizon(1);
  {
    absl::MutexLock lock(&mu_);
    const int64_t warmup = std::max<int64_t>(0, spec_.algorithm().warmup_env_steps() - env_steps_);
    a.set_warmup_env_steps(warmup / std::max(1, job.num_actors));
  }
  a.set_stochastic_eval(spec_.evaluation().stochastic());
  options_.registry->StartJob(job);
  StartPrefetch();

  const absl::Time begin = absl::Now();
  absl::Time last_progress = absl::InfinitePast();
  absl::Time last_checkpoint = absl::Now();
  int64_t window_updates = 0, window_env_steps = 0;
  absl::Time window_start = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    window_updates = updates_;
    window_env_steps = env_steps_;
  }
  Result result{v1::EXPERIMENT_STATE_SUCCEEDED, ""};
  while (true) {
    const std::string reason = StopReason();
    if (!reason.empty()) {
      absl::MutexLock lock(&mu_);
      if (stop_for_shutdown_) {
        result = {v1::EXPERIMENT_STATE_RUNNING, reason};
      } else if (stop_requested_) {
        result = {v1::EXPERIMENT_STATE_STOPPED, reason};
      } else {
        result = {v1::EXPERIMENT_STATE_SUCCEEDED, reason};
      }
      break;
    }
    // one update when a batch is ready
    std::optional<Prefetched> item;
    {
      absl::MutexLock lock(&queue_mu_);
      const auto ready = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return !queue_.empty() || !prefetch_error_.ok();
      };
      queue_mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(100));
      if (!prefetch_error_.ok()) {
        result = {v1::EXPERIMENT_STATE_FAILED,
                  absl::StrCat("sampling replay: ", prefetch_error_.message())};
        break;
      }
      if (!queue_.empty()) {
        item = std::move(queue_.front());
        queue_.pop_front();
      }
    }
    if (item) {
      absl::StatusOr<UpdateStats> stats = agent_->Update(item->batch);
      if (!stats.ok()) {
        result = {v1::EXPERIMENT_STATE_FAILED, absl::StrCat("update: ", stats.status().message())};
        break;
      }
      if (spec_.replay().sampler() == v1::SAMPLER_PRIORITIZED &&
          stats->td_error_abs.size() == item->keys.size()) {
        std::vector<double> priorities(stats->td_error_abs.begin(), stats->td_error_abs.end());
        for (double& p : priorities) p = std::max(p, 1e-6);
        if (auto s = replay_->UpdatePriorities(table_, item->keys, priorities); !s.ok()) {
          PRL_LOG(WARNING) << "priority update: " << s.status();
        }
      }
      last_stats_ = *stats;
      int64_t updates;
      {
        absl::MutexLock lock(&mu_);
        updates = ++updates_;
      }
      if (updates - last_published_updates_ >= options_.publish_every_updates) {
        if (absl::Status s = Publish(); !s.ok()) {
          result = {v1::EXPERIMENT_STATE_FAILED, absl::StrCat("publish: ", s.message())};
          break;
        }
      }
    }
    ScheduleCurve();
    const absl::Time now = absl::Now();
    if (now - last_progress >= options_.progress_period) {
      const double seconds = absl::ToDoubleSeconds(now - window_start);
      if (seconds >= 5) {
        absl::MutexLock lock(&mu_);
        updates_per_second_ = (updates_ - window_updates) / seconds;
        env_steps_per_second_ = (env_steps_ - window_env_steps) / seconds;
        window_updates = updates_;
        window_env_steps = env_steps_;
        window_start = now;
      } else if (now - begin < absl::Seconds(5) && seconds > 0.5) {
        absl::MutexLock lock(&mu_);
        updates_per_second_ = (updates_ - window_updates) / seconds;
        env_steps_per_second_ = (env_steps_ - window_env_steps) / seconds;
      }
      ReportProgress();
      last_progress = now;
    }
    if (now - last_checkpoint >= options_.checkpoint_period) {
      if (absl::Status s = Checkpoint(); !s.ok()) PRL_LOG(ERROR) << "checkpoint: " << s;
      last_checkpoint = now;
    }
  }
  StopPrefetch();
  options_.registry->EndJob();
  // a last curve point for the final stretch (training returns only)
  if (result.state == v1::EXPERIMENT_STATE_SUCCEEDED) {
    if (absl::Status s = Publish(); !s.ok()) PRL_LOG(ERROR) << "final publish: " << s;
  }
  if (absl::Status s = Checkpoint(); !s.ok()) {
    PRL_LOG(ERROR) << "final checkpoint: " << s;
    if (result.state == v1::EXPERIMENT_STATE_SUCCEEDED) {
      result = {v1::EXPERIMENT_STATE_FAILED, absl::StrCat("final checkpoint: ", s.message())};
    }
  }
  ReportProgress();
  return result;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ExperimentRun>> CreateTrainingRun(
    const v1::Experiment& experiment, RunContext* context, const TrainingRunOptions& options) {
  const v1::ExperimentSpec& spec = experiment.spec();
  if (spec.kind() != v1::ExperimentSpec::KIND_TRAIN ||
      (!spec.algorithm().has_sac() && !spec.algorithm().has_td3())) {
    return absl::UnimplementedError("this learner runs TRAIN experiments with sac or td3 only");
  }
  if (options.registry == nullptr || options.policies == nullptr) {
    return absl::InvalidArgumentError("TrainingRunOptions needs registry and policies");
  }
  return std::make_unique<TrainingRun>(experiment, context, options);
}

}  // namespace prl::learner
