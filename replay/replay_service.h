// The gRPC adapter of one replay shard (prl.v1.ReplayService) over ReplayShard: checks the
// bearer token on mutating RPCs, turns the call's deadline and cancellation into the core's,
// and converts statuses at the edge. Insert is served from the raw bytes of each request: they
// are parsed where gRPC received them (replay/insert_batch.h) and each tensor is copied once,
// into the table, instead of into a parsed message first. Thread-safe; owned by prl_replay's
// main (or a test) and must outlive the server it is registered with; does not own the shard.
#ifndef PRL_REPLAY_REPLAY_SERVICE_H_
#define PRL_REPLAY_REPLAY_SERVICE_H_

#include <atomic>
#include <string>

#include "common/auth.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/sync_stream.h"
#include "proto/replay.grpc.pb.h"
#include "replay/shard.h"

namespace prl::replay {

struct ReplayServiceOptions {
  // Bearer token required on mutating RPCs; empty turns the check off.
  std::string auth_token;
  // Sample calls that may wait (for the rate limiter, a table still filling) at once. Each
  // holds a handler thread of the synchronous server (--grpc_max_threads) while it waits; past
  // this, a Sample only looks: it samples when it can at once and otherwise ends with
  // DEADLINE_EXCEEDED, as a wait that ran out would (samplers retry). prl_replay allows half
  // of the handler threads, keeping the rest for inserts, Info and health checks.
  int max_waiting_samples = 8;
};

class ReplayServiceImpl final : public v1::ReplayService::Service {
 public:
  ReplayServiceImpl(const ReplayServiceOptions& options, ReplayShard* shard);

  grpc::Status CreateTable(grpc::ServerContext* context, const v1::CreateTableRequest* request,
                           v1::CreateTableResponse* response) override;
  grpc::Status DeleteTable(grpc::ServerContext* context, const v1::DeleteTableRequest* request,
                           v1::DeleteTableResponse* response) override;
  // Insert, reading each request as raw bytes (the constructor registers it in place of the
  // generated Insert, which is never called).
  grpc::Status InsertRaw(grpc::ServerContext* context, grpc::ServerReader<grpc::ByteBuffer>* reader,
                         v1::InsertResponse* response);
  grpc::Status Sample(grpc::ServerContext* context, const v1::SampleRequest* request,
                      v1::SampleResponse* response) override;
  grpc::Status UpdatePriorities(grpc::ServerContext* context,
                                const v1::UpdatePrioritiesRequest* request,
                                v1::UpdatePrioritiesResponse* response) override;
  grpc::Status Info(grpc::ServerContext* context, const v1::InfoRequest* request,
                    v1::InfoResponse* response) override;
  grpc::Status Checkpoint(grpc::ServerContext* context, const v1::CheckpointRequest* request,
                          v1::CheckpointResponse* response) override;

  // Sample calls in progress (tests).
  int samples_in_progress() const { return waiting_samples_.load(); }

 private:
  const TokenAuthenticator auth_;
  ReplayShard* const shard_;
  const int max_waiting_samples_;
  std::atomic<int> waiting_samples_{0};
};

}  // namespace prl::replay

#endif  // PRL_REPLAY_REPLAY_SERVICE_H_
