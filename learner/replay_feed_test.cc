#include "learner/replay_feed.h"

#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl::learner {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

v1::NamedTensor FloatColumn(const std::string& name, std::vector<int64_t> shape,
                            std::vector<float> values) {
  v1::NamedTensor column;
  column.set_name(name);
  v1::Tensor* t = column.mutable_tensor();
  t->set_dtype(v1::Tensor::DTYPE_FLOAT32);
  for (int64_t d : shape) t->add_shape(d);
  t->set_data(std::string(reinterpret_cast<const char*>(values.data()), values.size() * 4));
  return column;
}

// Answers CreateTable and Sample from scripted queues (then OK / a default response).
class FakeSource final : public ReplaySource {
 public:
  absl::Status CreateTable(const v1::TableConfig& config) override {
    absl::MutexLock lock(&mu_);
    created.push_back(config.name());
    absl::Status s = absl::OkStatus();
    if (!create_results.empty()) {
      s = create_results.front();
      create_results.pop_front();
    }
    if (!s.ok() && !create_failed.HasBeenNotified()) create_failed.Notify();
    return s;
  }
  absl::StatusOr<v1::SampleResponse> Sample(const std::string& table, int batch_size,
                                            absl::Duration, double exponent) override {
    absl::MutexLock lock(&mu_);
    sampled_tables.push_back(table);
    last_batch_size = batch_size;
    last_exponent = exponent;
    if (!sample_results.empty()) {
      absl::StatusOr<v1::SampleResponse> r = sample_results.front();
      sample_results.pop_front();
      return r;
    }
    return Response(static_cast<float>(sampled_tables.size()));
  }
  absl::Status DeleteTable(const std::string& table) override {
    absl::MutexLock lock(&mu_);
    deleted.push_back(table);
    return absl::OkStatus();
  }
  absl::Status UpdatePriorities(const std::string& table, const std::vector<uint64_t>& keys,
                                const std::vector<double>& priorities) override {
    absl::MutexLock lock(&mu_);
    updated_keys = keys;
    updated_priorities = priorities;
    return absl::OkStatus();
  }

  // Two rows: observation [2, 3] filled with `v`, reward [2], keys 7 and 8.
  static v1::SampleResponse Response(float v) {
    v1::SampleResponse r;
    *r.add_columns() = FloatColumn("reward", {2}, {v, -v});
    *r.add_columns() = FloatColumn("observation", {2, 3}, std::vector<float>(6, v));
    r.add_keys(7);
    r.add_keys(8);
    r.add_importance_weights(0.5f);
    r.add_importance_weights(1.0f);
    r.set_table_size(40);
    return r;
  }

  absl::Mutex mu_;
  std::vector<std::string> created;
  std::vector<std::string> deleted;
  std::deque<absl::Status> create_results;
  std::deque<absl::StatusOr<v1::SampleResponse>> sample_results;
  std::vector<std::string> sampled_tables;
  int last_batch_size = 0;
  double last_exponent = -1;
  std::vector<uint64_t> updated_keys;
  std::vector<double> updated_priorities;
  absl::Notification create_failed;
};

ReplayFeedOptions Options() {
  ReplayFeedOptions options;
  v1::TableConfig a, b;
  a.set_name("exp-1");
  b.set_name("exp-1-sil");
  options.tables = {a, b};
  options.batch_size = 2;
  options.create_retry = absl::Milliseconds(1);
  return options;
}

TEST(ReplayFeedTest, CreatesEveryTableRetryingWhileShardsAreDown) {
  auto source = std::make_unique<FakeSource>();
  FakeSource* fake = source.get();
  fake->create_results = {absl::UnavailableError("no shard"), absl::UnavailableError("no shard")};
  ReplayFeed feed(std::move(source), Options());
  ASSERT_TRUE(feed.Start().ok());
  feed.Stop();
  EXPECT_THAT(fake->created, ElementsAre("exp-1", "exp-1", "exp-1", "exp-1-sil"));
}

TEST(ReplayFeedTest, ATableAShardRefusesFailsTheStartNamingIt) {
  auto source = std::make_unique<FakeSource>();
  source->create_results = {absl::OkStatus(), absl::InvalidArgumentError("capacity: 0")};
  ReplayFeed feed(std::move(source), Options());
  const absl::Status s = feed.Start();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("creating replay table exp-1-sil: capacity: 0"));
}

TEST(ReplayFeedTest, AMalformedDeviceFailsTheStartNamingIt) {
  ReplayFeedOptions options = Options();
  options.device = "gpu:one";
  ReplayFeed feed(std::make_unique<FakeSource>(), options);
  const absl::Status s = feed.Start();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("ReplayFeed: device 'gpu:one'"));
}

TEST(ReplayFeedTest, StopWakesAStartWaitingForShards) {
  auto source = std::make_unique<FakeSource>();
  FakeSource* fake = source.get();
  for (int i = 0; i < 100; ++i) fake->create_results.push_back(absl::UnavailableError("down"));
  ReplayFeedOptions options = Options();
  options.create_retry = absl::Hours(1);  // only Stop can end the wait in time
  ReplayFeed feed(std::move(source), options);
  absl::Status started;
  std::thread starter([&] { started = feed.Start(); });
  fake->create_failed.WaitForNotification();
  feed.Stop();
  starter.join();
  EXPECT_EQ(started.code(), absl::StatusCode::kCancelled);
}

