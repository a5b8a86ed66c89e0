// An EVALUATE experiment: a trained policy (EvaluateSpec.policy: a TRAIN experiment of this
// learner or one of its checkpoints) runs `episodes` episodes on the actors in
// ExperimentSpec.env (its dynamics included, so a policy can be measured on a variant it was
// not trained on), acting with its mean (or sampling, with `stochastic`); nothing is trained or
// inserted. The policy is published to the actors under the EVALUATE experiment's id, with the
// acting part of the assignment its TRAIN run gave (policy architecture, prior and prior
// server for latent policies, decision horizon); the actors run it in MODE_EVALUATE, as
// evaluation rounds of the ActorRegistry. A round that cannot deliver its episodes (an actor
// died and no actor took its slot) is followed by another for the rest; so is one during which
// no episode arrives for round_timeout, and after max_stalled_rounds of those the run fails.
//
// Results: Progress (episodes done, fraction, the mean return so far), one curve point at the
// policy's env steps (eval_return, eval_episodes, eval_success_rate), and
// ExperimentOutputs.evaluation (mean, standard deviation, minimum and maximum return, success
// rate, mean length, the policy version evaluated).
//
// With EvaluateSpec.translator (an ACTION_TRANSLATOR between two tasks in the model store,
// context_dim 0, version resolved when the run starts) the actors act a = H(s, π(s)) through
// the prior server: a flat policy trained on the translator's source task, run on its target
// task. A stop ends it STOPPED; a learner shutdown
// leaves it RUNNING, and the next start evaluates afresh.
//
// Thread-safety: Run on one thread; RequestStop and the ActorEventSink methods from any.
#ifndef PRL_LEARNER_EVALUATE_RUN_H_
#define PRL_LEARNER_EVALUATE_RUN_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "learner/actor_registry.h"
#include "learner/collect_run.h"
#include "learner/experiment_run.h"
#include "learner/learner_metrics.h"
#include "learner/model_store.h"
#include "learner/policy_store.h"
#include "proto/experiment.pb.h"

namespace prl::learner {

struct EvaluateRunOptions {
  // Not owned; must outlive the run.
  ActorRegistry* registry = nullptr;
  PolicyStore* policies = nullptr;
  // Resolves EvaluateSpec.policy (errors naming its fields).
  CollectPolicyLoader policy_loader;
  // For EvaluateSpec.translator: the model store it is resolved in and the prior server
  // (host:port) that serves it to the actors. Without a store such an experiment fails.
  const ModelStore* models = nullptr;
  std::string prior_address;
  // Optional: the learner's metrics.
  LearnerMetrics* metrics = nullptr;
  // How often the run looks at its episodes and reports progress.
  absl::Duration poll_period = absl::Milliseconds(200);
  absl::Duration progress_period = absl::Seconds(1);
  // A round during which no episode arrives for this long is asked again; after
  // max_stalled_rounds such rounds in a row the run fails (the actors cannot run the policy:
  // envs that do not build, a prior server they cannot reach).
  absl::Duration round_timeout = absl::Minutes(10);
  int max_stalled_rounds = 3;
};

// Builds the run for a validated EVALUATE experiment. Errors: INVALID_ARGUMENT for options
// without registry, policies or policy_loader, or a spec of another kind.
absl::StatusOr<std::unique_ptr<ExperimentRun>> CreateEvaluateRun(const v1::Experiment& experiment,
                                                                 RunContext* context,
                                                                 const EvaluateRunOptions& options);

}  // namespace prl::learner

#endif  // PRL_LEARNER_EVALUATE_RUN_H_
