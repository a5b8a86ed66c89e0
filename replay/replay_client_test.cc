#include "replay/replay_client.h"

#include <cmath>
#include <cstdlib>
#include <thread>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/server.h"
#include "common/testing/in_process_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "replay/replay_service.h"
#include "replay/shard.h"

namespace prl::replay {
namespace {

using ::testing::HasSubstr;

v1::TableConfig Config() {
  v1::TableConfig config;
  config.set_name("t");
  config.set_capacity(1000);
  config.set_sampler(v1::SAMPLER_UNIFORM);
  v1::ColumnSpec* id = config.add_signature();
  id->set_name("id");
  id->set_dtype(v1::Tensor::DTYPE_INT64);
  return config;
}

v1::InsertRequest Ids(int64_t first, int64_t n) {
  v1::InsertRequest request;
  request.set_table("t");
  request.set_return_keys(true);
  auto ids = *HostTensor::Zeros(DType::kInt64, {n});
  for (int64_t i = 0; i < n; ++i) ids.mutable_data<int64_t>()[i] = first + i;
  v1::NamedTensor* c = request.add_columns();
  c->set_name("id");
  TensorToProto(ids.view(), c->mutable_tensor());
  return request;
}

// Two in-process shards behind one client.
class ShardedReplayClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ReplayClientOptions options;
    for (int i = 0; i < 2; ++i) {
      registries_.push_back(std::make_shared<prometheus::Registry>());
      shards_.push_back(*ReplayShard::Create({}, *registries_.back()));
      services_.push_back(
          std::make_unique<ReplayServiceImpl>(ReplayServiceOptions{}, shards_.back().get()));
      servers_.push_back(*prl::testing::InProcessServer::Start("replay", {services_.back().get()},
                                                               registries_.back()));
      options.addresses.push_back(servers_.back()->host().address());
    }
    addresses_ = options.addresses;
    options.call.timeout = absl::Seconds(5);
    client_ = *ShardedReplayClient::Create(options);
    ASSERT_TRUE(client_->CreateTable(Config()).ok());
  }

  // A client of shard 0 alone whose calls have deadline `timeout`.
  std::unique_ptr<ShardedReplayClient> ClientOfShard0(absl::Duration timeout);
  std::unique_ptr<ShardedReplayClient> LimitedTableOnShard0(absl::Duration timeout);
  // A client of both shards whose calls have deadline `timeout`.
  std::unique_ptr<ShardedReplayClient> ClientOfBoth(absl::Duration timeout);

  // Stops shard `i` as a killed prl_replay goes (its server, then the shard, without a
  // checkpoint) and starts it again on the same port from `options`, restoring its checkpoint.
  void RestartShard(int i, const ShardOptions& options) {
    const int port = restarted_[i] != nullptr ? restarted_[i]->port() : servers_[i]->host().port();
    restarted_[i].reset();
    servers_[i].reset();
    services_[i].reset();
    shards_[i].reset();
    registries_[i] = std::make_shared<prometheus::Registry>();
    auto shard = ReplayShard::Create(options, *registries_[i]);
    ASSERT_TRUE(shard.ok()) << shard.status();
    shards_[i] = *std::move(shard);
    services_[i] = std::make_unique<ReplayServiceImpl>(ReplayServiceOptions{}, shards_[i].get());
    ServerOptions server;
    server.service_name = "replay";
    server.port = port;
    server.metrics_port = -1;
    server.drain_timeout = absl::Milliseconds(200);
    auto host = ServerHost::Start(server, {services_[i].get()}, registries_[i]);
    ASSERT_TRUE(host.ok()) << host.status();
    restarted_[i] = *std::move(host);
  }

  std::vector<std::shared_ptr<prometheus::Registry>> registries_;
  std::vector<std::unique_ptr<ReplayShard>> shards_;
  std::vector<std::unique_ptr<ReplayServiceImpl>> services_;
  std::vector<std::unique_ptr<prl::testing::InProcessServer>> servers_;
  std::vector<std::unique_ptr<ServerHost>> restarted_ = std::vector<std::unique_ptr<ServerHost>>(2);
  std::vector<std::string> addresses_;
  std::unique_ptr<ShardedReplayClient> client_;
};

