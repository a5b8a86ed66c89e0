#include "actor/actor_loop.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "actor/backoff.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "google/protobuf/util/message_differencer.h"

namespace prl::actor {
namespace {

// JoinRequest.num_envs allows 1..1024.
constexpr int kMaxEnvs = 1024;
// Used when a JoinResponse carries no heartbeat interval.
constexpr absl::Duration kDefaultHeartbeatInterval = absl::Seconds(5);

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

}  // namespace

// Unary calls to the learner from one thread at a time, each with a deadline and the token;
// another thread may cancel them. Calls carry an epoch: Cancel(e) fails the call in flight and
// every later call of an epoch <= e with CANCELLED, so a runner that lost its assignment cannot
// start a long-poll after the cancel. Thread-safe.
class ActorLoop::Caller {
 public:
  Caller(v1::ActorService::Stub* stub, std::string token) : stub_(stub), token_(std::move(token)) {}

  template <typename Request, typename Response>
  absl::StatusOr<Response> Call(grpc::Status (v1::ActorService::Stub::*method)(grpc::ClientContext*,
                                                                               const Request&,
                                                                               Response*),
                                const Request& request, absl::Duration timeout, int64_t epoch = 0)
      ABSL_LOCKS_EXCLUDED(mu_) {
    grpc::ClientContext context;
    PrepareContext(CallOptions{timeout, token_}, &context);
    {
      absl::MutexLock lock(&mu_);
      if (epoch <= cancelled_through_) return absl::CancelledError("the call was cancelled");
      in_flight_ = &context;
      in_flight_epoch_ = epoch;
    }
    Response response;
    const grpc::Status status = (stub_->*method)(&context, request, &response);
    {
      absl::MutexLock lock(&mu_);
      in_flight_ = nullptr;
    }
    if (!status.ok()) return FromGrpcStatus(status);
    return response;
  }

  // Cancels the call in flight and refuses later ones, for epochs <= `epoch` (all by default).
  void Cancel(int64_t epoch = std::numeric_limits<int64_t>::max()) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    cancelled_through_ = std::max(cancelled_through_, epoch);
    if (in_flight_ != nullptr && in_flight_epoch_ <= epoch) in_flight_->TryCancel();
  }

 private:
  v1::ActorService::Stub* const stub_;
  const std::string token_;
  absl::Mutex mu_;
  grpc::ClientContext* in_flight_ ABSL_GUARDED_BY(mu_) = nullptr;
  int64_t in_flight_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t cancelled_through_ ABSL_GUARDED_BY(mu_) = -1;
};

absl::StatusOr<std::unique_ptr<ActorLoop>> ActorLoop::Create(const ActorLoopOptions& options,
                                                             prometheus::Registry& registry) {
  if (options.actor_name.empty()) {
    return absl::InvalidArgumentError("actor_name is empty; the learner needs a stable name");
  }
  if (options.num_envs < 1 || options.num_envs > kMaxEnvs) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_envs: ", options.num_envs, " is not allowed; it must be 1..", kMaxEnvs));
  }
  if (options.workers < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("workers: ", options.workers, " is not allowed; it must be >= 1"));
  }
  if (options.rpc_timeout <= absl::ZeroDuration() ||
      options.insert_timeout <= absl::ZeroDuration() ||
      options.policy_poll_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "rpc_timeout, insert_timeout and policy_poll_timeout must be positive");
  }
  if (options.insert_batch_rows < 1 || options.report_max_episodes < 1) {
    return absl::InvalidArgumentError("insert_batch_rows and report_max_episodes must be >= 1");
  }
  ChannelOptions channel = options.channel;
  channel.address = options.learner_address;
  PRL_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> learner, CreateChannel(channel));
  std::unique_ptr<ActorLoop> loop(new ActorLoop(options, registry));
  loop->stub_ = v1::ActorService::NewStub(learner);
  loop->control_calls_ = std::make_unique<Caller>(loop->stub_.get(), options.auth_token);
  loop->policy_calls_ = std::make_unique<Caller>(loop->stub_.get(), options.auth_token);
  loop->report_calls_ = std::make_unique<Caller>(loop->stub_.get(), options.auth_token);
  return loop;
}

