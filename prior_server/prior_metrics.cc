#include "prior_server/prior_metrics.h"

#include "absl/status/status.h"
#include "common/metrics.h"

namespace prl::prior_server {
namespace {

template <typename Builder>
auto& Build(Builder builder, const char* name, const char* help, prometheus::Registry& registry) {
  return builder.Name(name).Help(help).Register(registry);
}

// Powers of two from 1 to 65,536 rows (or calls).
prometheus::Histogram::BucketBoundaries PowersOfTwo() {
  prometheus::Histogram::BucketBoundaries b;
  for (double v = 1; v <= 65536; v *= 2) b.push_back(v);
  return b;
}

}  // namespace

class PriorMetrics::Observer final : public BatchObserver {
 public:
  Observer(prometheus::Histogram& rows, prometheus::Histogram& calls, prometheus::Histogram& queue,
           prometheus::Histogram& compute)
      : rows_(rows), calls_(calls), queue_(queue), compute_(compute) {}

  void OnDequeued(absl::Duration queued) override { queue_.Observe(absl::ToDoubleSeconds(queued)); }
  void OnBatch(int64_t rows, int calls, absl::Duration compute) override {
    rows_.Observe(static_cast<double>(rows));
    calls_.Observe(calls);
    compute_.Observe(absl::ToDoubleSeconds(compute));
  }

 private:
  prometheus::Histogram& rows_;
  prometheus::Histogram& calls_;
  prometheus::Histogram& queue_;
  prometheus::Histogram& compute_;
};

PriorMetrics::PriorMetrics(prometheus::Registry& registry)
    : requests_(Build(prometheus::BuildCounter(), "prl_prior_requests_total",
                      "Inference requests answered, by model, method and gRPC status code.",
                      registry)),
      loads_(Build(prometheus::BuildCounter(), "prl_prior_model_loads_total",
                   "Model loads (LoadModel and on-demand loads), by result (ok or the error "
                   "code).",
                   registry)),
      loaded_(Build(prometheus::BuildGauge(), "prl_prior_loaded_models",
                    "Versions loaded and served, by model.", registry)),
      batch_rows_(Build(prometheus::BuildHistogram(), "prl_prior_batch_rows",
                        "Rows per batch the model computed, by model and method.", registry)),
      batch_calls_(Build(prometheus::BuildHistogram(), "prl_prior_batch_calls",
                         "Calls coalesced into one batch, by model and method.", registry)),
      queue_seconds_(Build(prometheus::BuildHistogram(), "prl_prior_queue_seconds",
                           "Time a call waited in its batcher's queue, by model and method.",
                           registry)),
      compute_seconds_(Build(prometheus::BuildHistogram(), "prl_prior_compute_seconds",
                             "Time one batch took to compute, by model and method.", registry)) {}

PriorMetrics::~PriorMetrics() = default;

void PriorMetrics::CountRequest(const std::string& model, const std::string& method,
                                absl::StatusCode code) {
  requests_.Add({{"model", model}, {"method", method}, {"code", absl::StatusCodeToString(code)}})
      .Increment();
}

void PriorMetrics::CountLoad(absl::StatusCode code) {
  loads_.Add({{"result", code == absl::StatusCode::kOk ? "ok" : absl::StatusCodeToString(code)}})
      .Increment();
}

void PriorMetrics::SetLoadedVersions(const std::string& model, int versions) {
  loaded_.Add({{"model", model}}).Set(versions);
}

BatchObserver* PriorMetrics::ObserverFor(const std::string& model, const std::string& method) {
  absl::MutexLock lock(&mu_);
  std::unique_ptr<Observer>& o = observers_[{model, method}];
  if (o == nullptr) {
    const std::map<std::string, std::string> labels{{"model", model}, {"method", method}};
    o = std::make_unique<Observer>(batch_rows_.Add(labels, PowersOfTwo()),
                                   batch_calls_.Add(labels, PowersOfTwo()),
                                   queue_seconds_.Add(labels, LatencyBuckets()),
                                   compute_seconds_.Add(labels, LatencyBuckets()));
  }
  return o.get();
}

}  // namespace prl::prior_server
