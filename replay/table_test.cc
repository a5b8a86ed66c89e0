#include "replay/table.h"

#include <atomic>
#include <cmath>
#include <limits>
#include <map>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl::replay {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Columns: "obs" float32 [3] and "id" int64 [] (a value that identifies each row).
v1::TableConfig TestConfig(int64_t capacity = 100) {
  v1::TableConfig config;
  config.set_name("transitions");
  config.set_capacity(capacity);
  v1::ColumnSpec* obs = config.add_signature();
  obs->set_name("obs");
  obs->set_dtype(v1::Tensor::DTYPE_FLOAT32);
  obs->add_shape(3);
  v1::ColumnSpec* id = config.add_signature();
  id->set_name("id");
  id->set_dtype(v1::Tensor::DTYPE_INT64);
  return config;
}

std::unique_ptr<Table> MakeTable(const v1::TableConfig& config) {
  auto table = Table::Create(config, TableLimits());
  EXPECT_TRUE(table.ok()) << table.status();
  return *std::move(table);
}

// A batch with ids first_id.. and obs rows (id, id + 0.5, id + 0.25).
v1::InsertRequest Batch(int64_t first_id, int64_t rows) {
  v1::InsertRequest request;
  request.set_table("transitions");
  std::vector<float> obs;
  auto ids = *HostTensor::Zeros(DType::kInt64, {rows});
  for (int64_t r = 0; r < rows; ++r) {
    const float v = static_cast<float>(first_id + r);
    obs.insert(obs.end(), {v, v + 0.5f, v + 0.25f});
    ids.mutable_data<int64_t>()[r] = first_id + r;
  }
  v1::NamedTensor* o = request.add_columns();
  o->set_name("obs");
  TensorToProto(HostTensor::FromFloats({rows, 3}, obs).view(), o->mutable_tensor());
  v1::NamedTensor* i = request.add_columns();
  i->set_name("id");
  TensorToProto(ids.view(), i->mutable_tensor());
  return request;
}

absl::Time Soon() { return absl::Now() + absl::Seconds(10); }

absl::Status Insert(Table& table, const v1::InsertRequest& request,
                    std::vector<uint64_t>* keys = nullptr, absl::Time deadline = Soon()) {
  int64_t inserted = 0;
  return table.Insert(request, deadline, nullptr, &inserted, keys);
}

absl::StatusOr<v1::SampleResponse> Sample(Table& table, int batch, absl::Time deadline = Soon(),
                                          double beta = 0) {
  v1::SampleRequest request;
  request.set_batch_size(batch);
  request.set_importance_sampling_exponent(beta);
  v1::SampleResponse response;
  absl::Status s = table.Sample(request, deadline, nullptr, &response);
  if (!s.ok()) return s;
  return response;
}

// Checks every sampled row is intact: obs matches the row's id.
void ExpectRowsIntact(const v1::SampleResponse& response) {
  ASSERT_EQ(response.columns_size(), 2);
  auto obs = *ViewTensorProto(response.columns(0).tensor(), "obs");
  auto ids = *ViewTensorProto(response.columns(1).tensor(), "id");
  for (int64_t r = 0; r < ids.shape[0]; ++r) {
    const float v = static_cast<float>(ids.data<int64_t>()[r]);
    EXPECT_EQ(obs.data<float>()[3 * r], v);
    EXPECT_EQ(obs.data<float>()[3 * r + 1], v + 0.5f);
    EXPECT_EQ(obs.data<float>()[3 * r + 2], v + 0.25f);
  }
}

TEST(TableTest, InsertThenSampleReturnsIntactRowsAndCounters) {
  auto table = MakeTable(TestConfig());
  std::vector<uint64_t> keys;
  ASSERT_TRUE(Insert(*table, Batch(10, 5), &keys).ok());
  EXPECT_THAT(keys, ElementsAre(1, 2, 3, 4, 5));
  auto response = Sample(*table, 8);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->keys_size(), 8);
  EXPECT_THAT(response->columns(0).tensor().shape(), ElementsAre(8, 3));
  EXPECT_EQ(response->table_size(), 5);
  for (double p : response->probabilities()) EXPECT_DOUBLE_EQ(p, 0.2);
  ExpectRowsIntact(*response);
  // the id column agrees with the keys (key k holds id 9 + k).
  auto ids = *ViewTensorProto(response->columns(1).tensor(), "id");
  for (int r = 0; r < 8; ++r) EXPECT_EQ(ids.data<int64_t>()[r], 9 + response->keys(r));

  v1::TableInfo info = table->Info();
  EXPECT_EQ(info.size(), 5);
  EXPECT_EQ(info.inserted_total(), 5);
  EXPECT_EQ(info.sampled_total(), 8);
  EXPECT_GT(info.bytes(), 0);
}