ActorLoop::ActorLoop(const ActorLoopOptions& options, prometheus::Registry& registry)
    : options_(options), metrics_(registry) {
  RunnerOptions& r = runner_options_;
  r.max_envs = options.num_envs;
  r.workers = options.workers;
  r.channel = options.channel;
  r.auth_token = options.auth_token;
  r.rpc_timeout = options.rpc_timeout;
  r.insert_timeout = options.insert_timeout;
  r.policy_poll_timeout = options.policy_poll_timeout;
  r.policy_refresh_interval = options.policy_refresh_interval;
  r.report_interval = options.report_interval;
  r.report_max_episodes = options.report_max_episodes;
  r.insert_batch_rows = options.insert_batch_rows;
  r.insert_flush_interval = options.insert_flush_interval;
  r.initial_backoff = options.initial_backoff;
  r.max_backoff = options.max_backoff;
  r.policy_factory = options.policy_factory;
  r.prior_connector = options.prior_connector;
}

ActorLoop::~ActorLoop() { Stop(); }

void ActorLoop::Start() {
  PRL_CHECK(!control_thread_.joinable()) << "ActorLoop::Start called twice";
  control_thread_ = std::thread([this] { ControlLoop(); });
  acting_thread_ = std::thread([this] { ActLoop(); });
}

void ActorLoop::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
    stop_ = true;
    if (running_runner_ != nullptr) running_runner_->CancelInserts();
  }
  control_calls_->Cancel();
  policy_calls_->Cancel();
  if (control_thread_.joinable()) control_thread_.join();
  if (acting_thread_.joinable()) acting_thread_.join();
  std::string actor_id;
  {
    absl::MutexLock lock(&mu_);
    actor_id = actor_id_;
  }
  if (actor_id.empty()) return;
  v1::LeaveRequest request;
  request.set_actor_id(actor_id);
  absl::StatusOr<v1::LeaveResponse> left = report_calls_->Call(
      &v1::ActorService::Stub::Leave, request, std::min(options_.rpc_timeout, absl::Seconds(2)));
  if (left.ok()) {
    PRL_LOG(INFO) << "left the learner (actor " << actor_id << ")";
  } else {
    metrics_.RpcError("Leave");
    PRL_LOG(WARNING) << "Leave failed (the learner drops the actor after missed heartbeats): "
                     << left.status();
  }
}

ActorLoop::State ActorLoop::state() const {
  absl::MutexLock lock(&mu_);
  return StateLocked();
}

ActorLoop::State ActorLoop::StateLocked() const {
  State state;
  state.actor_id = actor_id_;
  state.joins = joins_;
  state.assignment = assignment_;
  state.last_error = last_error_;
  state.heartbeat_failures = heartbeat_failures_;
  return state;
}

bool ActorLoop::AwaitState(const std::function<bool(const State&)>& pred,
                           absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  const auto holds = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return pred(StateLocked()); };
  return mu_.AwaitWithTimeout(absl::Condition(&holds), timeout);
}

// ---- control thread ----

void ActorLoop::ControlLoop() {
  Backoff backoff(options_.initial_backoff, options_.max_backoff);
  while (true) {
    bool join;
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      join = need_join_;
    }
    if (join) {
      if (Join()) {
        backoff.Reset();
      } else {
        absl::MutexLock lock(&mu_);
        mu_.AwaitWithTimeout(absl::Condition(&stop_), backoff.Next());
      }
      continue;
    }
    if (WaitForHeartbeat()) Heartbeat();
  }
}

bool ActorLoop::Join() {
  v1::JoinRequest request;
  request.set_actor_name(options_.actor_name);
  request.set_num_envs(options_.num_envs);
  *request.mutable_host() = options_.host;
  absl::StatusOr<v1::JoinResponse> response =
      control_calls_->Call(&v1::ActorService::Stub::Join, request, options_.rpc_timeout);
  if (!response.ok()) {
    metrics_.RpcError("Join");
    if (join_failures_++ % 10 == 0) {
      PRL_LOG(WARNING) << "cannot join the learner at " << options_.learner_address << " (attempt "
                       << join_failures_ << "; retrying with backoff): " << response.status();
    }
    return false;
  }
  join_failures_ = 0;
  absl::MutexLock lock(&mu_);
  actor_id_ = response->actor_id();
  ++joins_;
  need_join_ = false;
  heartbeat_interval_ = FromProto(response->heartbeat_interval());
  if (heartbeat_interval_ <= absl::ZeroDuration()) heartbeat_interval_ = kDefaultHeartbeatInterval;
  next_heartbeat_ = absl::Now() + heartbeat_interval_;
  PRL_LOG(INFO) << "joined the learner at " << options_.learner_address << " as " << actor_id_
                << " (heartbeat every " << heartbeat_interval_ << ")";
  InstallAssignmentLocked(response->assignment(), /*keep_if_same=*/true);
  return true;
}

