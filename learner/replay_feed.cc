#include "learner/replay_feed.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/tensor.h"
#include "common/torch_tensor.h"
#include "replay/replay_client.h"
#include "torch/torch.h"

namespace prl::learner {
namespace {

class ShardedReplaySource final : public ReplaySource {
 public:
  explicit ShardedReplaySource(replay::ShardedReplayClient* client) : client_(client) {}

  absl::Status CreateTable(const v1::TableConfig& config) override {
    return client_->CreateTable(config);
  }
  absl::StatusOr<v1::SampleResponse> Sample(const std::string& table, int batch_size,
                                            absl::Duration timeout,
                                            double importance_sampling_exponent) override {
    return client_->Sample(table, batch_size, timeout, importance_sampling_exponent);
  }
  absl::Status UpdatePriorities(const std::string& table, const std::vector<uint64_t>& keys,
                                const std::vector<double>& priorities) override {
    return client_->UpdatePriorities(table, keys, priorities).status();
  }
  absl::Status DeleteTable(const std::string& table) override {
    return client_->DeleteTable(table).status();
  }

 private:
  replay::ShardedReplayClient* const client_;
};

// Errors a later Sample may not have: the table still filling, the limiter holding samples,
// shards restarting or shutting down (a shard's drain cancels the calls in flight).
bool Transient(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kAborted:
      return true;
    default:
      return false;
  }
}

// Every tensor of `batch` and of its extra batches, for a fence's Adopt.
void CollectTensors(const Batch& batch, std::vector<at::Tensor>* out) {
  for (const auto& [name, tensor] : batch.columns) out->push_back(tensor);
  if (batch.weight.defined()) out->push_back(batch.weight);
  for (const Batch& extra : batch.extra) CollectTensors(extra, out);
}

}  // namespace

std::unique_ptr<ReplaySource> NewShardedReplaySource(replay::ShardedReplayClient* client) {
  return std::make_unique<ShardedReplaySource>(client);
}

ReplayFeed::ReplayFeed(std::unique_ptr<ReplaySource> source, ReplayFeedOptions options)
    : source_(std::move(source)), options_(std::move(options)) {}

ReplayFeed::~ReplayFeed() { Stop(); }

absl::Status ReplayFeed::Start() {
  if (options_.tables.empty()) return absl::InvalidArgumentError("ReplayFeed: no tables");
  try {
    const torch::Device device(options_.device);
    if (options_.pinned_staging) stager_ = DeviceStager::Create(device);
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("ReplayFeed: device '", options_.device, "': ", e.what_without_backtrace()));
  }
  // shards may be starting or restarting: wait for them with backoff until Stop (a peer that
  // is away is not a reason to fail the run)
  for (const v1::TableConfig& config : options_.tables) {
    absl::Duration retry = options_.create_retry;
    const absl::Time first_try = absl::Now();
    absl::Time next_log = first_try + absl::Seconds(10);
    while (true) {
      absl::Status s = source_->CreateTable(config);
      if (s.ok()) break;
      if (!Transient(s) || s.code() == absl::StatusCode::kResourceExhausted) {
        return absl::Status(
            s.code(), absl::StrCat("creating replay table ", config.name(), ": ", s.message()));
      }
      if (absl::Now() >= next_log) {
        PRL_LOG(WARNING) << "replay table " << config.name() << " not created after "
                         << absl::FormatDuration(
                                absl::Trunc(absl::Now() - first_try, absl::Seconds(1)))
                         << " (" << s << "); still waiting for the shards";
        next_log = absl::Now() + absl::Seconds(30);
      }
      absl::MutexLock lock(&mu_);
      const auto stopped = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return stop_; };
      mu_.AwaitWithTimeout(absl::Condition(&stopped), retry);
      if (stop_) return absl::CancelledError("stopped while creating replay tables");
      retry = std::min(retry * 2, options_.create_retry_max);
    }
  }
  absl::MutexLock lock(&mu_);
  if (stop_) return absl::CancelledError("stopped");
  thread_ = std::thread([this] { PrefetchLoop(); });
  return absl::OkStatus();
}

