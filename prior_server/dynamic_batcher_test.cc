#include "prior_server/dynamic_batcher.h"

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl::prior_server {
namespace {

using ::testing::HasSubstr;

// One input [rows, 2] whose rows are (id, k); the model doubles every value, so a caller can
// tell its own rows from anyone else's. The first `gated` batches wait for `gate`.
class FakeModel {
 public:
  explicit FakeModel(int gated = 0) : gated_(gated) {}

  DynamicBatcher::BatchFn Fn() {
    return
        [this](const std::vector<HostTensor>& inputs) -> absl::StatusOr<std::vector<HostTensor>> {
          if (batches_.fetch_add(1) < gated_) {
            if (!entered.HasBeenNotified()) entered.Notify();
            gate.WaitForNotification();
          }
          rows_seen_ += inputs[0].shape()[0];
          if (fail) return absl::InternalError("model exploded");
          std::vector<float> out(inputs[0].data<float>().begin(), inputs[0].data<float>().end());
          for (float& v : out) v *= 2;
          return std::vector<HostTensor>{HostTensor::FromFloats(inputs[0].shape(), out)};
        };
  }

  int64_t rows_seen() const { return rows_seen_; }

  absl::Notification entered;  // the first gated batch started
  absl::Notification gate;
  std::atomic<bool> fail{false};

 private:
  const int gated_;
  std::atomic<int> batches_{0};
  std::atomic<int64_t> rows_seen_{0};
};

std::vector<HostTensor> Rows(int id, int rows) {
  std::vector<float> v;
  for (int k = 0; k < rows; ++k) {
    v.push_back(static_cast<float>(id));
    v.push_back(static_cast<float>(k));
  }
  return {HostTensor::FromFloats({rows, 2}, v)};
}

// Waits (yielding) until `batcher` has `n` calls queued.
void AwaitQueued(const DynamicBatcher& batcher, int64_t n) {
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (batcher.stats().queued_calls < n) {
    ASSERT_LT(absl::Now(), give_up) << "calls never queued";
    std::this_thread::yield();
  }
}

absl::Time Later() { return absl::Now() + absl::Seconds(30); }

TEST(DynamicBatcherTest, CoalescesQueuedCallsAndGivesEachItsOwnRows) {
  FakeModel model(/*gated=*/1);
  BatchingOptions options;
  options.max_batch_rows = 64;
  options.max_queue_delay = absl::ZeroDuration();
  DynamicBatcher batcher("test", options, model.Fn(), nullptr);

  std::vector<std::thread> callers;
  std::vector<absl::StatusOr<std::vector<HostTensor>>> results(6);
  // Call 0 occupies the worker (the gate holds its batch); calls 1..5 queue behind it.
  callers.emplace_back([&] { results[0] = batcher.Call(Rows(0, 1), 1, Later(), nullptr); });
  model.entered.WaitForNotification();
  for (int id = 1; id <= 5; ++id) {
    callers.emplace_back(
        [&, id] { results[id] = batcher.Call(Rows(id, id), id, Later(), nullptr); });
  }
  AwaitQueued(batcher, 5);
  model.gate.Notify();
  for (std::thread& t : callers) t.join();

  for (int id = 0; id <= 5; ++id) {
    ASSERT_TRUE(results[id].ok()) << results[id].status();
    const HostTensor& out = (*results[id])[0];
    const int rows = id == 0 ? 1 : id;
    ASSERT_EQ(out.shape()[0], rows) << "call " << id;
    for (int k = 0; k < rows; ++k) {
      EXPECT_EQ(out.data<float>()[2 * k], 2.0f * id) << "call " << id << " got another's row";
      EXPECT_EQ(out.data<float>()[2 * k + 1], 2.0f * k);
    }
  }
  const DynamicBatcher::Stats stats = batcher.stats();
  EXPECT_EQ(stats.batches, 2);  // call 0 alone, then calls 1..5 together
  EXPECT_EQ(stats.max_batch_calls, 5);
  EXPECT_EQ(stats.rows, 16);
}

TEST(DynamicBatcherTest, ABatchHoldsAtMostMaxBatchRows) {
  FakeModel model(/*gated=*/1);
  BatchingOptions options;
  options.max_batch_rows = 4;
  options.max_queue_delay = absl::ZeroDuration();
  DynamicBatcher batcher("test", options, model.Fn(), nullptr);
  std::vector<std::thread> callers;
  callers.emplace_back([&] { EXPECT_TRUE(batcher.Call(Rows(0, 1), 1, Later(), nullptr).ok()); });
  model.entered.WaitForNotification();
  for (int id = 1; id <= 6; ++id) {
    callers.emplace_back(
        [&, id] { EXPECT_TRUE(batcher.Call(Rows(id, 1), 1, Later(), nullptr).ok()); });
  }
  AwaitQueued(batcher, 6);
  model.gate.Notify();
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(batcher.stats().max_batch_calls, 4);
  EXPECT_EQ(batcher.stats().rows, 7);
}

TEST(DynamicBatcherTest, WaitsForTheQueueDelayThenDispatchesAPartialBatch) {
  FakeModel model;
  BatchingOptions options;
  options.max_batch_rows = 1000;
  options.max_queue_delay = absl::Milliseconds(20);
  DynamicBatcher batcher("test", options, model.Fn(), nullptr);
  const absl::Time start = absl::Now();
  absl::StatusOr<std::vector<HostTensor>> out = batcher.Call(Rows(3, 2), 2, Later(), nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(20));
  EXPECT_EQ(batcher.stats().batches, 1);
}

TEST(DynamicBatcherTest, DeadlinesHoldInTheQueueAndExpiredRowsNeverRun) {
  FakeModel model(/*gated=*/1);
  BatchingOptions options;
  options.max_queue_delay = absl::ZeroDuration();
  DynamicBatcher batcher("model 'm' v1 Decode", options, model.Fn(), nullptr);
  std::thread first([&] { EXPECT_TRUE(batcher.Call(Rows(0, 1), 1, Later(), nullptr).ok()); });
  model.entered.WaitForNotification();
  absl::StatusOr<std::vector<HostTensor>> late =
      batcher.Call(Rows(1, 5), 5, absl::Now() + absl::Milliseconds(30), nullptr);
  EXPECT_EQ(late.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(late.status().message(), HasSubstr("model 'm' v1 Decode"));
  EXPECT_THAT(late.status().message(), HasSubstr("in the queue"));
  std::atomic<bool> cancel{true};
  absl::StatusOr<std::vector<HostTensor>> cancelled =
      batcher.Call(Rows(2, 1), 1, Later(), [&] { return cancel.load(); });
  EXPECT_EQ(cancelled.status().code(), absl::StatusCode::kCancelled);
  model.gate.Notify();
  first.join();
  EXPECT_EQ(model.rows_seen(), 1);  // neither the expired nor the cancelled rows ran
  EXPECT_EQ(batcher.stats().expired, 2);
}

TEST(DynamicBatcherTest, AFullQueueAnswersResourceExhausted) {
  FakeModel model(/*gated=*/1);
  BatchingOptions options;
  options.max_batch_rows = 2;
  options.max_queue_rows = 4;
  options.max_queue_delay = absl::ZeroDuration();
  DynamicBatcher batcher("test", options, model.Fn(), nullptr);
  std::vector<std::thread> callers;
  callers.emplace_back([&] { EXPECT_TRUE(batcher.Call(Rows(0, 1), 1, Later(), nullptr).ok()); });
  model.entered.WaitForNotification();
  for (int id = 1; id <= 2; ++id) {
    callers.emplace_back(
        [&, id] { EXPECT_TRUE(batcher.Call(Rows(id, 2), 2, Later(), nullptr).ok()); });
  }
  AwaitQueued(batcher, 2);
  absl::StatusOr<std::vector<HostTensor>> refused = batcher.Call(Rows(9, 1), 1, Later(), nullptr);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(), HasSubstr("4 rows queued"));
  model.gate.Notify();
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(batcher.stats().refused, 1);
}

TEST(DynamicBatcherTest, EveryCallOfAFailedBatchGetsTheError) {
  FakeModel model;
  model.fail = true;
  DynamicBatcher batcher("test", BatchingOptions{}, model.Fn(), nullptr);
  absl::StatusOr<std::vector<HostTensor>> out = batcher.Call(Rows(1, 1), 1, Later(), nullptr);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(out.status().message(), HasSubstr("model exploded"));
}

TEST(DynamicBatcherTest, OptionsAreValidatedNamingTheField) {
  BatchingOptions options;
  options.max_batch_rows = 0;
  absl::Status s = ValidateBatchingOptions(options, "batching.");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("batching.max_batch_rows: 0 is not allowed"));
  options = BatchingOptions{};
  options.max_queue_rows = 10;
  EXPECT_THAT(ValidateBatchingOptions(options, "").message(), HasSubstr("max_queue_rows"));
  options = BatchingOptions{};
  options.instances = 0;
  EXPECT_THAT(ValidateBatchingOptions(options, "").message(), HasSubstr("instances"));
  options = BatchingOptions{};
  options.max_queue_delay = absl::Seconds(2);
  EXPECT_THAT(ValidateBatchingOptions(options, "").message(), HasSubstr("max_queue_delay_us"));
  EXPECT_TRUE(ValidateBatchingOptions(BatchingOptions{}, "").ok());
}

}  // namespace
}  // namespace prl::prior_server