TEST_F(ShardedReplayClientTest, InsertsSpreadAndSamplesMerge) {
  for (int b = 0; b < 10; ++b) {
    auto keys = client_->Insert(Ids(b * 10, 10));
    ASSERT_TRUE(keys.ok()) << keys.status();
    ASSERT_EQ(keys->size(), 10u);
    EXPECT_EQ(ShardedReplayClient::ShardOfKey((*keys)[0]), b % 2);
  }
  EXPECT_EQ(shards_[0]->Info("t")->tables(0).size(), 50);
  EXPECT_EQ(shards_[1]->Info("t")->tables(0).size(), 50);

  // the first sample learns the sizes; the second splits by them.
  ASSERT_TRUE(client_->Sample("t", 8, absl::Seconds(1)).ok());
  auto merged = client_->Sample("t", 64, absl::Seconds(1), /*beta=*/0.5);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(merged->keys_size(), 64);
  EXPECT_EQ(merged->columns(0).tensor().shape(0), 64);
  EXPECT_EQ(merged->columns(0).tensor().data().size(), 64u * 8);
  EXPECT_EQ(merged->table_size(), 100);
  int per_shard[2] = {0, 0};
  auto ids = *ViewTensorProto(merged->columns(0).tensor(), "id");
  for (int i = 0; i < 64; ++i) {
    const uint64_t key = merged->keys(i);
    ++per_shard[ShardedReplayClient::ShardOfKey(key)];
    EXPECT_DOUBLE_EQ(merged->probabilities(i), 0.01);  // uniform over the union
    EXPECT_DOUBLE_EQ(merged->importance_weights(i), 1.0);
    // batch b went to shard b % 2 and got keys 1.. there: the id follows from the key.
    const int64_t shard = ShardedReplayClient::ShardOfKey(key);
    const int64_t local = static_cast<int64_t>(ShardedReplayClient::UntagKey(key)) - 1;
    EXPECT_EQ(ids.data<int64_t>()[i], (local / 10 * 2 + shard) * 10 + local % 10);
  }
  EXPECT_EQ(per_shard[0], 32);
  EXPECT_EQ(per_shard[1], 32);
}

TEST_F(ShardedReplayClientTest, DeleteTableRemovesItFromEveryShard) {
  for (int b = 0; b < 4; ++b) ASSERT_TRUE(client_->Insert(Ids(b * 10, 10)).ok());
  absl::StatusOr<int64_t> removed = client_->DeleteTable("t");
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(*removed, 40);
  EXPECT_EQ(shards_[0]->Info("t").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(shards_[1]->Info("t").status().code(), absl::StatusCode::kNotFound);
  // deleting again is done already, and the client no longer re-creates it on inserts
  EXPECT_EQ(*client_->DeleteTable("t"), 0);
  EXPECT_EQ(client_->Insert(Ids(0, 10)).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ShardedReplayClientTest, PrioritiesGoBackToTheirShard) {
  auto a = client_->Insert(Ids(0, 2));
  auto b = client_->Insert(Ids(2, 2));
  ASSERT_TRUE(a.ok() && b.ok());
  auto updated = client_->UpdatePriorities("t", {(*a)[0], (*b)[1], (*b)[0]}, {1.0, 2.0, 3.0});
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(*updated, 3);
  EXPECT_THAT(
      client_->UpdatePriorities("t", {ShardedReplayClient::TagKey(9, 1)}, {1.0}).status().message(),
      HasSubstr("names shard 9"));
}

TEST_F(ShardedReplayClientTest, ErrorsFromAShardAreReturnedNotRetried) {
  v1::InsertRequest bad = Ids(0, 1);
  bad.set_table("missing");
  auto keys = client_->Insert(bad);
  EXPECT_EQ(keys.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->healthy_shards(), 2);
}

// A FIFO table with a column of each dtype: "obs" float32 [2], "id" int64 [], "image" uint8 [3].
v1::TableConfig EveryDTypeConfig() {
  v1::TableConfig config;
  config.set_name("every_dtype");
  config.set_sampler(v1::SAMPLER_FIFO);
  v1::ColumnSpec* obs = config.add_signature();
  obs->set_name("obs");
  obs->set_dtype(v1::Tensor::DTYPE_FLOAT32);
  obs->add_shape(2);
  v1::ColumnSpec* id = config.add_signature();
  id->set_name("id");
  id->set_dtype(v1::Tensor::DTYPE_INT64);
  v1::ColumnSpec* image = config.add_signature();
  image->set_name("image");
  image->set_dtype(v1::Tensor::DTYPE_UINT8);
  image->add_shape(3);
  return config;
}

// Row r of the every_dtype table: obs (r, -r / 2), id 1000 r - 1, image (3r, 3r + 1, 3r + 2).
std::string ObsBytes(int first, int rows) {
  std::vector<float> values;
  for (int r = first; r < first + rows; ++r) values.insert(values.end(), {1.0f * r, -0.5f * r});
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * 4);
}
std::string IdBytes(int first, int rows) {
  std::vector<int64_t> values;
  for (int r = first; r < first + rows; ++r) values.push_back(1000 * r - 1);
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * 8);
}
std::string ImageBytes(int first, int rows) {
  std::string bytes;
  for (int r = first; r < first + rows; ++r) {
    for (int i = 0; i < 3; ++i) bytes.push_back(static_cast<char>(3 * r + i));
  }
  return bytes;
}

