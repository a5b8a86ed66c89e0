#include "learner/collect_run.h"

#include <dirent.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <deque>
#include <numeric>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "common/dataset_reader.h"
#include "common/dataset_writer.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/tensor.h"
#include "env_desc/env_spec.h"
#include "google/protobuf/text_format.h"
#include "proto/replay.grpc.pb.h"
#include "replay/replay_client.h"

namespace prl::learner {
namespace {

// Longest episode a row may claim to belong to (Transition::step); bounds what a bad row can
// make the assembler allocate.
constexpr int64_t kMaxStep = int64_t{1} << 24;
// Rows asked of one shard per Sample call.
constexpr int kMaxSampleRows = 4096;

void SetNow(google::protobuf::Timestamp* ts) {
  const absl::Time now = absl::Now();
  ts->set_seconds(absl::ToUnixSeconds(now));
  ts->set_nanos(static_cast<int32_t>(absl::ToUnixNanos(now) % 1000000000));
}

void AddColumn(v1::TableConfig* config, const char* name, v1::Tensor::DType dtype, int64_t dim) {
  v1::ColumnSpec* c = config->add_signature();
  c->set_name(name);
  c->set_dtype(dtype);
  if (dim > 0) c->add_shape(dim);
}

}  // namespace

v1::TableConfig CollectTableConfig(const std::string& name, int obs_dim, int act_dim,
                                   int64_t capacity) {
  v1::TableConfig config;
  config.set_name(name);
  AddColumn(&config, "observation", v1::Tensor::DTYPE_FLOAT32, obs_dim);
  AddColumn(&config, "action", v1::Tensor::DTYPE_FLOAT32, act_dim);
  AddColumn(&config, "reward", v1::Tensor::DTYPE_FLOAT32, 0);
  AddColumn(&config, "discount", v1::Tensor::DTYPE_FLOAT32, 0);
  AddColumn(&config, "next_observation", v1::Tensor::DTYPE_FLOAT32, obs_dim);
  AddColumn(&config, "episode", v1::Tensor::DTYPE_INT64, 0);
  AddColumn(&config, "step", v1::Tensor::DTYPE_INT64, 0);
  AddColumn(&config, "timeout", v1::Tensor::DTYPE_FLOAT32, 0);
  config.set_capacity(std::max<int64_t>(1, capacity));
  config.set_sampler(v1::SAMPLER_FIFO);
  config.set_max_times_sampled(1);
  config.mutable_rate_limiter()->set_min_size_to_sample(1);
  return config;
}

// ---- EpisodeAssembler ----

double EpisodeAssembler::Episode::episode_return() const {
  return std::accumulate(rewards.begin(), rewards.end(), 0.0);
}

absl::Status EpisodeAssembler::Add(const v1::SampleResponse& rows, absl::Time now) {
  std::map<std::string, const v1::Tensor*> by_name;
  for (const v1::NamedTensor& c : rows.columns()) by_name[c.name()] = &c.tensor();
  int64_t n = -1;
  auto column = [&](const char* name, DType dtype, int64_t dim) -> absl::StatusOr<TensorView> {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "rows: no column '", name, "'; a collection table has observation, action, reward, ",
          "discount, next_observation, episode, step and timeout"));
    }
    TensorSpec spec;
    spec.name = absl::StrCat("rows column '", name, "'");
    spec.dtype = dtype;
    spec.shape = dim > 0 ? std::vector<int64_t>{n, dim} : std::vector<int64_t>{n};
    PRL_ASSIGN_OR_RETURN(TensorView view, ViewAndCheckTensorProto(*it->second, spec));
    n = view.shape.empty() ? 0 : view.shape[0];
    return view;
  };
  PRL_ASSIGN_OR_RETURN(TensorView obs, column("observation", DType::kFloat32, obs_dim_));
  PRL_ASSIGN_OR_RETURN(TensorView act, column("action", DType::kFloat32, act_dim_));
  PRL_ASSIGN_OR_RETURN(TensorView reward, column("reward", DType::kFloat32, 0));
  PRL_ASSIGN_OR_RETURN(TensorView discount, column("discount", DType::kFloat32, 0));
  PRL_ASSIGN_OR_RETURN(TensorView next, column("next_observation", DType::kFloat32, obs_dim_));
  PRL_ASSIGN_OR_RETURN(TensorView episode, column("episode", DType::kInt64, 0));
  PRL_ASSIGN_OR_RETURN(TensorView step, column("step", DType::kInt64, 0));
  PRL_ASSIGN_OR_RETURN(TensorView timeout, column("timeout", DType::kFloat32, 0));
  const absl::Span<const int64_t> steps = step.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    if (steps[i] < 0 || steps[i] >= kMaxStep) {
      return absl::InvalidArgumentError(absl::StrCat("rows column 'step': row ", i, " has ",
                                                     steps[i], "; allowed: 0..", kMaxStep - 1));
    }
  }

  const absl::Span<const int64_t> ids = episode.data<int64_t>();
  const size_t o = static_cast<size_t>(obs_dim_), a = static_cast<size_t>(act_dim_);
  for (int64_t i = 0; i < n; ++i) {
    if (finished_.contains(ids[i])) {
      ++duplicate_rows_;
      continue;
    }
    Pending& p = pending_[ids[i]];
    const int64_t s = steps[i];
    const bool terminated = discount.data<float>()[i] == 0.0f;
    const bool last = terminated || timeout.data<float>()[i] > 0.0f;
    if (s >= static_cast<int64_t>(p.present.size())) {
      const size_t rows = static_cast<size_t>(s) + 1;
      p.present.resize(rows, 0);
      p.observations.resize(rows * o);
      p.actions.resize(rows * a);
      p.rewards.resize(rows);
      p.next_observations.resize(rows * o);
    }
    p.last_row = now;
    if (p.present[s]) {
      ++duplicate_rows_;
      continue;
    }
    std::copy_n(obs.data<float>().begin() + i * o, o, p.observations.begin() + s * o);
    std::copy_n(act.data<float>().begin() + i * a, a, p.actions.begin() + s * a);
    p.rewards[s] = reward.data<float>()[i];
    std::copy_n(next.data<float>().begin() + i * o, o, p.next_observations.begin() + s * o);
    p.present[s] = 1;
    ++p.have;
    ++pending_rows_;
    if (last) {
      p.length = s + 1;
      p.terminated = terminated;
    }
  }
  // episodes whose every row is there (rows past a known end make an episode wait, then go
  // stale: they cannot come from one actor's episode)
  for (auto it = pending_.begin(); it != pending_.end();) {
    Pending& p = it->second;
    if (p.length < 0 || p.have != p.length || static_cast<int64_t>(p.present.size()) != p.length) {
      ++it;
      continue;
    }
    Episode e;
    e.id = it->first;
    e.length = p.length;
    e.observations = std::move(p.observations);
    e.actions = std::move(p.actions);
    e.rewards = std::move(p.rewards);
    e.next_observations = std::move(p.next_observations);
    e.terminated = p.terminated;
    e.timed_out = !p.terminated;
    pending_rows_ -= p.have;
    complete_.push_back(std::move(e));
    finished_.insert(it->first);
    it = pending_.erase(it);
  }
  return absl::OkStatus();
}

