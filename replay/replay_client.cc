#include "replay/replay_client.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

#include "absl/random/distributions.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "grpc/slice.h"
#include "replay/rate_limiter.h"

namespace prl::replay {
namespace {

constexpr int kMaxShards = 255;
constexpr char kInsertMethod[] = "/prl.v1.ReplayService/Insert";
// Tensors this large are sent from the caller's request rather than copied: below it, a copy
// costs less than a slice of its own.
constexpr int64_t kMinUncopiedBytes = 32 << 10;

// A slice of `size` bytes the caller fills in.
grpc::Slice UninitializedSlice(int64_t size, char** data) {
  grpc_slice slice = grpc_slice_malloc(static_cast<size_t>(size));
  *data = reinterpret_cast<char*>(GRPC_SLICE_START_PTR(slice));
  return grpc::Slice(slice, grpc::Slice::STEAL_REF);
}

// The destroy callback of a slice that views a shared request: drops its reference.
void ReleaseRequest(void* reference) {
  delete static_cast<std::shared_ptr<const v1::InsertRequest>*>(reference);
}

// Inserts pass a shard over for this long after it turned rows away, doubling to the most
// while it stays full.
constexpr absl::Duration kFullBackoff = absl::Milliseconds(50);
constexpr absl::Duration kMaxFullBackoff = absl::Seconds(1);
// The longest an insert waits on one shard's rate limiter while other shards may have room.
constexpr absl::Duration kMaxProbeWait = absl::Seconds(1);
// A shard that got no part of a Sample is asked for its state (Info) when its last report is
// older than this, so that permits it gained from inserts are seen.
constexpr absl::Duration kStateRefresh = absl::Milliseconds(100);
// Permits of a shard that does not report its rate limiter (an older prl_replay).
constexpr int64_t kUnknownPermits = int64_t{1} << 40;

}  // namespace

std::unique_ptr<InsertStream> InsertStream::Open(std::shared_ptr<grpc::Channel> channel,
                                                 const CallOptions& call) {
  std::unique_ptr<InsertStream> stream(new InsertStream());
  stream->channel_ = std::move(channel);
  PrepareContext(call, &stream->context_);
  // the generated stub writes InsertRequest messages; this writer sends the bytes Write encodes,
  // through the same machinery the generated code uses.
  const grpc::internal::RpcMethod method(kInsertMethod,
                                         grpc::internal::RpcMethod::CLIENT_STREAMING);
  stream->writer_.reset(grpc::internal::ClientWriterFactory<grpc::ByteBuffer>::Create(
      stream->channel_.get(), method, &stream->context_, &stream->response_));
  return stream;
}

bool InsertStream::Write(const InsertBatch& batch) {
  char* data;
  grpc::Slice slice = UninitializedSlice(EncodedInsertRequestSize(batch), &data);
  EncodeInsertRequest(batch, data);
  // the buffer shares the slice with gRPC, which frees it once sent.
  return writer_->Write(grpc::ByteBuffer(&slice, 1));
}

bool InsertStream::Write(const std::shared_ptr<const v1::InsertRequest>& request) {
  const InsertBatch batch = InsertBatch::FromProto(*request);
  char* data;
  grpc::Slice frame = UninitializedSlice(EncodedInsertRequestSize(batch, kMinUncopiedBytes), &data);
  std::vector<DataGap> gaps;
  EncodeInsertRequestAround(batch, kMinUncopiedBytes, data, &gaps);
  // the frame's bytes with the large tensors' bytes in between, each tensor a slice that holds
  // a reference to the request.
  std::vector<grpc::Slice> slices;
  size_t from = 0;
  for (const DataGap& gap : gaps) {
    if (static_cast<size_t>(gap.offset) > from) slices.push_back(frame.sub(from, gap.offset));
    from = gap.offset;
    for (absl::string_view piece : gap.data->pieces()) {
      slices.emplace_back(const_cast<char*>(piece.data()), piece.size(), &ReleaseRequest,
                          new std::shared_ptr<const v1::InsertRequest>(request));
    }
  }
  if (frame.size() > from) slices.push_back(frame.sub(from, frame.size()));
  return writer_->Write(grpc::ByteBuffer(slices.data(), slices.size()));
}

absl::StatusOr<v1::InsertResponse> InsertStream::Finish() {
  writer_->WritesDone();
  const grpc::Status status = writer_->Finish();
  if (!status.ok()) {
    const auto& trailers = context_.GetServerTrailingMetadata();
    auto it = trailers.find(kRowsInsertedMetadata);
    int64_t rows = 0;
    if (it != trailers.end() &&
        absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &rows) &&
        rows > 0) {
      rows_inserted_ = rows;
    }
    return FromGrpcStatus(status);
  }
  rows_inserted_ = response_.num_inserted();
  return std::move(response_);
}

