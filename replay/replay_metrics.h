// Prometheus metrics of a replay shard, per table (label `table`): inserts, samples and
// removals (items, `_total`), table size, rate-limiter wait seconds (label `op` = insert or
// sample), and checkpoint duration and size. Built from a registry passed in; thread-safe
// (prometheus-cpp metrics are atomic).
#ifndef PRL_REPLAY_REPLAY_METRICS_H_
#define PRL_REPLAY_REPLAY_METRICS_H_

#include <memory>
#include <string>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace prl::replay {

// One table's metric children; removed from their families when destroyed.
class TableMetrics {
 public:
  ~TableMetrics();
  prometheus::Counter& inserts;
  prometheus::Counter& samples;
  prometheus::Counter& removals;
  prometheus::Gauge& size;
  prometheus::Counter& insert_wait_seconds;
  prometheus::Counter& sample_wait_seconds;

 private:
  friend class ReplayMetrics;
  TableMetrics(class ReplayMetrics& owner, const std::string& table);
  class ReplayMetrics& owner_;
};

class ReplayMetrics {
 public:
  explicit ReplayMetrics(prometheus::Registry& registry);

  // The metrics of table `table`.
  std::unique_ptr<TableMetrics> ForTable(const std::string& table);

  prometheus::Histogram& checkpoint_seconds() { return checkpoint_seconds_; }
  prometheus::Gauge& checkpoint_bytes() { return checkpoint_bytes_; }

 private:
  friend class TableMetrics;
  prometheus::Family<prometheus::Counter>& inserts_;
  prometheus::Family<prometheus::Counter>& samples_;
  prometheus::Family<prometheus::Counter>& removals_;
  prometheus::Family<prometheus::Gauge>& size_;
  prometheus::Family<prometheus::Counter>& wait_;
  prometheus::Histogram& checkpoint_seconds_;
  prometheus::Gauge& checkpoint_bytes_;
};

}  // namespace prl::replay

#endif  // PRL_REPLAY_REPLAY_METRICS_H_
