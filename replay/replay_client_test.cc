#include "replay/replay_client.h"

#include <cstdlib>

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
    options.call.timeout = absl::Seconds(5);
    client_ = *ShardedReplayClient::Create(options);
    ASSERT_TRUE(client_->CreateTable(Config()).ok());
  }

  std::vector<std::shared_ptr<prometheus::Registry>> registries_;
  std::vector<std::unique_ptr<ReplayShard>> shards_;
  std::vector<std::unique_ptr<ReplayServiceImpl>> services_;
  std::vector<std::unique_ptr<prl::testing::InProcessServer>> servers_;
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

}  // namespace
}  // namespace prl::replay