TEST(TableTest, BadInsertsAreRejectedNamingTheFieldAndStoreNothing) {
  auto table = MakeTable(TestConfig());
  ASSERT_TRUE(Insert(*table, Batch(0, 4)).ok());

  struct Case {
    std::string name;
    std::function<void(v1::InsertRequest*)> corrupt;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"unknown column", [](v1::InsertRequest* r) { r->mutable_columns(1)->set_name("act"); },
       "'act' is not a column"},
      {"missing column", [](v1::InsertRequest* r) { r->mutable_columns()->RemoveLast(); },
       "has 1 columns"},
      {"duplicate column", [](v1::InsertRequest* r) { r->mutable_columns(1)->set_name("obs"); },
       "given twice"},
      {"wrong dtype",
       [](v1::InsertRequest* r) {
         r->mutable_columns(1)->mutable_tensor()->set_dtype(v1::Tensor::DTYPE_FLOAT32);
         r->mutable_columns(1)->mutable_tensor()->mutable_data()->resize(3 * 4);
       },
       "dtype is float32, must be int64"},
      {"wrong shape",
       [](v1::InsertRequest* r) { r->mutable_columns(0)->mutable_tensor()->set_shape(1, 2); },
       "columns[0] ('obs')"},
      {"byte length",
       [](v1::InsertRequest* r) {
         r->mutable_columns(0)->mutable_tensor()->mutable_data()->pop_back();
       },
       "bytes of data"},
      {"nan",
       [](v1::InsertRequest* r) {
         float nan = std::numeric_limits<float>::quiet_NaN();
         std::memcpy(r->mutable_columns(0)->mutable_tensor()->mutable_data()->data() + 8, &nan, 4);
       },
       "element 2 is NaN"},
      {"row counts differ",
       [](v1::InsertRequest* r) { *r->mutable_columns(1) = Batch(0, 2).columns(1); }, "has 2 rows"},
      {"priority count", [](v1::InsertRequest* r) { r->add_priorities(1.0); }, "priorities"},
      {"negative priority",
       [](v1::InsertRequest* r) {
         for (int i = 0; i < 3; ++i) r->add_priorities(i == 1 ? -1.0 : 1.0);
       },
       "priorities[1]"},
  };
  for (const Case& c : cases) {
    v1::InsertRequest request = Batch(100, 3);
    c.corrupt(&request);
    absl::Status s = Insert(*table, request);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.name << ": " << s;
    EXPECT_THAT(s.message(), HasSubstr(c.message)) << c.name;
    EXPECT_EQ(table->size(), 4) << c.name;
  }
  EXPECT_EQ(table->Info().inserted_total(), 4);
  auto response = Sample(*table, 16);
  ASSERT_TRUE(response.ok());
  ExpectRowsIntact(*response);
}

TEST(TableTest, FullTableEvictsOldestByDefault) {
  auto table = MakeTable(TestConfig(/*capacity=*/4));
  ASSERT_TRUE(Insert(*table, Batch(0, 6)).ok());
  EXPECT_EQ(table->size(), 4);
  EXPECT_EQ(table->Info().removed_total(), 2);
  auto response = Sample(*table, 64);
  ASSERT_TRUE(response.ok());
  for (uint64_t key : response->keys()) EXPECT_GE(key, 3u);  // keys 1 and 2 were evicted
  ExpectRowsIntact(*response);
}

TEST(TableTest, LowestPriorityRemoverKeepsHighPriorityItems) {
  v1::TableConfig config = TestConfig(3);
  config.set_remover(v1::REMOVER_LOWEST_PRIORITY);
  auto table = MakeTable(config);
  v1::InsertRequest request = Batch(0, 3);
  for (double p : {5.0, 0.5, 3.0}) request.add_priorities(p);
  ASSERT_TRUE(Insert(*table, request).ok());
  ASSERT_TRUE(Insert(*table, Batch(3, 1)).ok());  // evicts key 2 (priority 0.5)
  auto response = Sample(*table, 32);
  ASSERT_TRUE(response.ok());
  for (uint64_t key : response->keys()) EXPECT_NE(key, 2u);
}