std::vector<EpisodeAssembler::Episode> EpisodeAssembler::TakeComplete() {
  std::vector<Episode> out;
  out.swap(complete_);
  return out;
}

int64_t EpisodeAssembler::DropStale(absl::Time cutoff) {
  int64_t dropped = 0;
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->second.last_row >= cutoff) {
      ++it;
      continue;
    }
    pending_rows_ -= it->second.have;
    finished_.insert(it->first);
    it = pending_.erase(it);
    ++dropped;
  }
  return dropped;
}

// ---- the replay shards as a CollectSource ----

namespace {

bool ShardAway(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::UNAVAILABLE ||
         s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
         s.error_code() == grpc::StatusCode::CANCELLED;
}

class ShardedCollectSource final : public CollectSource {
 public:
  ShardedCollectSource(std::unique_ptr<replay::ShardedReplayClient> client,
                       std::vector<std::unique_ptr<v1::ReplayService::Stub>> stubs,
                       std::vector<std::string> addresses, CallOptions call)
      : client_(std::move(client)),
        stubs_(std::move(stubs)),
        addresses_(std::move(addresses)),
        call_(std::move(call)) {}

  absl::Status CreateTable(const v1::TableConfig& config) override {
    return client_->CreateTable(config);
  }

  absl::Status DeleteTable(const std::string& table) override {
    return client_->DeleteTable(table).status();
  }

