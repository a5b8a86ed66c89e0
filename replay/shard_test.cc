#include "replay/shard.h"

#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl::replay {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

v1::TableConfig Config(const std::string& name, int64_t capacity = 1000) {
  v1::TableConfig config;
  config.set_name(name);
  config.set_capacity(capacity);
  v1::ColumnSpec* id = config.add_signature();
  id->set_name("id");
  id->set_dtype(v1::Tensor::DTYPE_INT64);
  v1::ColumnSpec* obs = config.add_signature();
  obs->set_name("obs");
  obs->set_dtype(v1::Tensor::DTYPE_FLOAT32);
  obs->add_shape(2);
  return config;
}

v1::InsertRequest Rows(const std::string& table, int64_t first, int64_t n) {
  v1::InsertRequest request;
  request.set_table(table);
  auto ids = *HostTensor::Zeros(DType::kInt64, {n});
  std::vector<float> obs;
  for (int64_t i = 0; i < n; ++i) {
    ids.mutable_data<int64_t>()[i] = first + i;
    obs.insert(obs.end(), {static_cast<float>(first + i), -static_cast<float>(first + i)});
  }
  v1::NamedTensor* c = request.add_columns();
  c->set_name("id");
  TensorToProto(ids.view(), c->mutable_tensor());
  c = request.add_columns();
  c->set_name("obs");
  TensorToProto(HostTensor::FromFloats({n, 2}, obs).view(), c->mutable_tensor());
  return request;
}

absl::Status Insert(ReplayShard& shard, const v1::InsertRequest& request) {
  auto table = shard.GetTable(request.table());
  if (!table.ok()) return table.status();
  int64_t inserted;
  return (*table)->Insert(request, absl::Now() + absl::Seconds(10), nullptr, &inserted, nullptr);
}

std::string TempDir(const std::string& name) {
  const std::string dir = absl::StrCat(std::getenv("TEST_TMPDIR"), "/", name);
  EXPECT_EQ(std::system(("rm -rf " + dir + " && mkdir -p " + dir).c_str()), 0);
  return dir;
}

// A count that other threads wait on.
class Counter {
 public:
  void Add(int64_t n) {
    absl::MutexLock lock(&mu_);
    value_ += n;
  }
  // Waits until the count reaches `n`; false after `timeout`.
  bool AwaitAtLeast(int64_t n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    const auto reached = [this, n]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return value_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
  }

 private:
  absl::Mutex mu_;
  int64_t value_ ABSL_GUARDED_BY(mu_) = 0;
};

// Counts the files renamed onto one name in a directory (how a checkpoint is put in place),
// from the moment it is built, through inotify: a wait wakes when the kernel reports a rename.
class RenameWatch {
 public:
  RenameWatch(const std::string& dir, std::string name)
      : name_(std::move(name)), fd_(inotify_init1(IN_CLOEXEC)) {
    EXPECT_GE(fd_, 0) << std::strerror(errno);
    EXPECT_GE(inotify_add_watch(fd_, dir.c_str(), IN_MOVED_TO), 0) << std::strerror(errno);
  }
  ~RenameWatch() {
    if (fd_ >= 0) close(fd_);
  }
  RenameWatch(const RenameWatch&) = delete;
  RenameWatch& operator=(const RenameWatch&) = delete;

  // Waits until `n` renames onto the name were seen; false after `timeout`.
  bool AwaitRenames(int n, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (renames_ < n) {
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) return false;
      pollfd events = {fd_, POLLIN, 0};
      const int ready = poll(&events, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
      if (ready == 0) return false;
      if (ready < 0) {
        if (errno == EINTR) continue;
        ADD_FAILURE() << "poll: " << std::strerror(errno);
        return false;
      }
      alignas(inotify_event) char buffer[4096];
      const ssize_t bytes = read(fd_, buffer, sizeof(buffer));
      if (bytes <= 0) {
        ADD_FAILURE() << "read: " << std::strerror(errno);
        return false;
      }
      for (ssize_t at = 0; at < bytes;) {
        const auto* event = reinterpret_cast<const inotify_event*>(buffer + at);
        if (event->len > 0 && name_ == event->name) ++renames_;
        at += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
      }
    }
    return true;
  }