TEST(TableTest, FifoTakesDistinctItemsAndMaxTimesSampledRemovesThem) {
  v1::TableConfig config = TestConfig();
  config.set_max_times_sampled(2);
  config.set_sampler(v1::SAMPLER_FIFO);
  auto table = MakeTable(config);
  ASSERT_TRUE(Insert(*table, Batch(0, 3)).ok());
  auto response = Sample(*table, 2);
  ASSERT_TRUE(response.ok());
  EXPECT_THAT(response->keys(), ElementsAre(1, 2));
  EXPECT_THAT(response->times_sampled(), ElementsAre(1, 1));
  response = Sample(*table, 2);
  ASSERT_TRUE(response.ok());
  EXPECT_THAT(response->keys(), ElementsAre(1, 2));
  EXPECT_THAT(response->times_sampled(), ElementsAre(2, 2));
  EXPECT_EQ(table->size(), 1);
  EXPECT_EQ(table->Info().removed_total(), 2);
  // FIFO never repeats an item within a batch: with one item, a batch of two must wait.
  EXPECT_EQ(Sample(*table, 2, absl::Now() + absl::Milliseconds(50)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  response = Sample(*table, 1);
  ASSERT_TRUE(response.ok());
  EXPECT_THAT(response->keys(), ElementsAre(3));
}

TEST(TableTest, TimedOutSampleLeavesTheTableAsItWas) {
  v1::TableConfig config = TestConfig();
  config.set_max_times_sampled(1);
  auto table = MakeTable(config);
  ASSERT_TRUE(Insert(*table, Batch(0, 5)).ok());
  // 10 samples of items that may each be sampled once: the call takes 5 and then waits.
  auto response = Sample(*table, 10, absl::Now() + absl::Milliseconds(50));
  EXPECT_EQ(response.status().code(), absl::StatusCode::kDeadlineExceeded);
  v1::TableInfo info = table->Info();
  EXPECT_EQ(info.size(), 5);
  EXPECT_EQ(info.sampled_total(), 0);
  EXPECT_EQ(info.removed_total(), 0);
  response = Sample(*table, 5);
  ASSERT_TRUE(response.ok());
  EXPECT_THAT(response->times_sampled(), ElementsAre(1, 1, 1, 1, 1));
  EXPECT_EQ(table->size(), 0);
}

TEST(TableTest, ABatchCannotTakeTheTableBelowItsMinimumSize) {
  v1::TableConfig config = TestConfig();
  config.set_max_times_sampled(1);
  config.mutable_rate_limiter()->set_min_size_to_sample(4);
  auto table = MakeTable(config);
  ASSERT_TRUE(Insert(*table, Batch(0, 5)).ok());
  // each pick removes its item at commit: after two picks the table would hold 3 < 4 items.
  auto response = Sample(*table, 3, absl::Now() + absl::Milliseconds(50));
  EXPECT_EQ(response.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(table->size(), 5);
  response = Sample(*table, 2);
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(table->size(), 3);
  // below the minimum size: no sampling, and inserts are let in to refill it.
  EXPECT_EQ(Sample(*table, 1, absl::Now() + absl::Milliseconds(20)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  ASSERT_TRUE(Insert(*table, Batch(5, 1)).ok());
  EXPECT_TRUE(Sample(*table, 1).ok());
}

TEST(TableTest, RowsWithoutPriorityGetTheLargestSeen) {
  v1::TableConfig config = TestConfig();
  config.set_remover(v1::REMOVER_LOWEST_PRIORITY);
  config.set_capacity(2);
  auto table = MakeTable(config);
  v1::InsertRequest first = Batch(0, 1);
  first.add_priorities(5.0);
  ASSERT_TRUE(Insert(*table, first).ok());
  ASSERT_TRUE(Insert(*table, Batch(1, 1)).ok());  // priority 5 by default
  v1::InsertRequest low = Batch(2, 1);
  low.add_priorities(0.5);
  ASSERT_TRUE(Insert(*table, low).ok());  // evicts the lowest: itself? no, key 1 or 2 (both 5)
  auto response = Sample(*table, 50);
  ASSERT_TRUE(response.ok());
  bool saw_key_3 = false;
  for (uint64_t key : response->keys()) saw_key_3 |= key == 3;
  EXPECT_TRUE(saw_key_3);
  EXPECT_EQ(table->size(), 2);
}

TEST(TableTest, SampleBatchesMustFitInAMessage) {
  TableLimits limits;
  limits.max_message_bytes = 1000;  // 20 bytes per item: at most 50 per batch
  auto table = *Table::Create(TestConfig(), limits);
  ASSERT_TRUE(Insert(*table, Batch(0, 5)).ok());
  v1::SampleRequest request;
  request.set_batch_size(51);
  v1::SampleResponse response;
  absl::Status s = table->Sample(request, Soon(), nullptr, &response);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("allowed: up to 50"));
  EXPECT_EQ(table->Info().sampled_total(), 0);

  v1::TableConfig huge = TestConfig();
  huge.mutable_signature(0)->set_shape(0, int64_t{1} << 40);
  huge.mutable_signature(0)->add_shape(int64_t{1} << 40);
  absl::Status created = ValidateTableConfig(TableLimits(), &huge);
  EXPECT_EQ(created.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(created.message(), HasSubstr("config.signature[0].shape"));
}

TEST(TableTest, PrioritizedSamplingReturnsNormalisedImportanceWeights) {
  v1::TableConfig config = TestConfig();
  config.set_sampler(v1::SAMPLER_PRIORITIZED);
  config.set_priority_exponent(1.0);
  auto table = MakeTable(config);
  v1::InsertRequest request = Batch(0, 2);
  request.add_priorities(1.0);
  request.add_priorities(3.0);
  ASSERT_TRUE(Insert(*table, request).ok());
  auto response = Sample(*table, 200, Soon(), /*beta=*/1.0);
  ASSERT_TRUE(response.ok());
  for (int i = 0; i < response->keys_size(); ++i) {
    // N P = 2 * 0.25 = 0.5 for key 1 and 1.5 for key 2: weights 1/0.5 and 1/1.5, over max.
    const double expected = response->keys(i) == 1 ? 1.0 : (1 / 1.5) / (1 / 0.5);
    if (response->keys(i) == 1) {
      EXPECT_DOUBLE_EQ(response->probabilities(i), 0.25);
    }
    EXPECT_NEAR(response->importance_weights(i), expected, 1e-12);
  }

  v1::UpdatePrioritiesRequest update;
  update.add_keys(1);
  update.add_keys(99);
  update.add_priorities(0.0);
  update.add_priorities(1.0);
  int64_t updated, missing;
  ASSERT_TRUE(table->UpdatePriorities(update, &updated, &missing).ok());
  EXPECT_EQ(updated, 1);
  EXPECT_EQ(missing, 1);
  response = Sample(*table, 50);
  for (uint64_t key : response->keys()) EXPECT_EQ(key, 2u);

  update.set_priorities(0, std::nan(""));
  EXPECT_THAT(table->UpdatePriorities(update, &updated, &missing).message(),
              HasSubstr("priorities[0]"));
}

TEST(TableTest, SampleWaitsForMinSizeUntilDeadline) {
  v1::TableConfig config = TestConfig();
  config.mutable_rate_limiter()->set_min_size_to_sample(3);
  auto table = MakeTable(config);
  ASSERT_TRUE(Insert(*table, Batch(0, 2)).ok());
  auto response = Sample(*table, 1, absl::Now() + absl::Milliseconds(100));
  EXPECT_EQ(response.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(response.status().message(), HasSubstr("size 2"));

  // a sampler blocked on min size is released by the insert that reaches it.
  absl::Notification sampled;
  std::thread sampler([&] {
    auto r = Sample(*table, 1);
    EXPECT_TRUE(r.ok()) << r.status();
    sampled.Notify();
  });
  ASSERT_TRUE(Insert(*table, Batch(2, 1)).ok());
  EXPECT_TRUE(sampled.WaitForNotificationWithTimeout(absl::Seconds(10)));
  sampler.join();
}

TEST(TableTest, RatioLimiterBlocksInsertsThatRunAhead) {
  v1::TableConfig config = TestConfig();
  config.mutable_rate_limiter()->set_min_size_to_sample(1);
  config.mutable_rate_limiter()->set_samples_per_insert(2);
  config.mutable_rate_limiter()->set_error_buffer(4);
  auto table = MakeTable(config);
  // center 2, diff <= 6: inserts stop at 3 items (diff 6).
  int64_t inserted = 0;
  absl::Status s = table->Insert(Batch(0, 5), absl::Now() + absl::Milliseconds(100), nullptr,
                                 &inserted, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(inserted, 3);
  EXPECT_EQ(table->size(), 3);
  EXPECT_FALSE(table->Info().can_insert());
  // sampling 2 items makes room for one more insert.
  ASSERT_TRUE(Sample(*table, 2).ok());
  EXPECT_TRUE(table->Info().can_insert());
  EXPECT_GT(table->Info().rate_limiter_insert_wait_seconds(), 0.05);
}

TEST(TableTest, CancellationAndCloseReleaseWaiters) {
  v1::TableConfig config = TestConfig();
  config.mutable_rate_limiter()->set_min_size_to_sample(5);
  auto table = MakeTable(config);
  std::atomic<bool> cancel{false};
  absl::Notification cancelled;
  std::thread waiter([&] {
    v1::SampleRequest request;
    request.set_batch_size(1);
    v1::SampleResponse response;
    absl::Status s = table->Sample(
        request, Soon(), [&] { return cancel.load(); }, &response);
    EXPECT_EQ(s.code(), absl::StatusCode::kCancelled);
    cancelled.Notify();
  });
  cancel = true;
  EXPECT_TRUE(cancelled.WaitForNotificationWithTimeout(absl::Seconds(5)));
  waiter.join();

  absl::Notification closed;
  std::thread waiter2([&] {
    EXPECT_EQ(Sample(*table, 1).status().code(), absl::StatusCode::kCancelled);
    closed.Notify();
  });
  table->Close();
  EXPECT_TRUE(closed.WaitForNotificationWithTimeout(absl::Seconds(5)));
  waiter2.join();
}

TEST(TableTest, ConcurrentWritersAndSamplersReconcileExactly) {
  v1::TableConfig config = TestConfig(/*capacity=*/100000);
  config.mutable_rate_limiter()->set_min_size_to_sample(10);
  config.mutable_rate_limiter()->set_samples_per_insert(4);
  config.mutable_rate_limiter()->set_error_buffer(200);
  auto table = MakeTable(config);
  constexpr int kWriters = 4, kBatchesPerWriter = 100, kRows = 10;
  constexpr int kSamplers = 2, kSampleBatch = 16;
  // writers finish only once samples reach 4 x 4000 - (40 + 200) = 15760, and samplers can
  // take at most 4 x 4000 + 160 = 16160: sample exactly 16000.
  constexpr int kBatchesPerSampler = 16000 / kSampleBatch / kSamplers;
  std::vector<std::thread> threads;
  std::vector<std::vector<uint64_t>> keys(kWriters);
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int b = 0; b < kBatchesPerWriter; ++b) {
        ASSERT_TRUE(Insert(*table, Batch(1000000 * (w + 1) + b * kRows, kRows), &keys[w]).ok());
      }
    });
  }
  std::atomic<int64_t> sampled{0};
  for (int s = 0; s < kSamplers; ++s) {
    threads.emplace_back([&] {
      for (int b = 0; b < kBatchesPerSampler; ++b) {
        auto response = Sample(*table, kSampleBatch);
        ASSERT_TRUE(response.ok()) << response.status();
        ExpectRowsIntact(*response);
        sampled += response->keys_size();
        v1::TableInfo info = table->Info();
        // the ratio holds within the error buffer at every observation.
        const double diff = 4.0 * info.inserted_total() - info.sampled_total();
        EXPECT_GE(diff, 4.0 * 10 - 200);
        EXPECT_LE(diff, 4.0 * 10 + 200);
      }
    });
  }
  for (auto& t : threads) t.join();
  v1::TableInfo info = table->Info();
  EXPECT_EQ(info.inserted_total(), kWriters * kBatchesPerWriter * kRows);
  EXPECT_EQ(info.size(), kWriters * kBatchesPerWriter * kRows);
  EXPECT_EQ(info.sampled_total(), sampled.load());
  EXPECT_EQ(sampled.load(), kSamplers * kBatchesPerSampler * kSampleBatch);
  // every key was handed out once.
  std::map<uint64_t, int> seen;
  for (const auto& k : keys) {
    for (uint64_t key : k) ++seen[key];
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(info.inserted_total()));
  EXPECT_EQ(seen.begin()->first, 1u);
  EXPECT_EQ(seen.rbegin()->first, static_cast<uint64_t>(info.inserted_total()));
}

TEST(TableTest, SnapshotIsUnaffectedByLaterWritesAndRestores) {
  v1::TableConfig config = TestConfig(/*capacity=*/5);
  auto table = MakeTable(config);
  ASSERT_TRUE(Insert(*table, Batch(0, 5)).ok());
  ASSERT_TRUE(Sample(*table, 3).ok());
  TableSnapshot snapshot = table->TakeSnapshot();
  // overwrite every slot while the snapshot is alive.
  ASSERT_TRUE(Insert(*table, Batch(500, 5)).ok());
  ASSERT_EQ(snapshot.items.size(), 5u);
  for (const TableSnapshot::Item& item : snapshot.items) {
    int64_t id;
    std::memcpy(&id, snapshot.Row(1, item), sizeof(id));
    EXPECT_EQ(id, static_cast<int64_t>(item.key) - 1);
  }
  auto restored = Table::FromSnapshot(snapshot, TableLimits());
  ASSERT_TRUE(restored.ok()) << restored.status();
  v1::TableInfo info = (*restored)->Info();
  EXPECT_EQ(info.size(), 5);
  EXPECT_EQ(info.inserted_total(), 5);
  EXPECT_EQ(info.sampled_total(), 3);
  auto response = Sample(**restored, 20);
  ASSERT_TRUE(response.ok());
  ExpectRowsIntact(*response);
  for (uint64_t key : response->keys()) EXPECT_LE(key, 5u);
  // new keys continue after the restored ones.
  std::vector<uint64_t> keys;
  ASSERT_TRUE(Insert(**restored, Batch(9, 1), &keys).ok());
  EXPECT_THAT(keys, ElementsAre(6));
}

TEST(TableConfigTest, DefaultsAreFilled) {
  v1::TableConfig config = TestConfig(0);
  ASSERT_TRUE(ValidateTableConfig(TableLimits(), &config).ok());
  EXPECT_EQ(config.capacity(), 1000000);
  EXPECT_EQ(config.sampler(), v1::SAMPLER_UNIFORM);
  EXPECT_EQ(config.remover(), v1::REMOVER_FIFO);
  EXPECT_DOUBLE_EQ(config.priority_exponent(), 0.6);
  EXPECT_EQ(config.sequence_length(), 1);
  EXPECT_EQ(config.rate_limiter().min_size_to_sample(), 1);
}

TEST(TableConfigTest, InvalidConfigsNameTheField) {
  struct Case {
    std::function<void(v1::TableConfig*)> corrupt;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](v1::TableConfig* c) { c->set_name("Bad Name"); }, "config.name"},
      {[](v1::TableConfig* c) { c->clear_signature(); }, "config.signature"},
      {[](v1::TableConfig* c) { c->mutable_signature(1)->set_name("next.obs"); },
       "config.signature[1].name"},
      {[](v1::TableConfig* c) { c->mutable_signature(1)->set_name("obs"); },
       "config.signature[1].name"},
      {[](v1::TableConfig* c) { c->mutable_signature(0)->set_shape(0, 0); },
       "config.signature[0].shape[0]"},
      {[](v1::TableConfig* c) {
         c->mutable_signature(1)->set_dtype(v1::Tensor::DTYPE_UNSPECIFIED);
       },
       "config.signature[1].dtype"},
      {[](v1::TableConfig* c) { c->set_capacity(20'000'000); }, "config.capacity"},
      {[](v1::TableConfig* c) { c->set_priority_exponent(-1); }, "config.priority_exponent"},
      {[](v1::TableConfig* c) { c->set_max_times_sampled(-1); }, "config.max_times_sampled"},
      {[](v1::TableConfig* c) { c->set_sequence_length(-2); }, "config.sequence_length"},
      {[](v1::TableConfig* c) { c->mutable_rate_limiter()->set_min_size_to_sample(1000); },
       "config.rate_limiter.min_size_to_sample"},
      {[](v1::TableConfig* c) { c->set_sampler(static_cast<v1::Sampler>(42)); }, "config.sampler"},
  };
  for (const Case& c : cases) {
    v1::TableConfig config = TestConfig();
    c.corrupt(&config);
    absl::Status s = ValidateTableConfig(TableLimits(), &config);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(s.message(), HasSubstr("'" + c.field + "'")) << s;
  }
}

TEST(TableTest, SequenceItemsHaveATimeDimension) {
  v1::TableConfig config = TestConfig();
  config.set_sequence_length(2);
  auto table = MakeTable(config);
  v1::InsertRequest request = Batch(0, 2);  // shaped [2, 3] and [2]: missing the time axis
  EXPECT_THAT(Insert(*table, request).message(), HasSubstr("must be [*, 2, 3]"));
}

}  // namespace
}  // namespace prl::replay
