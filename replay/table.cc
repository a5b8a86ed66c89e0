#include "replay/table.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/field_error.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace prl::replay {
namespace {

// Target bytes per storage chunk: large enough for sequential copies, small enough that a
// copy-on-write during a checkpoint is cheap.
constexpr int64_t kChunkBytes = 1 << 20;
// Longest a blocked call sleeps before re-checking cancellation.
constexpr absl::Duration kCancelPoll = absl::Milliseconds(50);

// One item a Sample call picked.
struct SamplePick {
  uint64_t key;
  double probability;
  double scaled;  // table size x P(i), for importance weights
};

// w_i = (N P(i))^-beta, normalised by the largest weight in the batch.
void AddImportanceWeights(const std::vector<SamplePick>& picks, double beta,
                          v1::SampleResponse* response) {
  double max_weight = 0;
  for (const SamplePick& pick : picks) {
    max_weight = std::max(max_weight, std::pow(pick.scaled, -beta));
  }
  for (const SamplePick& pick : picks) {
    response->add_importance_weights(std::pow(pick.scaled, -beta) / max_weight);
  }
}

}  // namespace

// A Sample call's batch while it is picked: what it took and what it reserved in the table.
struct Table::SampleBatch {
  explicit SampleBatch(int64_t size) : size(size) { picks.reserve(size); }
  bool full() const { return static_cast<int64_t>(picks.size()) >= size; }

  const int64_t size;
  // Where each response column's bytes start; row r of column c is at out[c] + r * row bytes.
  std::vector<char*> out;
  std::vector<SamplePick> picks;
  // Keys this batch put in withdrawn_ (taken out of sampler_) and doomed_.
  std::vector<uint64_t> withdrawn;
  std::vector<uint64_t> doomed;
  // How often each key was picked (only counted when max_times_sampled is set).
  absl::flat_hash_map<uint64_t, int32_t> picked;
  double waited = 0;  // seconds this call waited on the rate limiter
};

Table::Table(v1::TableConfig config, const TableLimits& limits,
             std::unique_ptr<TableMetrics> metrics)
    : config_(std::move(config)),
      limits_(limits),
      metrics_(std::move(metrics)),
      limiter_(config_.rate_limiter()) {
  int64_t widest = 1;
  for (int i = 0; i < config_.signature_size(); ++i) {
    const v1::ColumnSpec& column = config_.signature(i);
    const DType dtype = *DTypeFromProto(column.dtype(), "");
    std::vector<int64_t> shape = {-1};
    if (config_.sequence_length() > 1) shape.push_back(config_.sequence_length());
    int64_t elements = config_.sequence_length();
    for (int64_t d : column.shape()) {
      shape.push_back(d);
      elements *= d;
    }
    row_bytes_.push_back(elements * static_cast<int64_t>(DTypeSize(dtype)));
    item_bytes_ += row_bytes_.back();
    widest = std::max(widest, row_bytes_.back());
    column_specs_.push_back(TensorSpec{column.name(), dtype, std::move(shape),
                                       /*require_finite=*/!column.allow_non_finite()});
  }
  rows_per_chunk_ =
      std::max<int64_t>(1, std::min<int64_t>(kChunkBytes / widest, config_.capacity()));
  const int64_t num_chunks = (config_.capacity() + rows_per_chunk_ - 1) / rows_per_chunk_;
  chunks_.assign(config_.signature_size(), std::vector<std::shared_ptr<Chunk>>(num_chunks));
  sampler_ = CreateSampler(config_.sampler(), config_.priority_exponent());
  remover_ = CreateRemover(config_.remover());
}

absl::StatusOr<std::unique_ptr<Table>> Table::Create(v1::TableConfig config,
                                                     const TableLimits& limits,
                                                     std::unique_ptr<TableMetrics> metrics) {
  PRL_RETURN_IF_ERROR(ValidateTableConfig(limits, &config));
  return std::unique_ptr<Table>(new Table(std::move(config), limits, std::move(metrics)));
}