// A batch viewing the caller's buffers; the image column comes from one buffer per row.
InsertBatch EveryDTypeBatch(const std::string& obs, const std::string& ids,
                            const std::vector<std::string>& image_rows, bool return_keys) {
  const int64_t rows = static_cast<int64_t>(image_rows.size());
  InsertBatch batch;
  batch.table = "every_dtype";
  batch.return_keys = return_keys;
  batch.columns.resize(3);
  batch.columns[0] = {"obs", v1::Tensor::DTYPE_FLOAT32, {rows, 2}, ScatteredBytes(obs)};
  batch.columns[1] = {"id", v1::Tensor::DTYPE_INT64, {rows}, ScatteredBytes(ids)};
  batch.columns[2] = {"image", v1::Tensor::DTYPE_UINT8, {rows, 3}, ScatteredBytes()};
  for (const std::string& row : image_rows) batch.columns[2].data.Append(row);
  return batch;
}

TEST_F(ShardedReplayClientTest, InsertStreamSendsEveryDTypeFromTheCallersBuffers) {
  ASSERT_TRUE(client_->CreateTable(EveryDTypeConfig()).ok());
  CallOptions call;
  call.timeout = absl::Seconds(5);
  auto stream = InsertStream::Open(servers_[0]->channel(), call);
  // two requests: rows 0-1 with keys, row 2 without.
  const std::string obs = ObsBytes(0, 2), ids = IdBytes(0, 2);
  const std::vector<std::string> images = {ImageBytes(0, 1), ImageBytes(1, 1)};
  ASSERT_TRUE(stream->Write(EveryDTypeBatch(obs, ids, images, /*return_keys=*/true)));
  const std::string obs2 = ObsBytes(2, 1), ids2 = IdBytes(2, 1);
  const std::vector<std::string> images2 = {ImageBytes(2, 1)};
  ASSERT_TRUE(stream->Write(EveryDTypeBatch(obs2, ids2, images2, /*return_keys=*/false)));
  auto response = stream->Finish();
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->num_inserted(), 3);
  EXPECT_THAT(response->keys(), ::testing::ElementsAre(1, 2));

  v1::SampleRequest request;
  request.set_table("every_dtype");
  request.set_batch_size(3);
  v1::SampleResponse sampled;
  ASSERT_TRUE((*shards_[0]->GetTable("every_dtype"))
                  ->Sample(request, absl::InfiniteFuture(), nullptr, &sampled)
                  .ok());
  EXPECT_EQ(sampled.columns(0).tensor().data(), ObsBytes(0, 3));
  EXPECT_EQ(sampled.columns(1).tensor().data(), IdBytes(0, 3));
  EXPECT_EQ(sampled.columns(2).tensor().data(), ImageBytes(0, 3));
}