  absl::StatusOr<std::vector<v1::SampleResponse>> Drain(const std::string& table,
                                                        int max_rows) override {
    std::vector<v1::SampleResponse> out;
    int answered = 0;
    int taken = 0;
    const size_t shards = stubs_.size();
    next_ = (next_ + 1) % shards;  // a different shard first each time: none starves
    for (size_t k = 0; k < shards && taken < max_rows; ++k) {
      const size_t s = (next_ + k) % shards;
      v1::InfoRequest info_request;
      info_request.set_table(table);
      v1::InfoResponse info;
      grpc::ClientContext info_context;
      PrepareContext(call_, &info_context);
      const grpc::Status info_status = stubs_[s]->Info(&info_context, info_request, &info);
      if (ShardAway(info_status)) continue;
      if (!info_status.ok()) {
        return absl::Status(FromGrpcStatus(info_status).code(),
                            absl::StrCat("replay shard ", addresses_[s], ": Info of ", table, ": ",
                                         info_status.error_message()));
      }
      ++answered;
      const int64_t size = info.tables_size() > 0 ? info.tables(0).size() : 0;
      if (size <= 0) continue;
      const int batch =
          static_cast<int>(std::min<int64_t>({size, max_rows - taken, int64_t{kMaxSampleRows}}));
      v1::SampleRequest request;
      request.set_table(table);
      request.set_batch_size(batch);
      request.set_timeout_ms(1000);  // only the learner samples: the rows are there
      v1::SampleResponse response;
      grpc::ClientContext context;
      PrepareContext(call_, &context);
      const grpc::Status status = stubs_[s]->Sample(&context, request, &response);
      if (ShardAway(status)) continue;
      if (!status.ok()) {
        return absl::Status(FromGrpcStatus(status).code(),
                            absl::StrCat("replay shard ", addresses_[s], ": Sample of ", table,
                                         ": ", status.error_message()));
      }
      taken += batch;
      out.push_back(std::move(response));
    }
    if (answered == 0) {
      return absl::UnavailableError("no replay shard answered; waiting for them");
    }
    return out;
  }

 private:
  const std::unique_ptr<replay::ShardedReplayClient> client_;
  const std::vector<std::unique_ptr<v1::ReplayService::Stub>> stubs_;
  const std::vector<std::string> addresses_;
  const CallOptions call_;
  size_t next_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<CollectSource>> NewShardedCollectSource(
    const std::vector<std::string>& addresses, const ChannelOptions& channel,
    const CallOptions& call) {
  if (addresses.empty()) {
    return absl::FailedPreconditionError(
        "the learner has no replay shards (--learner_replay) to collect through");
  }
  replay::ReplayClientOptions client_options;
  client_options.addresses = addresses;
  client_options.channel = channel;
  client_options.call = call;
  PRL_ASSIGN_OR_RETURN(std::unique_ptr<replay::ShardedReplayClient> client,
                       replay::ShardedReplayClient::Create(client_options));
  std::vector<std::unique_ptr<v1::ReplayService::Stub>> stubs;
  for (const std::string& address : addresses) {
    ChannelOptions options = channel;
    options.address = address;
    PRL_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> c, CreateChannel(options));
    stubs.push_back(v1::ReplayService::NewStub(c));
  }
  return std::unique_ptr<CollectSource>(
      new ShardedCollectSource(std::move(client), std::move(stubs), addresses, call));
}

// ---- the run ----

namespace {

// "collect-<k>.hdf5" -> k; 0 for other names.
int SegmentNumber(absl::string_view file) {
  int k = 0;
  if (!absl::ConsumePrefix(&file, "collect-") || !absl::ConsumeSuffix(&file, ".hdf5") ||
      !absl::SimpleAtoi(file, &k) || k < 1) {
    return 0;
  }
  return k;
}

// What the dataset's metadata calls the collector (as prl_collect does).
std::string DescribeCollector(const v1::CollectSpec& c) {
  std::string name;
  switch (c.collector()) {
    case v1::CollectSpec::COLLECTOR_RANDOM:
      name = "random";
      break;
    case v1::CollectSpec::COLLECTOR_SCRIPTED:
      name = absl::StrCat("scripted:", c.script().empty() ? "planner" : c.script());
      break;
    case v1::CollectSpec::COLLECTOR_POLICY:
      name = c.policy().has_checkpoint_path()
                 ? absl::StrCat("policy:", c.policy().checkpoint_path())
                 : absl::StrCat("policy:", c.policy().experiment_id(), " v", c.policy().version());
      break;
    default:
      name = "unknown";
  }
  return absl::StrFormat("%s action_noise=%g%s%s", name, c.action_noise(),
                         c.randomize_start_goal() ? " randomize_start_goal" : "",
                         c.success_only() ? " success_only" : "");
}

class CollectRun final : public ExperimentRun, public ActorEventSink {
 public:
  CollectRun(const v1::Experiment& experiment, RunContext* context, CollectRunOptions options)
      : experiment_(experiment),
        spec_(experiment.spec()),
        collect_(experiment.spec().collect()),
        context_(context),
        options_(std::move(options)),
        table_(absl::StrCat(experiment.id(), ".collect")) {
    if (options_.metrics != nullptr) metrics_ = options_.metrics->ForExperiment(experiment.id());
  }

  Result Run() override;

  void RequestStop(const std::string& reason, bool shutdown) override {
    stop_.Request(reason, shutdown);
  }