 private:
  const std::string name_;
  const int fd_;
  int renames_ = 0;
};

std::unique_ptr<ReplayShard> MakeShard(const ShardOptions& options,
                                       prometheus::Registry& registry) {
  auto shard = ReplayShard::Create(options, registry);
  EXPECT_TRUE(shard.ok()) << shard.status();
  return shard.ok() ? *std::move(shard) : nullptr;
}

TEST(ReplayShardTest, CreateIsIdempotentAndConflictsAreRefused) {
  prometheus::Registry registry;
  auto shard = MakeShard({}, registry);
  auto first = shard->CreateTable(Config("a"));
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(first->created());
  EXPECT_EQ(first->config().sampler(), v1::SAMPLER_UNIFORM);  // defaults filled
  auto again = shard->CreateTable(Config("a"));
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->created());
  auto conflict = shard->CreateTable(Config("a", 5));
  EXPECT_EQ(conflict.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(shard->CreateTable(Config("Bad")).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ReplayShardTest, TableLimitAndNotFound) {
  prometheus::Registry registry;
  ShardOptions options;
  options.max_tables = 2;
  auto shard = MakeShard(options, registry);
  ASSERT_TRUE(shard->CreateTable(Config("a")).ok());
  ASSERT_TRUE(shard->CreateTable(Config("b")).ok());
  EXPECT_EQ(shard->CreateTable(Config("c")).status().code(), absl::StatusCode::kResourceExhausted);
  auto missing = shard->GetTable("zzz");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("tables: [a, b]"));
  auto info = shard->Info("");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->tables_size(), 2);
}

TEST(ReplayShardTest, DeleteReleasesBlockedSamplers) {
  prometheus::Registry registry;
  auto shard = MakeShard({}, registry);
  ASSERT_TRUE(shard->CreateTable(Config("a")).ok());
  auto table = *shard->GetTable("a");
  absl::Notification done;
  std::thread sampler([&] {
    v1::SampleRequest request;
    request.set_batch_size(1);
    v1::SampleResponse response;
    EXPECT_EQ(table->Sample(request, absl::Now() + absl::Seconds(30), nullptr, &response).code(),
              absl::StatusCode::kCancelled);
    done.Notify();
  });
  EXPECT_EQ(*shard->DeleteTable("a"), 0);
  EXPECT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(5)));
  sampler.join();
  EXPECT_EQ(shard->DeleteTable("a").status().code(), absl::StatusCode::kNotFound);
}

