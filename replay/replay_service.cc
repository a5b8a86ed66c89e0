#include "replay/replay_service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/field_error.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "grpcpp/support/method_handler.h"
#include "replay/insert_batch.h"
#include "replay/rate_limiter.h"

namespace prl::replay {
namespace {

absl::Time Deadline(const grpc::ServerContext& context) {
  const auto deadline = context.deadline();
  // gRPC reports "no deadline" as the far future.
  if (deadline >= std::chrono::system_clock::time_point::max() - std::chrono::hours(24 * 365)) {
    return absl::InfiniteFuture();
  }
  return absl::FromChrono(deadline);
}

// The deadline the shard works to for an Insert: a tenth of the time left (at most 250 ms)
// before the call's, so that its answer (with how many rows it stored) reaches the client
// before the client's own deadline ends the call.
absl::Time InsertDeadline(const grpc::ServerContext& context) {
  const absl::Time deadline = Deadline(context);
  if (deadline == absl::InfiniteFuture()) return deadline;
  const absl::Duration left = deadline - absl::Now();
  return deadline - std::clamp(left / 10, absl::ZeroDuration(), absl::Milliseconds(250));
}

CancelledFn Cancelled(grpc::ServerContext* context) {
  return [context] { return context->IsCancelled(); };
}

// Position of Insert among ReplayService's methods, which is how the generated code numbers them.
int InsertMethodIndex() {
  const google::protobuf::ServiceDescriptor* service =
      v1::InsertRequest::descriptor()->file()->FindServiceByName("ReplayService");
  PRL_CHECK(service != nullptr && service->FindMethodByName("Insert") != nullptr);
  return service->FindMethodByName("Insert")->index();
}

// What one Insert stream keeps between its requests.
struct InsertStreamState {
  std::vector<grpc::Slice> slices;
  InsertBatch batch;
  std::shared_ptr<Table> table;
  std::vector<uint64_t> keys;
};

// Parses one request of an Insert stream where gRPC received it and inserts its rows.
// `*waited_out` says the request's own max_wait_ms (not the call's deadline) ended a wait on
// the rate limiter: the stream then ends without an error (see InsertRequest.max_wait_ms).
absl::Status InsertRequestBytes(ReplayShard& shard, grpc::ServerContext* context,
                                const grpc::ByteBuffer& request, InsertStreamState* state,
                                int64_t* inserted, bool* waited_out) {
  *inserted = 0;
  *waited_out = false;
  state->slices.clear();
  PRL_RETURN_IF_ERROR(FromGrpcStatus(request.Dump(&state->slices)));
  ScatteredBytes bytes;
  for (const grpc::Slice& slice : state->slices) {
    bytes.Append({reinterpret_cast<const char*>(slice.begin()), slice.size()});
  }
  PRL_RETURN_IF_ERROR(ParseInsertRequest(bytes, &state->batch));
  if (state->batch.max_wait_ms < 0) {
    return QuotedFieldError("max_wait_ms", state->batch.max_wait_ms,
                            "allowed: >= 0 (0 waits until the call's deadline)");
  }
  if (state->table == nullptr || state->table->name() != state->batch.table) {
    PRL_ASSIGN_OR_RETURN(state->table, shard.GetTable(state->batch.table));
  }
  PRL_RETURN_IF_ERROR(CheckInsertColumnNames(state->batch, state->table->config()));
  const absl::Time call_deadline = InsertDeadline(*context);
  absl::Time deadline = call_deadline;
  if (state->batch.max_wait_ms > 0) {
    deadline = std::min(deadline, absl::Now() + absl::Milliseconds(state->batch.max_wait_ms));
  }
  absl::Status s = state->table->Insert(state->batch, deadline, Cancelled(context), inserted,
                                        state->batch.return_keys ? &state->keys : nullptr);
  *waited_out = absl::IsDeadlineExceeded(s) && deadline < call_deadline;
  return s;
}

}  // namespace

ReplayServiceImpl::ReplayServiceImpl(const ReplayServiceOptions& options, ReplayShard* shard)
    : auth_(options.auth_token), shard_(shard), max_waiting_samples_(options.max_waiting_samples) {
  // serve Insert with a handler that reads grpc::ByteBuffer instead of parsed InsertRequests.
  // MarkMethodStreamed is grpc::Service's hook for replacing a synchronous method's handler; it
  // also relabels the method a bidi stream, which for a client stream changes nothing on the
  // server (no request is read ahead either way, and metrics go by method name).
  MarkMethodStreamed(
      InsertMethodIndex(),
      new grpc::internal::ClientStreamingHandler<ReplayServiceImpl, grpc::ByteBuffer,
                                                 v1::InsertResponse>(
          [](ReplayServiceImpl* service, grpc::ServerContext* context,
             grpc::ServerReader<grpc::ByteBuffer>* reader, v1::InsertResponse* response) {
            return service->InsertRaw(context, reader, response);
          },
          this));
}

grpc::Status ReplayServiceImpl::CreateTable(grpc::ServerContext* context,
                                            const v1::CreateTableRequest* request,
                                            v1::CreateTableResponse* response) {
  if (grpc::Status s = auth_.Check(*context); !s.ok()) return s;
  auto created = shard_->CreateTable(request->config());
  if (!created.ok()) return ToGrpcStatus(created.status());
  *response = *std::move(created);
  return grpc::Status::OK;
}

grpc::Status ReplayServiceImpl::DeleteTable(grpc::ServerContext* context,
                                            const v1::DeleteTableRequest* request,
                                            v1::DeleteTableResponse* response) {
  if (grpc::Status s = auth_.Check(*context); !s.ok()) return s;
  auto removed = shard_->DeleteTable(request->table());
  if (!removed.ok()) return ToGrpcStatus(removed.status());
  response->set_items_removed(*removed);
  return grpc::Status::OK;
}

grpc::Status ReplayServiceImpl::InsertRaw(grpc::ServerContext* context,
                                          grpc::ServerReader<grpc::ByteBuffer>* reader,
                                          v1::InsertResponse* response) {
  if (grpc::Status s = auth_.Check(*context); !s.ok()) return s;
  grpc::ByteBuffer request;
  InsertStreamState state;
  // each request is validated and inserted whole before the next is read: the stream's flow
  // control pushes back on a writer the rate limiter holds.
  for (int64_t index = 0; reader->Read(&request); ++index) {
    int64_t inserted = 0;
    bool waited_out = false;
    absl::Status s = InsertRequestBytes(*shard_, context, request, &state, &inserted, &waited_out);
    response->set_num_inserted(response->num_inserted() + inserted);
    // a request's own max_wait_ms passed: a partial insert, answered like a whole one.
    if (waited_out) break;
    if (!s.ok()) {
      context->AddTrailingMetadata(kRowsInsertedMetadata, absl::StrCat(response->num_inserted()));
      return ToGrpcStatus(absl::Status(
          s.code(), absl::StrCat("insert request ", index, " (", response->num_inserted(),
                                 " rows inserted before it): ", s.message())));
    }
  }
  response->mutable_keys()->Assign(state.keys.begin(), state.keys.end());
  if (state.table != nullptr) {
    *response->mutable_rate_limiter() = RateLimiterStateOf(state.table->Info());
  }
  return grpc::Status::OK;
}

grpc::Status ReplayServiceImpl::Sample(grpc::ServerContext* context,
                                       const v1::SampleRequest* request,
                                       v1::SampleResponse* response) {
  if (grpc::Status s = auth_.Check(*context); !s.ok()) return s;
  auto table = shard_->GetTable(request->table());
  if (!table.ok()) return ToGrpcStatus(table.status());
  // a waiting Sample holds a handler thread: past the limit it only looks
  const bool may_wait = waiting_samples_.fetch_add(1) < max_waiting_samples_;
  struct Release {
    std::atomic<int>* count;
    ~Release() { count->fetch_sub(1); }
  } release{&waiting_samples_};
  absl::Status s = (*table)->Sample(*request, may_wait ? Deadline(*context) : absl::InfinitePast(),
                                    Cancelled(context), response);
  if (!may_wait && absl::IsDeadlineExceeded(s)) {
    s = absl::DeadlineExceededError(absl::StrCat(
        "table '", request->table(), "' cannot be sampled now, and ", max_waiting_samples_,
        " Samples (this shard's limit) are already waiting; ask again later"));
  }
  if (s.ok()) *response->mutable_rate_limiter() = RateLimiterStateOf((*table)->Info());
  return ToGrpcStatus(s);
}

grpc::Status ReplayServiceImpl::UpdatePriorities(grpc::ServerContext* context,
                                                 const v1::UpdatePrioritiesRequest* request,
                                                 v1::UpdatePrioritiesResponse* response) {
  if (grpc::Status s = auth_.Check(*context); !s.ok()) return s;
  auto table = shard_->GetTable(request->table());
  if (!table.ok()) return ToGrpcStatus(table.status());
  int64_t updated = 0, missing = 0;
  absl::Status s = (*table)->UpdatePriorities(*request, &updated, &missing);
  response->set_num_updated(updated);
  response->set_num_missing(missing);
  return ToGrpcStatus(s);
}

grpc::Status ReplayServiceImpl::Info(grpc::ServerContext*, const v1::InfoRequest* request,
                                     v1::InfoResponse* response) {
  auto info = shard_->Info(request->table());
  if (!info.ok()) return ToGrpcStatus(info.status());
  *response = *std::move(info);
  for (v1::TableInfo& table : *response->mutable_tables()) {
    *table.mutable_rate_limiter() = RateLimiterStateOf(table);
  }
  return grpc::Status::OK;
}

grpc::Status ReplayServiceImpl::Checkpoint(grpc::ServerContext* context,
                                           const v1::CheckpointRequest*,
                                           v1::CheckpointResponse* response) {
  if (grpc::Status s = auth_.Check(*context); !s.ok()) return s;
  auto checkpoint = shard_->Checkpoint();
  if (!checkpoint.ok()) return ToGrpcStatus(checkpoint.status());
  *response = *std::move(checkpoint);
  return grpc::Status::OK;
}

}  // namespace prl::replay
