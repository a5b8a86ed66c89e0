// Prometheus metrics of an actor: env steps, finished episodes and their returns (label `kind`
// = train or eval), the policy version it acts with, items inserted into replay, and failed
// calls by RPC (label `rpc`: Join, Heartbeat, GetPolicy, ReportEpisodes, Leave, Insert).
// Built from a registry passed in; thread-safe (prometheus-cpp metrics are atomic).
#ifndef PRL_ACTOR_ACTOR_METRICS_H_
#define PRL_ACTOR_ACTOR_METRICS_H_

#include <string>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace prl::actor {

class ActorMetrics {
 public:
  explicit ActorMetrics(prometheus::Registry& registry);

  // Env steps taken (training, collection and evaluation).
  prometheus::Counter& env_steps;
  // Finished episodes.
  prometheus::Counter& train_episodes;
  prometheus::Counter& eval_episodes;
  // Return of the latest finished episode of each kind.
  prometheus::Gauge& train_return;
  prometheus::Gauge& eval_return;
  // Version of the policy held (0 before the first).
  prometheus::Gauge& policy_version;
  // Generation of the assignment being executed.
  prometheus::Gauge& generation;
  // Transitions the replay shards accepted.
  prometheus::Counter& inserted_items;

  // Counts one failed call of `rpc`.
  void RpcError(const std::string& rpc);

 private:
  prometheus::Family<prometheus::Counter>& rpc_errors_;
};

}  // namespace prl::actor

#endif  // PRL_ACTOR_ACTOR_METRICS_H_