TEST(ReplayShardTest, CheckpointNeedsADirectory) {
  prometheus::Registry registry;
  auto shard = MakeShard({}, registry);
  EXPECT_EQ(shard->Checkpoint().status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(ReplayShardTest, CheckpointUnderTrafficRestoresEveryTable) {
  const std::string dir = TempDir("ckpt_traffic");
  ShardOptions options;
  options.checkpoint_dir = dir;
  prometheus::Registry registry;
  auto shard = MakeShard(options, registry);
  ASSERT_TRUE(shard->CreateTable(Config("a", 500)).ok());
  v1::TableConfig prioritized = Config("b");
  prioritized.set_sampler(v1::SAMPLER_PRIORITIZED);
  ASSERT_TRUE(shard->CreateTable(prioritized).ok());
  ASSERT_TRUE(Insert(*shard, Rows("b", 0, 10)).ok());

  // writers and samplers keep going while checkpoints are taken.
  std::atomic<bool> stop{false};
  Counter written;
  std::thread writer([&] {
    for (int64_t i = 0; !stop; i += 10) {
      ASSERT_TRUE(Insert(*shard, Rows("a", i, 10)).ok());
      written.Add(10);
    }
  });
  std::thread sampler([&] {
    auto table = *shard->GetTable("a");
    while (!stop) {
      v1::SampleRequest request;
      request.set_batch_size(8);
      v1::SampleResponse response;
      ASSERT_TRUE(table->Sample(request, absl::Now() + absl::Seconds(10), nullptr, &response).ok());
    }
  });
  absl::StatusOr<v1::CheckpointResponse> checkpoint;
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(written.AwaitAtLeast(200 * (i + 1), absl::Seconds(30))) << "checkpoint " << i;
    checkpoint = shard->Checkpoint();
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  }
  stop = true;
  writer.join();
  sampler.join();
  EXPECT_THAT(checkpoint->tables(), ElementsAre("a", "b"));
  EXPECT_GT(checkpoint->bytes(), 0);
  shard.reset();  // the directory is one shard's at a time

  prometheus::Registry registry2;
  auto restored = MakeShard(options, registry2);
  ASSERT_NE(restored, nullptr);
  auto info = restored->Info("");
  ASSERT_TRUE(info.ok());
  ASSERT_EQ(info->tables_size(), 2);
  const v1::TableInfo& a = info->tables(0);
  EXPECT_EQ(a.size(), 500);  // full: the writer wrote more than capacity before the last one
  EXPECT_GE(a.inserted_total(), 1000);
  EXPECT_EQ(info->tables(1).size(), 10);
  EXPECT_EQ(info->tables(1).config().sampler(), v1::SAMPLER_PRIORITIZED);
  // restored rows are intact: obs = (id, -id).
  auto table = *restored->GetTable("a");
  v1::SampleRequest request;
  request.set_batch_size(64);
  v1::SampleResponse response;
  ASSERT_TRUE(table->Sample(request, absl::Now() + absl::Seconds(5), nullptr, &response).ok());
  auto ids = *ViewTensorProto(response.columns(0).tensor(), "id");
  auto obs = *ViewTensorProto(response.columns(1).tensor(), "obs");
  for (int r = 0; r < 64; ++r) {
    EXPECT_EQ(obs.data<float>()[2 * r], static_cast<float>(ids.data<int64_t>()[r]));
    EXPECT_EQ(obs.data<float>()[2 * r + 1], -static_cast<float>(ids.data<int64_t>()[r]));
  }
  // and the restored shard keeps accepting inserts with fresh keys.
  ASSERT_TRUE(Insert(*restored, Rows("b", 100, 1)).ok());
  EXPECT_EQ((*restored->GetTable("b"))->size(), 11);
}

TEST(ReplayShardTest, CorruptCheckpointIsRefusedAndKept) {
  const std::string dir = TempDir("ckpt_corrupt");
  ShardOptions options;
  options.checkpoint_dir = dir;
  {
    prometheus::Registry registry;
    auto shard = MakeShard(options, registry);
    ASSERT_TRUE(shard->CreateTable(Config("a")).ok());
    ASSERT_TRUE(Insert(*shard, Rows("a", 0, 50)).ok());
    ASSERT_TRUE(shard->Checkpoint().ok());
  }
  const std::string path = dir + "/replay.ckpt";
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    bytes = s.str();
  }
  bytes[bytes.size() / 2] ^= 0x10;
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << bytes;
  }
  prometheus::Registry registry;
  auto shard = ReplayShard::Create(options, registry);
  ASSERT_FALSE(shard.ok());
  EXPECT_EQ(shard.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(shard.status().message(), HasSubstr(path));
  std::ifstream still_there(path, std::ios::binary);
  EXPECT_TRUE(still_there.good());
}

