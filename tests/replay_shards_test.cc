// Two real prl_replay processes behind one ShardedReplayClient: one shard is SIGKILLed and the
// client keeps inserting and sampling from the other; the shard restarts on its port from its
// checkpoint and the client picks it up again.
#include <signal.h>
#include <sys/wait.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/tensor.h"
#include "common/testing/subprocess.h"
#include "gtest/gtest.h"
#include "replay/replay_client.h"

namespace prl {
namespace {

using ::prl::replay::ShardedReplayClient;
using ::prl::testing::Runfile;
using ::prl::testing::Subprocess;

v1::TableConfig Config() {
  v1::TableConfig config;
  config.set_name("transitions");
  config.set_capacity(100000);
  v1::ColumnSpec* obs = config.add_signature();
  obs->set_name("obs");
  obs->set_dtype(v1::Tensor::DTYPE_FLOAT32);
  obs->add_shape(17);
  return config;
}

v1::InsertRequest Batch(int rows) {
  v1::InsertRequest request;
  request.set_table("transitions");
  request.set_return_keys(true);
  v1::NamedTensor* obs = request.add_columns();
  obs->set_name("obs");
  TensorToProto(HostTensor::FromFloats({rows, 17}, std::vector<float>(rows * 17, 0.5f)).view(),
                obs->mutable_tensor());
  return request;
}

struct Shard {
  std::unique_ptr<Subprocess> process;
  std::string address;
};

Shard StartShard(const std::string& dir, const std::string& port) {
  Shard shard;
  auto process = Subprocess::Start({Runfile("replay/prl_replay"), "--port=" + port,
                                    "--metrics_port=-1", "--replay_checkpoint_dir=" + dir,
                                    "--replay_checkpoint_period=0s", "--drain_timeout=1s"});
  EXPECT_TRUE(process.ok());
  shard.process = *std::move(process);
  auto line = shard.process->WaitForLine("PRL_READY", absl::Seconds(60));
  EXPECT_TRUE(line.ok()) << line.status();
  for (absl::string_view field : absl::StrSplit(*line, ' ')) {
    if (absl::ConsumePrefix(&field, "grpc=")) shard.address = std::string(field);
  }
  return shard;
}

TEST(ReplayShardsTest, ClientSurvivesAKilledShardAndPicksItUpAgain) {
  const std::string tmp = std::getenv("TEST_TMPDIR");
  Shard a = StartShard(tmp + "/shard_a", "0");
  Shard b = StartShard(tmp + "/shard_b", "0");

  replay::ReplayClientOptions options;
  options.addresses = {a.address, b.address};
  options.call.timeout = absl::Seconds(5);
  options.initial_backoff = absl::Milliseconds(50);
  options.max_backoff = absl::Milliseconds(200);
  auto client = *ShardedReplayClient::Create(options);
  ASSERT_TRUE(client->CreateTable(Config()).ok());
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(client->Insert(Batch(10)).ok());
  ASSERT_TRUE(client->Sample("transitions", 32, absl::Seconds(1)).ok());

  // checkpoint shard b (so it restores its table), then kill it outright.
  {
    auto channel = *CreateChannel({b.address});
    auto stub = v1::ReplayService::NewStub(channel);
    grpc::ClientContext context;
    PrepareContext({}, &context);
    v1::CheckpointResponse checkpoint;
    ASSERT_TRUE(stub->Checkpoint(&context, v1::CheckpointRequest(), &checkpoint).ok());
  }
  const std::string b_port = b.address.substr(b.address.rfind(':') + 1);
  b.process->Signal(SIGKILL);
  ASSERT_TRUE(b.process->Wait(absl::Seconds(10)).ok());

  // everything keeps working on shard a alone.
  for (int i = 0; i < 10; ++i) {
    auto keys = client->Insert(Batch(10));
    ASSERT_TRUE(keys.ok()) << keys.status();
  }
  for (int i = 0; i < 5; ++i) {
    auto sampled = client->Sample("transitions", 32, absl::Seconds(1));
    ASSERT_TRUE(sampled.ok()) << sampled.status();
    EXPECT_EQ(sampled->keys_size(), 32);
    for (uint64_t key : sampled->keys()) EXPECT_EQ(ShardedReplayClient::ShardOfKey(key), 0);
  }
  EXPECT_EQ(client->healthy_shards(), 1);

  // restart b on its port: the client probes it after its backoff and uses it again.
  Shard b2 = StartShard(tmp + "/shard_b", b_port);
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  bool b_used = false;
  while (!b_used && absl::Now() < deadline) {
    auto keys = client->Insert(Batch(1));
    ASSERT_TRUE(keys.ok()) << keys.status();
    ASSERT_EQ(keys->size(), 1u);
    b_used = ShardedReplayClient::ShardOfKey(keys->front()) == 1;
  }
  EXPECT_TRUE(b_used) << "the client never went back to the restarted shard";
  EXPECT_EQ(client->healthy_shards(), 2);
  auto sampled = client->Sample("transitions", 64, absl::Seconds(1));
  ASSERT_TRUE(sampled.ok()) << sampled.status();

  for (Subprocess* p : {a.process.get(), b2.process.get()}) {
    p->Signal(SIGTERM);
    auto status = p->Wait(absl::Seconds(10));
    ASSERT_TRUE(status.ok());
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
  }
}

}  // namespace
}  // namespace prl
