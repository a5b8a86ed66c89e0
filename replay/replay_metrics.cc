#include "replay/replay_metrics.h"

#include "common/metrics.h"

namespace prl::replay {

TableMetrics::TableMetrics(ReplayMetrics& owner, const std::string& table)
    : inserts(owner.inserts_.Add({{"table", table}})),
      samples(owner.samples_.Add({{"table", table}})),
      removals(owner.removals_.Add({{"table", table}})),
      size(owner.size_.Add({{"table", table}})),
      insert_wait_seconds(owner.wait_.Add({{"table", table}, {"op", "insert"}})),
      sample_wait_seconds(owner.wait_.Add({{"table", table}, {"op", "sample"}})),
      owner_(owner) {}

TableMetrics::~TableMetrics() {
  owner_.inserts_.Remove(&inserts);
  owner_.samples_.Remove(&samples);
  owner_.removals_.Remove(&removals);
  owner_.size_.Remove(&size);
  owner_.wait_.Remove(&insert_wait_seconds);
  owner_.wait_.Remove(&sample_wait_seconds);
}

ReplayMetrics::ReplayMetrics(prometheus::Registry& registry)
    : inserts_(prometheus::BuildCounter()
                   .Name("prl_replay_inserts_total")
                   .Help("Items inserted into a replay table.")
                   .Register(registry)),
      samples_(prometheus::BuildCounter()
                   .Name("prl_replay_samples_total")
                   .Help("Items sampled from a replay table.")
                   .Register(registry)),
      removals_(prometheus::BuildCounter()
                    .Name("prl_replay_removals_total")
                    .Help("Items removed from a replay table (eviction or max times sampled).")
                    .Register(registry)),
      size_(prometheus::BuildGauge()
                .Name("prl_replay_table_size")
                .Help("Items held by a replay table.")
                .Register(registry)),
      wait_(prometheus::BuildCounter()
                .Name("prl_replay_rate_limiter_wait_seconds_total")
                .Help("Time calls spent blocked on a table's rate limiter.")
                .Register(registry)),
      checkpoint_seconds_(prometheus::BuildHistogram()
                              .Name("prl_replay_checkpoint_duration_seconds")
                              .Help("Time to write a shard checkpoint.")
                              .Register(registry)
                              .Add({}, LatencyBuckets())),
      checkpoint_bytes_(prometheus::BuildGauge()
                            .Name("prl_replay_checkpoint_bytes")
                            .Help("Size of the latest shard checkpoint.")
                            .Register(registry)
                            .Add({})) {}

std::unique_ptr<TableMetrics> ReplayMetrics::ForTable(const std::string& table) {
  return std::unique_ptr<TableMetrics>(new TableMetrics(*this, table));
}

}  // namespace prl::replay
