// Prometheus metrics of the learner (DESIGN section 8): updates and their duration, time the
// update loop waited for batches, the algorithm's losses, α, entropy and KL to the prior, the
// published policy version, env steps, episodes and returns reported by the actors,
// checkpoints written and their duration, and experiments by state. Per-experiment series
// carry the label `experiment` (one experiment runs at a time, so the cardinality stays low).
//
// Built from a registry passed in (tests read a fresh one); thread-safe (prometheus-cpp
// metrics are atomic; families are safe to Add to concurrently).
#ifndef PRL_LEARNER_LEARNER_METRICS_H_
#define PRL_LEARNER_LEARNER_METRICS_H_

#include <map>
#include <string>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace prl::learner {

// The series of one experiment. Valid as long as the LearnerMetrics that made it.
struct RunMetrics {
  prometheus::Counter* updates;
  prometheus::Histogram* update_duration;
  prometheus::Counter* sample_wait;
  prometheus::Gauge* policy_version;
  prometheus::Counter* env_steps;
  prometheus::Counter* episodes;
  prometheus::Gauge* train_return;
  prometheus::Gauge* eval_return;
  prometheus::Gauge* replay_size;
  prometheus::Counter* checkpoints;
  prometheus::Counter* checkpoint_errors;
  prometheus::Histogram* checkpoint_duration;
  // Sets the gauge of each scalar an update reported: names ending in "_loss" go to
  // prl_learner_loss{loss=...}, "alpha", "entropy", "kl_to_prior" and "q_mean" to their own.
  void SetScalars(const std::map<std::string, double>& scalars);

  // the series SetScalars writes (losses by their `loss` label, created on first use)
  prometheus::Family<prometheus::Gauge>* losses;
  prometheus::Gauge* alpha;
  prometheus::Gauge* entropy;
  prometheus::Gauge* kl_to_prior;
  prometheus::Gauge* q_mean;
  std::string experiment;
};

class LearnerMetrics {
 public:
  explicit LearnerMetrics(prometheus::Registry& registry);

  // The series labelled with `experiment` (created on first use).
  RunMetrics ForExperiment(const std::string& experiment);

  // Sets prl_learner_experiments{state=...} to the count of experiments in each state.
  void SetExperimentsByState(const std::map<std::string, int>& counts);

 private:
  prometheus::Family<prometheus::Counter>& updates_;
  prometheus::Family<prometheus::Histogram>& update_duration_;
  prometheus::Family<prometheus::Counter>& sample_wait_;
  prometheus::Family<prometheus::Gauge>& policy_version_;
  prometheus::Family<prometheus::Counter>& env_steps_;
  prometheus::Family<prometheus::Counter>& episodes_;
  prometheus::Family<prometheus::Gauge>& returns_;
  prometheus::Family<prometheus::Gauge>& replay_size_;
  prometheus::Family<prometheus::Counter>& checkpoints_;
  prometheus::Family<prometheus::Histogram>& checkpoint_duration_;
  prometheus::Family<prometheus::Gauge>& losses_;
  prometheus::Family<prometheus::Gauge>& alpha_;
  prometheus::Family<prometheus::Gauge>& entropy_;
  prometheus::Family<prometheus::Gauge>& kl_to_prior_;
  prometheus::Family<prometheus::Gauge>& q_mean_;
  prometheus::Family<prometheus::Gauge>& experiments_;
};

}  // namespace prl::learner

#endif  // PRL_LEARNER_LEARNER_METRICS_H_