  void OnEnvSteps(int64_t delta) override {
    absl::MutexLock lock(&mu_);
    actor_env_steps_ += delta;
  }
  void OnEpisodes(const std::vector<v1::EpisodeSummary>& episodes) override {
    absl::MutexLock lock(&mu_);
    for (const v1::EpisodeSummary& e : episodes) actor_episodes_ += e.is_eval() ? 0 : 1;
  }

 private:
  absl::Status Setup();
  // Counts the episodes of the segments an earlier start closed.
  absl::Status ResumeSegments();
  // Publishes the COLLECTOR_POLICY policy and fills the acting part of the assignment.
  absl::Status SetUpPolicy();
  // One drain of the table into the assembler and the dataset; returns the rows drained.
  absl::StatusOr<int64_t> DrainOnce();
  absl::Status StoreEpisode(const EpisodeAssembler::Episode& e);
  absl::Status CloseSegment();
  // Joins the segments into the store's staging file and commits it.
  absl::StatusOr<v1::DatasetInfo> Finish();
  void RemoveSegments();
  void SetOutputs(const v1::DatasetInfo& info);
  bool Done() const {
    return (collect_.num_episodes() > 0 && episodes_ >= collect_.num_episodes()) ||
           (collect_.num_env_steps() > 0 && steps_ >= collect_.num_env_steps());
  }
  std::string DoneReason() const {
    return collect_.num_episodes() > 0 && episodes_ >= collect_.num_episodes()
               ? "num_episodes reached"
               : "num_env_steps reached";
  }
  void ReportProgress(double steps_per_second) ABSL_LOCKS_EXCLUDED(mu_);
  DatasetWriterOptions WriterOptions() const;

  const v1::Experiment experiment_;
  const v1::ExperimentSpec spec_;
  const v1::CollectSpec collect_;
  RunContext* const context_;
  const CollectRunOptions options_;
  const std::string table_;
  std::optional<RunMetrics> metrics_;

  int obs_dim_ = 0;
  int act_dim_ = 0;
  std::vector<std::string> addresses_;
  std::unique_ptr<CollectSource> source_;
  std::unique_ptr<EpisodeAssembler> assembler_;
  ActorJob job_;
  bool job_started_ = false;
  // the dataset so far: closed segments, the open one, and what they hold
  std::vector<std::string> segments_;
  int next_segment_ = 1;
  std::unique_ptr<DatasetWriter> writer_;
  int64_t episodes_ = 0;
  int64_t steps_ = 0;
  int64_t terminated_ = 0;
  std::deque<double> recent_returns_;
  // what did not make it into the dataset
  int64_t dropped_incomplete_ = 0;
  int64_t surplus_episodes_ = 0;
  int64_t rows_drained_ = 0;
  int64_t table_rows_ = 0;
  std::string start_message_;
  // set once the run has ended and released its actors
  std::atomic<bool> ended_{false};
  std::string waiting_message_;

