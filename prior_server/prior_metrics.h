// Prometheus metrics of prl_prior_server (DESIGN section 8): requests by model, method and
// status code; per model and method the rows of each batch, the calls it coalesced, the time
// calls waited in the queue and the time batches computed; loaded model versions by model; model
// loads by result. Labels are the model name (not the version) and the method, so cardinality
// stays at models × 5.
//
// Built from a registry passed in; thread-safe.
#ifndef PRL_PRIOR_SERVER_PRIOR_METRICS_H_
#define PRL_PRIOR_SERVER_PRIOR_METRICS_H_

#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "prior_server/dynamic_batcher.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace prl::prior_server {

class PriorMetrics {
 public:
  explicit PriorMetrics(prometheus::Registry& registry);
  ~PriorMetrics();

  // prl_prior_requests_total{model, method, code}.
  void CountRequest(const std::string& model, const std::string& method, absl::StatusCode code);
  // prl_prior_model_loads_total{result}: "ok" or the status code's name.
  void CountLoad(absl::StatusCode code);
  // prl_prior_loaded_models{model}: versions of `model` loaded now.
  void SetLoadedVersions(const std::string& model, int versions);

  // The observer feeding prl_prior_batch_rows, prl_prior_batch_calls, prl_prior_queue_seconds
  // and prl_prior_compute_seconds for `model` and `method`; lives as long as this object.
  BatchObserver* ObserverFor(const std::string& model, const std::string& method)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  class Observer;

  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& loads_;
  prometheus::Family<prometheus::Gauge>& loaded_;
  prometheus::Family<prometheus::Histogram>& batch_rows_;
  prometheus::Family<prometheus::Histogram>& batch_calls_;
  prometheus::Family<prometheus::Histogram>& queue_seconds_;
  prometheus::Family<prometheus::Histogram>& compute_seconds_;

  absl::Mutex mu_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<Observer>> observers_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace prl::prior_server

#endif  // PRL_PRIOR_SERVER_PRIOR_METRICS_H_
