#include "learner/training_run.h"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "common/checksummed_file.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/tensor.h"
#include "env_desc/env_spec.h"
#include "learner/algorithm.h"
#include "learner/checkpoint.pb.h"
#include "learner/evaluation_schedule.h"
#include "learner/replay_feed.h"
#include "replay/replay_client.h"

namespace prl::learner {
namespace {

void SetNow(google::protobuf::Timestamp* ts) {
  const absl::Time now = absl::Now();
  ts->set_seconds(absl::ToUnixSeconds(now));
  ts->set_nanos(static_cast<int32_t>(absl::ToUnixNanos(now) % 1000000000));
}

// The replay table of `table` for this run: the spec's replay settings split over the shards.
v1::TableConfig TableConfigFor(const std::string& name, const TableSpec& table,
                               const v1::ReplaySpec& r, int shards) {
  v1::TableConfig config;
  config.set_name(name);
  for (const v1::ColumnSpec& c : table.signature) *config.add_signature() = c;
  const int64_t capacity = table.capacity > 0 ? table.capacity : r.capacity();
  config.set_capacity(std::max<int64_t>(1, capacity / shards));
  config.set_sampler(table.sampler != v1::SAMPLER_UNSPECIFIED ? table.sampler : r.sampler());
  config.set_priority_exponent(table.priority_exponent > 0 ? table.priority_exponent
                                                           : r.priority_exponent());
  if (table.remover != v1::REMOVER_UNSPECIFIED) config.set_remover(table.remover);
  config.set_max_times_sampled(r.max_times_sampled());
  v1::RateLimiterConfig* limiter = config.mutable_rate_limiter();
  if (!table.rate_limited) {
    limiter->set_min_size_to_sample(1);
    return config;
  }
  limiter->set_min_size_to_sample(std::max<int64_t>(1, r.min_size_to_sample() / shards));
  if (r.samples_per_insert() > 0) {
    limiter->set_samples_per_insert(r.samples_per_insert());
    limiter->set_error_buffer(std::max(r.error_buffer(), std::max(1.0, r.samples_per_insert())));
  }
  return config;
}

// The run's feed over the sharded replay client (which it owns).
class ShardedFeed final : public BatchFeed {
 public:
  static absl::StatusOr<std::unique_ptr<BatchFeed>> Create(
      const FeedRequest& request, const replay::ReplayClientOptions& client_options) {
    PRL_ASSIGN_OR_RETURN(std::unique_ptr<replay::ShardedReplayClient> client,
                         replay::ShardedReplayClient::Create(client_options));
    ReplayFeedOptions options;
    options.tables = request.tables;
    options.batch_size = request.batch_size;
    options.prioritized = request.prioritized;
    options.importance_sampling_exponent = request.importance_sampling_exponent;
    for (const FeedRequest::ExtraTable& e : request.extra) {
      options.extra.push_back(
          {e.table, e.batch_size, e.prioritized, e.importance_sampling_exponent});
    }
    options.device = request.device;
    options.prefetch = request.prefetch;
    return std::unique_ptr<BatchFeed>(new ShardedFeed(std::move(client), options));
  }

  absl::Status Start() override { return feed_.Start(); }
  absl::StatusOr<std::optional<Batch>> Next(absl::Duration timeout) override {
    return feed_.Next(timeout);
  }
  void UpdatePriorities(const std::vector<uint64_t>& keys,
                        const std::vector<double>& priorities) override {
    feed_.UpdatePriorities(keys, priorities);
  }
  void UpdateExtraPriorities(int index, const std::vector<uint64_t>& keys,
                             const std::vector<double>& priorities) override {
    feed_.UpdateExtraPriorities(index, keys, priorities);
  }
  int64_t size() const override { return feed_.size(); }
  void Stop() override { feed_.Stop(); }
  absl::Status Release() override { return feed_.Release(); }

 private:
  ShardedFeed(std::unique_ptr<replay::ShardedReplayClient> client, ReplayFeedOptions options)
      : client_(std::move(client)),
        feed_(NewShardedReplaySource(client_.get()), std::move(options)) {}

  // declared first: the feed's source points at it
  const std::unique_ptr<replay::ShardedReplayClient> client_;
  ReplayFeed feed_;
};

class TrainingRun final : public ExperimentRun, public ActorEventSink {
 public:
  TrainingRun(const v1::Experiment& experiment, RunContext* context, TrainingRunOptions options)
      : experiment_(experiment),
        spec_(experiment.spec()),
        context_(context),
        options_(std::move(options)),
        schedule_(spec_, options_.evaluation_timeout) {
    if (options_.metrics != nullptr) metrics_ = options_.metrics->ForExperiment(experiment.id());
  }