  StopRequest stop_;
  absl::Mutex mu_;
  int64_t actor_env_steps_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t actor_episodes_ ABSL_GUARDED_BY(mu_) = 0;
};

DatasetWriterOptions CollectRun::WriterOptions() const {
  DatasetWriterOptions options;
  options.obs_dim = obs_dim_;
  options.act_dim = act_dim_;
  google::protobuf::TextFormat::PrintToString(spec_.env(), &options.metadata.env_spec);
  options.metadata.collector = DescribeCollector(collect_);
  options.metadata.seed = spec_.env().seed();
  return options;
}

absl::Status CollectRun::Setup() {
  const env_desc::DomainInfo* domain = env_desc::FindDomain(spec_.env().domain());
  if (domain == nullptr) return absl::InvalidArgumentError("env.domain: not set");
  obs_dim_ = domain->obs_dim;
  act_dim_ = domain->act_dim;
  assembler_ = std::make_unique<EpisodeAssembler>(obs_dim_, act_dim_);
  PRL_RETURN_IF_ERROR(ResumeSegments());

  const int wanted = spec_.replay().num_shards();
  addresses_ = options_.replay_addresses;
  if (wanted > 0 && wanted < static_cast<int>(addresses_.size())) addresses_.resize(wanted);
  if (options_.source_factory != nullptr) {
    PRL_ASSIGN_OR_RETURN(source_, options_.source_factory(addresses_));
  } else {
    PRL_ASSIGN_OR_RETURN(source_,
                         NewShardedCollectSource(addresses_, options_.channel, options_.call));
  }
  const int shards = std::max<int>(1, addresses_.size());
  const v1::TableConfig table = CollectTableConfig(
      table_, obs_dim_, act_dim_, std::max<int64_t>(1, spec_.replay().capacity() / shards));
  // shards that are away are waited for; a stop meanwhile is a stop
  absl::Duration retry = options_.create_retry;
  while (true) {
    absl::Status created = source_->CreateTable(table);
    if (created.ok()) break;
    if (!absl::IsUnavailable(created) && !absl::IsDeadlineExceeded(created)) return created;
    if (stop_.WaitFor(retry)) return created;
    retry = std::min(retry * 2, absl::Seconds(5));
  }

  job_.experiment_id = experiment_.id();
  job_.num_actors = std::max(1, spec_.resources().num_actors());
  job_.envs_per_actor = std::max(1, spec_.resources().envs_per_actor());
  job_.sink = this;
  v1::Assignment& a = job_.assignment;
  a.set_mode(v1::Assignment::MODE_COLLECT);
  *a.mutable_env() = spec_.env();
  for (const std::string& address : addresses_) a.add_replay_addresses(address);
  a.set_table(table_);
  *a.mutable_signature() = table.signature();
  *a.mutable_collect() = collect_;
  a.set_decision_horizon(1);
  if (collect_.collector() == v1::CollectSpec::COLLECTOR_POLICY) PRL_RETURN_IF_ERROR(SetUpPolicy());
  return absl::OkStatus();
}

absl::Status CollectRun::SetUpPolicy() {
  if (options_.policy_loader == nullptr || options_.policies == nullptr) {
    return absl::UnimplementedError(
        "collect.collector: COLLECTOR_POLICY is not supported by this learner");
  }
  PRL_ASSIGN_OR_RETURN(CollectPolicy loaded, options_.policy_loader(collect_.policy()));
  const v1::PolicyArchitecture& architecture = loaded.policy->architecture();
  if (architecture.output() != v1::PolicyArchitecture::OUTPUT_ACTION) {
    return absl::UnimplementedError(absl::StrCat(
        "collect.policy: the policy acts through a prior (",
        v1::PolicyArchitecture::Output_Name(architecture.output()),
        "); collecting with latent policies (spirl, eap, parrot) is not supported yet, only with "
        "sac and td3 policies"));
  }
  if (architecture.obs_dim() != obs_dim_ || architecture.action_dim() != act_dim_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "collect.policy: the policy takes ", architecture.obs_dim(), "-dimensional observations ",
        "and gives ", architecture.action_dim(), "-dimensional actions; env ",
        v1::EnvSpec::Domain_Name(spec_.env().domain()), " has ", obs_dim_, " and ", act_dim_));
  }
  // the same weights, published under this experiment for the actors' GetPolicy
  auto policy = std::make_shared<v1::Policy>(*loaded.policy);
  policy->set_experiment_id(experiment_.id());
  policy->set_version(options_.policies->version(experiment_.id()) + 1);
  SetNow(policy->mutable_create_time());
  options_.policies->Expect(experiment_.id());
  options_.policies->Publish(policy);
  v1::Assignment& a = job_.assignment;
  *a.mutable_policy() = architecture;
  if (loaded.acting.decision_horizon() > 0) {
    a.set_decision_horizon(loaded.acting.decision_horizon());
  }
  start_message_ = absl::StrCat("acting with ", DescribeCollector(collect_), " (policy version ",
                                loaded.policy->version(), ")");
  return absl::OkStatus();
}

absl::Status CollectRun::ResumeSegments() {
  std::vector<std::pair<int, std::string>> found;
  if (DIR* d = opendir(options_.work_dir.c_str()); d != nullptr) {
    while (const dirent* e = readdir(d)) {
      if (const int k = SegmentNumber(e->d_name); k > 0) {
        found.emplace_back(k, absl::StrCat(options_.work_dir, "/", e->d_name));
      }
    }
    closedir(d);
  }
  std::sort(found.begin(), found.end());
  for (const auto& [k, path] : found) {
    PRL_ASSIGN_OR_RETURN(Dataset data, ReadDataset(path));
    if (data.obs_dim != obs_dim_ || data.act_dim != act_dim_) {
      return absl::DataLossError(absl::StrCat(path, " holds ", data.obs_dim, "/", data.act_dim,
                                              "-dimensional rows, not this experiment's ", obs_dim_,
                                              "/", act_dim_, "; left in place"));
    }
    int64_t begin = 0;
    for (int64_t end : data.EpisodeEnds()) {
      double ret = 0;
      for (int64_t r = begin; r < end; ++r) ret += data.rewards[r];
      recent_returns_.push_back(ret);
      if (recent_returns_.size() > 10) recent_returns_.pop_front();
      terminated_ += data.terminals[end - 1] != 0;
      ++episodes_;
      begin = end;
    }
    steps_ += data.size;
    segments_.push_back(path);
    next_segment_ = k + 1;
  }
  if (!segments_.empty()) {
    start_message_ = absl::StrCat("resumed with the ", episodes_, " episodes (", steps_,
                                  " transitions) stored before the learner restarted");
    PRL_LOG(INFO) << experiment_.id() << ": " << start_message_;
  }
  return absl::OkStatus();
}