TEST(ReplayShardTest, CheckpointWithMoreTablesThanTheLimitIsRefusedAndKept) {
  const std::string dir = TempDir("ckpt_max_tables");
  ShardOptions options;
  options.checkpoint_dir = dir;
  {
    prometheus::Registry registry;
    auto shard = MakeShard(options, registry);
    for (const char* name : {"a", "b", "c"}) ASSERT_TRUE(shard->CreateTable(Config(name)).ok());
    ASSERT_TRUE(shard->Checkpoint().ok());
  }
  options.max_tables = 2;
  prometheus::Registry registry;
  auto shard = ReplayShard::Create(options, registry);
  ASSERT_FALSE(shard.ok());
  EXPECT_EQ(shard.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(shard.status().message(), HasSubstr("3 tables"));
  EXPECT_THAT(shard.status().message(), HasSubstr("--replay_max_tables=2"));
  // raising the limit again restores all three.
  options.max_tables = 3;
  prometheus::Registry registry2;
  auto restored = MakeShard(options, registry2);
  ASSERT_NE(restored, nullptr);
  EXPECT_EQ(restored->Info("")->tables_size(), 3);
}

TEST(ReplayShardTest, PeriodicCheckpointsHappen) {
  const std::string dir = TempDir("ckpt_periodic");
  ShardOptions options;
  options.checkpoint_dir = dir;
  options.checkpoint_period = absl::Milliseconds(20);
  prometheus::Registry registry;
  auto shard = MakeShard(options, registry);
  ASSERT_TRUE(shard->CreateTable(Config("a")).ok());
  // the first rename seen from here may come from a checkpoint taken before the table existed;
  // the second comes from one that began after the first had returned.
  RenameWatch watch(dir, "replay.ckpt");
  ASSERT_TRUE(watch.AwaitRenames(2, absl::Seconds(30)));
  EXPECT_EQ(shard->Info("")->last_checkpoint_path(), dir + "/replay.ckpt");
  shard.reset();
  // the checkpoint holds the table.
  ShardOptions restore;
  restore.checkpoint_dir = dir;
  prometheus::Registry registry2;
  auto restored = MakeShard(restore, registry2);
  ASSERT_NE(restored, nullptr);
  EXPECT_TRUE(restored->GetTable("a").ok());
}

TEST(ReplayShardTest, TheCheckpointDirectoryIsOneShardsAndCleanedOfUnfinishedCheckpoints) {
  const std::string dir = TempDir("ckpt_owned");
  // what a shard killed while writing a checkpoint leaves: its temporary file
  const std::string stale = dir + "/replay.ckpt.tmp.1.0.0123456789abcdef";
  std::ofstream(stale) << "half a checkpoint";
  ShardOptions options;
  options.checkpoint_dir = dir;
  prometheus::Registry registry;
  auto shard = MakeShard(options, registry);
  ASSERT_NE(shard, nullptr);
  EXPECT_FALSE(std::ifstream(stale).good());
  // a second shard on the same directory is refused while the first lives, naming it
  prometheus::Registry registry2;
  auto second = ReplayShard::Create(options, registry2);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("in use by prl_replay"));
  shard.reset();
  prometheus::Registry registry3;
  EXPECT_NE(MakeShard(options, registry3), nullptr);
}

// A table deleted after the last checkpoint stays deleted when the shard is killed before the
// next one; a later checkpoint clears the tombstone, so a table of that name made afterwards is
// restored.
TEST(ReplayShardTest, ADeletedTableIsNotRestoredFromAnOlderCheckpoint) {
  const std::string dir = TempDir("ckpt_deleted");
  ShardOptions options;
  options.checkpoint_dir = dir;
  auto restart = [&](std::unique_ptr<ReplayShard>& shard, prometheus::Registry& registry) {
    shard.reset();  // as after a SIGKILL: no final checkpoint
    shard = MakeShard(options, registry);
    ASSERT_NE(shard, nullptr);
  };
  prometheus::Registry r1, r2, r3, r4;
  auto shard = MakeShard(options, r1);
  ASSERT_TRUE(shard->CreateTable(Config("a")).ok());
  ASSERT_TRUE(shard->CreateTable(Config("b")).ok());
  ASSERT_TRUE(Insert(*shard, Rows("a", 0, 5)).ok());
  ASSERT_TRUE(shard->Checkpoint().ok());
  ASSERT_TRUE(shard->DeleteTable("a").ok());
  restart(shard, r2);
  EXPECT_FALSE(shard->GetTable("a").ok()) << "the deleted table came back";
  EXPECT_TRUE(shard->GetTable("b").ok());
  // still deleted after a second restart without a checkpoint in between
  restart(shard, r3);
  EXPECT_FALSE(shard->GetTable("a").ok());
  // a new table of that name, checkpointed, is restored
  ASSERT_TRUE(shard->CreateTable(Config("a")).ok());
  ASSERT_TRUE(Insert(*shard, Rows("a", 100, 3)).ok());
  ASSERT_TRUE(shard->Checkpoint().ok());
  EXPECT_FALSE(std::ifstream(dir + "/replay.deleted").good()) << "the tombstone outlived it";
  restart(shard, r4);
  auto a = shard->GetTable("a");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ((*a)->size(), 3);
}

}  // namespace
}  // namespace prl::replay