TEST(ReplayFeedTest, BatchesHaveColumnsByNameKeysAndWeights) {
  auto source = std::make_unique<FakeSource>();
  FakeSource* fake = source.get();
  ReplayFeedOptions options = Options();
  options.prioritized = true;
  options.importance_sampling_exponent = 0.4;
  ReplayFeed feed(std::move(source), options);
  ASSERT_TRUE(feed.Start().ok());
  absl::StatusOr<std::optional<Batch>> batch = feed.Next(absl::Minutes(1));
  ASSERT_TRUE(batch.ok()) << batch.status();
  ASSERT_TRUE(batch->has_value());
  const Batch& b = **batch;
  EXPECT_EQ(b.columns.at("observation").sizes(), (std::vector<int64_t>{2, 3}));
  EXPECT_FLOAT_EQ(b.columns.at("reward")[1].item<float>(),
                  -b.columns.at("reward")[0].item<float>());
  EXPECT_THAT(b.keys, ElementsAre(7, 8));
  EXPECT_FLOAT_EQ(b.weight[0].item<float>(), 0.5f);
  EXPECT_EQ(b.source_size, 40);
  EXPECT_EQ(feed.size(), 40);
  feed.UpdatePriorities(b.keys, {0.0, 2.0});
  feed.Stop();
  absl::MutexLock lock(&fake->mu_);
  EXPECT_EQ(fake->sampled_tables.front(), "exp-1");  // the actors' table
  EXPECT_EQ(fake->last_batch_size, 2);
  EXPECT_DOUBLE_EQ(fake->last_exponent, 0.4);
  EXPECT_THAT(fake->updated_keys, ElementsAre(7, 8));
  EXPECT_THAT(fake->updated_priorities, ElementsAre(1e-6, 2.0));  // clamped above 0
}

TEST(ReplayFeedTest, TransientSampleErrorsAreSkippedAndOthersEndTheFeed) {
  auto source = std::make_unique<FakeSource>();
  source->sample_results = {absl::DeadlineExceededError("limiter"),
                            absl::UnavailableError("restarting"),
                            absl::CancelledError("shard draining"), FakeSource::Response(3.0f),
                            absl::InternalError("table deleted")};
  ReplayFeedOptions options = Options();
  options.prefetch = 1;
  ReplayFeed feed(std::move(source), options);
  ASSERT_TRUE(feed.Start().ok());
  absl::StatusOr<std::optional<Batch>> first = feed.Next(absl::Minutes(1));
  ASSERT_TRUE(first.ok() && first->has_value());
  EXPECT_FLOAT_EQ((*first)->columns.at("observation")[0][0].item<float>(), 3.0f);
  absl::StatusOr<std::optional<Batch>> second = feed.Next(absl::Minutes(1));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(second.status().message(), "table deleted");
}

TEST(ReplayFeedTest, SampleErrorsAtOnceAreRetriedWithBackoffNotInASpin) {
  // every shard down: Sample fails at once, again and again
  auto source = std::make_unique<FakeSource>();
  FakeSource* fake = source.get();
  for (int i = 0; i < 100000; ++i) {
    source->sample_results.push_back(absl::UnavailableError("no shard is up"));
  }
  ReplayFeedOptions options = Options();
  options.sample_retry = absl::Milliseconds(5);
  options.sample_retry_max = absl::Milliseconds(80);
  ReplayFeed feed(std::move(source), options);
  ASSERT_TRUE(feed.Start().ok());
  absl::SleepFor(absl::Milliseconds(400));
  size_t tries = 0;
  {
    absl::MutexLock lock(&fake->mu_);
    tries = fake->sampled_tables.size();
    fake->sample_results.clear();  // the shards are back
  }
  // 5, 10, 20, 40, 80, 80, ... ms apart: about 8 tries in 400 ms (a spin makes thousands)
  EXPECT_GE(tries, 2u);
  EXPECT_LE(tries, 60u);
  absl::StatusOr<std::optional<Batch>> batch = feed.Next(absl::Minutes(1));
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_TRUE(batch->has_value());
  feed.Stop();
}

TEST(ReplayFeedTest, ReleaseDeletesEveryTable) {
  auto source = std::make_unique<FakeSource>();
  FakeSource* fake = source.get();
  ReplayFeed feed(std::move(source), Options());
  ASSERT_TRUE(feed.Start().ok());
  ASSERT_TRUE(feed.Release().ok());
  absl::MutexLock lock(&fake->mu_);
  EXPECT_THAT(fake->deleted, ElementsAre("exp-1", "exp-1-sil"));
}

TEST(ReplayFeedTest, NextAfterStopReturnsNothing) {
  ReplayFeed feed(std::make_unique<FakeSource>(), Options());
  ASSERT_TRUE(feed.Start().ok());
  feed.Stop();
  absl::StatusOr<std::optional<Batch>> batch = feed.Next(absl::Minutes(1));
  ASSERT_TRUE(batch.ok());
  EXPECT_FALSE(batch->has_value());
}

}  // namespace
}  // namespace prl::learner