absl::Status CollectRun::StoreEpisode(const EpisodeAssembler::Episode& e) {
  if (writer_ == nullptr) {
    const std::string path = absl::StrCat(options_.work_dir, "/collect-", next_segment_++, ".hdf5");
    std::remove(path.c_str());  // a segment that was never closed is not one
    PRL_ASSIGN_OR_RETURN(writer_, DatasetWriter::Create(path, WriterOptions()));
  }
  const size_t o = static_cast<size_t>(obs_dim_), a = static_cast<size_t>(act_dim_);
  for (int64_t t = 0; t < e.length; ++t) {
    TransitionRow row;
    row.observation = absl::MakeConstSpan(e.observations).subspan(t * o, o);
    row.action = absl::MakeConstSpan(e.actions).subspan(t * a, a);
    row.next_observation = absl::MakeConstSpan(e.next_observations).subspan(t * o, o);
    row.reward = e.rewards[t];
    const bool last = t + 1 == e.length;
    row.terminal = last && e.terminated;
    row.timeout = last && e.timed_out;
    PRL_RETURN_IF_ERROR(writer_->Append(row));
  }
  ++episodes_;
  steps_ += e.length;
  terminated_ += e.terminated;
  recent_returns_.push_back(e.episode_return());
  if (recent_returns_.size() > 10) recent_returns_.pop_front();
  if (metrics_) {
    metrics_->env_steps->Increment(static_cast<double>(e.length));
    metrics_->episodes->Increment();
    metrics_->train_return->Set(e.episode_return());
  }
  return absl::OkStatus();
}

absl::Status CollectRun::CloseSegment() {
  if (writer_ == nullptr) return absl::OkStatus();
  std::unique_ptr<DatasetWriter> writer = std::move(writer_);
  PRL_RETURN_IF_ERROR(writer->Close());
  segments_.push_back(writer->path());
  return absl::OkStatus();
}

absl::StatusOr<int64_t> CollectRun::DrainOnce() {
  PRL_ASSIGN_OR_RETURN(std::vector<v1::SampleResponse> responses,
                       source_->Drain(table_, options_.drain_rows));
  int64_t rows = 0;
  const absl::Time now = absl::Now();
  int64_t table_rows = 0;
  for (const v1::SampleResponse& r : responses) {
    rows += r.keys_size();
    table_rows += r.table_size();
    PRL_RETURN_IF_ERROR(assembler_->Add(r, now));
  }
  if (!responses.empty()) table_rows_ = table_rows;
  rows_drained_ += rows;
  for (const EpisodeAssembler::Episode& e : assembler_->TakeComplete()) {
    if (Done()) {
      ++surplus_episodes_;  // past the target: the dataset is full
      continue;
    }
    PRL_RETURN_IF_ERROR(StoreEpisode(e));
  }
  return rows;
}

void CollectRun::ReportProgress(double steps_per_second) {
  v1::Progress p;
  p.set_env_steps(steps_);
  p.set_episodes(episodes_);
  p.set_env_steps_per_second(steps_per_second);
  if (!recent_returns_.empty()) {
    p.set_latest_train_return(std::accumulate(recent_returns_.begin(), recent_returns_.end(), 0.0) /
                              static_cast<double>(recent_returns_.size()));
  }
  p.set_active_actors(options_.registry->assigned_actors());
  p.set_replay_size(table_rows_);
  double fraction = 0;
  if (collect_.num_episodes() > 0) {
    fraction = std::max(fraction, static_cast<double>(episodes_) / collect_.num_episodes());
  }
  if (collect_.num_env_steps() > 0) {
    fraction = std::max(fraction, static_cast<double>(steps_) / collect_.num_env_steps());
  }
  p.set_fraction_done(std::min(1.0, fraction));
  auto& scalars = *p.mutable_scalars();
  {
    absl::MutexLock lock(&mu_);
    scalars["actor_env_steps"] = static_cast<double>(actor_env_steps_);
    scalars["actor_episodes"] = static_cast<double>(actor_episodes_);
  }
  scalars["rows_drained"] = static_cast<double>(rows_drained_);
  scalars["episodes_terminated"] = static_cast<double>(terminated_);
  scalars["episodes_timed_out"] = static_cast<double>(episodes_ - terminated_);
  scalars["episodes_incomplete_dropped"] = static_cast<double>(dropped_incomplete_);
  scalars["episodes_pending"] = static_cast<double>(assembler_->pending_episodes());
  scalars["duplicate_rows"] = static_cast<double>(assembler_->duplicate_rows());
  std::string message = absl::StrCat("collecting dataset '", collect_.output_dataset(), "' with ",
                                     DescribeCollector(collect_));
  if (!start_message_.empty()) absl::StrAppend(&message, "; ", start_message_);
  if (!waiting_message_.empty()) absl::StrAppend(&message, "; ", waiting_message_);
  const int wanted = std::max(1, spec_.resources().num_actors());
  if (!ended_ && p.active_actors() < wanted) {
    absl::StrAppend(&message, "; ", p.active_actors(), " of ", wanted,
                    " actors assigned, waiting for more to join the learner");
  }
  p.set_message(message);
  if (metrics_) metrics_->replay_size->Set(static_cast<double>(table_rows_));
  context_->ReportProgress(p);
}