char* Table::MutableRowLocked(size_t column, int64_t slot) {
  std::shared_ptr<Chunk>& chunk = chunks_[column][slot / rows_per_chunk_];
  if (chunk == nullptr) {
    // allocate storage as the table fills, a chunk at a time.
    chunk = std::make_shared<Chunk>();
    chunk->bytes.resize(rows_per_chunk_ * row_bytes_[column]);
    allocated_bytes_ += static_cast<int64_t>(chunk->bytes.size());
  } else if (chunk.use_count() > 1) {
    // a snapshot still reads this chunk: write to a private copy.
    chunk = std::make_shared<Chunk>(*chunk);
  } else {
    // the last snapshot holding this chunk let go (a release on another thread): order its
    // reads before our writes.
    std::atomic_thread_fence(std::memory_order_acquire);
  }
  return chunk->bytes.data() + (slot % rows_per_chunk_) * row_bytes_[column];
}

const char* Table::RowLocked(size_t column, int64_t slot) const {
  return chunks_[column][slot / rows_per_chunk_]->bytes.data() +
         (slot % rows_per_chunk_) * row_bytes_[column];
}

absl::Status Table::CheckPriority(double priority, int index) const {
  // the sampler weighs p^exponent, which must stay finite too.
  if (!std::isfinite(priority) || priority < 0 ||
      !std::isfinite(std::pow(priority, config_.priority_exponent()))) {
    return QuotedFieldError(absl::StrCat("priorities[", index, "]"), priority,
                            absl::StrCat("must be >= 0 and finite, also when raised to the "
                                         "priority exponent ",
                                         config_.priority_exponent()));
  }
  return absl::OkStatus();
}

int64_t Table::InsertPermitsLocked() const {
  return limiter_.InsertPermits(static_cast<int64_t>(items_.size() - doomed_.size()));
}

int64_t Table::SamplePermitsLocked() const {
  if (sampler_->size() == 0) return 0;
  return std::max<int64_t>(
      0, limiter_.SamplePermits(static_cast<int64_t>(items_.size() - doomed_.size())) -
             pending_samples_);
}

void Table::ReturnWithdrawnLocked(const std::vector<uint64_t>& keys) {
  for (uint64_t key : keys) {
    if (!withdrawn_.erase(key)) continue;  // evicted meanwhile
    sampler_->Insert(key, items_.at(key).priority);
  }
}

absl::Status Table::WaitLocked(const std::function<bool()>& ready, absl::Time deadline,
                               const CancelledFn& cancelled, absl::string_view what,
                               double* waited_seconds) {
  const absl::Time start = absl::Now();
  auto done = [&]() { return closed_ || ready(); };
  while (!done()) {
    const absl::Time now = absl::Now();
    if (now >= deadline) {
      *waited_seconds += absl::ToDoubleSeconds(now - start);
      return absl::DeadlineExceededError(absl::StrCat("table '", name(), "': ", what,
                                                      " still waiting on the rate limiter at the "
                                                      "deadline (size ",
                                                      items_.size(), ", inserted ",
                                                      limiter_.inserted(), ", sampled ",
                                                      limiter_.sampled(), ")"));
    }
    if (cancelled && cancelled()) {
      *waited_seconds += absl::ToDoubleSeconds(now - start);
      return absl::CancelledError(absl::StrCat("table '", name(), "': ", what, " cancelled"));
    }
    mu_.AwaitWithDeadline(absl::Condition(&done), std::min(deadline, now + kCancelPoll));
  }
  *waited_seconds += absl::ToDoubleSeconds(absl::Now() - start);
  if (closed_) {
    return absl::CancelledError(absl::StrCat("table '", name(),
                                             "' was closed (deleted, or the "
                                             "shard is shutting down)"));
  }
  return absl::OkStatus();
}

void Table::RemoveLocked(uint64_t key) {
  auto it = items_.find(key);
  PRL_CHECK(it != items_.end()) << "removing unknown key " << key;
  if (!withdrawn_.erase(key)) sampler_->Delete(key);
  doomed_.erase(key);
  remover_->Delete(key);
  free_slots_.push_back(it->second.slot);
  items_.erase(it);
  ++removed_total_;
  if (metrics_ != nullptr) metrics_->removals.Increment();
}

uint64_t Table::InsertRowLocked(std::vector<ScatteredReader>& columns, double priority) {
  if (static_cast<int64_t>(items_.size()) >= config_.capacity()) {
    RemoveLocked(remover_->Select(rng_).key);
  }
  int64_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = next_slot_++;
  }
  for (size_t c = 0; c < columns.size(); ++c) {
    columns[c].Read(row_bytes_[c], MutableRowLocked(c, slot));
  }
  const uint64_t key = next_key_++;
  items_[key] = Item{slot, priority, 0};
  sampler_->Insert(key, priority);
  remover_->Insert(key, priority);
  ++inserted_total_;
  return key;
}

