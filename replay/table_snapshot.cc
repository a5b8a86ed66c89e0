// Table checkpoints: Table::TakeSnapshot, Table::FromSnapshot and TableSnapshot::Row (table.h's
// header comment says how snapshots share column chunks). Part of the `table` library.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "replay/table.h"

namespace prl::replay {
namespace {

// Whether every column of `snapshot` holds `item`'s row (its chunk exists and is long enough).
bool HasStoredRows(const TableSnapshot& snapshot, const TableSnapshot::Item& item) {
  for (size_t c = 0; c < snapshot.chunks.size(); ++c) {
    const int64_t chunk = snapshot.rows_per_chunk > 0 ? item.slot / snapshot.rows_per_chunk : -1;
    if (item.slot < 0 || chunk < 0 || chunk >= static_cast<int64_t>(snapshot.chunks[c].size()) ||
        snapshot.chunks[c][chunk] == nullptr ||
        static_cast<int64_t>(snapshot.chunks[c][chunk]->bytes.size()) <
            (item.slot % snapshot.rows_per_chunk + 1) * snapshot.row_bytes[c]) {
      return false;
    }
  }
  return true;
}

}  // namespace

const char* TableSnapshot::Row(size_t column, const Item& item) const {
  const auto& chunk = chunks[column][item.slot / rows_per_chunk];
  return chunk->bytes.data() + (item.slot % rows_per_chunk) * row_bytes[column];
}

TableSnapshot Table::TakeSnapshot() const {
  TableSnapshot snapshot;
  snapshot.config = config_;
  snapshot.row_bytes = row_bytes_;
  snapshot.rows_per_chunk = rows_per_chunk_;
  absl::MutexLock lock(&mu_);
  snapshot.inserted_total = inserted_total_;
  snapshot.sampled_total = sampled_total_;
  snapshot.removed_total = removed_total_;
  snapshot.next_key = next_key_;
  snapshot.limiter_inserted = limiter_.inserted();
  snapshot.limiter_sampled = limiter_.sampled();
  snapshot.items.reserve(items_.size());
  for (const auto& [key, item] : items_) {
    snapshot.items.push_back({key, item.slot, item.priority, item.times_sampled});
  }
  // sharing the chunks makes the table copy any chunk it writes before the snapshot is gone.
  snapshot.chunks.resize(chunks_.size());
  for (size_t c = 0; c < chunks_.size(); ++c) {
    snapshot.chunks[c].assign(chunks_[c].begin(), chunks_[c].end());
  }
  std::sort(
      snapshot.items.begin(), snapshot.items.end(),
      [](const TableSnapshot::Item& a, const TableSnapshot::Item& b) { return a.key < b.key; });
  return snapshot;
}

absl::StatusOr<std::unique_ptr<Table>> Table::FromSnapshot(const TableSnapshot& snapshot,
                                                           const TableLimits& limits,
                                                           std::unique_ptr<TableMetrics> metrics) {
  PRL_ASSIGN_OR_RETURN(std::unique_ptr<Table> table,
                       Create(snapshot.config, limits, std::move(metrics)));
  const auto corrupt = [&](absl::string_view why) {
    return absl::DataLossError(
        absl::StrCat("snapshot of table '", snapshot.config.name(), "' is inconsistent: ", why));
  };
  if (snapshot.items.size() > static_cast<size_t>(table->config_.capacity())) {
    return corrupt("more items than capacity");
  }
  if (snapshot.inserted_total < 0 || snapshot.sampled_total < 0 || snapshot.removed_total < 0 ||
      snapshot.limiter_inserted < 0 || snapshot.limiter_sampled < 0) {
    return corrupt("negative counters");
  }
  if (snapshot.row_bytes != table->row_bytes_ || snapshot.chunks.size() != table->chunks_.size()) {
    return corrupt("column layout differs from its config");
  }
  absl::MutexLock lock(&table->mu_);
  for (const TableSnapshot::Item& item : snapshot.items) {
    if (item.key >= snapshot.next_key || table->items_.contains(item.key) ||
        !std::isfinite(item.priority) || item.priority < 0 || item.times_sampled < 0) {
      return corrupt(absl::StrCat("bad item key ", item.key));
    }
    if (!HasStoredRows(snapshot, item)) {
      return corrupt(absl::StrCat("item ", item.key, " has no stored row"));
    }
    const int64_t slot = table->next_slot_++;
    for (size_t c = 0; c < table->chunks_.size(); ++c) {
      std::memcpy(table->MutableRowLocked(c, slot), snapshot.Row(c, item), table->row_bytes_[c]);
    }
    table->items_[item.key] = Item{slot, item.priority, item.times_sampled};
    table->sampler_->Insert(item.key, item.priority);
    table->remover_->Insert(item.key, item.priority);
    table->max_priority_ = std::max(table->max_priority_, item.priority);
  }
  table->next_key_ = snapshot.next_key;
  table->inserted_total_ = snapshot.inserted_total;
  table->sampled_total_ = snapshot.sampled_total;
  table->removed_total_ = snapshot.removed_total;
  table->limiter_.SetCounts(snapshot.limiter_inserted, snapshot.limiter_sampled);
  if (table->metrics_ != nullptr)
    table->metrics_->size.Set(static_cast<double>(table->items_.size()));
  return table;
}

}  // namespace prl::replay