absl::StatusOr<Batch> ReplayFeed::ToBatch(const v1::SampleResponse& response,
                                          const std::string& device, bool prioritized,
                                          DeviceStager* stager) {
  Batch out;
  out.keys.assign(response.keys().begin(), response.keys().end());
  out.source_size = response.table_size();
  try {
    const torch::Device target(device);
    // one copy out of the response: into one pinned block and one transfer (staged), or a new
    // tensor per column (ToTorch)
    std::vector<std::string> names;
    std::vector<TensorView> views;
    // columns by name: the table's signature order is not assumed
    for (const v1::NamedTensor& column : response.columns()) {
      PRL_ASSIGN_OR_RETURN(TensorView view, ViewTensorProto(column.tensor(), column.name()));
      names.push_back(column.name());
      views.push_back(view);
    }
    std::vector<float> weights;
    int64_t rows = 0;
    if (prioritized) {
      weights.assign(response.importance_weights().begin(), response.importance_weights().end());
      rows = static_cast<int64_t>(weights.size());
      views.push_back(TensorView{DType::kFloat32, absl::MakeConstSpan(&rows, 1),
                                 absl::string_view(reinterpret_cast<const char*>(weights.data()),
                                                   weights.size() * sizeof(float))});
    }
    std::vector<at::Tensor> tensors;
    if (stager != nullptr) {
      tensors = stager->StageAll(views);
    } else {
      for (const TensorView& view : views) tensors.push_back(ToTorch(view).to(target));
    }
    for (size_t i = 0; i < names.size(); ++i) out.columns[names[i]] = std::move(tensors[i]);
    if (prioritized) out.weight = std::move(tensors.back());
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("copying a batch to ", device, ": ", e.what_without_backtrace()));
  }
  return out;
}

void ReplayFeed::PrefetchLoop() {
  const std::string& table = options_.tables.front().name();
  const double is_exponent = options_.prioritized ? options_.importance_sampling_exponent : 0.0;
  absl::Duration retry = options_.sample_retry;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      const auto room = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return stop_ || static_cast<int>(queue_.size()) < options_.prefetch;
      };
      mu_.Await(absl::Condition(&room));
      if (stop_) return;
    }
    const absl::Time started = absl::Now();
    absl::StatusOr<v1::SampleResponse> sample =
        source_->Sample(table, options_.batch_size, options_.sample_timeout, is_exponent);
    if (!sample.ok() && Transient(sample.status())) {
      // a call that waited (the limiter, an empty table) tries again at once; one that failed
      // at once waits out the rest of `retry` (Stop ends the wait)
      const absl::Duration rest = retry - (absl::Now() - started);
      retry = std::min(retry * 2, options_.sample_retry_max);
      if (rest > absl::ZeroDuration()) {
        absl::MutexLock lock(&mu_);
        mu_.AwaitWithTimeout(absl::Condition(&stop_), rest);
      }
      continue;
    }
    retry = options_.sample_retry;
    absl::StatusOr<Batch> batch =
        sample.ok() ? ToBatch(*sample, options_.device, options_.prioritized, stager_.get())
                    : absl::StatusOr<Batch>(sample.status());
    std::unique_ptr<StagingFence> fence;
    if (batch.ok()) {
      for (const ReplayFeedOptions::ExtraTable& extra : options_.extra) {
        batch->extra.push_back(SampleExtra(extra));
      }
      if (stager_ != nullptr) {
        try {
          fence = stager_->Fence();  // after the extras' copies too
        } catch (const c10::Error& e) {
          batch = absl::InternalError(absl::StrCat("staging a batch on ", options_.device, ": ",
                                                   e.what_without_backtrace()));
        }
      }
    }
    absl::MutexLock lock(&mu_);
    if (!batch.ok()) {
      error_ = batch.status();
      return;
    }
    size_ = batch->source_size;
    queue_.push_back(Staged{std::move(*batch), std::move(fence)});
  }
}

