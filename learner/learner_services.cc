#include "learner/learner_services.h"

#include <algorithm>
#include <optional>
#include <regex>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/grpc_status.h"

namespace prl::learner {
namespace {

// The call's deadline, capped so a handler never waits past `cap` from now.
absl::Time Deadline(const grpc::ServerContext& context, absl::Duration cap) {
  const absl::Time deadline = absl::FromChrono(context.deadline());
  return std::min(deadline, absl::Now() + cap);
}

// How often a waiting Watch handler looks whether its call was cancelled.
constexpr absl::Duration kCancelCheck = absl::Seconds(1);

bool Terminal(v1::ExperimentState state) {
  return state == v1::EXPERIMENT_STATE_SUCCEEDED || state == v1::EXPERIMENT_STATE_FAILED ||
         state == v1::EXPERIMENT_STATE_STOPPED;
}

bool ValidActorName(const std::string& name) {
  static const std::regex kName("[a-z][a-z0-9_.-]{0,62}");
  return std::regex_match(name, kName);
}

}  // namespace

ExperimentServiceImpl::ExperimentServiceImpl(const LearnerServiceOptions& options,
                                             ExperimentManager* manager,
                                             const DatasetStore* datasets)
    : auth_(options.auth_token),
      manager_(manager),
      datasets_(datasets),
      waiting_calls_(options.waiting_calls != nullptr ? options.waiting_calls : &own_limit_) {}

grpc::Status ExperimentServiceImpl::Submit(grpc::ServerContext* context,
                                           const v1::SubmitRequest* request,
                                           v1::SubmitResponse* response) {
  if (grpc::Status s = auth_.Check(*context); !s.ok()) return s;
  absl::StatusOr<v1::Experiment> experiment = manager_->Submit(request->spec());
  if (!experiment.ok()) return ToGrpcStatus(experiment.status());
  response->set_id(experiment->id());
  *response->mutable_experiment() = std::move(*experiment);
  return grpc::Status::OK;
}

grpc::Status ExperimentServiceImpl::Get(grpc::ServerContext*, const v1::GetRequest* request,
                                        v1::GetResponse* response) {
  absl::StatusOr<v1::Experiment> experiment =
      manager_->Get(request->id(), request->include_curve());
  if (!experiment.ok()) return ToGrpcStatus(experiment.status());
  *response->mutable_experiment() = std::move(*experiment);
  return grpc::Status::OK;
}

grpc::Status ExperimentServiceImpl::List(grpc::ServerContext*, const v1::ListRequest* request,
                                         v1::ListResponse* response) {
  std::vector<v1::ExperimentState> states;
  for (int s : request->states()) states.push_back(static_cast<v1::ExperimentState>(s));
  auto page = manager_->List(states, request->page_size(), request->page_token());
  if (!page.ok()) return ToGrpcStatus(page.status());
  for (v1::Experiment& e : page->first) *response->add_experiments() = std::move(e);
  response->set_next_page_token(page->second);
  return grpc::Status::OK;
}

grpc::Status ExperimentServiceImpl::Stop(grpc::ServerContext* context,
                                         const v1::StopRequest* request,
                                         v1::StopResponse* response) {
  if (grpc::Status s = auth_.Check(*context); !s.ok()) return s;
  absl::StatusOr<v1::Experiment> experiment = manager_->Stop(request->id(), request->reason());
  if (!experiment.ok()) return ToGrpcStatus(experiment.status());
  *response->mutable_experiment() = std::move(*experiment);
  return grpc::Status::OK;
}

grpc::Status ExperimentServiceImpl::Watch(grpc::ServerContext* context,
                                          const v1::WatchRequest* request,
                                          grpc::ServerWriter<v1::WatchResponse>* writer) {
  if (request->min_interval_ms() != 0 && request->min_interval_ms() < 100) {
    return ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat(
        "min_interval_ms: ", request->min_interval_ms(), " is not allowed; use 0 or >= 100")));
  }
  // each open stream holds a handler thread: a bounded number, so that watchers cannot take
  // the threads actors' heartbeats and health checks need
  if (!waiting_calls_->TryEnter()) {
    return ToGrpcStatus(absl::ResourceExhaustedError(absl::StrCat(
        "too many Watch streams and waiting GetPolicy calls are open (", waiting_calls_->max(),
        ", the learner's limit); close one, or poll with Get")));
  }
  struct Release {
    WaitingCallLimit* limit;
    ~Release() { limit->Leave(); }
  } release{waiting_calls_};
  const absl::Duration interval =
      absl::Milliseconds(request->min_interval_ms() == 0 ? 1000 : request->min_interval_ms());
  const absl::Time deadline = absl::FromChrono(context->deadline());
  int64_t seen = 0;
  absl::Time next_write = absl::InfinitePast();  // no snapshot goes out before this
  std::optional<v1::Experiment> pending;         // the newest snapshot not yet written
  while (!context->IsCancelled()) {
    const absl::Time now = absl::Now();
    if (now >= deadline) {
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "Watch reached its deadline");
    }
    if (pending.has_value() && now >= next_write) {
      const bool last = Terminal(pending->state());
      v1::WatchResponse response;
      *response.mutable_experiment() = *std::move(pending);
      pending.reset();
      if (!writer->Write(response)) return grpc::Status::CANCELLED;
      if (last) return grpc::Status::OK;
      next_write = absl::Now() + interval;
      continue;
    }
    // block on the manager until the experiment changes (changes within the interval coalesce
    // into one snapshot), the held-back snapshot is due or the call's deadline passes; the
    // synchronous API has no cancellation callback, so wake every kCancelCheck to look.
    const absl::Time wake = std::min(
        {deadline, now + kCancelCheck, pending.has_value() ? next_write : absl::InfiniteFuture()});
    const int64_t before = seen;
    absl::StatusOr<v1::Experiment> experiment = manager_->WaitForChange(request->id(), &seen, wake);
    if (!experiment.ok()) return ToGrpcStatus(experiment.status());
    if (seen != before) {
      pending = *std::move(experiment);
    } else if (absl::Now() < wake) {
      // WaitForChange returns early without a change only once the manager shuts down.
      return ToGrpcStatus(absl::UnavailableError("the learner is shutting down; watch again"));
    }
  }
  return grpc::Status::CANCELLED;
}