bool ActorLoop::WaitForHeartbeat() {
  absl::MutexLock lock(&mu_);
  const auto due = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return stop_ || need_join_ || heartbeat_now_ || absl::Now() >= next_heartbeat_;
  };
  // the deadline wakes the wait; `due` is re-evaluated then.
  mu_.AwaitWithDeadline(absl::Condition(&due), next_heartbeat_);
  if (stop_ || need_join_ || !due()) return false;
  heartbeat_now_ = false;
  return true;
}

void ActorLoop::Heartbeat() {
  v1::HeartbeatRequest request;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    request.set_actor_id(actor_id_);
    request.set_generation(assignment_.generation());
    *request.mutable_status() = status_;
    request.mutable_status()->set_policy_version(acting_version_);
    const double seconds = absl::ToDoubleSeconds(now - rate_time_);
    if (seconds > 0) {
      request.mutable_status()->set_env_steps_per_second(
          static_cast<double>(status_.env_steps() - rate_env_steps_) / seconds);
    }
    rate_env_steps_ = status_.env_steps();
    rate_time_ = now;
    next_heartbeat_ = now + heartbeat_interval_;
  }
  absl::StatusOr<v1::HeartbeatResponse> response =
      control_calls_->Call(&v1::ActorService::Stub::Heartbeat, request, options_.rpc_timeout);
  absl::MutexLock lock(&mu_);
  if (!response.ok()) {
    if (stop_) return;
    metrics_.RpcError("Heartbeat");
    if (absl::IsNotFound(response.status())) {
      PRL_LOG(INFO) << "the learner no longer knows actor " << actor_id_ << "; joining again";
      need_join_ = true;
    } else if (heartbeat_failures_++ % 10 == 0) {
      PRL_LOG(WARNING) << "heartbeat failed (" << heartbeat_failures_
                       << " in a row): " << response.status();
    }
    return;
  }
  heartbeat_failures_ = 0;
  if (response->generation() != assignment_.generation()) {
    if (!response->has_assignment()) {
      // the contract says it comes with the new generation; a join fetches it.
      need_join_ = true;
      return;
    }
    v1::Assignment assignment = response->assignment();
    assignment.set_generation(response->generation());
    InstallAssignmentLocked(assignment, /*keep_if_same=*/false);
  }
  if (response->evaluation().round() > evaluation_.round()) evaluation_ = response->evaluation();
}

void ActorLoop::InstallAssignmentLocked(const v1::Assignment& assignment, bool keep_if_same) {
  status_ = v1::ActorStatus();
  rate_env_steps_ = 0;
  rate_time_ = absl::Now();
  if (keep_if_same && google::protobuf::util::MessageDifferencer::Equals(assignment, assignment_)) {
    return;
  }
  PRL_LOG(INFO) << "assignment generation " << assignment.generation() << ": "
                << v1::Assignment::Mode_Name(assignment.mode())
                << (assignment.experiment_id().empty()
                        ? ""
                        : " for experiment " + assignment.experiment_id());
  assignment_ = assignment;
  ++serial_;
  evaluation_ = v1::EvaluationRequest();
  acting_version_ = 0;
  last_error_.clear();
  metrics_.generation.Set(static_cast<double>(assignment.generation()));
  // the runner of the old assignment may be long-polling or held by a shard's rate limiter; it
  // has nothing more to ask or insert.
  policy_calls_->Cancel(serial_ - 1);
  if (running_runner_ != nullptr) running_runner_->CancelInserts();
  heartbeat_now_ = false;
}

void ActorLoop::RequestRejoin(const std::string& actor_id) {
  absl::MutexLock lock(&mu_);
  // a NOT_FOUND for an id already replaced by a later join says nothing new.
  if (actor_id == actor_id_) need_join_ = true;
}

// ---- acting thread ----

void ActorLoop::ActLoop() {
  int64_t serial = -1;
  while (true) {
    v1::Assignment assignment;
    {
      absl::MutexLock lock(&mu_);
      const auto changed = [this, serial]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return stop_ || serial_ != serial;
      };
      mu_.Await(absl::Condition(&changed));
      if (stop_) return;
      serial = serial_;
      running_serial_ = serial;
      assignment = assignment_;
    }
    Execute(assignment, serial);
  }
}

namespace {

// Errors of building a runner that may pass on their own: a prior server or replay shard not up
// yet, a model the learner has not pushed to the prior server yet. The assignment came from the
// learner, so it is retried rather than left idle.
bool Transient(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kNotFound:
      return true;
    default:
      return false;
  }
}

}  // namespace