void InsertCanceller::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  for (InsertStream* stream : in_flight_) stream->Cancel();
}

bool InsertCanceller::cancelled() const {
  absl::MutexLock lock(&mu_);
  return cancelled_;
}

bool InsertCanceller::Add(InsertStream* stream) {
  absl::MutexLock lock(&mu_);
  if (cancelled_) return false;
  in_flight_.push_back(stream);
  return true;
}

void InsertCanceller::Remove(InsertStream* stream) {
  absl::MutexLock lock(&mu_);
  in_flight_.erase(std::remove(in_flight_.begin(), in_flight_.end(), stream), in_flight_.end());
}

absl::StatusOr<std::unique_ptr<ShardedReplayClient>> ShardedReplayClient::Create(
    const ReplayClientOptions& options) {
  if (options.addresses.empty() || options.addresses.size() > kMaxShards) {
    return absl::InvalidArgumentError(absl::StrCat("replay client needs 1 to ", kMaxShards,
                                                   " shard addresses, got ",
                                                   options.addresses.size()));
  }
  std::unique_ptr<ShardedReplayClient> client(new ShardedReplayClient(options));
  absl::MutexLock lock(&client->mu_);
  for (const std::string& address : options.addresses) {
    ChannelOptions channel = options.channel;
    channel.address = address;
    PRL_ASSIGN_OR_RETURN(auto ch, CreateChannel(channel));
    Shard shard;
    shard.address = address;
    shard.channel = ch;
    shard.stub = v1::ReplayService::NewStub(ch);
    shard.backoff = options.initial_backoff;
    client->shards_.push_back(std::move(shard));
  }
  return client;
}

std::vector<int> ShardedReplayClient::Candidates() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  std::vector<int> out;
  for (size_t i = 0; i < shards_.size(); ++i) {
    if (shards_[i].up || now >= shards_[i].retry_at) out.push_back(static_cast<int>(i));
  }
  return out;
}

void ShardedReplayClient::Record(int index, const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  Shard& shard = shards_[index];
  if (status.error_code() != grpc::StatusCode::UNAVAILABLE) {
    shard.up = true;
    shard.backoff = options_.initial_backoff;
    return;
  }
  // a shard that was down and failed its probe waits longer next time.
  if (!shard.up) shard.backoff = std::min(shard.backoff * 2, options_.max_backoff);
  shard.up = false;
  shard.retry_at = absl::Now() + shard.backoff * absl::Uniform(rng_, 0.5, 1.0);
}

int ShardedReplayClient::healthy_shards() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(
      std::count_if(shards_.begin(), shards_.end(), [](const Shard& s) { return s.up; }));
}

bool ShardedReplayClient::Recreate(int index, const std::string& table) {
  v1::CreateTableRequest request;
  v1::ReplayService::Stub* stub;
  {
    absl::MutexLock lock(&mu_);
    auto it = tables_.find(table);
    if (it == tables_.end()) return false;
    *request.mutable_config() = it->second;
    stub = shards_[index].stub.get();
  }
  grpc::ClientContext context;
  PrepareContext(options_.call, &context);
  v1::CreateTableResponse response;
  return stub->CreateTable(&context, request, &response).ok();
}

