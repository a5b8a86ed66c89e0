// prl_replay: one replay shard. Serves prl.v1.ReplayService, gRPC health and /metrics;
// restores its tables from the last checkpoint on start, checkpoints periodically, and on
// SIGTERM/SIGINT drains, writes a final checkpoint and exits.
#include <algorithm>
#include <iostream>
#include <memory>

#include "absl/flags/flag.h"
#include "common/logging.h"
#include "common/server.h"
#include "common/server_flags.h"
#include "common/signals.h"
#include "replay/allocator.h"
#include "replay/replay_service.h"
#include "replay/shard.h"

ABSL_FLAG(std::string, replay_checkpoint_dir, "",
          "Directory for the shard's checkpoint (replay.ckpt); restored on start. Empty: no "
          "checkpoints.");
ABSL_FLAG(absl::Duration, replay_checkpoint_period, absl::Minutes(10),
          "Time between automatic checkpoints; 0 turns them off (on request and on SIGTERM "
          "only).");
ABSL_FLAG(int, replay_max_tables, 64, "Most tables the shard holds.");
ABSL_FLAG(int64_t, replay_max_capacity, 10'000'000, "Largest capacity a table may have.");
ABSL_FLAG(int64_t, replay_max_batch_rows, 65'536, "Most rows in one insert request or sample.");

int main(int argc, char** argv) {
  // before gRPC allocates anything: received messages reuse freed buffers.
  if (absl::Status s = prl::replay::KeepFreedBuffersForReuse(); !s.ok()) {
    PRL_LOG(WARNING) << "allocator settings not applied: " << s;
  }
  prl::BlockTerminationSignals();
  prl::ParseServerCommandLine(argc, argv,
                              "prl_replay: a PRL replay shard.\n"
                              "Usage: prl_replay [--port=N] [--metrics_port=N] "
                              "[--replay_checkpoint_dir=DIR] [flags]");
  auto token = prl::AuthTokenFromFlags();
  if (!token.ok()) {
    std::cerr << "prl_replay: " << token.status().message() << "\n";
    return 1;
  }
  prl::replay::ShardOptions shard_options;
  shard_options.checkpoint_dir = absl::GetFlag(FLAGS_replay_checkpoint_dir);
  shard_options.checkpoint_period = absl::GetFlag(FLAGS_replay_checkpoint_period);
  shard_options.max_tables = absl::GetFlag(FLAGS_replay_max_tables);
  shard_options.limits.max_capacity = absl::GetFlag(FLAGS_replay_max_capacity);
  shard_options.limits.max_batch_rows = absl::GetFlag(FLAGS_replay_max_batch_rows);
  if (shard_options.max_tables < 1 || shard_options.limits.max_capacity < 1 ||
      shard_options.limits.max_batch_rows < 1) {
    std::cerr << "prl_replay: --replay_max_tables, --replay_max_capacity and "
                 "--replay_max_batch_rows must be at least 1\n";
    return 1;
  }

  const prl::ServerOptions server_options = prl::ServerOptionsFromFlags("replay", 50051, 9151);
  // items and sample batches must fit in the messages the server accepts and sends.
  shard_options.limits.max_message_bytes = server_options.max_message_bytes;
  auto registry = std::make_shared<prometheus::Registry>();
  auto shard = prl::replay::ReplayShard::Create(shard_options, *registry);
  if (!shard.ok()) {
    std::cerr << "prl_replay: " << shard.status().message() << "\n";
    return 1;
  }
  prl::replay::ReplayServiceOptions service_options;
  service_options.auth_token = *token;
  if (server_options.max_threads > 0) {
    service_options.max_waiting_samples = std::max(1, server_options.max_threads / 2);
  }
  prl::replay::ReplayServiceImpl service(service_options, shard->get());
  auto host = prl::ServerHost::Start(server_options, {&service}, registry);
  if (!host.ok()) {
    std::cerr << "prl_replay: " << host.status().message() << "\n";
    return 1;
  }
  const int code = prl::ServeUntilSignal(**host);
  if (!shard_options.checkpoint_dir.empty()) {
    auto checkpoint = (*shard)->Checkpoint();
    if (!checkpoint.ok()) {
      PRL_LOG(ERROR) << "final checkpoint failed: " << checkpoint.status();
      return 1;
    }
    PRL_LOG(INFO) << "final checkpoint: " << checkpoint->path() << " (" << checkpoint->bytes()
                  << " bytes)";
  }
  return code;
}
