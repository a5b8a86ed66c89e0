#include "actor/actor_metrics.h"

namespace prl::actor {
namespace {

prometheus::Family<prometheus::Counter>& Episodes(prometheus::Registry& registry) {
  return prometheus::BuildCounter()
      .Name("prl_actor_episodes_total")
      .Help("Episodes the actor finished, by kind (train or eval).")
      .Register(registry);
}

prometheus::Family<prometheus::Gauge>& Returns(prometheus::Registry& registry) {
  return prometheus::BuildGauge()
      .Name("prl_actor_episode_return")
      .Help("Undiscounted return of the latest finished episode, by kind (train or eval).")
      .Register(registry);
}

}  // namespace

ActorMetrics::ActorMetrics(prometheus::Registry& registry)
    : env_steps(prometheus::BuildCounter()
                    .Name("prl_actor_env_steps_total")
                    .Help("Env steps the actor took (training, collection and evaluation).")
                    .Register(registry)
                    .Add({})),
      train_episodes(Episodes(registry).Add({{"kind", "train"}})),
      eval_episodes(Episodes(registry).Add({{"kind", "eval"}})),
      train_return(Returns(registry).Add({{"kind", "train"}})),
      eval_return(Returns(registry).Add({{"kind", "eval"}})),
      policy_version(prometheus::BuildGauge()
                         .Name("prl_actor_policy_version")
                         .Help("Version of the policy the actor holds (0 before the first).")
                         .Register(registry)
                         .Add({})),
      generation(prometheus::BuildGauge()
                     .Name("prl_actor_generation")
                     .Help("Generation of the assignment the actor executes.")
                     .Register(registry)
                     .Add({})),
      inserted_items(prometheus::BuildCounter()
                         .Name("prl_actor_inserted_items_total")
                         .Help("Transitions the replay shards accepted from this actor.")
                         .Register(registry)
                         .Add({})),
      rpc_errors_(prometheus::BuildCounter()
                      .Name("prl_actor_rpc_errors_total")
                      .Help("Failed calls to the learner and replay, by RPC.")
                      .Register(registry)) {}

void ActorMetrics::RpcError(const std::string& rpc) { rpc_errors_.Add({{"rpc", rpc}}).Increment(); }

}  // namespace prl::actor