absl::Status ShardedReplayClient::ForEachShard(
    const std::function<grpc::Status(v1::ReplayService::Stub&, grpc::ClientContext&)>& call,
    const std::function<bool(const grpc::Status&)>& skip, int* answered) {
  *answered = 0;
  for (size_t i = 0; i < options_.addresses.size(); ++i) {
    grpc::ClientContext context;
    PrepareContext(options_.call, &context);
    v1::ReplayService::Stub* stub;
    {
      absl::MutexLock lock(&mu_);
      stub = shards_[i].stub.get();
    }
    const grpc::Status status = call(*stub, context);
    Record(static_cast<int>(i), status);
    if (status.ok()) {
      ++*answered;
    } else if (!skip(status)) {
      return FromGrpcStatus(status);
    }
  }
  return absl::OkStatus();
}

absl::Status ShardedReplayClient::CreateTable(const v1::TableConfig& config) {
  {
    absl::MutexLock lock(&mu_);
    tables_[config.name()] = config;
  }
  v1::CreateTableRequest request;
  *request.mutable_config() = config;
  grpc::Status last;
  int created = 0;
  PRL_RETURN_IF_ERROR(ForEachShard(
      [&](v1::ReplayService::Stub& stub, grpc::ClientContext& context) {
        v1::CreateTableResponse response;
        return stub.CreateTable(&context, request, &response);
      },
      [&](const grpc::Status& status) {
        last = status;
        return status.error_code() == grpc::StatusCode::UNAVAILABLE;
      },
      &created));
  if (created == 0) {
    return absl::UnavailableError(
        absl::StrCat("no replay shard reachable to create the table: ", last.error_message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ShardedReplayClient::DeleteTable(const std::string& table) {
  {
    absl::MutexLock lock(&mu_);
    tables_.erase(table);
  }
  v1::DeleteTableRequest request;
  request.set_table(table);
  int64_t removed = 0;
  int deleted = 0;
  PRL_RETURN_IF_ERROR(ForEachShard(
      [&](v1::ReplayService::Stub& stub, grpc::ClientContext& context) {
        v1::DeleteTableResponse response;
        grpc::Status status = stub.DeleteTable(&context, request, &response);
        removed += response.items_removed();
        return status;
      },
      [](const grpc::Status& status) {
        return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
               status.error_code() == grpc::StatusCode::NOT_FOUND;
      },
      &deleted));
  return removed;
}

struct ShardedReplayClient::InsertAttempt {
  absl::StatusOr<v1::InsertResponse> response;
  // Rows the shard stored (also when the call failed).
  int64_t stored = 0;
};

// One call of a sharded Sample: a part of the batch (count > 0) or, with count 0, an Info
// asking a shard for its state.
struct ShardedReplayClient::SampleCall {
  int shard = 0;
  int count = 0;
  v1::SampleRequest sample;
  v1::SampleResponse response;
  v1::InfoRequest info_request;
  v1::InfoResponse info;
  grpc::Status status;
  // The shard had lost the table and it was re-created (it has nothing to give this time).
  bool recreated = false;
  grpc::ClientContext context;
};

std::vector<int> ShardedReplayClient::Rotation(const std::vector<int>& candidates) {
  size_t start;
  {
    absl::MutexLock lock(&mu_);
    start = next_insert_++;
  }
  std::vector<int> order;
  for (size_t k = 0; k < candidates.size(); ++k) {
    order.push_back(candidates[(start + k) % candidates.size()]);
  }
  return order;
}

std::vector<int> ShardedReplayClient::NotFull(const std::vector<int>& shards,
                                              const std::string& table) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  std::vector<int> out;
  for (int index : shards) {
    auto it = shards_[index].tables.find(table);
    if (it == shards_[index].tables.end() || now >= it->second.full_until) out.push_back(index);
  }
  return out;
}

void ShardedReplayClient::NoteState(int index, const std::string& table,
                                    const v1::RateLimiterState& state) {
  absl::MutexLock lock(&mu_);
  TableState& t = shards_[index].tables[table];
  t.limiter = state;
  t.reported = absl::Now();
}

void ShardedReplayClient::NoteInsert(int index, const std::string& table,
                                     const v1::InsertResponse& response, bool took_all) {
  if (response.has_rate_limiter()) NoteState(index, table, response.rate_limiter());
  absl::MutexLock lock(&mu_);
  TableState& t = shards_[index].tables[table];
  const bool full =
      !took_all || (response.has_rate_limiter() && response.rate_limiter().insert_permits() == 0);
  if (!full) {
    t.full_until = absl::InfinitePast();
    t.full_backoff = absl::ZeroDuration();
    return;
  }
  // a shard that turns rows away again is passed over for longer.
  t.full_backoff = took_all || t.full_backoff == absl::ZeroDuration()
                       ? kFullBackoff
                       : std::min(2 * t.full_backoff, kMaxFullBackoff);
  t.full_until = absl::Now() + t.full_backoff;
}

ShardedReplayClient::InsertAttempt ShardedReplayClient::InsertOn(int index,
                                                                 const InsertBatch& batch,
                                                                 absl::Duration max_wait,
                                                                 absl::Time deadline,
                                                                 InsertCanceller* canceller) {
  std::shared_ptr<grpc::Channel> channel;
  {
    absl::MutexLock lock(&mu_);
    channel = shards_[index].channel;
  }
  InsertBatch limited;
  const InsertBatch* send = &batch;
  if (max_wait > absl::ZeroDuration()) {
    limited = batch;  // views: copies no tensor data
    limited.max_wait_ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(max_wait));
    send = &limited;
  }
  const auto attempt = [&]() {
    InsertAttempt out;
    CallOptions call = options_.call;
    call.timeout = deadline - absl::Now();
    if (call.timeout <= absl::ZeroDuration()) {
      out.response = absl::DeadlineExceededError("the insert's deadline passed");
      return out;
    }
    std::unique_ptr<InsertStream> stream = InsertStream::Open(channel, call);
    if (canceller != nullptr && !canceller->Add(stream.get())) {
      out.response = absl::CancelledError("the insert was cancelled");
      return out;
    }
    stream->Write(*send);  // a failed write shows in Finish
    out.response = stream->Finish();
    if (canceller != nullptr) canceller->Remove(stream.get());
    out.stored = stream->rows_inserted();
    return out;
  };
  InsertAttempt result = attempt();
  // a cancelled call says nothing about the shard.
  if (canceller != nullptr && canceller->cancelled() && !result.response.ok()) return result;
  Record(index, ToGrpcStatus(result.response.status()));
  if (absl::IsNotFound(result.response.status()) && result.stored == 0 &&
      Recreate(index, batch.table)) {
    result = attempt();
  }
  return result;
}

absl::StatusOr<std::vector<uint64_t>> ShardedReplayClient::Insert(
    const v1::InsertRequest& request) {
  return Insert(InsertBatch::FromProto(request));
}

absl::StatusOr<std::vector<uint64_t>> ShardedReplayClient::Insert(const InsertBatch& batch,
                                                                  int64_t* rows_stored,
                                                                  InsertCanceller* canceller) {
  int64_t stored = 0;
  if (rows_stored != nullptr) *rows_stored = 0;
  const auto cancelled = [] { return absl::CancelledError("the insert was cancelled"); };
  if (canceller != nullptr && canceller->cancelled()) return cancelled();
  const std::vector<int> candidates = Candidates();
  if (candidates.empty()) return absl::UnavailableError("every replay shard is down");
  const absl::Time deadline = absl::Now() + options_.call.timeout;
  const std::vector<int> turn = Rotation(candidates);
  // rounds over the shards in turn, each offered the rows not stored yet with a short wait on
  // its rate limiter that doubles every round, so the rows go to whichever shard has room
  // first; the first round passes over the shards known to be full. The last wait, and the
  // only one with a single shard, runs to the deadline.
  const bool several = turn.size() > 1 && options_.insert_probe_wait > absl::ZeroDuration();
  std::vector<int> shards = several ? NotFull(turn, batch.table) : turn;
  if (shards.empty()) shards = turn;
  absl::Duration wait = options_.insert_probe_wait;
  std::vector<uint64_t> keys;
  InsertBatch rest_of_batch;
  const InsertBatch* rest = &batch;
  std::vector<int> down;
  absl::Status last_down;
  while (!shards.empty()) {
    for (int index : shards) {
      const absl::Duration left = deadline - absl::Now();
      const absl::Duration max_wait = several && wait < left ? wait : absl::ZeroDuration();
      InsertAttempt attempt = InsertOn(index, *rest, max_wait, deadline, canceller);
      stored += attempt.stored;
      if (rows_stored != nullptr) *rows_stored = stored;
      if (canceller != nullptr && canceller->cancelled() && !attempt.response.ok()) {
        return cancelled();
      }
      if (attempt.response.ok()) {
        for (uint64_t key : attempt.response->keys()) keys.push_back(TagKey(index, key));
        const bool took_all = attempt.stored >= rest->rows();
        NoteInsert(index, batch.table, *attempt.response, took_all);
        if (took_all) return keys;
        rest_of_batch = rest->DropFront(attempt.stored);
        rest = &rest_of_batch;
        continue;
      }
      // a shard that stored part of the batch ends the call here: the caller resends the rest.
      if (!absl::IsUnavailable(attempt.response.status()) || attempt.stored > 0) {
        return attempt.response.status();
      }
      down.push_back(index);
      last_down = attempt.response.status();
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("the replay shards' rate limiters took ",
                                                      stored, " of ", batch.rows(),
                                                      " rows before the deadline"));
    }
    shards.clear();
    for (int index : turn) {
      if (std::find(down.begin(), down.end(), index) == down.end()) shards.push_back(index);
    }
    wait = std::min(2 * wait, kMaxProbeWait);
  }
  return absl::UnavailableError(
      absl::StrCat("every replay shard is down (last: ", last_down.message(), ")"));
}

void ShardedReplayClient::RunSampleCalls(const std::string& table,
                                         std::vector<std::unique_ptr<SampleCall>>& calls) {
  absl::BlockingCounter pending(static_cast<int>(calls.size()));
  for (auto& call : calls) {
    SampleCall* c = call.get();
    v1::ReplayService::Stub* stub;
    {
      absl::MutexLock lock(&mu_);
      stub = shards_[c->shard].stub.get();
    }
    const auto done = [c, &pending](grpc::Status status) {
      c->status = std::move(status);
      pending.DecrementCount();
    };
    if (c->count > 0) {
      stub->async()->Sample(&c->context, &c->sample, &c->response, done);
    } else {
      c->info_request.set_table(table);
      PrepareContext(options_.call, &c->context);
      stub->async()->Info(&c->context, &c->info_request, &c->info, done);
    }
  }
  pending.Wait();
  for (auto& call : calls) {
    Record(call->shard, call->status);
    if (call->status.ok()) {
      // an older shard does not report its limiter: its size, and permits taken as plenty.
      v1::RateLimiterState state;
      state.set_sample_permits(kUnknownPermits);
      state.set_insert_permits(kUnknownPermits);
      if (call->count > 0) {
        state.set_size(call->response.table_size());
        if (call->response.has_rate_limiter()) state = call->response.rate_limiter();
      } else if (call->info.tables_size() == 1) {
        state.set_size(call->info.tables(0).size());
        if (call->info.tables(0).has_rate_limiter()) state = call->info.tables(0).rate_limiter();
      }
      NoteState(call->shard, table, state);
    } else if (call->status.error_code() == grpc::StatusCode::NOT_FOUND &&
               Recreate(call->shard, table)) {
      // the shard lost the table (restarted empty): it has nothing to give for now.
      call->recreated = true;
      v1::RateLimiterState empty;
      empty.set_insert_permits(kUnknownPermits);
      NoteState(call->shard, table, empty);
    }
  }
}

std::vector<int> ShardedReplayClient::PlanSample(const std::string& table, int batch,
                                                 const std::vector<int>& shards) {
  absl::MutexLock lock(&mu_);
  auto config = tables_.find(table);
  const int64_t min_size =
      config == tables_.end()
          ? 1
          : std::max<int64_t>(1, config->second.rate_limiter().min_size_to_sample());
  std::vector<ShardSampleState> states;
  for (int s : shards) {
    ShardSampleState state{1, kUnknownPermits, true, true};  // not heard from: a small share
    auto it = shards_[s].tables.find(table);
    if (it != shards_[s].tables.end() && it->second.limiter.has_value()) {
      const v1::RateLimiterState& limiter = *it->second.limiter;
      state.size = limiter.size();
      state.sample_permits = limiter.sample_permits();
      state.ready = limiter.size() >= min_size;
      state.takes_inserts = limiter.insert_permits() > 0;
    }
    states.push_back(state);
  }
  return SplitSampleBatch(batch, states, &rng_);
}

int64_t ShardedReplayClient::KnownSize(const std::string& table) const {
  absl::MutexLock lock(&mu_);
  int64_t total = 0;
  for (const Shard& shard : shards_) {
    auto it = shard.tables.find(table);
    if (shard.up && it != shard.tables.end() && it->second.limiter.has_value()) {
      total += it->second.limiter->size();
    }
  }
  return total;
}

absl::StatusOr<v1::SampleResponse> ShardedReplayClient::Sample(const std::string& table,
                                                               int batch_size,
                                                               absl::Duration timeout,
                                                               double beta) {
  if (batch_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("batch_size ", batch_size, " must be >= 1"));
  }
  // shards not heard from yet say what they hold and can give before the batch is split.
  std::vector<int> candidates = Candidates();
  std::vector<std::unique_ptr<SampleCall>> calls;
  {
    absl::MutexLock lock(&mu_);
    for (int s : candidates) {
      auto it = shards_[s].tables.find(table);
      if (it != shards_[s].tables.end() && it->second.limiter.has_value()) continue;
      calls.push_back(std::make_unique<SampleCall>());
      calls.back()->shard = s;
    }
  }
  if (!calls.empty()) {
    RunSampleCalls(table, calls);
    candidates = Candidates();
  }

  std::vector<std::unique_ptr<SampleCall>> done;
  std::map<int, int> items_from;  // per shard, over both rounds
  int missing = batch_size;
  // a second round asks the shards that answered for what the others could not give.
  for (int round = 0; round < 2 && missing > 0; ++round) {
    std::vector<int> shards;
    if (round == 0) {
      shards = candidates;
    } else {
      for (const auto& [s, n] : items_from) shards.push_back(s);
    }
    if (shards.empty()) break;
    const std::vector<int> counts = PlanSample(table, missing, shards);
    calls.clear();
    const absl::Time stale = absl::Now() - kStateRefresh;
    for (size_t i = 0; i < shards.size(); ++i) {
      auto call = std::make_unique<SampleCall>();
      call->shard = shards[i];
      call->count = counts[i];
      if (counts[i] == 0) {
        // a shard asked for nothing reports its state, so that the permits inserts gave it
        // since are seen next time.
        absl::MutexLock lock(&mu_);
        if (round > 0 || shards_[shards[i]].tables[table].reported > stale) continue;
      } else {
        call->sample.set_table(table);
        call->sample.set_batch_size(counts[i]);
        call->sample.set_timeout_ms(absl::ToInt64Milliseconds(timeout));
        call->sample.set_importance_sampling_exponent(beta);
        CallOptions options = options_.call;
        options.timeout = options.timeout + timeout;
        PrepareContext(options, &call->context);
      }
      calls.push_back(std::move(call));
    }
    RunSampleCalls(table, calls);
    grpc::Status error;
    for (auto& call : calls) {
      if (call->count == 0) continue;
      const grpc::StatusCode code = call->status.error_code();
      if (call->status.ok()) {
        missing -= call->count;
        items_from[call->shard] += call->count;
        done.push_back(std::move(call));
      } else if (!call->recreated && code != grpc::StatusCode::UNAVAILABLE &&
                 code != grpc::StatusCode::DEADLINE_EXCEEDED && error.ok()) {
        error = call->status;
      }
    }
    if (!error.ok()) return FromGrpcStatus(error);
  }
  if (missing > 0) {
    return absl::UnavailableError(absl::StrCat("replay shards could give only ",
                                               batch_size - missing, " of ", batch_size,
                                               " items; the others are down or held by their "
                                               "rate limiters"));
  }

  // merge: columns concatenated in part order. Item i of shard s was drawn with probability
  // (items from s / batch) x P_s(i) per draw; importance weights follow from that.
  v1::SampleResponse merged;
  std::vector<double> raw_weights;
  for (const auto& part : done) {
    const v1::SampleResponse& r = part->response;
    if (merged.columns_size() == 0) {
      for (const v1::NamedTensor& c : r.columns()) {
        v1::NamedTensor* out = merged.add_columns();
        out->set_name(c.name());
        out->mutable_tensor()->set_dtype(c.tensor().dtype());
        for (int64_t d : c.tensor().shape()) out->mutable_tensor()->add_shape(d);
        out->mutable_tensor()->set_shape(0, 0);
      }
    }
    for (int c = 0; c < r.columns_size(); ++c) {
      v1::Tensor* out = merged.mutable_columns(c)->mutable_tensor();
      out->mutable_data()->append(r.columns(c).tensor().data());
      out->set_shape(0, out->shape(0) + r.columns(c).tensor().shape(0));
    }
    const double share = static_cast<double>(items_from[part->shard]) / batch_size;
    for (int i = 0; i < r.keys_size(); ++i) {
      merged.add_keys(TagKey(part->shard, r.keys(i)));
      merged.add_probabilities(share * r.probabilities(i));
      merged.add_times_sampled(r.times_sampled(i));
      raw_weights.push_back(std::pow(std::max(share * r.probabilities(i), 1e-300), -beta));
    }
    merged.set_rate_limiter_wait_seconds(
        std::max(merged.rate_limiter_wait_seconds(), r.rate_limiter_wait_seconds()));
  }
  const double max_weight = *std::max_element(raw_weights.begin(), raw_weights.end());
  for (double w : raw_weights) merged.add_importance_weights(w / max_weight);
  merged.set_table_size(KnownSize(table));
  return merged;
}

