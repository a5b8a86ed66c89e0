#include "learner/learner_metrics.h"

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace prl::learner {
namespace {

template <typename Builder>
auto& Build(Builder builder, const char* name, const char* help, prometheus::Registry& registry) {
  return builder.Name(name).Help(help).Register(registry);
}

// Update and checkpoint durations: 0.5 ms .. ~16 s.
prometheus::Histogram::BucketBoundaries DurationBuckets() {
  prometheus::Histogram::BucketBoundaries b;
  for (double s = 0.0005; s < 20; s *= 2) b.push_back(s);
  return b;
}

}  // namespace

LearnerMetrics::LearnerMetrics(prometheus::Registry& registry)
    : updates_(Build(prometheus::BuildCounter(), "prl_learner_updates_total",
                     "Gradient updates the learner made, by experiment.", registry)),
      update_duration_(Build(prometheus::BuildHistogram(), "prl_learner_update_duration_seconds",
                             "Time one gradient update took, by experiment.", registry)),
      sample_wait_(Build(prometheus::BuildCounter(), "prl_learner_sample_wait_seconds_total",
                         "Time the update loop waited for a batch (replay filling, rate "
                         "limiter, shards down), by experiment.",
                         registry)),
      policy_version_(Build(prometheus::BuildGauge(), "prl_learner_policy_version",
                            "Latest policy version published to the actors, by experiment.",
                            registry)),
      env_steps_(Build(prometheus::BuildCounter(), "prl_learner_env_steps_total",
                       "Env steps the actors reported for the experiment since this learner "
                       "started.",
                       registry)),
      episodes_(Build(prometheus::BuildCounter(), "prl_learner_episodes_total",
                      "Training episodes the actors finished, by experiment.", registry)),
      returns_(Build(prometheus::BuildGauge(), "prl_learner_episode_return",
                     "Mean return of the latest training episodes (kind=train) or of the latest "
                     "evaluation round (kind=eval), by experiment.",
                     registry)),
      replay_size_(Build(prometheus::BuildGauge(), "prl_learner_replay_size",
                         "Items in the experiment's replay table at the latest sample.", registry)),
      checkpoints_(Build(prometheus::BuildCounter(), "prl_learner_checkpoints_total",
                         "Training checkpoints written, by experiment and result (ok, error).",
                         registry)),
      checkpoint_duration_(Build(prometheus::BuildHistogram(),
                                 "prl_learner_checkpoint_duration_seconds",
                                 "Time writing one training checkpoint took.", registry)),
      losses_(Build(prometheus::BuildGauge(), "prl_learner_loss",
                    "Latest value of each training loss, by experiment and loss.", registry)),
      alpha_(Build(prometheus::BuildGauge(), "prl_learner_alpha",
                   "Latest temperature α (entropy or KL-to-prior weight), by experiment.",
                   registry)),
      entropy_(Build(prometheus::BuildGauge(), "prl_learner_policy_entropy",
                     "Latest policy entropy estimate -E[log π(a|s)], by experiment.", registry)),
      kl_to_prior_(Build(prometheus::BuildGauge(), "prl_learner_kl_to_prior",
                         "Latest KL divergence of the policy to the behavioral prior, by "
                         "experiment (prior-guided algorithms).",
                         registry)),
      q_mean_(Build(prometheus::BuildGauge(), "prl_learner_q_mean",
                    "Latest mean Q value of the sampled batch, by experiment.", registry)),
      experiments_(Build(prometheus::BuildGauge(), "prl_learner_experiments",
                         "Experiments the learner holds, by state.", registry)) {}

RunMetrics LearnerMetrics::ForExperiment(const std::string& experiment) {
  const std::map<std::string, std::string> label{{"experiment", experiment}};
  auto with = [&](const char* key, const char* value) {
    std::map<std::string, std::string> l = label;
    l[key] = value;
    return l;
  };
  RunMetrics m;
  m.updates = &updates_.Add(label);
  m.update_duration = &update_duration_.Add(label, DurationBuckets());
  m.sample_wait = &sample_wait_.Add(label);
  m.policy_version = &policy_version_.Add(label);
  m.env_steps = &env_steps_.Add(label);
  m.episodes = &episodes_.Add(label);
  m.train_return = &returns_.Add(with("kind", "train"));
  m.eval_return = &returns_.Add(with("kind", "eval"));
  m.replay_size = &replay_size_.Add(label);
  m.checkpoints = &checkpoints_.Add(with("result", "ok"));
  m.checkpoint_errors = &checkpoints_.Add(with("result", "error"));
  m.checkpoint_duration = &checkpoint_duration_.Add(label, DurationBuckets());
  m.losses = &losses_;
  m.alpha = &alpha_.Add(label);
  m.entropy = &entropy_.Add(label);
  m.kl_to_prior = &kl_to_prior_.Add(label);
  m.q_mean = &q_mean_.Add(label);
  m.experiment = experiment;
  return m;
}

void RunMetrics::SetScalars(const std::map<std::string, double>& scalars) {
  for (const auto& [name, value] : scalars) {
    if (name == "alpha") {
      alpha->Set(value);
    } else if (name == "entropy") {
      entropy->Set(value);
    } else if (name == "kl_to_prior") {
      kl_to_prior->Set(value);
    } else if (name == "q_mean") {
      q_mean->Set(value);
    } else if (absl::EndsWith(name, "_loss")) {
      const absl::string_view loss = absl::string_view(name).substr(0, name.size() - 5);
      losses->Add({{"experiment", experiment}, {"loss", std::string(loss)}}).Set(value);
    }
  }
}

void LearnerMetrics::SetExperimentsByState(const std::map<std::string, int>& counts) {
  for (const auto& [state, count] : counts) experiments_.Add({{"state", state}}).Set(count);
}

}  // namespace prl::learner