grpc::Status ExperimentServiceImpl::ListDatasets(grpc::ServerContext*,
                                                 const v1::ListDatasetsRequest* request,
                                                 v1::ListDatasetsResponse* response) {
  if (datasets_ == nullptr) {
    return ToGrpcStatus(absl::FailedPreconditionError("this learner has no dataset store"));
  }
  if (!request->name().empty()) {
    absl::StatusOr<v1::DatasetInfo> info = datasets_->Lookup(request->name());
    if (!info.ok()) return ToGrpcStatus(info.status());
    *response->add_datasets() = *std::move(info);
    return grpc::Status::OK;
  }
  std::vector<std::string> problems;
  for (v1::DatasetInfo& info : datasets_->List(&problems)) {
    *response->add_datasets() = std::move(info);
  }
  for (std::string& problem : problems) response->add_problems(std::move(problem));
  return grpc::Status::OK;
}

ActorServiceImpl::ActorServiceImpl(const LearnerServiceOptions& options, ActorRegistry* registry,
                                   PolicyStore* policies)
    : auth_(options.auth_token),
      registry_(registry),
      policies_(policies),
      waiting_calls_(options.waiting_calls != nullptr ? options.waiting_calls : &own_limit_) {}

grpc::Status ActorServiceImpl::Join(grpc::ServerContext* context, const v1::JoinRequest* request,
                                    v1::JoinResponse* response) {
  if (grpc::Status s = auth_.Check(*context); !s.ok()) return s;
  if (!ValidActorName(request->actor_name())) {
    return ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat(
        "actor_name: \"", request->actor_name(),
        "\" is not allowed; 1-63 characters from [a-z0-9_.-] starting with a lower-case letter")));
  }
  if (request->num_envs() < 1 || request->num_envs() > 1024) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        absl::StrCat("num_envs: ", request->num_envs(), " is not allowed; use 1..1024")));
  }
  *response = registry_->Join(*request);
  return grpc::Status::OK;
}

grpc::Status ActorServiceImpl::Heartbeat(grpc::ServerContext* context,
                                         const v1::HeartbeatRequest* request,
                                         v1::HeartbeatResponse* response) {
  if (grpc::Status s = auth_.Check(*context); !s.ok()) return s;
  absl::StatusOr<v1::HeartbeatResponse> r = registry_->Heartbeat(*request);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *response = std::move(*r);
  return grpc::Status::OK;
}

grpc::Status ActorServiceImpl::GetPolicy(grpc::ServerContext* context,
                                         const v1::GetPolicyRequest* request,
                                         v1::GetPolicyResponse* response) {
  // a call that waits for a newer version holds a handler thread: past the limit it only
  // looks, and says so when there is nothing newer yet (actors ask again after a backoff)
  const bool may_wait = waiting_calls_->TryEnter();
  struct Release {
    WaitingCallLimit* limit;
    bool entered;
    ~Release() {
      if (entered) limit->Leave();
    }
  } release{waiting_calls_, may_wait};
  absl::StatusOr<std::shared_ptr<const v1::Policy>> policy =
      policies_->Wait(request->experiment_id(), request->min_version(),
                      may_wait ? Deadline(*context, absl::Minutes(5)) : absl::InfinitePast());
  if (!may_wait && absl::IsDeadlineExceeded(policy.status())) {
    return ToGrpcStatus(absl::ResourceExhaustedError(
        absl::StrCat("too many Watch streams and waiting GetPolicy calls are open (",
                     waiting_calls_->max(), ", the learner's limit) to wait for min_version ",
                     request->min_version(), "; ask again later")));
  }
  if (!policy.ok()) return ToGrpcStatus(policy.status());
  if (request->have_version() == (*policy)->version()) {
    v1::Policy* out = response->mutable_policy();
    out->set_experiment_id((*policy)->experiment_id());
    out->set_version((*policy)->version());
    *out->mutable_architecture() = (*policy)->architecture();
    *out->mutable_transfer() = (*policy)->transfer();
    response->set_not_modified(true);
    return grpc::Status::OK;
  }
  *response->mutable_policy() = **policy;
  return grpc::Status::OK;
}

grpc::Status ActorServiceImpl::ReportEpisodes(grpc::ServerContext* context,
                                              const v1::ReportEpisodesRequest* request,
                                              v1::ReportEpisodesResponse* response) {
  if (grpc::Status s = auth_.Check(*context); !s.ok()) return s;
  if (request->episodes_size() > 10000) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        absl::StrCat("episodes: ", request->episodes_size(), " in one report; at most 10,000")));
  }
  absl::StatusOr<v1::ReportEpisodesResponse> r = registry_->ReportEpisodes(*request);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *response = std::move(*r);
  return grpc::Status::OK;
}

grpc::Status ActorServiceImpl::Leave(grpc::ServerContext* context, const v1::LeaveRequest* request,
                                     v1::LeaveResponse*) {
  if (grpc::Status s = auth_.Check(*context); !s.ok()) return s;
  return ToGrpcStatus(registry_->Leave(request->actor_id()));
}

}  // namespace prl::learner
