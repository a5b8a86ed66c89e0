// A replay table's configuration checks: the shard-wide limits on what a request may ask for,
// and the validation (with defaults filled) of a TableConfig before a Table is built from it.
// Plain functions of their arguments: thread-safe.
#ifndef PRL_REPLAY_TABLE_CONFIG_H_
#define PRL_REPLAY_TABLE_CONFIG_H_

#include <cstdint>

#include "absl/status/status.h"
#include "proto/replay.pb.h"

namespace prl::replay {

// Shard-wide limits on what a request may ask for.
struct TableLimits {
  int64_t max_capacity = 10'000'000;
  // Rows in one Insert request or one Sample batch.
  int64_t max_batch_rows = 65'536;
  // Largest message a client may send or receive: bounds an item's size and a sample batch.
  int64_t max_message_bytes = 64 << 20;
};

// Checks `config` against `limits` and fills its defaults (replay.proto documents them).
// Errors: INVALID_ARGUMENT naming the field ("config.signature[2].shape"), the value and what
// is allowed.
absl::Status ValidateTableConfig(const TableLimits& limits, v1::TableConfig* config);

}  // namespace prl::replay

#endif  // PRL_REPLAY_TABLE_CONFIG_H_
