#include "actor/policy_fetcher.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "actor/backoff.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace prl::actor {

PolicyFetcher::PolicyFetcher(PolicyFetcherOptions options, RunnerHost* host, ActorMetrics* metrics)
    : options_(std::move(options)), host_(host), metrics_(metrics) {}

bool PolicyFetcher::Ensure(int64_t min_version) {
  min_version = std::max<int64_t>(1, min_version);
  Backoff backoff(options_.initial_backoff, options_.max_backoff);
  std::string last_error;
  while (!policy_ || policy_->version() < min_version) {
    if (host_->Interrupted()) return false;
    v1::GetPolicyRequest request;
    request.set_experiment_id(options_.experiment_id);
    request.set_have_version(policy_ ? policy_->version() : 0);
    request.set_min_version(min_version);
    const absl::Time start = absl::Now();
    absl::StatusOr<v1::GetPolicyResponse> response =
        host_->GetPolicy(request, options_.poll_timeout);
    if (!response.ok()) metrics_->RpcError("GetPolicy");
    const absl::Status status = response.ok() ? Install(*response) : response.status();
    if (status.ok() && policy_ && policy_->version() >= min_version) break;
    // an ordinary long-poll timeout: ask again at once.
    if (absl::IsDeadlineExceeded(status) && absl::Now() - start >= options_.poll_timeout / 2) {
      continue;
    }
    if (!status.ok() && std::string(status.message()) != last_error) {
      last_error = std::string(status.message());
      PRL_LOG(WARNING) << "waiting for policy version " << min_version << " of experiment "
                       << options_.experiment_id << ": " << status;
    }
    if (host_->Wait(backoff.Next())) return false;
  }
  next_refresh_ = absl::Now() + options_.refresh_interval;
  return true;
}

void PolicyFetcher::MaybeRefresh() {
  const absl::Time now = absl::Now();
  if (!policy_ || now < next_refresh_) return;
  next_refresh_ = now + options_.refresh_interval;
  v1::GetPolicyRequest request;
  request.set_experiment_id(options_.experiment_id);
  request.set_have_version(policy_->version());
  absl::StatusOr<v1::GetPolicyResponse> response = host_->GetPolicy(request, options_.rpc_timeout);
  if (!response.ok()) {
    metrics_->RpcError("GetPolicy");
    if (refresh_failures_++ % 10 == 0) {
      PRL_LOG(WARNING) << "policy refresh failed (" << refresh_failures_
                       << " in a row; acting on with version " << policy_->version()
                       << "): " << response.status();
    }
    return;
  }
  refresh_failures_ = 0;
  if (!response->not_modified() && response->policy().version() == refused_version_) return;
  if (absl::Status s = Install(*response); !s.ok()) {
    PRL_LOG(ERROR) << "policy version " << response->policy().version()
                   << " cannot be used (acting on with version " << policy_->version()
                   << "): " << s;
  }
}

absl::Status PolicyFetcher::Install(const v1::GetPolicyResponse& response) {
  if (response.not_modified()) {
    if (policy_) return absl::OkStatus();
    return absl::FailedPreconditionError(
        "the learner answered not_modified to an actor holding no policy");
  }
  const int64_t version = response.policy().version();
  if (policy_ && version <= policy_->version()) return absl::OkStatus();
  if (!options_.factory) {
    return absl::UnimplementedError("this actor was built without a policy factory");
  }
  absl::StatusOr<std::unique_ptr<models::ActingPolicy>> policy =
      options_.factory(response.policy());
  if (policy.ok() && ((*policy)->obs_dim() != options_.obs_dim ||
                      (*policy)->action_dim() != options_.action_dim)) {
    policy = absl::InvalidArgumentError(
        absl::StrCat("policy version ", version, " maps ", (*policy)->obs_dim(),
                     " observations to ", (*policy)->action_dim(), " actions; the env has ",
                     options_.obs_dim, " and ", options_.action_dim));
  }
  if (!policy.ok()) {
    refused_version_ = version;
    return policy.status();
  }
  policy_ = *std::move(policy);
  metrics_->policy_version.Set(static_cast<double>(version));
  PRL_LOG(INFO) << "acting with policy version " << version << " of experiment "
                << options_.experiment_id;
  return absl::OkStatus();
}

}  // namespace prl::actor