absl::Status Table::ValidateInsert(const InsertBatch& batch, std::vector<size_t>* order,
                                   int64_t* rows) const {
  if (batch.columns.size() != column_specs_.size()) {
    return QuotedFieldError(
        "columns", absl::StrCat("has ", batch.columns.size(), " columns; table '", name(), "' has ",
                                config_.signature_size()));
  }
  order->assign(column_specs_.size(), batch.columns.size());
  *rows = -1;
  for (size_t i = 0; i < batch.columns.size(); ++i) {
    const InsertColumn& column = batch.columns[i];
    size_t c = 0;
    while (c < column_specs_.size() && column_specs_[c].name != column.name) ++c;
    if (c == column_specs_.size() || (*order)[c] != batch.columns.size()) {
      return QuotedFieldError(
          absl::StrCat("columns[", i, "].name"),
          absl::StrCat("'", column.name, "' is ",
                       c == column_specs_.size() ? "not a column" : "given twice", " of table '",
                       name(), "'"));
    }
    (*order)[c] = i;
    TensorSpec spec = column_specs_[c];
    spec.name = absl::StrCat("columns[", i, "] ('", column.name, "')");
    PRL_RETURN_IF_ERROR(CheckInsertColumn(column, spec).status());
    // the spec's shape starts with the batch dimension.
    if (*rows >= 0 && column.shape[0] != *rows) {
      return QuotedFieldError(
          spec.name, absl::StrCat("has ", column.shape[0], " rows, other columns ", *rows));
    }
    *rows = column.shape[0];
  }
  if (*rows < 1 || *rows > limits_.max_batch_rows) {
    return QuotedFieldError(
        "columns",
        absl::StrCat("the batch has ", *rows, " rows; allowed: 1 to ", limits_.max_batch_rows));
  }
  const int64_t priorities = static_cast<int64_t>(batch.priorities.size());
  if (priorities != 0 && priorities != *rows) {
    return QuotedFieldError("priorities",
                            absl::StrCat("has ", priorities, " values for ", *rows,
                                         " rows; give one per row or none (all 1.0)"));
  }
  for (int64_t i = 0; i < priorities; ++i) {
    PRL_RETURN_IF_ERROR(CheckPriority(batch.priorities[i], static_cast<int>(i)));
  }
  return absl::OkStatus();
}

absl::Status Table::Insert(const v1::InsertRequest& request, absl::Time deadline,
                           const CancelledFn& cancelled, int64_t* inserted,
                           std::vector<uint64_t>* keys) {
  return Insert(InsertBatch::FromProto(request), deadline, cancelled, inserted, keys);
}

absl::Status Table::Insert(const InsertBatch& batch, absl::Time deadline,
                           const CancelledFn& cancelled, int64_t* inserted,
                           std::vector<uint64_t>* keys) {
  *inserted = 0;
  // validate everything before storing anything.
  std::vector<size_t> order;
  int64_t rows;
  PRL_RETURN_IF_ERROR(ValidateInsert(batch, &order, &rows));
  std::vector<ScatteredReader> readers;
  readers.reserve(order.size());
  for (size_t i : order) readers.emplace_back(batch.columns[i].data);

  absl::MutexLock lock(&mu_);
  while (*inserted < rows) {
    double waited = 0;
    absl::Status s = WaitLocked(
        [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return InsertPermitsLocked() > 0; }, deadline,
        cancelled, "insert", &waited);
    insert_wait_seconds_ += waited;
    if (metrics_ != nullptr && waited > 0) metrics_->insert_wait_seconds.Increment(waited);
    PRL_RETURN_IF_ERROR(s);
    const int64_t n = std::min(rows - *inserted, InsertPermitsLocked());
    for (int64_t r = *inserted; r < *inserted + n; ++r) {
      const double priority = !batch.priorities.empty() ? batch.priorities[r]
                              : max_priority_ > 0       ? max_priority_
                                                        : 1.0;
      max_priority_ = std::max(max_priority_, priority);
      const uint64_t key = InsertRowLocked(readers, priority);
      if (keys != nullptr) keys->push_back(key);
    }
    limiter_.OnInserted(n);
    *inserted += n;
    if (metrics_ != nullptr) {
      metrics_->inserts.Increment(static_cast<double>(n));
      metrics_->size.Set(static_cast<double>(items_.size()));
    }
  }
  return absl::OkStatus();
}

