// The replay feed on a GPU: batches staged through pinned memory on the stager's copy stream
// (learner/device_staging.h) hold what the responses held, extra tables' batches included, and
// stay intact while the consumer's stream is still busy with earlier work when the feed reuses
// device memory for later batches. Skipped where this process sees no CUDA device (every CPU
// build); scripts/cuda_build.sh builds it, and it runs on a GPU machine from the bundle
// (bench/learner_gpu.sh).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/tensor.h"
#include "gtest/gtest.h"
#include "learner/device_staging.h"
#include "learner/input_block.h"
#include "learner/replay_feed.h"

#ifdef PRL_WITH_CUDA
#include "ATen/cuda/Sleep.h"
#include "c10/cuda/CUDAGuard.h"
#include "c10/cuda/CUDAStream.h"
#endif

namespace prl::learner {
namespace {

bool HasGpu() { return at::hasCUDA() && at::getNumGPUs() > 0; }

v1::NamedTensor FloatColumn(const std::string& name, std::vector<int64_t> shape, float value) {
  v1::NamedTensor column;
  column.set_name(name);
  v1::Tensor* t = column.mutable_tensor();
  t->set_dtype(v1::Tensor::DTYPE_FLOAT32);
  int64_t n = 1;
  for (int64_t d : shape) {
    t->add_shape(d);
    n *= d;
  }
  std::vector<float> values(n);
  for (int64_t i = 0; i < n; ++i) values[i] = value;
  t->set_data(std::string(reinterpret_cast<const char*>(values.data()), values.size() * 4));
  return column;
}

// The i-th response (from 0): `observation` [rows, width] and `reward` [rows] filled with i (the
// extra table's with -i), weights i / rows.
v1::SampleResponse Response(int i, int rows, int width, bool extra) {
  const float v = extra ? -static_cast<float>(i) : static_cast<float>(i);
  v1::SampleResponse r;
  *r.add_columns() = FloatColumn("observation", {rows, width}, v);
  *r.add_columns() = FloatColumn("reward", {rows}, v);
  for (int k = 0; k < rows; ++k) {
    r.add_keys(static_cast<uint64_t>(i) * rows + k);
    r.add_importance_weights(static_cast<float>(i) / rows);
  }
  r.set_table_size(1000 + i);
  return r;
}

// Numbers its responses per table, so that a batch's contents say which response it was.
class CountingSource final : public ReplaySource {
 public:
  CountingSource(int rows, int width) : rows_(rows), width_(width) {}
  absl::Status CreateTable(const v1::TableConfig&) override { return absl::OkStatus(); }
  absl::StatusOr<v1::SampleResponse> Sample(const std::string& table, int, absl::Duration,
                                            double) override {
    absl::MutexLock lock(&mu_);
    const bool extra = table != "exp";
    return Response((extra ? extra_ : main_)++, rows_, width_, extra);
  }
  absl::Status UpdatePriorities(const std::string&, const std::vector<uint64_t>&,
                                const std::vector<double>&) override {
    return absl::OkStatus();
  }
  absl::Status DeleteTable(const std::string&) override { return absl::OkStatus(); }

