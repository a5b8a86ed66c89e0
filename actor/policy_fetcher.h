// Holds the policy an assignment acts with and keeps it current through the learner
// (ActorService.GetPolicy, via the RunnerHost): Ensure long-polls until a version at least as
// new as asked is held (the first policy after warm-up, or the version an evaluation round
// names), and MaybeRefresh asks for a newer version every refresh interval without blocking.
// A version that cannot be built (weights that do not fit the env) is logged and skipped; the
// fetcher acts on with the version it has.
//
// Not thread-safe: owned by one runner on the acting thread.
#ifndef PRL_ACTOR_POLICY_FETCHER_H_
#define PRL_ACTOR_POLICY_FETCHER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "actor/actor_metrics.h"
#include "actor/runner_host.h"
#include "models/acting_policy.h"
#include "proto/actor.pb.h"

namespace prl::actor {

struct PolicyFetcherOptions {
  std::string experiment_id;
  // The env's sizes; a policy of other sizes is refused.
  int obs_dim = 0;
  int action_dim = 0;
  // Longest long-poll; deadline of a refresh; time between refreshes.
  absl::Duration poll_timeout = absl::Seconds(5);
  absl::Duration rpc_timeout = absl::Seconds(5);
  absl::Duration refresh_interval = absl::Seconds(2);
  // Backoff between failed long-polls.
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  models::ActingPolicyFactory factory;
};

class PolicyFetcher {
 public:
  PolicyFetcher(PolicyFetcherOptions options, RunnerHost* host, ActorMetrics* metrics);

  // Returns once a policy of version >= max(1, min_version) is held, asking the learner (and
  // waiting out failures with backoff) as long as it takes; false when the host is interrupted
  // first.
  bool Ensure(int64_t min_version);
  // When a policy is held and the refresh interval has passed, asks for a newer version
  // (bounded by rpc_timeout) and switches to it.
  void MaybeRefresh();

  // The policy held; null before the first.
  models::ActingPolicy* policy() const { return policy_.get(); }

 private:
  // Applies a GetPolicy answer. Errors: FAILED_PRECONDITION for not_modified with no policy
  // held; the factory's errors; INVALID_ARGUMENT for a policy whose sizes differ from the env's.
  absl::Status Install(const v1::GetPolicyResponse& response);

  const PolicyFetcherOptions options_;
  RunnerHost* const host_;
  ActorMetrics* const metrics_;
  std::unique_ptr<models::ActingPolicy> policy_;
  absl::Time next_refresh_ = absl::InfinitePast();
  int refresh_failures_ = 0;     // in a row, for logging
  int64_t refused_version_ = 0;  // the newest version that could not be built
};

}  // namespace prl::actor

#endif  // PRL_ACTOR_POLICY_FETCHER_H_