void ActorLoop::Execute(const v1::Assignment& assignment, int64_t serial) {
  if (assignment.mode() == v1::Assignment::MODE_UNSPECIFIED) return;  // idle
  Backoff backoff(options_.initial_backoff, options_.max_backoff);
  absl::StatusOr<std::unique_ptr<AssignmentRunner>> runner;
  while (true) {
    runner = AssignmentRunner::Create(assignment, runner_options_, this, &metrics_);
    if (runner.ok()) break;
    const bool retry = Transient(runner.status());
    if (backoff.fresh() || !retry) {
      PRL_LOG(ERROR) << "cannot run assignment generation " << assignment.generation()
                     << " of experiment " << assignment.experiment_id()
                     << (retry ? "; retrying with backoff until it can or the learner changes it: "
                               : "; idle until the learner changes it: ")
                     << runner.status();
    }
    {
      absl::MutexLock lock(&mu_);
      if (serial_ == serial) {
        last_error_ = absl::StrCat(retry ? "retrying: " : "", runner.status().message());
      }
    }
    if (!retry || Wait(backoff.Next())) return;  // Wait: true when interrupted
  }
  {
    absl::MutexLock lock(&mu_);
    if (serial_ == serial) last_error_.clear();
  }
  {
    absl::MutexLock lock(&mu_);
    running_runner_ = runner->get();
    if (InterruptedLocked()) running_runner_->CancelInserts();
  }
  (*runner)->Run();
  absl::MutexLock lock(&mu_);
  running_runner_ = nullptr;
}

bool ActorLoop::InterruptedLocked() const { return stop_ || serial_ != running_serial_; }

bool ActorLoop::Interrupted() {
  absl::MutexLock lock(&mu_);
  return InterruptedLocked();
}

bool ActorLoop::Wait(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(this, &ActorLoop::InterruptedLocked), timeout);
}

std::optional<v1::EvaluationRequest> ActorLoop::Evaluation(int64_t after_round,
                                                           absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const auto ready = [this, after_round]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return InterruptedLocked() || evaluation_.round() > after_round;
  };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  if (InterruptedLocked() || evaluation_.round() <= after_round) return std::nullopt;
  return evaluation_;
}

absl::StatusOr<v1::GetPolicyResponse> ActorLoop::GetPolicy(const v1::GetPolicyRequest& request,
                                                           absl::Duration timeout) {
  int64_t epoch;
  std::string actor_id;
  {
    absl::MutexLock lock(&mu_);
    epoch = running_serial_;
    actor_id = actor_id_;
  }
  absl::StatusOr<v1::GetPolicyResponse> response =
      policy_calls_->Call(&v1::ActorService::Stub::GetPolicy, request, timeout, epoch);
  if (absl::IsNotFound(response.status())) RequestRejoin(actor_id);
  return response;
}

absl::StatusOr<v1::ReportEpisodesResponse> ActorLoop::ReportEpisodes(
    v1::ReportEpisodesRequest request, absl::Duration timeout) {
  {
    absl::MutexLock lock(&mu_);
    if (actor_id_.empty() || need_join_) {
      return absl::UnavailableError("not joined to the learner");
    }
    request.set_actor_id(actor_id_);
    request.set_env_steps(status_.env_steps());
  }
  // never cancelled: a report cancelled after the learner took it would be sent twice.
  absl::StatusOr<v1::ReportEpisodesResponse> response =
      report_calls_->Call(&v1::ActorService::Stub::ReportEpisodes, request, timeout);
  if (absl::IsNotFound(response.status())) {
    RequestRejoin(request.actor_id());
  } else if (response.ok() && response->generation() != request.generation()) {
    absl::MutexLock lock(&mu_);
    heartbeat_now_ = true;  // the learner moved on: ask for the new assignment now
  } else if (response.ok()) {
    // a round started since the last heartbeat reaches the runner now, not at the next one
    absl::MutexLock lock(&mu_);
    if (request.generation() == assignment_.generation() &&
        response->evaluation().round() > evaluation_.round()) {
      evaluation_ = response->evaluation();
    }
  }
  return response;
}

int64_t ActorLoop::AddProgress(int64_t env_steps, int64_t episodes, int64_t items_inserted) {
  absl::MutexLock lock(&mu_);
  if (serial_ == running_serial_) {
    status_.set_env_steps(status_.env_steps() + env_steps);
    status_.set_episodes(status_.episodes() + episodes);
    status_.set_items_inserted(status_.items_inserted() + items_inserted);
  }
  return status_.env_steps();
}

void ActorLoop::SetActingVersion(int64_t version) {
  absl::MutexLock lock(&mu_);
  if (serial_ == running_serial_) acting_version_ = version;
}

}  // namespace prl::actor