absl::Status Table::Sample(const v1::SampleRequest& request, absl::Time deadline,
                           const CancelledFn& cancelled, v1::SampleResponse* response) {
  PRL_RETURN_IF_ERROR(ValidateSample(request));
  if (request.timeout_ms() > 0) {
    deadline = std::min(deadline, absl::Now() + absl::Milliseconds(request.timeout_ms()));
  }
  SampleBatch batch(request.batch_size());
  // lay out the output columns once; rows are copied straight into them.
  batch.out = AddSampleColumns(batch.size, response);

  absl::MutexLock lock(&mu_);
  // picks are reserved against the limiter as they are made and committed only when the
  // whole batch is there, so a call that times out leaves the table as it found it.
  while (!batch.full()) {
    absl::Status s = WaitToSampleLocked(deadline, cancelled, &batch.waited);
    if (!s.ok()) {
      AbandonSampleLocked(batch);
      response->Clear();
      return s;
    }
    PickLocked(&batch);
  }
  CommitSampleLocked(batch, response);
  AddImportanceWeights(batch.picks, request.importance_sampling_exponent(), response);
  return absl::OkStatus();
}

absl::Status Table::ValidateSample(const v1::SampleRequest& request) const {
  const int64_t batch = request.batch_size();
  if (batch < 1 || batch > limits_.max_batch_rows) {
    return QuotedFieldError("batch_size", batch,
                            absl::StrCat("allowed: 1 to ", limits_.max_batch_rows));
  }
  if (batch * item_bytes_ > limits_.max_message_bytes) {
    return QuotedFieldError(
        "batch_size",
        absl::StrCat(batch, " items of ", item_bytes_, " bytes exceed the ",
                     limits_.max_message_bytes, "-byte message limit; allowed: up to ",
                     limits_.max_message_bytes / item_bytes_));
  }
  const double beta = request.importance_sampling_exponent();
  if (!std::isfinite(beta) || beta < 0 || beta > 1) {
    return QuotedFieldError("importance_sampling_exponent", beta, "allowed: 0 to 1");
  }
  if (request.timeout_ms() < 0) {
    return QuotedFieldError("timeout_ms", absl::StrCat(request.timeout_ms(), " is negative"));
  }
  return absl::OkStatus();
}

std::vector<char*> Table::AddSampleColumns(int64_t batch, v1::SampleResponse* response) const {
  std::vector<char*> out(column_specs_.size());
  for (size_t c = 0; c < column_specs_.size(); ++c) {
    v1::NamedTensor* column = response->add_columns();
    column->set_name(column_specs_[c].name);
    v1::Tensor* tensor = column->mutable_tensor();
    tensor->set_dtype(DTypeToProto(*column_specs_[c].dtype));
    tensor->add_shape(batch);
    for (size_t d = 1; d < column_specs_[c].shape->size(); ++d) {
      tensor->add_shape((*column_specs_[c].shape)[d]);
    }
    tensor->mutable_data()->resize(batch * row_bytes_[c]);
    out[c] = tensor->mutable_data()->data();
  }
  return out;
}

absl::Status Table::WaitToSampleLocked(absl::Time deadline, const CancelledFn& cancelled,
                                       double* call_waited) {
  double waited = 0;
  absl::Status s =
      WaitLocked([this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return SamplePermitsLocked() > 0; },
                 deadline, cancelled, "sample", &waited);
  sample_wait_seconds_ += waited;
  *call_waited += waited;
  if (metrics_ != nullptr && waited > 0) metrics_->sample_wait_seconds.Increment(waited);
  return s;
}