void CollectRun::RemoveSegments() {
  writer_.reset();  // removes its temporary file
  for (const std::string& path : segments_) std::remove(path.c_str());
  segments_.clear();
}

void CollectRun::SetOutputs(const v1::DatasetInfo& info) {
  v1::ExperimentOutputs outputs;
  outputs.set_dataset(info.name());
  outputs.set_dataset_path(info.path());
  outputs.set_dataset_transitions(info.transitions());
  outputs.set_dataset_episodes(info.episodes());
  outputs.set_dataset_hash(info.content_hash());
  context_->SetOutputs(outputs);
}

absl::StatusOr<v1::DatasetInfo> CollectRun::Finish() {
  DatasetStore& store = *options_.datasets;
  const std::string& name = collect_.output_dataset();
  const std::string staged = store.StagingPathOf(name, experiment_.id());
  v1::DatasetInfo info;
  info.set_name(name);
  info.set_experiment_id(experiment_.id());
  info.set_transitions(steps_);
  info.set_episodes(episodes_);
  info.set_terminated_episodes(terminated_);
  info.set_obs_dim(obs_dim_);
  info.set_action_dim(act_dim_);
  google::protobuf::TextFormat::PrintToString(spec_, info.mutable_spec());
  PRL_RETURN_IF_ERROR(CloseSegment());
  // the segments, in order, into one file beside the store's
  std::remove(staged.c_str());  // left by a start that died while joining
  PRL_ASSIGN_OR_RETURN(std::unique_ptr<DatasetWriter> joined,
                       DatasetWriter::Create(staged, WriterOptions()));
  for (const std::string& path : segments_) {
    PRL_ASSIGN_OR_RETURN(Dataset data, ReadDataset(path));
    const size_t o = static_cast<size_t>(obs_dim_), a = static_cast<size_t>(act_dim_);
    for (int64_t r = 0; r < data.size; ++r) {
      TransitionRow row;
      row.observation = absl::MakeConstSpan(data.observations).subspan(r * o, o);
      row.action = absl::MakeConstSpan(data.actions).subspan(r * a, a);
      row.next_observation = absl::MakeConstSpan(data.next_observations).subspan(r * o, o);
      row.reward = data.rewards[r];
      row.terminal = data.terminals[r] != 0;
      row.timeout = data.timeouts[r] != 0;
      PRL_RETURN_IF_ERROR(joined->Append(row));
    }
  }
  if (joined->rows() != steps_) {
    return absl::InternalError(absl::StrCat("the segments hold ", joined->rows(),
                                            " transitions, the run counted ", steps_));
  }
  PRL_RETURN_IF_ERROR(joined->Close());
  PRL_ASSIGN_OR_RETURN(v1::DatasetInfo stored, store.Commit(staged, info));
  RemoveSegments();
  return stored;
}