void ReplayFeed::WarnExtra(const std::string& table, const absl::Status& status) {
  // at most once a minute: the prefetch loop samples extras with every batch
  const absl::Time now = absl::Now();
  if (now - last_extra_warning_ < absl::Minutes(1)) return;
  last_extra_warning_ = now;
  PRL_LOG(WARNING) << "sampling " << table << ": " << status;
}

Batch ReplayFeed::SampleExtra(const ReplayFeedOptions::ExtraTable& extra) {
  // never waits: an extra table that cannot be sampled yet (empty, rate-limited, a shard
  // restarting) just contributes nothing to this batch
  absl::StatusOr<v1::SampleResponse> sample =
      source_->Sample(extra.table, extra.batch_size, absl::ZeroDuration(),
                      extra.prioritized ? extra.importance_sampling_exponent : 0.0);
  if (!sample.ok()) {
    if (!Transient(sample.status()) &&
        sample.status().code() != absl::StatusCode::kDeadlineExceeded) {
      WarnExtra(extra.table, sample.status());
    }
    return Batch();
  }
  absl::StatusOr<Batch> batch = ToBatch(*sample, options_.device, extra.prioritized, stager_.get());
  if (!batch.ok()) {
    WarnExtra(extra.table, batch.status());
    return Batch();
  }
  return std::move(*batch);
}

absl::StatusOr<std::optional<Batch>> ReplayFeed::Next(absl::Duration timeout) {
  Staged staged;
  {
    absl::MutexLock lock(&mu_);
    const auto ready = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return stop_ || !queue_.empty() || !error_.ok();
    };
    mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
    if (queue_.empty() || stop_) {
      if (!error_.ok()) return error_;
      return std::optional<Batch>();
    }
    staged = std::move(queue_.front());
    queue_.pop_front();
  }
  if (staged.fence != nullptr) {
    // the caller's stream waits for this batch's copies (and only those)
    std::vector<at::Tensor> tensors;
    CollectTensors(staged.batch, &tensors);
    try {
      staged.fence->Adopt(tensors);
    } catch (const c10::Error& e) {
      return absl::InternalError(absl::StrCat("waiting for a batch's copies to ", options_.device,
                                              ": ", e.what_without_backtrace()));
    }
  }
  return std::optional<Batch>(std::move(staged.batch));
}

void ReplayFeed::UpdatePriorities(const std::vector<uint64_t>& keys,
                                  const std::vector<double>& priorities) {
  if (keys.empty()) return;
  std::vector<double> clamped(priorities);
  for (double& p : clamped) p = std::max(p, 1e-6);
  if (absl::Status s = source_->UpdatePriorities(options_.tables.front().name(), keys, clamped);
      !s.ok()) {
    PRL_LOG(WARNING) << "priority update: " << s;
  }
}

void ReplayFeed::UpdateExtraPriorities(int index, const std::vector<uint64_t>& keys,
                                       const std::vector<double>& priorities) {
  if (keys.empty() || index < 0 || index >= static_cast<int>(options_.extra.size())) return;
  std::vector<double> clamped(priorities);
  for (double& p : clamped) p = std::max(p, 1e-6);
  if (absl::Status s = source_->UpdatePriorities(options_.extra[index].table, keys, clamped);
      !s.ok()) {
    PRL_LOG(WARNING) << "priority update of " << options_.extra[index].table << ": " << s;
  }
}

int64_t ReplayFeed::size() const {
  absl::MutexLock lock(&mu_);
  return size_;
}

absl::Status ReplayFeed::Release() {
  Stop();
  absl::Status status;
  for (const v1::TableConfig& config : options_.tables) {
    status.Update(source_->DeleteTable(config.name()));
  }
  return status;
}

void ReplayFeed::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

}  // namespace prl::learner
