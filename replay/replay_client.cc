#include "replay/replay_client.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/random/distributions.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "grpc/slice.h"

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

// Splits `total` over `weights` proportionally (largest remainder).
std::vector<int> Apportion(int total, const std::vector<double>& weights) {
  const double sum = std::accumulate(weights.begin(), weights.end(), 0.0);
  std::vector<int> out(weights.size(), 0);
  if (weights.empty()) return out;
  if (!(sum > 0)) {
    for (int i = 0; i < total; ++i) ++out[i % out.size()];
    return out;
  }
  std::vector<std::pair<double, size_t>> remainders;
  int given = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    const double exact = total * weights[i] / sum;
    out[i] = static_cast<int>(std::floor(exact));
    given += out[i];
    remainders.push_back({exact - out[i], i});
  }
  std::sort(remainders.rbegin(), remainders.rend());
  for (int k = 0; given < total; ++k, ++given) ++out[remainders[k % remainders.size()].second];
  return out;
}

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

absl::Status ShardedReplayClient::CreateTable(const v1::TableConfig& config) {
  {
    absl::MutexLock lock(&mu_);
    tables_[config.name()] = config;
  }
  v1::CreateTableRequest request;
  *request.mutable_config() = config;
  int created = 0;
  grpc::Status last;
  for (size_t i = 0; i < options_.addresses.size(); ++i) {
    grpc::ClientContext context;
    PrepareContext(options_.call, &context);
    v1::CreateTableResponse response;
    v1::ReplayService::Stub* stub;
    {
      absl::MutexLock lock(&mu_);
      stub = shards_[i].stub.get();
    }
    grpc::Status status = stub->CreateTable(&context, request, &response);
    Record(static_cast<int>(i), status);
    if (status.ok()) {
      ++created;
    } else if (status.error_code() != grpc::StatusCode::UNAVAILABLE) {
      return FromGrpcStatus(status);
    } else {
      last = status;
    }
  }
  if (created == 0) {
    return absl::UnavailableError(
        absl::StrCat("no replay shard reachable to create the table: ", last.error_message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint64_t>> ShardedReplayClient::Insert(
    const v1::InsertRequest& request) {
  return Insert(InsertBatch::FromProto(request));
}

absl::StatusOr<std::vector<uint64_t>> ShardedReplayClient::Insert(const InsertBatch& batch,
                                                                  int64_t* rows_stored,
                                                                  InsertCanceller* canceller) {
  if (rows_stored != nullptr) *rows_stored = 0;
  const auto cancelled = [] { return absl::CancelledError("the insert was cancelled"); };
  if (canceller != nullptr && canceller->cancelled()) return cancelled();
  std::vector<int> candidates = Candidates();
  if (candidates.empty()) return absl::UnavailableError("every replay shard is down");
  size_t start;
  {
    absl::MutexLock lock(&mu_);
    start = next_insert_++;
  }
  absl::Status last;
  for (size_t k = 0; k < candidates.size(); ++k) {
    const int index = candidates[(start + k) % candidates.size()];
    std::shared_ptr<grpc::Channel> channel;
    {
      absl::MutexLock lock(&mu_);
      channel = shards_[index].channel;
    }
    const auto insert = [&]() -> absl::StatusOr<v1::InsertResponse> {
      std::unique_ptr<InsertStream> stream = InsertStream::Open(channel, options_.call);
      if (canceller != nullptr && !canceller->Add(stream.get())) return cancelled();
      stream->Write(batch);  // a failed write shows in Finish
      absl::StatusOr<v1::InsertResponse> result = stream->Finish();
      if (canceller != nullptr) canceller->Remove(stream.get());
      if (rows_stored != nullptr) *rows_stored = stream->rows_inserted();
      return result;
    };
    absl::StatusOr<v1::InsertResponse> response = insert();
    // a cancelled call says nothing about the shard.
    if (canceller != nullptr && canceller->cancelled() && !response.ok()) return cancelled();
    Record(index, ToGrpcStatus(response.status()));
    if (absl::IsNotFound(response.status()) && Recreate(index, batch.table)) {
      response = insert();
    }
    if (response.ok()) {
      std::vector<uint64_t> keys;
      keys.reserve(response->keys_size());
      for (uint64_t key : response->keys()) keys.push_back(TagKey(index, key));
      return keys;
    }
    // a shard that stored part of the batch ends the call here: the caller resends the rest.
    if (!absl::IsUnavailable(response.status()) || (rows_stored != nullptr && *rows_stored > 0)) {
      return response.status();
    }
    last = response.status();
  }
  return absl::UnavailableError(
      absl::StrCat("every replay shard is down (last: ", last.message(), ")"));
}

absl::StatusOr<v1::SampleResponse> ShardedReplayClient::Sample(const std::string& table,
                                                               int batch_size,
                                                               absl::Duration timeout,
                                                               double beta) {
  if (batch_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("batch_size ", batch_size, " must be >= 1"));
  }
  struct Part {
    int shard;
    int count;
    v1::SampleResponse response;
    grpc::Status status;
    grpc::ClientContext context;
  };
  std::vector<std::unique_ptr<Part>> done;
  int missing = batch_size;
  // a second round asks the shards that answered for what failed shards could not give.
  for (int round = 0; round < 2 && missing > 0; ++round) {
    std::vector<int> candidates;
    if (round == 0) {
      candidates = Candidates();
    } else {
      for (const auto& p : done) {
        if (p->status.ok() &&
            std::find(candidates.begin(), candidates.end(), p->shard) == candidates.end()) {
          candidates.push_back(p->shard);
        }
      }
    }
    if (candidates.empty()) break;
    std::vector<double> weights;
    {
      absl::MutexLock lock(&mu_);
      for (int s : candidates) {
        auto it = shards_[s].sizes.find(table);
        // at least 1, so a shard that was once empty is asked again.
        weights.push_back(
            it == shards_[s].sizes.end() ? 1.0 : std::max(1.0, static_cast<double>(it->second)));
      }
    }
    const std::vector<int> counts = Apportion(missing, weights);
    std::vector<std::unique_ptr<Part>> parts;
    for (size_t i = 0; i < candidates.size(); ++i) {
      if (counts[i] == 0) continue;
      auto part = std::make_unique<Part>();
      part->shard = candidates[i];
      part->count = counts[i];
      parts.push_back(std::move(part));
    }
    absl::BlockingCounter pending(static_cast<int>(parts.size()));
    std::vector<v1::SampleRequest> requests(parts.size());
    for (size_t i = 0; i < parts.size(); ++i) {
      Part& part = *parts[i];
      requests[i].set_table(table);
      requests[i].set_batch_size(part.count);
      requests[i].set_timeout_ms(absl::ToInt64Milliseconds(timeout));
      requests[i].set_importance_sampling_exponent(beta);
      CallOptions call = options_.call;
      call.timeout = call.timeout + timeout;
      PrepareContext(call, &part.context);
      v1::ReplayService::Stub* stub;
      {
        absl::MutexLock lock(&mu_);
        stub = shards_[part.shard].stub.get();
      }
      stub->async()->Sample(&part.context, &requests[i], &part.response,
                            [&part, &pending](grpc::Status status) {
                              part.status = std::move(status);
                              pending.DecrementCount();
                            });
    }
    pending.Wait();
    grpc::Status error;
    for (auto& part : parts) {
      Record(part->shard, part->status);
      const grpc::StatusCode code = part->status.error_code();
      if (part->status.ok()) {
        missing -= part->count;
        absl::MutexLock lock(&mu_);
        shards_[part->shard].sizes[table] = part->response.table_size();
      } else if (code == grpc::StatusCode::NOT_FOUND && Recreate(part->shard, table)) {
        // the shard lost the table (restarted empty): it has nothing to give this time.
        absl::MutexLock lock(&mu_);
        shards_[part->shard].sizes[table] = 0;
      } else if (code != grpc::StatusCode::UNAVAILABLE &&
                 code != grpc::StatusCode::DEADLINE_EXCEEDED && error.ok()) {
        error = part->status;
      }
      done.push_back(std::move(part));
    }
    if (!error.ok()) return FromGrpcStatus(error);
  }
  if (missing > 0) {
    return absl::UnavailableError(absl::StrCat("replay shards could give only ",
                                               batch_size - missing, " of ", batch_size,
                                               " items; the others are down"));
  }

  // merge: columns concatenated in part order; probabilities and weights over the union.
  v1::SampleResponse merged;
  int64_t total_size = 0;
  std::map<int, int64_t> size_of;  // per shard, as reported with its last part
  for (const auto& p : done) {
    if (p->status.ok()) size_of[p->shard] = p->response.table_size();
  }
  for (const auto& [s, n] : size_of) total_size += n;
  std::vector<double> raw_weights;
  for (const auto& p : done) {
    if (!p->status.ok()) continue;
    const v1::SampleResponse& r = p->response;
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
    const double shard_size = static_cast<double>(size_of[p->shard]);
    for (int i = 0; i < r.keys_size(); ++i) {
      merged.add_keys(TagKey(p->shard, r.keys(i)));
      merged.add_probabilities(total_size > 0 ? shard_size / total_size * r.probabilities(i)
                                              : r.probabilities(i));
      merged.add_times_sampled(r.times_sampled(i));
      raw_weights.push_back(std::pow(std::max(shard_size * r.probabilities(i), 1e-300), -beta));
    }
    merged.set_rate_limiter_wait_seconds(
        std::max(merged.rate_limiter_wait_seconds(), r.rate_limiter_wait_seconds()));
  }
  const double max_weight = *std::max_element(raw_weights.begin(), raw_weights.end());
  for (double w : raw_weights) merged.add_importance_weights(w / max_weight);
  merged.set_table_size(total_size);
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