absl::StatusOr<int64_t> ShardedReplayClient::UpdatePriorities(
    const std::string& table, const std::vector<uint64_t>& keys,
    const std::vector<double>& priorities) {
  if (keys.size() != priorities.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("priorities has ", priorities.size(), " values for ", keys.size(), " keys"));
  }
  std::map<int, v1::UpdatePrioritiesRequest> by_shard;
  for (size_t i = 0; i < keys.size(); ++i) {
    const int shard = ShardOfKey(keys[i]);
    if (shard >= static_cast<int>(options_.addresses.size())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "keys[", i, "] names shard ", shard, "; this client has ", options_.addresses.size()));
    }
    v1::UpdatePrioritiesRequest& request = by_shard[shard];
    request.set_table(table);
    request.add_keys(UntagKey(keys[i]));
    request.add_priorities(priorities[i]);
  }
  int64_t updated = 0;
  for (const auto& [shard, request] : by_shard) {
    v1::ReplayService::Stub* stub;
    {
      absl::MutexLock lock(&mu_);
      stub = shards_[shard].stub.get();
    }
    grpc::ClientContext context;
    PrepareContext(options_.call, &context);
    v1::UpdatePrioritiesResponse response;
    grpc::Status status = stub->UpdatePriorities(&context, request, &response);
    Record(shard, status);
    // items on a shard that is down are skipped: their priorities refresh on the next sample.
    if (status.ok()) {
      updated += response.num_updated();
    } else if (status.error_code() != grpc::StatusCode::UNAVAILABLE) {
      return FromGrpcStatus(status);
    }
  }
  return updated;
}

}  // namespace prl::replay