TEST_F(ShardedReplayClientTest, InsertStreamSendsASharedRequestWithoutCopyingAndLetsGoOfIt) {
  v1::TableConfig config = EveryDTypeConfig();
  config.mutable_signature(2)->set_shape(0, 40000);  // images above the no-copy threshold
  ASSERT_TRUE(client_->CreateTable(config).ok());
  std::string image;
  for (int i = 0; i < 2 * 40000; ++i) image.push_back(static_cast<char>(i * 13));
  const std::string obs = ObsBytes(0, 2), ids = IdBytes(0, 2);
  v1::InsertRequest proto;
  proto.set_table("every_dtype");
  const std::vector<std::tuple<std::string, v1::Tensor::DType, std::vector<int64_t>, std::string>>
      columns = {{"obs", v1::Tensor::DTYPE_FLOAT32, {2, 2}, obs},
                 {"id", v1::Tensor::DTYPE_INT64, {2}, ids},
                 {"image", v1::Tensor::DTYPE_UINT8, {2, 40000}, image}};
  for (const auto& [name, dtype, shape, data] : columns) {
    v1::NamedTensor* column = proto.add_columns();
    column->set_name(name);
    column->mutable_tensor()->set_dtype(dtype);
    column->mutable_tensor()->mutable_shape()->Assign(shape.begin(), shape.end());
    column->mutable_tensor()->set_data(data);
  }
  absl::Notification released;
  std::shared_ptr<const v1::InsertRequest> request(new v1::InsertRequest(proto),
                                                   [&released](const v1::InsertRequest* r) {
                                                     delete r;
                                                     released.Notify();
                                                   });

  CallOptions call;
  call.timeout = absl::Seconds(5);
  auto stream = InsertStream::Open(servers_[0]->channel(), call);
  ASSERT_TRUE(stream->Write(request));
  ASSERT_TRUE(stream->Write(request));
  auto response = stream->Finish();
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->num_inserted(), 4);
  request.reset();
  EXPECT_TRUE(released.WaitForNotificationWithTimeout(absl::Seconds(5)));

  v1::SampleRequest sample;
  sample.set_table("every_dtype");
  sample.set_batch_size(4);
  v1::SampleResponse sampled;
  ASSERT_TRUE((*shards_[0]->GetTable("every_dtype"))
                  ->Sample(sample, absl::InfiniteFuture(), nullptr, &sampled)
                  .ok());
  EXPECT_EQ(sampled.columns(0).tensor().data(), obs + obs);
  EXPECT_EQ(sampled.columns(1).tensor().data(), ids + ids);
  EXPECT_EQ(sampled.columns(2).tensor().data(), image + image);
}