  ~TrainingRun() override {
    if (feed_ != nullptr) feed_->Stop();
  }

  Result Run() override;

  void RequestStop(const std::string& reason, bool shutdown) override {
    absl::MutexLock lock(&mu_);
    if (stop_requested_) return;
    stop_requested_ = true;
    stop_reason_ = reason;
    stop_for_shutdown_ = shutdown;
  }

  void OnEnvSteps(int64_t delta) override {
    {
      absl::MutexLock lock(&mu_);
      // Steps taken after the budget is spent (while a last evaluation round finishes) are
      // neither trained on nor counted: the run's env steps stop where its training stopped.
      // The report that crosses the budget still counts, with its episodes (OnEpisodes).
      counting_closed_ = BudgetSpent();
      if (counting_closed_) return;
      env_steps_ += delta;
    }
    if (metrics_) metrics_->env_steps->Increment(static_cast<double>(delta));
  }

  void OnEpisodes(const std::vector<v1::EpisodeSummary>& all) override {
    bool budget_spent;
    {
      absl::MutexLock lock(&mu_);
      budget_spent = counting_closed_;
    }
    // Past the budget only evaluation episodes count, like the env steps (OnEnvSteps): the
    // run's episodes and env steps stop together.
    std::vector<v1::EpisodeSummary> kept;
    if (budget_spent) {
      for (const v1::EpisodeSummary& e : all) {
        if (e.is_eval()) kept.push_back(e);
      }
    }
    const std::vector<v1::EpisodeSummary>& episodes = budget_spent ? kept : all;
    schedule_.OnEpisodes(episodes);
    {
      // for the algorithm, on the loop's thread (TrainOn); bounded while no update runs
      absl::MutexLock lock(&mu_);
      pending_episodes_.insert(pending_episodes_.end(), episodes.begin(), episodes.end());
      constexpr size_t kMaxPending = 10000;
      if (pending_episodes_.size() > kMaxPending) {
        pending_episodes_.erase(pending_episodes_.begin(),
                                pending_episodes_.end() - static_cast<ptrdiff_t>(kMaxPending));
      }
    }
    if (!metrics_) return;
    int train = 0;
    for (const v1::EpisodeSummary& e : episodes) train += e.is_eval() ? 0 : 1;
    if (train > 0) {
      metrics_->episodes->Increment(train);
      metrics_->train_return->Set(schedule_.latest_train_return());
    }
  }

 private:
  absl::Status Setup();
  absl::Status Restore();
  // AlgorithmSpec.init_from: the algorithm starts from the source experiment's networks.
  absl::Status InitializeFromSource();
  absl::Status Checkpoint();
  // Reserves policy versions up to at least `version` on disk.
  absl::Status ReserveVersions(int64_t version);
  std::string VersionsPath() const { return options_.checkpoint_path + ".versions"; }
  absl::Status Publish();
  // Starts an evaluation round or records a curve point when one is due.
  void AdvanceSchedule();
  // Why the run should end now, or "" to go on.
  std::string StopReason() ABSL_LOCKS_EXCLUDED(mu_);
  // True once max_env_steps or max_updates is reached: the run trains no more (it may still be
  // waiting for an evaluation round to finish).
  bool BudgetSpent() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const v1::StopCondition& stop = spec_.stop();
    return (stop.max_env_steps() > 0 && env_steps_ >= stop.max_env_steps()) ||
           (stop.max_updates() > 0 && updates_ >= stop.max_updates());
  }
  void ReportProgress() ABSL_LOCKS_EXCLUDED(mu_);
  // The actors' assignment.
  ActorJob MakeJob() const;
  // One update per batch (Algorithm::UpdateMany); an error fails the run.
  absl::Status TrainOn(absl::Span<const Batch> batches);
  // The batches for the next TrainOn: `first`, then those the feed already holds, up to
  // updates_per_call_ and the run's budget. Errors: the feed's (the run fails with them).
  absl::StatusOr<std::vector<Batch>> TakeBatches(Batch first);
  double ElapsedSeconds() const {
    return elapsed_before_ + absl::ToDoubleSeconds(absl::Now() - start_);
  }
  Result Ended() ABSL_LOCKS_EXCLUDED(mu_);

  const v1::Experiment experiment_;
  const v1::ExperimentSpec spec_;
  RunContext* const context_;
  const TrainingRunOptions options_;
  std::optional<RunMetrics> metrics_;
  EvaluationSchedule schedule_;