ExperimentRun::Result CollectRun::Run() {
  DatasetStore& store = *options_.datasets;
  const std::string& name = collect_.output_dataset();
  // stored already: by this experiment (a start that died after storing it) or another
  if (store.Exists(name)) {
    v1::DatasetInfo mine;
    mine.set_name(name);
    mine.set_experiment_id(experiment_.id());
    absl::StatusOr<v1::DatasetInfo> stored =
        store.Commit(store.StagingPathOf(name, experiment_.id()), mine);
    if (!stored.ok()) {
      return {v1::EXPERIMENT_STATE_FAILED,
              absl::StrCat("collect.output_dataset: ", stored.status().message())};
    }
    SetOutputs(*stored);
    return {v1::EXPERIMENT_STATE_SUCCEEDED, "the dataset was stored before the learner restarted"};
  }
  if (absl::Status s = Setup(); !s.ok()) {
    if (std::optional<Result> stopped = stop_.Get()) return *stopped;
    writer_.reset();
    if (source_ != nullptr) (void)source_->DeleteTable(table_);  // segments stay, for people
    return {v1::EXPERIMENT_STATE_FAILED, absl::StrCat("setup: ", s.message())};
  }
  if (!Done()) {
    options_.registry->StartJob(job_);
    job_started_ = true;
  }
  PRL_LOG(INFO) << experiment_.id() << ": collecting " << name << " with "
                << DescribeCollector(collect_) << " through table " << table_ << " on "
                << addresses_.size() << " replay shards";

  Result result{v1::EXPERIMENT_STATE_SUCCEEDED, ""};
  const absl::Time begin = absl::Now();
  absl::Time last_progress = absl::InfinitePast();
  absl::Time last_stale_check = begin;
  absl::Time segment_due = begin + options_.first_segment_period;
  absl::Time window_start = begin;
  int64_t window_steps = steps_;
  double steps_per_second = 0;
  while (!Done()) {
    if (std::optional<Result> stopped = stop_.Get()) {
      result = *stopped;
      break;
    }
    absl::StatusOr<int64_t> drained = DrainOnce();
    if (!drained.ok()) {
      const absl::Status& s = drained.status();
      if (absl::IsNotFound(s)) {
        // a shard restarted without its checkpoint: make the table again
        waiting_message_ = "re-creating the collection table on a restarted replay shard";
        if (absl::Status c = source_->CreateTable(CollectTableConfig(
                table_, obs_dim_, act_dim_,
                std::max<int64_t>(
                    1, spec_.replay().capacity() / std::max<int>(1, addresses_.size()))));
            !c.ok() && !absl::IsUnavailable(c)) {
          result = {v1::EXPERIMENT_STATE_FAILED, absl::StrCat("replay: ", c.message())};
          break;
        }
      } else if (absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s)) {
        waiting_message_ = "waiting for replay shards";
      } else {
        result = {v1::EXPERIMENT_STATE_FAILED, absl::StrCat("collecting: ", s.message())};
        break;
      }
      stop_.WaitFor(options_.idle_wait);
      continue;
    }
    waiting_message_.clear();
    const absl::Time now = absl::Now();
    if (now - last_stale_check >= absl::Seconds(5)) {
      dropped_incomplete_ += assembler_->DropStale(now - options_.incomplete_timeout);
      last_stale_check = now;
    }
    if (now >= segment_due) {
      if (absl::Status s = CloseSegment(); !s.ok()) {
        result = {v1::EXPERIMENT_STATE_FAILED, absl::StrCat("writing the dataset: ", s.message())};
        break;
      }
      segment_due = now + options_.segment_period;
    }
    if (now - last_progress >= options_.progress_period) {
      const double seconds = absl::ToDoubleSeconds(now - window_start);
      if (seconds >= 1) {
        steps_per_second = static_cast<double>(steps_ - window_steps) / seconds;
        if (seconds >= 5) {
          window_start = now;
          window_steps = steps_;
        }
      }
      ReportProgress(steps_per_second);
      last_progress = now;
    }
    if (*drained == 0 && !Done()) stop_.WaitFor(options_.idle_wait);
  }
  if (job_started_) options_.registry->EndJob();

  if (result.reason.empty()) {  // the dataset is full
    result.reason = DoneReason();
    dropped_incomplete_ += assembler_->pending_episodes();
    absl::StatusOr<v1::DatasetInfo> stored = Finish();
    if (!stored.ok()) {
      result = {v1::EXPERIMENT_STATE_FAILED,
                absl::StrCat("storing the dataset: ", stored.status().message())};
    } else {
      SetOutputs(*stored);
      PRL_LOG(INFO) << experiment_.id() << ": stored " << stored->name() << " ("
                    << stored->episodes() << " episodes, " << stored->transitions()
                    << " transitions, " << stored->content_hash() << ") at " << stored->path();
    }
  }
  ended_ = true;  // its actors are released: the last report does not wait for them
  ReportProgress(steps_per_second);
  if (result.state == v1::EXPERIMENT_STATE_RUNNING) {
    // a learner shutdown: keep the table and the segments for the next start
    if (absl::Status s = CloseSegment(); !s.ok()) {
      PRL_LOG(ERROR) << experiment_.id() << ": closing the dataset segment: " << s;
    }
    return result;
  }
  if (result.state != v1::EXPERIMENT_STATE_SUCCEEDED) RemoveSegments();
  if (absl::Status s = source_->DeleteTable(table_); !s.ok()) {
    PRL_LOG(WARNING) << experiment_.id() << ": deleting its collection table: " << s;
  }
  return result;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ExperimentRun>> CreateCollectRun(const v1::Experiment& experiment,
                                                                RunContext* context,
                                                                const CollectRunOptions& options) {
  if (options.registry == nullptr || options.datasets == nullptr || options.work_dir.empty()) {
    return absl::InvalidArgumentError("CollectRunOptions needs registry, datasets and work_dir");
  }
  if (experiment.spec().kind() != v1::ExperimentSpec::KIND_COLLECT) {
    return absl::InvalidArgumentError("a collect run runs KIND_COLLECT experiments");
  }
  return std::make_unique<CollectRun>(experiment, context, options);
}

}  // namespace prl::learner