TEST_F(ShardedReplayClientTest, InsertStreamReportsTheShardsError) {
  CallOptions call;
  call.timeout = absl::Seconds(5);
  auto stream = InsertStream::Open(servers_[0]->channel(), call);
  v1::InsertRequest good = Ids(0, 3);
  v1::InsertRequest bad = Ids(3, 2);
  bad.mutable_columns(0)->mutable_tensor()->set_dtype(v1::Tensor::DTYPE_UINT8);
  ASSERT_TRUE(stream->Write(InsertBatch::FromProto(good)));
  stream->Write(InsertBatch::FromProto(bad));  // may or may not see the stream end yet
  auto response = stream->Finish();
  EXPECT_EQ(response.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(response.status().message(),
              HasSubstr("insert request 1 (3 rows inserted before it)"));
  EXPECT_THAT(response.status().message(), HasSubstr("columns[0] ('id')"));
  EXPECT_EQ(shards_[0]->Info("t")->tables(0).size(), 3);
  EXPECT_EQ(stream->rows_inserted(), 3);
}

// Creates table "limited" on shard 0, which takes one sampled item per inserted one with room
// for 5 inserts ahead of the samples, and returns a client of shard 0 alone whose calls have
// deadline `timeout`.
std::unique_ptr<ShardedReplayClient> ShardedReplayClientTest::LimitedTableOnShard0(
    absl::Duration timeout) {
  v1::TableConfig config = Config();
  config.set_name("limited");
  config.mutable_rate_limiter()->set_min_size_to_sample(1);
  config.mutable_rate_limiter()->set_samples_per_insert(1);
  config.mutable_rate_limiter()->set_error_buffer(4);
  EXPECT_TRUE(shards_[0]->CreateTable(config).ok());
  return ClientOfShard0(timeout);
}

std::unique_ptr<ShardedReplayClient> ShardedReplayClientTest::ClientOfShard0(
    absl::Duration timeout) {
  ReplayClientOptions options;
  options.addresses = {servers_[0]->host().address()};
  options.call.timeout = timeout;
  return *ShardedReplayClient::Create(options);
}

std::unique_ptr<ShardedReplayClient> ShardedReplayClientTest::ClientOfBoth(absl::Duration timeout) {
  ReplayClientOptions options;
  options.addresses = addresses_;
  options.call.timeout = timeout;
  return *ShardedReplayClient::Create(options);
}

TEST_F(ShardedReplayClientTest, AnInsertHeldAtItsDeadlineSaysWhatItStored) {
  auto client = LimitedTableOnShard0(absl::Milliseconds(500));

  v1::InsertRequest rows = Ids(0, 8);
  rows.set_table("limited");
  int64_t stored = -1;
  auto keys = client->Insert(InsertBatch::FromProto(rows), &stored);
  EXPECT_EQ(keys.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(stored, 5);
  EXPECT_EQ(shards_[0]->Info("limited")->tables(0).size(), 5);

  // a sampler makes room; the writer sends only the rows not stored.
  ASSERT_TRUE(client->Sample("limited", 3, absl::Seconds(1)).ok());
  v1::InsertRequest rest = Ids(5, 3);
  rest.set_table("limited");
  keys = client->Insert(InsertBatch::FromProto(rest), &stored);
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(stored, 3);
  auto sample = client->Sample("limited", 3, absl::Seconds(1));
  ASSERT_TRUE(sample.ok());
  v1::TableInfo info = shards_[0]->Info("limited")->tables(0);
  EXPECT_EQ(info.size(), 8);
  EXPECT_EQ(info.inserted_total(), 8);
}

TEST_F(ShardedReplayClientTest, AnotherThreadCancelsAnInsertHeldByTheRateLimiter) {
  // a FIFO table that takes 5 items and then holds inserts until 100 samples make room
  // (samples_per_insert 100, error buffer 400): the test's own sample of the 5, which waits
  // until they are in, makes no room.
  v1::TableConfig config = Config();
  config.set_name("held");
  config.set_sampler(v1::SAMPLER_FIFO);
  config.mutable_rate_limiter()->set_min_size_to_sample(1);
  config.mutable_rate_limiter()->set_samples_per_insert(100);
  config.mutable_rate_limiter()->set_error_buffer(400);
  ASSERT_TRUE(shards_[0]->CreateTable(config).ok());
  std::shared_ptr<Table> table = *shards_[0]->GetTable("held");
  // the cancel, not the deadline, must end the insert.
  auto client = ClientOfShard0(absl::Seconds(60));

  InsertCanceller canceller;
  absl::Notification held;
  std::thread cancel([&] {
    // once the shard holds the insert: it stores rows and goes on to wait for room under the
    // table's lock, so by the time the sample sees 5 rows the rest of the insert is waiting.
    v1::SampleRequest sample;
    sample.set_batch_size(5);
    v1::SampleResponse sampled;
    const absl::Status s =
        table->Sample(sample, absl::Now() + absl::Seconds(30), nullptr, &sampled);
    EXPECT_TRUE(s.ok()) << s;
    if (s.ok()) held.Notify();
    canceller.Cancel();
  });
  v1::InsertRequest rows = Ids(0, 8);
  rows.set_table("held");
  int64_t stored = -1;
  auto keys = client->Insert(InsertBatch::FromProto(rows), &stored, &canceller);
  cancel.join();
  EXPECT_TRUE(held.HasBeenNotified());
  EXPECT_EQ(table->size(), 5);
  EXPECT_EQ(keys.status().code(), absl::StatusCode::kCancelled) << keys.status();
  EXPECT_EQ(stored, 0);  // the shard's answer does not come back to a cancelled call
  EXPECT_EQ(client->healthy_shards(), 1) << "a cancelled insert took the shard for down";

  // later inserts with the canceller fail at once; the client itself goes on.
  v1::InsertRequest more = Ids(10, 1);
  EXPECT_EQ(client->Insert(InsertBatch::FromProto(more), nullptr, &canceller).status().code(),
            absl::StatusCode::kCancelled);
  ASSERT_TRUE(shards_[0]->CreateTable(Config()).ok());
  EXPECT_TRUE(client->Insert(InsertBatch::FromProto(more)).ok());
}

TEST_F(ShardedReplayClientTest, InsertsABatchOfViews) {
  ASSERT_TRUE(client_->CreateTable(EveryDTypeConfig()).ok());
  const std::string obs = ObsBytes(0, 2), ids = IdBytes(0, 2);
  const std::vector<std::string> images = {ImageBytes(0, 1), ImageBytes(1, 1)};
  auto keys = client_->Insert(EveryDTypeBatch(obs, ids, images, /*return_keys=*/true));
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->size(), 2u);
  const int shard = ShardedReplayClient::ShardOfKey((*keys)[0]);
  EXPECT_EQ(shards_[shard]->Info("every_dtype")->tables(0).size(), 2);
}

// A table named `name` whose rate limiter wants `spi` sampled items per inserted one, within
// `error_buffer`, from one item on.
v1::TableConfig PacedConfig(const std::string& name, double spi, double error_buffer,
                            v1::Sampler sampler = v1::SAMPLER_UNIFORM) {
  v1::TableConfig config = Config();
  config.set_name(name);
  config.set_capacity(10000);
  config.set_sampler(sampler);
  config.mutable_rate_limiter()->set_min_size_to_sample(1);
  config.mutable_rate_limiter()->set_samples_per_insert(spi);
  config.mutable_rate_limiter()->set_error_buffer(error_buffer);
  return config;
}

// Inserts ids [first, first + n) into `table` directly, without waiting.
void InsertInto(Table& table, int64_t first, int64_t n) {
  v1::InsertRequest rows = Ids(first, n);
  rows.set_table(table.name());
  int64_t inserted = 0;
  ASSERT_TRUE(table.Insert(rows, absl::Now() + absl::Seconds(5), nullptr, &inserted, nullptr).ok());
}

// Samples `n` items from `table` directly and returns their ids.
std::vector<int64_t> SampleFrom(Table& table, int n) {
  v1::SampleRequest request;
  request.set_batch_size(n);
  v1::SampleResponse response;
  const absl::Status s = table.Sample(request, absl::Now() + absl::Seconds(5), nullptr, &response);
  EXPECT_TRUE(s.ok()) << s;
  if (!s.ok()) return {};
  const absl::Span<const int64_t> ids =
      ViewTensorProto(response.columns(0).tensor(), "id")->data<int64_t>();
  return std::vector<int64_t>(ids.begin(), ids.end());
}

TEST_F(ShardedReplayClientTest, TheRowsAShardDoesNotTakeGoToTheNextShardInOrder) {
  // each shard takes 5 rows before its limiter wants samples.
  ASSERT_TRUE(client_->CreateTable(PacedConfig("paced", 1, 4, v1::SAMPLER_FIFO)).ok());
  auto client = ClientOfBoth(absl::Seconds(5));  // its first insert starts at shard 0
  v1::InsertRequest rows = Ids(0, 8);
  rows.set_table("paced");
  int64_t stored = -1;
  auto keys = client->Insert(InsertBatch::FromProto(rows), &stored);
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(stored, 8);
  std::vector<uint64_t> want;
  for (uint64_t k = 1; k <= 5; ++k) want.push_back(ShardedReplayClient::TagKey(0, k));
  for (uint64_t k = 1; k <= 3; ++k) want.push_back(ShardedReplayClient::TagKey(1, k));
  EXPECT_EQ(*keys, want);
  // every row once, in order: ids 0-4 on shard 0, 5-7 on shard 1.
  EXPECT_THAT(SampleFrom(**shards_[0]->GetTable("paced"), 5),
              ::testing::ElementsAre(0, 1, 2, 3, 4));
  EXPECT_THAT(SampleFrom(**shards_[1]->GetTable("paced"), 3), ::testing::ElementsAre(5, 6, 7));
}

TEST_F(ShardedReplayClientTest, InsertsAndSamplesKeepFlowingAfterAShardRestartsWithItsLimiterFull) {
  // 4 samples per insert within 40: each shard's diff (4 inserted - sampled) stays in [-36, 44].
  const v1::TableConfig config = PacedConfig("paced", 4, 40);
  // shard 1 comes back from a checkpoint holding 11 items that were never sampled: its limiter
  // takes no insert until 4 of them are sampled, and it is small beside shard 0, which holds
  // 1000 items at the target ratio.
  ShardOptions restored;
  restored.checkpoint_dir = absl::StrCat(std::getenv("TEST_TMPDIR"), "/full_limiter");
  {
    prometheus::Registry registry;
    auto before = *ReplayShard::Create(restored, registry);
    ASSERT_TRUE(before->CreateTable(config).ok());
    InsertInto(**before->GetTable("paced"), 100000, 11);
    ASSERT_TRUE(before->Checkpoint().ok());
  }
  RestartShard(1, restored);
  ASSERT_TRUE(shards_[0]->CreateTable(config).ok());
  std::shared_ptr<Table> big = *shards_[0]->GetTable("paced");
  for (int i = 0; i < 100; ++i) {
    InsertInto(*big, 10 * i, 10);
    SampleFrom(*big, 40);
  }
  v1::TableInfo small = shards_[1]->Info("paced")->tables(0);
  ASSERT_EQ(small.size(), 11);
  ASSERT_FALSE(small.can_insert());

  // an actor inserts 200 rows one at a time while the learner samples 200 batches of 4: both
  // finish, each call within its deadline. Before, the actor waited on shard 1, which the
  // learner, sampling by size, hardly ever sampled.
  auto actor = ClientOfBoth(absl::Seconds(10));
  auto learner = ClientOfBoth(absl::Seconds(10));
  ASSERT_TRUE(learner->CreateTable(config).ok());
  constexpr int kRows = 200;
  constexpr int kBatches = 200;
  absl::Status insert_error, sample_error;
  std::thread inserts([&] {
    for (int i = 0; i < kRows && insert_error.ok(); ++i) {
      v1::InsertRequest row = Ids(1000 + i, 1);
      row.set_table("paced");
      insert_error = actor->Insert(InsertBatch::FromProto(row)).status();
    }
  });
  for (int b = 0; b < kBatches && sample_error.ok(); ++b) {
    sample_error = learner->Sample("paced", 4, absl::Seconds(10)).status();
  }
  inserts.join();
  EXPECT_TRUE(insert_error.ok()) << insert_error;
  EXPECT_TRUE(sample_error.ok()) << sample_error;

  // every row stored once; over the set the ratio is within the shards' buffers.
  int64_t inserted = 0, sampled = 0;
  for (int i = 0; i < 2; ++i) {
    const v1::TableInfo info = shards_[i]->Info("paced")->tables(0);
    inserted += info.inserted_total();
    sampled += info.sampled_total();
  }
  EXPECT_EQ(inserted, 1000 + 11 + kRows);
  EXPECT_EQ(sampled, 4000 + 4 * kBatches);
  const double center = 2 * 4.0 * 1;  // two shards, spi x min_size_to_sample each
  EXPECT_LE(std::abs(4.0 * inserted - sampled - center), 2 * 40.0);
}

TEST_F(ShardedReplayClientTest, SamplesComeFromTheShardsWhoseLimitersCanGiveThem) {
  // one sample per insert within 100. Shard 0 holds 100 items but its limiter gives no more
  // until inserts come; shard 1 holds 5 and can give 104.
  const v1::TableConfig config = PacedConfig("paced", 1, 100);
  ASSERT_TRUE(client_->CreateTable(config).ok());
  InsertInto(**shards_[0]->GetTable("paced"), 0, 100);
  SampleFrom(**shards_[0]->GetTable("paced"), 199);
  InsertInto(**shards_[1]->GetTable("paced"), 100, 5);
  const v1::TableInfo before = shards_[0]->Info("paced")->tables(0);
  ASSERT_FALSE(before.can_sample());

  auto learner = ClientOfBoth(absl::Seconds(5));
  ASSERT_TRUE(learner->CreateTable(config).ok());
  auto merged = learner->Sample("paced", 8, absl::Seconds(5));
  ASSERT_TRUE(merged.ok()) << merged.status();
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(ShardedReplayClient::ShardOfKey(merged->keys(i)), 1);
    EXPECT_DOUBLE_EQ(merged->probabilities(i), 1.0 / 5);  // all of the batch, 1 in 5 there
    EXPECT_DOUBLE_EQ(merged->importance_weights(i), 1.0);
  }
  EXPECT_EQ(merged->table_size(), 105);
  // shard 0 was not asked to wait for items it could not give.
  const v1::TableInfo held = shards_[0]->Info("paced")->tables(0);
  EXPECT_EQ(held.sampled_total(), 199);
  EXPECT_EQ(held.rate_limiter_sample_wait_seconds(), before.rate_limiter_sample_wait_seconds());
}

TEST_F(ShardedReplayClientTest, TableSizeIsTheTotalOverEveryShardOnEveryPoll) {
  InsertInto(**shards_[0]->GetTable("t"), 0, 90);
  InsertInto(**shards_[1]->GetTable("t"), 90, 10);
  auto learner = ClientOfBoth(absl::Seconds(5));
  ASSERT_TRUE(learner->CreateTable(Config()).ok());
  for (int poll = 0; poll < 40; ++poll) {
    // the one item comes from one shard; the size counts the other's too.
    auto sample = learner->Sample("t", 1, absl::Seconds(5));
    ASSERT_TRUE(sample.ok()) << sample.status();
    EXPECT_EQ(sample->table_size(), 100) << "poll " << poll;
  }
}

}  // namespace
}  // namespace prl::replay