  std::vector<std::string> addresses_;
  std::vector<v1::TableConfig> tables_;
  std::string episode_table_;  // the table actors insert finished episodes into, if any
  std::unique_ptr<Algorithm> algorithm_;
  std::unique_ptr<BatchFeed> feed_;
  int updates_per_call_ = 1;  // set in Setup from the algorithm's device
  int obs_dim_ = 0;
  int act_dim_ = 0;
  int64_t policy_version_ = 0;
  // Versions up to this one are reserved on disk (policy_version_ <= reserved_versions_).
  int64_t reserved_versions_ = 0;
  int64_t last_published_updates_ = -1;
  // Progress.message: how the run started.
  std::string start_message_;
  // set once the run has ended and released its actors
  std::atomic<bool> ended_{false};
  v1::PolicyArchitecture architecture_;
  absl::Time start_ = absl::Now();
  double elapsed_before_ = 0;
  std::map<std::string, double> last_scalars_;
  double updates_per_second_ = 0;
  double env_steps_per_second_ = 0;

  absl::Mutex mu_;
  bool stop_requested_ ABSL_GUARDED_BY(mu_) = false;
  // Episodes reported since the last update, for Algorithm::ObserveEpisodes.
  std::vector<v1::EpisodeSummary> pending_episodes_ ABSL_GUARDED_BY(mu_);
  // The budget was spent before the latest actor report: its steps and training episodes no
  // longer count.
  bool counting_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_for_shutdown_ ABSL_GUARDED_BY(mu_) = false;
  std::string stop_reason_ ABSL_GUARDED_BY(mu_);
  int64_t env_steps_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t updates_ ABSL_GUARDED_BY(mu_) = 0;
};

absl::Status TrainingRun::Setup() {
  const env_desc::DomainInfo* domain = env_desc::FindDomain(spec_.env().domain());
  if (domain == nullptr) return absl::InvalidArgumentError("env.domain: not set");
  obs_dim_ = domain->obs_dim;
  act_dim_ = domain->act_dim;
  AlgorithmOptions algorithm_options;
  algorithm_options.spec = spec_;
  algorithm_options.experiment_id = experiment_.id();
  algorithm_options.obs_dim = obs_dim_;
  algorithm_options.act_dim = act_dim_;
  algorithm_options.device = spec_.resources().learner_device().empty()
                                 ? options_.device
                                 : spec_.resources().learner_device();
  algorithm_options.num_threads = options_.torch_threads;
  algorithm_options.updates_per_graph = options_.updates_per_graph;
  PRL_ASSIGN_OR_RETURN(algorithm_, options_.algorithms->Create(algorithm_options));

  if (options_.feed_factory == nullptr && options_.replay_addresses.empty()) {
    return absl::FailedPreconditionError(
        "the learner has no replay shards (--learner_replay) to train with");
  }
  const int wanted = spec_.replay().num_shards();
  addresses_ = options_.replay_addresses;
  if (wanted > 0 && wanted < static_cast<int>(addresses_.size())) addresses_.resize(wanted);
  const int shards = std::max<int>(1, addresses_.size());
  FeedRequest request;
  for (const TableSpec& table : algorithm_->Tables()) {
    tables_.push_back(
        TableConfigFor(experiment_.id() + table.suffix, table, spec_.replay(), shards));
    if (table.episode_returns) episode_table_ = tables_.back().name();
    if (tables_.size() > 1 && table.sampled) {
      FeedRequest::ExtraTable extra;
      extra.table = tables_.back().name();
      extra.batch_size = spec_.algorithm().batch_size();
      extra.prioritized = tables_.back().sampler() == v1::SAMPLER_PRIORITIZED;
      extra.importance_sampling_exponent = table.importance_sampling_exponent;
      request.extra.push_back(extra);
    }
  }
  request.tables = tables_;
  request.batch_size = spec_.algorithm().batch_size();
  request.prioritized = spec_.replay().sampler() == v1::SAMPLER_PRIORITIZED;
  request.importance_sampling_exponent = spec_.replay().importance_sampling_exponent();
  request.device = algorithm_->device();
  updates_per_call_ = options_.updates_per_call > 0              ? options_.updates_per_call
                      : absl::StartsWith(request.device, "cuda") ? 4
                                                                 : 1;
  request.prefetch = std::max(2, updates_per_call_);
  if (options_.feed_factory != nullptr) {
    PRL_ASSIGN_OR_RETURN(feed_, options_.feed_factory(request));
  } else {
    replay::ReplayClientOptions replay_options;
    replay_options.addresses = addresses_;
    replay_options.channel = options_.channel;
    replay_options.call = options_.call;
    PRL_ASSIGN_OR_RETURN(feed_, ShardedFeed::Create(request, replay_options));
  }
  // after the feed is made (not started): a checkpoint that cannot be restored fails the run,
  // which then deletes the tables an earlier start of it left on the shards
  PRL_RETURN_IF_ERROR(Restore());
  return feed_->Start();
}

absl::Status TrainingRun::Restore() {
  struct stat st;
  // versions reserved by earlier starts: never published again
  if (stat(VersionsPath().c_str(), &st) == 0) {
    PRL_ASSIGN_OR_RETURN(std::string bytes, ReadChecksummedFile(VersionsPath()));
    int64_t reserved = 0;
    if (!absl::SimpleAtoi(bytes, &reserved) || reserved < 0) {
      return absl::DataLossError(
          absl::StrCat(VersionsPath(), " does not hold a policy version count"));
    }
    reserved_versions_ = reserved;
    policy_version_ = reserved;
  }
  if (stat(options_.checkpoint_path.c_str(), &st) != 0) {
    // nothing to resume: a curve left by a run that died before its first checkpoint goes
    context_->TruncateCurve(0);
    if (policy_version_ > 0) {
      start_message_ = absl::StrCat(
          "restarted without a checkpoint; policy versions continue after v", policy_version_);
    }
    if (spec_.algorithm().has_init_from()) return InitializeFromSource();
    return absl::OkStatus();
  }
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
  PRL_RETURN_IF_ERROR(algorithm_->RestoreState(checkpoint.agent_state()));
  schedule_.Restore(checkpoint);
  policy_version_ = std::max(policy_version_, checkpoint.policy_version());
  elapsed_before_ = checkpoint.elapsed_seconds();
  context_->TruncateCurve(checkpoint.env_steps());
  absl::MutexLock lock(&mu_);
  env_steps_ = checkpoint.env_steps();
  updates_ = checkpoint.updates();
  start_message_ =
      absl::StrCat("resumed from the checkpoint at ", env_steps_, " env steps, ", updates_,
                   " updates (policy versions continue after v", policy_version_, ")");
  PRL_LOG(INFO) << experiment_.id() << ": " << start_message_;
  return absl::OkStatus();
}

absl::Status TrainingRun::InitializeFromSource() {
  const v1::PolicyRef& ref = spec_.algorithm().init_from();
  if (options_.initial_state == nullptr) {
    return absl::FailedPreconditionError(
        "algorithm.init_from: this learner cannot read other experiments' checkpoints");
  }
  PRL_ASSIGN_OR_RETURN(std::string bytes, options_.initial_state(ref));
  absl::Status initialized = algorithm_->InitializeFrom(bytes);
  if (!initialized.ok()) {
    return absl::Status(initialized.code(),
                        absl::StrCat("algorithm.init_from: ", initialized.message()));
  }
  const std::string source = ref.has_experiment_id() ? ref.experiment_id() : ref.checkpoint_path();
  start_message_ = absl::StrCat(start_message_, start_message_.empty() ? "" : "; ",
                                "started from the networks of ", source);
  PRL_LOG(INFO) << experiment_.id() << ": " << start_message_;
  return absl::OkStatus();
}

absl::Status TrainingRun::ReserveVersions(int64_t version) {
  if (version <= reserved_versions_) return absl::OkStatus();
  const int64_t reserve = version + std::max<int64_t>(0, options_.policy_version_block - 1);
  PRL_RETURN_IF_ERROR(WriteChecksummedFile(VersionsPath(), absl::StrCat(reserve)));
  reserved_versions_ = reserve;
  return absl::OkStatus();
}

absl::Status TrainingRun::Checkpoint() {
  const absl::Time begin = absl::Now();
  TrainingCheckpoint checkpoint;
  checkpoint.set_experiment_id(experiment_.id());
  PRL_ASSIGN_OR_RETURN(*checkpoint.mutable_agent_state(), algorithm_->SaveState());
  {
    absl::MutexLock lock(&mu_);
    checkpoint.set_env_steps(env_steps_);
    checkpoint.set_updates(updates_);
  }
  schedule_.Save(&checkpoint);
  checkpoint.set_policy_version(policy_version_);
  checkpoint.set_elapsed_seconds(ElapsedSeconds());
  std::string bytes;
  absl::Status written;
  if (const size_t size = checkpoint.ByteSizeLong();
      size > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    // protobuf's limit; SerializeAsString would return an empty string and a 24-byte file
    // would pass for a checkpoint
    written = absl::ResourceExhaustedError(
        absl::StrCat("the checkpoint is ", size, " bytes, over protobuf's 2 GiB limit"));
  } else if (!checkpoint.SerializeToString(&bytes)) {
    written = absl::InternalError("cannot serialise the checkpoint");
  } else {
    written = WriteChecksummedFile(options_.checkpoint_path, bytes);
  }
  if (metrics_) {
    (written.ok() ? metrics_->checkpoints : metrics_->checkpoint_errors)->Increment();
    if (written.ok())
      metrics_->checkpoint_duration->Observe(absl::ToDoubleSeconds(absl::Now() - begin));
  }
  PRL_RETURN_IF_ERROR(written);
  v1::ExperimentOutputs outputs;
  outputs.set_checkpoint_path(options_.checkpoint_path);
  outputs.set_policy_version(policy_version_);
  context_->SetOutputs(outputs);
  return absl::OkStatus();
}

absl::Status TrainingRun::Publish() {
  auto policy = std::make_shared<v1::Policy>();
  std::vector<std::pair<std::string, HostTensor>> weights;
  PRL_RETURN_IF_ERROR(algorithm_->ExportPolicy(policy->mutable_architecture(), &weights));
  architecture_ = policy->architecture();
  for (auto& [name, tensor] : weights) {
    v1::NamedTensor* named = policy->add_weights();
    named->set_name(name);
    TensorToProto(std::move(tensor), named->mutable_tensor());
  }
  algorithm_->ExportTransfer(policy->mutable_transfer());
  policy->set_experiment_id(experiment_.id());
  PRL_RETURN_IF_ERROR(ReserveVersions(policy_version_ + 1));
  policy->set_version(++policy_version_);
  SetNow(policy->mutable_create_time());
  {
    absl::MutexLock lock(&mu_);
    policy->set_env_steps(env_steps_);
    policy->set_updates(updates_);
    last_published_updates_ = updates_;
  }
  options_.policies->Publish(std::move(policy));
  if (metrics_) metrics_->policy_version->Set(static_cast<double>(policy_version_));
  return absl::OkStatus();
}

void TrainingRun::AdvanceSchedule() {
  int64_t env_steps, updates;
  {
    absl::MutexLock lock(&mu_);
    env_steps = env_steps_;
    updates = updates_;
  }
  const int expected = schedule_.round_in_flight()
                           ? options_.registry->ExpectedEvaluationEpisodes(schedule_.round())
                           : -1;
  EvaluationSchedule::Due due =
      schedule_.Advance(env_steps, updates, ElapsedSeconds(), absl::Now(), expected);
  if (due.point) {
    context_->AddCurvePoint(*due.point);
    if (metrics_ && due.point->eval_episodes() > 0) {
      metrics_->eval_return->Set(due.point->eval_return());
    }
  }
  if (due.start_round == 0) return;
  // evaluate the newest weights
  if (absl::Status s = Publish(); !s.ok()) PRL_LOG(ERROR) << "publish: " << s;
  const int requested = options_.registry->RequestEvaluation(
      due.start_round, spec_.evaluation().episodes(), policy_version_);
  schedule_.RoundStarted(due.start_round, requested, absl::Now());
}

std::string TrainingRun::StopReason() {
  const v1::StopCondition& stop = spec_.stop();
  if (schedule_.target_return_reached()) {
    absl::MutexLock lock(&mu_);
    return stop_requested_ ? stop_reason_ : "target_return reached";
  }
  // env-step and update limits wait for an evaluation round in flight to finish, and the
  // env-step limit for the last point it makes due (the final policy's evaluation)
  const bool in_flight = schedule_.round_in_flight();
  absl::MutexLock lock(&mu_);
  if (stop_requested_) return stop_reason_;
  if (in_flight) return "";
  if (stop.max_env_steps() > 0 && env_steps_ >= stop.max_env_steps()) {
    if (schedule_.PointDue(env_steps_)) return "";
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
  p.set_replay_size(feed_ != nullptr ? feed_->size() : 0);
  p.set_active_actors(options_.registry->assigned_actors());
  schedule_.FillProgress(&p);
  p.set_policy_version(policy_version_);
  p.set_env_steps_per_second(env_steps_per_second_);
  p.set_updates_per_second(updates_per_second_);
  // the manager is called without mu_ held: it calls RequestStop (which takes mu_) under its
  // own lock, so the lock order is manager -> run
  {
    absl::MutexLock lock(&mu_);
    p.set_env_steps(env_steps_);
    p.set_updates(updates_);
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
  }
  for (const auto& [name, value] : last_scalars_) (*p.mutable_scalars())[name] = value;
  std::string message = start_message_;
  const int wanted = std::max(1, spec_.resources().num_actors());
  if (!ended_ && p.active_actors() < wanted) {
    absl::StrAppend(&message, message.empty() ? "" : "; ", p.active_actors(), " of ", wanted,
                    " actors assigned, waiting for more to join the learner");
  }
  p.set_message(message);
  if (metrics_) metrics_->replay_size->Set(static_cast<double>(p.replay_size()));
  context_->ReportProgress(p);
}

ActorJob TrainingRun::MakeJob() const {
  ActorJob job;
  job.experiment_id = experiment_.id();
  job.num_actors = spec_.resources().num_actors();
  job.envs_per_actor = spec_.resources().envs_per_actor();
  v1::Assignment& a = job.assignment;
  a.set_mode(v1::Assignment::MODE_TRAIN);
  *a.mutable_env() = spec_.env();
  for (const std::string& address : addresses_) a.add_replay_addresses(address);
  a.set_table(tables_.front().name());
  a.set_episode_table(episode_table_);
  algorithm_->DescribeActing(&a);
  if (spec_.algorithm().n_step() > 1) {
    a.set_n_step(spec_.algorithm().n_step());
    a.set_n_step_discount(spec_.algorithm().discount());
  }
  *a.mutable_policy() = architecture_;
  a.set_stochastic_eval(spec_.evaluation().stochastic());
  return job;
}

absl::StatusOr<std::vector<Batch>> TrainingRun::TakeBatches(Batch first) {
  std::vector<Batch> batches;
  batches.push_back(std::move(first));
  int64_t limit = updates_per_call_;
  {
    absl::MutexLock lock(&mu_);
    if (spec_.stop().max_updates() > 0) {
      limit = std::min<int64_t>(limit, spec_.stop().max_updates() - updates_);
    }
  }
  while (static_cast<int64_t>(batches.size()) < limit) {
    {
      absl::MutexLock lock(&mu_);
      if (BudgetSpent()) break;  // the env-step budget ran out while batches were taken
    }
    // only a batch that is ready
    absl::StatusOr<std::optional<Batch>> more = feed_->Next(absl::ZeroDuration());
    if (!more.ok()) return more.status();
    if (!more->has_value()) break;
    {
      // as in the loop: a batch that arrives with the budget spent is not trained on
      absl::MutexLock lock(&mu_);
      if (BudgetSpent()) break;
    }
    batches.push_back(**std::move(more));
  }
  return batches;
}

absl::Status TrainingRun::TrainOn(absl::Span<const Batch> batches) {
  const absl::Time begin = absl::Now();
  std::vector<v1::EpisodeSummary> episodes;
  {
    absl::MutexLock lock(&mu_);
    episodes.swap(pending_episodes_);
  }
  if (!episodes.empty()) algorithm_->ObserveEpisodes(episodes);
  std::vector<UpdateResult> results;
  if (batches.size() == 1) {
    PRL_ASSIGN_OR_RETURN(UpdateResult result, algorithm_->Update(batches.front()));
    results.push_back(std::move(result));
  } else {
    PRL_ASSIGN_OR_RETURN(results, algorithm_->UpdateMany(batches));
  }
  if (results.size() != batches.size()) {
    return absl::InternalError(absl::StrCat(algorithm_->name(), " returned ", results.size(),
                                            " update results for ", batches.size(), " batches"));
  }
  for (size_t b = 0; b < batches.size(); ++b) {
    const Batch& batch = batches[b];
    const UpdateResult& result = results[b];
    if (!result.priorities.empty() && result.priorities.size() == batch.keys.size()) {
      feed_->UpdatePriorities(batch.keys, result.priorities);
    }
    for (size_t i = 0; i < result.extra_priorities.size() && i < batch.extra.size(); ++i) {
      if (!result.extra_priorities[i].empty() &&
          result.extra_priorities[i].size() == batch.extra[i].keys.size()) {
        feed_->UpdateExtraPriorities(static_cast<int>(i), batch.extra[i].keys,
                                     result.extra_priorities[i]);
      }
    }
  }
  last_scalars_ = std::move(results.back().scalars);
  const int64_t n = static_cast<int64_t>(batches.size());
  int64_t updates;
  {
    absl::MutexLock lock(&mu_);
    updates_ += n;
    updates = updates_;
  }
  if (metrics_) {
    // each update's share of the call
    const double seconds = absl::ToDoubleSeconds(absl::Now() - begin) / static_cast<double>(n);
    for (int64_t i = 0; i < n; ++i) metrics_->update_duration->Observe(seconds);
    metrics_->updates->Increment(static_cast<double>(n));
    metrics_->SetScalars(last_scalars_);
  }
  if (updates - last_published_updates_ >= options_.publish_every_updates) {
    PRL_RETURN_IF_ERROR(Publish());
  }
  return absl::OkStatus();
}

ExperimentRun::Result TrainingRun::Ended() {
  const std::string reason = StopReason();
  if (reason.empty()) return {v1::EXPERIMENT_STATE_RUNNING, ""};
  absl::MutexLock lock(&mu_);
  if (stop_for_shutdown_) return {v1::EXPERIMENT_STATE_RUNNING, reason};
  if (stop_requested_) return {v1::EXPERIMENT_STATE_STOPPED, reason};
  return {v1::EXPERIMENT_STATE_SUCCEEDED, reason};
}

ExperimentRun::Result TrainingRun::Run() {
  if (absl::Status s = Setup(); !s.ok()) {
    // a stop while waiting for the shards is a stop, not a failure
    if (Result ended = Ended(); !ended.reason.empty()) return ended;
    // failed for good: its replay tables (an earlier start's, if any) go with it
    if (feed_ != nullptr) {
      if (absl::Status r = feed_->Release(); !r.ok() && !absl::IsNotFound(r)) {
        PRL_LOG(WARNING) << experiment_.id() << ": deleting its replay tables: " << r;
      }
    }
    return {v1::EXPERIMENT_STATE_FAILED, absl::StrCat("setup: ", s.message())};
  }
  options_.policies->Expect(experiment_.id());
  if (absl::Status s = Publish(); !s.ok()) {
    return {v1::EXPERIMENT_STATE_FAILED, absl::StrCat("publishing the policy: ", s.message())};
  }
  ActorJob job = MakeJob();
  job.sink = this;
  {
    absl::MutexLock lock(&mu_);
    const int64_t warmup = std::max<int64_t>(0, spec_.algorithm().warmup_env_steps() - env_steps_);
    job.assignment.set_warmup_env_steps(warmup / std::max(1, job.num_actors));
  }
  options_.registry->StartJob(job);

  const absl::Time begin = absl::Now();
  absl::Time last_progress = absl::InfinitePast();
  absl::Time last_checkpoint = absl::Now();
  int checkpoints_written = 0;
  int64_t last_checkpoint_updates = 0;
  int64_t window_updates = 0, window_env_steps = 0;
  absl::Time window_start = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    window_updates = updates_;
    window_env_steps = env_steps_;
    last_checkpoint_updates = updates_;
  }
  Result result;
  while (true) {
    result = Ended();
    if (!result.reason.empty()) break;
    // updates when a batch is ready (with those queued behind it: TakeBatches)
    const absl::Time wait_begin = absl::Now();
    absl::StatusOr<std::optional<Batch>> batch = feed_->Next(options_.batch_wait);
    if (metrics_) metrics_->sample_wait->Increment(absl::ToDoubleSeconds(absl::Now() - wait_begin));
    if (!batch.ok()) {
      result = Ended();  // a stop that raced with the error wins: the run resumes later
      if (result.reason.empty()) {
        result = {v1::EXPERIMENT_STATE_FAILED,
                  absl::StrCat("sampling replay: ", batch.status().message())};
      }
      break;
    }
    bool budget_spent;
    {
      absl::MutexLock lock(&mu_);
      budget_spent = BudgetSpent();
    }
    // With the budget spent and an evaluation round still running, the loop only waits for the
    // round (Next paces it): no update past max_env_steps or max_updates.
    if (batch->has_value() && !budget_spent) {
      absl::StatusOr<std::vector<Batch>> batches = TakeBatches(**std::move(batch));
      if (!batches.ok()) {
        result = Ended();  // as above: a stop that raced with the error wins
        if (result.reason.empty()) {
          result = {v1::EXPERIMENT_STATE_FAILED,
                    absl::StrCat("sampling replay: ", batches.status().message())};
        }
        break;
      }
      if (absl::Status s = TrainOn(*batches); !s.ok()) {
        result = {v1::EXPERIMENT_STATE_FAILED, absl::StrCat("update: ", s.message())};
        break;
      }
    }
    AdvanceSchedule();
    const absl::Time now = absl::Now();
    if (now - last_progress >= options_.progress_period) {
      const double seconds = absl::ToDoubleSeconds(now - window_start);
      const bool full_window = seconds >= 5;
      if (full_window || (now - begin < absl::Seconds(5) && seconds > 0.5)) {
        absl::MutexLock lock(&mu_);
        updates_per_second_ = (updates_ - window_updates) / seconds;
        env_steps_per_second_ = (env_steps_ - window_env_steps) / seconds;
        if (full_window) {
          window_updates = updates_;
          window_env_steps = env_steps_;
          window_start = now;
        }
      }
      ReportProgress();
      last_progress = now;
    }
    const absl::Duration period =
        checkpoints_written == 0 ? options_.first_checkpoint_period : options_.checkpoint_period;
    int64_t updates_now;
    {
      absl::MutexLock lock(&mu_);
      updates_now = updates_;
    }
    const bool by_updates =
        options_.checkpoint_every_updates > 0 &&
        updates_now - last_checkpoint_updates >= options_.checkpoint_every_updates;
    if (now - last_checkpoint >= period || by_updates) {
      if (absl::Status s = Checkpoint(); !s.ok()) {
        PRL_LOG(ERROR) << "checkpoint: " << s;
      } else {
        checkpoints_written++;
      }
      last_checkpoint = now;
      last_checkpoint_updates = updates_now;
    }
  }
  feed_->Stop();
  options_.registry->EndJob();
  if (result.state == v1::EXPERIMENT_STATE_SUCCEEDED) {
    if (absl::Status s = Publish(); !s.ok()) PRL_LOG(ERROR) << "final publish: " << s;
  }
  if (absl::Status s = Checkpoint(); !s.ok()) {
    PRL_LOG(ERROR) << "final checkpoint: " << s;
    if (result.state == v1::EXPERIMENT_STATE_SUCCEEDED) {
      result = {v1::EXPERIMENT_STATE_FAILED, absl::StrCat("final checkpoint: ", s.message())};
    }
  }
  // (a run stopped for a shutdown stays RUNNING and finishes when it resumes)
  if (result.state == v1::EXPERIMENT_STATE_SUCCEEDED ||
      result.state == v1::EXPERIMENT_STATE_STOPPED) {
    if (absl::Status s = algorithm_->Finish(); !s.ok()) {
      PRL_LOG(ERROR) << experiment_.id() << ": storing the algorithm's outputs: " << s;
    }
  }
  ended_ = true;  // its actors are released: the last report does not wait for them
  ReportProgress();
  // a run that ended for good frees its replay tables (one left RUNNING resumes with them)
  if (result.state != v1::EXPERIMENT_STATE_RUNNING) {
    if (absl::Status s = feed_->Release(); !s.ok()) {
      PRL_LOG(WARNING) << experiment_.id() << ": deleting its replay tables: " << s;
    }
  }
  return result;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ExperimentRun>> CreateTrainingRun(
    const v1::Experiment& experiment, RunContext* context, const TrainingRunOptions& options) {
  const v1::ExperimentSpec& spec = experiment.spec();
  if (options.registry == nullptr || options.policies == nullptr || options.algorithms == nullptr) {
    return absl::InvalidArgumentError("TrainingRunOptions needs registry, policies and algorithms");
  }
  if (options.updates_per_call < 0 || options.updates_per_call > kMaxUpdatesPerCall) {
    return absl::InvalidArgumentError(absl::StrCat(
        "updates_per_call: ", options.updates_per_call, " is out of range; allowed: 0 (",
        "4 on a CUDA device, 1 elsewhere) to ", kMaxUpdatesPerCall));
  }
  if (options.updates_per_graph < 1 || options.updates_per_graph > kMaxUpdatesPerGraph) {
    return absl::InvalidArgumentError(absl::StrCat("updates_per_graph: ", options.updates_per_graph,
                                                   " is out of range; allowed: 1 to ",
                                                   kMaxUpdatesPerGraph));
  }
  if (spec.kind() != v1::ExperimentSpec::KIND_TRAIN) {
    return absl::UnimplementedError("a training run runs TRAIN experiments only");
  }
  if (!options.algorithms->Has(spec.algorithm().algorithm_case())) {
    // the registry's message names the method and the ones available
    AlgorithmOptions probe;
    probe.spec = spec;
    return options.algorithms->Create(probe).status();
  }
  return std::make_unique<TrainingRun>(experiment, context, options);
}

}  // namespace prl::learner