 private:
  const int rows_;
  const int width_;
  absl::Mutex mu_;
  int main_ ABSL_GUARDED_BY(mu_) = 0;
  int extra_ ABSL_GUARDED_BY(mu_) = 0;
};

ReplayFeedOptions Options(bool pinned, bool with_extra) {
  ReplayFeedOptions options;
  v1::TableConfig main, extra;
  main.set_name("exp");
  extra.set_name("exp-sil");
  options.tables = {main, extra};
  options.device = "cuda:0";
  options.pinned_staging = pinned;
  options.prioritized = true;
  if (with_extra) options.extra.push_back({"exp-sil", 8, true, 0.5});
  options.prefetch = 4;
  return options;
}

void ExpectBatchIs(const Batch& b, int i, int rows, int width, bool extra) {
  const float v = extra ? -static_cast<float>(i) : static_cast<float>(i);
  ASSERT_TRUE(b.columns.at("observation").is_cuda());
  ASSERT_TRUE(b.weight.is_cuda());
  EXPECT_EQ(b.columns.at("observation").sizes(), (std::vector<int64_t>{rows, width}));
  EXPECT_TRUE(at::equal(b.columns.at("observation").cpu(), at::full({rows, width}, v)));
  EXPECT_TRUE(at::equal(b.columns.at("reward").cpu(), at::full({rows}, v)));
  EXPECT_TRUE(at::equal(b.weight.cpu(), at::full({rows}, static_cast<float>(i) / rows)));
  ASSERT_EQ(b.keys.size(), static_cast<size_t>(rows));
  EXPECT_EQ(b.keys.front(), static_cast<uint64_t>(i) * rows);
  EXPECT_EQ(b.source_size, 1000 + i);
}

// A fence orders the consumer's stream after the copies: a read queued right after Adopt sees
// the whole of a large column (256 MiB, some milliseconds of transfer), not what the device
// memory held before.
TEST(DeviceStagerTest, AReadQueuedAfterAdoptSeesTheWholeCopy) {
  if (!HasGpu()) GTEST_SKIP() << "no CUDA device";
  std::unique_ptr<DeviceStager> stager = DeviceStager::Create(c10::Device("cuda:0"));
  ASSERT_NE(stager, nullptr);
  const std::vector<int64_t> shape = {64, 1 << 20};
  const std::vector<float> values(64 << 20, 7.0f);
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(round);
    const at::Tensor device =
        stager->Stage(TensorView{DType::kFloat32, shape,
                                 absl::string_view(reinterpret_cast<const char*>(values.data()),
                                                   values.size() * sizeof(float))});
    stager->Fence()->Adopt({device});
    const at::Tensor seen = at::stack({device.min(), device.max()}).cpu();
    EXPECT_EQ(seen[0].item<float>(), 7.0f);
    EXPECT_EQ(seen[1].item<float>(), 7.0f);
  }
  EXPECT_EQ(DeviceStager::Create(c10::Device("cpu")), nullptr);
}

// A batch's columns staged together: one block on the device, each column at a 256-byte
// boundary whatever its type and size, each holding its own bytes.
TEST(DeviceStagerTest, StageAllPutsTheColumnsInOneBlock) {
  if (!HasGpu()) GTEST_SKIP() << "no CUDA device";
  std::unique_ptr<DeviceStager> stager = DeviceStager::Create(c10::Device("cuda:0"));
  ASSERT_NE(stager, nullptr);
  const at::Tensor obs = at::randn({37, 17});
  const at::Tensor steps = at::arange(37, at::kLong);
  const at::Tensor image = at::randint(0, 255, {37, 3, 5}, at::kByte);  // 555 bytes
  const at::Tensor reward = at::randn({37});
  const at::Tensor empty = at::empty({0, 4});
  const std::vector<at::Tensor> host = {obs, steps, image, reward, empty};
  std::vector<std::vector<int64_t>> shapes;
  std::vector<TensorView> views;
  const DType dtypes[] = {DType::kFloat32, DType::kInt64, DType::kUInt8, DType::kFloat32,
                          DType::kFloat32};
  for (size_t i = 0; i < host.size(); ++i) {
    shapes.emplace_back(host[i].sizes().begin(), host[i].sizes().end());
  }
  for (size_t i = 0; i < host.size(); ++i) {
    views.push_back(TensorView{
        dtypes[i], shapes[i],
        absl::string_view(static_cast<const char*>(host[i].data_ptr()), host[i].nbytes())});
  }
  const std::vector<at::Tensor> device = stager->StageAll(views);
  ASSERT_EQ(device.size(), host.size());
  stager->Fence()->Adopt(device);
  std::vector<const at::Tensor*> all;
  for (const at::Tensor& t : device) all.push_back(&t);
  const std::optional<BlockLayout> layout = LayoutInOneBlock(all);
  ASSERT_TRUE(layout.has_value());
  for (size_t i = 0; i < device.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_TRUE(device[i].is_cuda());
    EXPECT_EQ(layout->offsets[i] % 256, 0);
    EXPECT_EQ(device[i].scalar_type(), host[i].scalar_type());
    EXPECT_TRUE(at::equal(device[i].cpu(), host[i]));
  }
}

class ReplayFeedCudaTest : public ::testing::TestWithParam<bool> {};

TEST_P(ReplayFeedCudaTest, BatchesOnTheDeviceHoldTheResponses) {
  if (!HasGpu()) GTEST_SKIP() << "no CUDA device";
  constexpr int kRows = 64, kWidth = 17;
  ReplayFeed feed(std::make_unique<CountingSource>(kRows, kWidth),
                  Options(/*pinned=*/GetParam(), /*with_extra=*/true));
  ASSERT_TRUE(feed.Start().ok());
  for (int i = 0; i < 12; ++i) {
    absl::StatusOr<std::optional<Batch>> batch = feed.Next(absl::Minutes(1));
    ASSERT_TRUE(batch.ok() && batch->has_value()) << batch.status();
    SCOPED_TRACE(i);
    ExpectBatchIs(**batch, i, kRows, kWidth, /*extra=*/false);
    // staged: the columns and weights in one block, which the learner copies in one transfer
    std::vector<const at::Tensor*> tensors = {&(*batch)->weight};
    for (const auto& [name, column] : (*batch)->columns) tensors.push_back(&column);
    EXPECT_EQ(LayoutInOneBlock(tensors).has_value(), GetParam());
    ASSERT_EQ((*batch)->extra.size(), 1u);
    ExpectBatchIs((*batch)->extra[0], i, kRows, kWidth, /*extra=*/true);
  }
  feed.Stop();
}

// The consumer's stream lags far behind the copies (two large products queued before it reads
// each batch) while the feed stages further batches into device memory that earlier batches
// released on the host side: each batch must still read as its own response. The consumer
// reads on the default stream, as the learner's loop does, or on a side stream of its own.
void ExpectBatchesIntactWhileTheConsumerLags(bool pinned, bool side_stream) {
#ifdef PRL_WITH_CUDA
  constexpr int kRows = 2048, kWidth = 512, kBatches = 24;
  ReplayFeed feed(std::make_unique<CountingSource>(kRows, kWidth),
                  Options(pinned, /*with_extra=*/false));
  std::optional<c10::cuda::CUDAStreamGuard> guard;
  if (side_stream) guard.emplace(c10::cuda::getStreamFromPool(false, 0));
  const at::Tensor work = at::randn({4096, 4096}, at::TensorOptions().device(at::kCUDA, 0));
  ASSERT_TRUE(feed.Start().ok());
  // and about half a second of waiting first, however fast the GPU, so that every read below is
  // queued long before it runs
  at::cuda::sleep(int64_t{1} << 30);
  std::vector<at::Tensor> seen;  // per batch: min and max of its observation, on the device
  for (int i = 0; i < kBatches; ++i) {
    absl::StatusOr<std::optional<Batch>> batch = feed.Next(absl::Minutes(1));
    ASSERT_TRUE(batch.ok() && batch->has_value()) << batch.status();
    const at::Tensor busy = at::mm(at::mm(work, work), work);  // queued, not waited for
    const at::Tensor& obs = (*batch)->columns.at("observation");
    seen.push_back(at::stack({obs.min(), obs.max()}) + busy[0][0] * 0);
  }  // each batch is released on the host right after its reads are queued
  feed.Stop();
  for (int i = 0; i < kBatches; ++i) {
    SCOPED_TRACE(i);
    const at::Tensor host = seen[i].cpu();
    EXPECT_EQ(host[0].item<float>(), static_cast<float>(i));
    EXPECT_EQ(host[1].item<float>(), static_cast<float>(i));
  }
#else
  (void)pinned;
  (void)side_stream;
#endif
}

TEST(ReplayFeedCudaLagTest, PinnedBatchesWithTheDefaultStreamLagging) {
  if (!HasGpu()) GTEST_SKIP() << "no CUDA device";
  ExpectBatchesIntactWhileTheConsumerLags(/*pinned=*/true, /*side_stream=*/false);
}

TEST(ReplayFeedCudaLagTest, PinnedBatchesWithASideStreamLagging) {
  if (!HasGpu()) GTEST_SKIP() << "no CUDA device";
  ExpectBatchesIntactWhileTheConsumerLags(/*pinned=*/true, /*side_stream=*/true);
}

// The plain copies are synchronous on the default stream, so only a default-stream consumer is
// ordered after them (the learner's case).
TEST(ReplayFeedCudaLagTest, PlainBatchesWithTheDefaultStreamLagging) {
  if (!HasGpu()) GTEST_SKIP() << "no CUDA device";
  ExpectBatchesIntactWhileTheConsumerLags(/*pinned=*/false, /*side_stream=*/false);
}

INSTANTIATE_TEST_SUITE_P(Staging, ReplayFeedCudaTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Pinned" : "Plain";
                         });

}  // namespace
}  // namespace prl::learner