void Table::PickLocked(SampleBatch* batch) {
  const bool distinct =
      config_.sampler() == v1::SAMPLER_FIFO || config_.sampler() == v1::SAMPLER_LIFO;
  // permits are re-read per pick: a pick that will remove its item shrinks the table.
  while (!batch->full() && SamplePermitsLocked() > 0) {
    const ItemSelector::Selection selection = sampler_->Select(rng_);
    const Item& item = items_.at(selection.key);
    const int64_t r = static_cast<int64_t>(batch->picks.size());
    for (size_t c = 0; c < batch->out.size(); ++c) {
      std::memcpy(batch->out[c] + r * row_bytes_[c], RowLocked(c, item.slot), row_bytes_[c]);
    }
    batch->picks.push_back({selection.key, selection.probability,
                            static_cast<double>(items_.size()) * selection.probability});
    ++pending_samples_;
    // only FIFO/LIFO and max_times_sampled need to know what this batch already took.
    const bool doom =
        config_.max_times_sampled() > 0 &&
        item.times_sampled + ++batch->picked[selection.key] >= config_.max_times_sampled();
    if (doom) {
      doomed_.insert(selection.key);
      batch->doomed.push_back(selection.key);
    }
    if (distinct || doom) {
      sampler_->Delete(selection.key);
      withdrawn_.insert(selection.key);
      batch->withdrawn.push_back(selection.key);
    }
  }
}

void Table::AbandonSampleLocked(const SampleBatch& batch) {
  pending_samples_ -= static_cast<int64_t>(batch.picks.size());
  for (uint64_t key : batch.doomed) doomed_.erase(key);
  ReturnWithdrawnLocked(batch.withdrawn);
}

void Table::CommitSampleLocked(const SampleBatch& batch, v1::SampleResponse* response) {
  pending_samples_ -= batch.size;
  ReturnWithdrawnLocked(batch.withdrawn);
  for (const SamplePick& pick : batch.picks) {
    response->add_keys(pick.key);
    response->add_probabilities(pick.probability);
    auto it = items_.find(pick.key);
    if (it == items_.end()) {
      response->add_times_sampled(0);  // evicted by an insert while this call waited
      continue;
    }
    const int32_t times = ++it->second.times_sampled;
    response->add_times_sampled(times);
    if (config_.max_times_sampled() > 0 && times >= config_.max_times_sampled()) {
      RemoveLocked(pick.key);
    }
  }
  limiter_.OnSampled(batch.size);
  sampled_total_ += batch.size;
  response->set_table_size(static_cast<int64_t>(items_.size()));
  response->set_rate_limiter_wait_seconds(batch.waited);
  if (metrics_ != nullptr) {
    metrics_->samples.Increment(static_cast<double>(batch.size));
    metrics_->size.Set(static_cast<double>(items_.size()));
  }
}

absl::Status Table::UpdatePriorities(const v1::UpdatePrioritiesRequest& request, int64_t* updated,
                                     int64_t* missing) {
  *updated = 0;
  *missing = 0;
  if (request.keys_size() != request.priorities_size()) {
    return QuotedFieldError("priorities",
                            absl::StrCat("has ", request.priorities_size(), " values for ",
                                         request.keys_size(), " keys"));
  }
  for (int i = 0; i < request.priorities_size(); ++i) {
    PRL_RETURN_IF_ERROR(CheckPriority(request.priorities(i), i));
  }
  absl::MutexLock lock(&mu_);
  for (int i = 0; i < request.keys_size(); ++i) {
    auto it = items_.find(request.keys(i));
    if (it == items_.end()) {
      ++*missing;
      continue;
    }
    it->second.priority = request.priorities(i);
    max_priority_ = std::max(max_priority_, request.priorities(i));
    // a withdrawn key gets its new priority when it is returned.
    if (!withdrawn_.contains(request.keys(i))) {
      sampler_->Update(request.keys(i), request.priorities(i));
    }
    remover_->Update(request.keys(i), request.priorities(i));
    ++*updated;
  }
  return absl::OkStatus();
}

v1::TableInfo Table::Info() const {
  absl::MutexLock lock(&mu_);
  v1::TableInfo info;
  *info.mutable_config() = config_;
  info.set_size(static_cast<int64_t>(items_.size()));
  info.set_capacity(config_.capacity());
  info.set_inserted_total(inserted_total_);
  info.set_sampled_total(sampled_total_);
  info.set_removed_total(removed_total_);
  info.set_rate_limiter_insert_wait_seconds(insert_wait_seconds_);
  info.set_rate_limiter_sample_wait_seconds(sample_wait_seconds_);
  info.set_can_insert(InsertPermitsLocked() > 0);
  info.set_can_sample(SamplePermitsLocked() > 0);
  info.set_bytes(allocated_bytes_);
  return info;
}

int64_t Table::size() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(items_.size());
}

void Table::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

}  // namespace prl::replay
