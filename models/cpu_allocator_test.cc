#include "models/cpu_allocator.h"

#include <cstring>
#include <thread>
#include <vector>

#include "ATen/ATen.h"
#include "c10/core/CPUAllocator.h"
#include "gtest/gtest.h"

namespace prl::models {
namespace {

// One process-wide allocator: the tests run in order in one binary and only look at deltas.
class CachingCpuAllocatorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { InstallCachingCpuAllocator(size_t{64} << 20); }
};

TEST_F(CachingCpuAllocatorTest, AFreedBlockIsReusedForTheSameSize) {
  ASSERT_TRUE(CachingCpuAllocatorInstalled());
  void* first = nullptr;
  {
    at::Tensor t = at::empty({1000, 257});
    first = t.data_ptr();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(first) % 64, 0u);
  }
  const CpuAllocatorStats before = CachingCpuAllocatorStats();
  at::Tensor again = at::empty({257, 1000});  // the same bytes, another shape
  const CpuAllocatorStats after = CachingCpuAllocatorStats();
  EXPECT_EQ(again.data_ptr(), first);
  EXPECT_EQ(after.cache_hits, before.cache_hits + 1);
  EXPECT_LT(after.cached_bytes, before.cached_bytes);
}

// c10's raw_allocate (used by some LibTorch code paths) needs a raw deleter and a context equal
// to the data pointer.
TEST_F(CachingCpuAllocatorTest, RawAllocationsWork) {
  c10::Allocator* allocator = c10::GetCPUAllocator();
  const CpuAllocatorStats before = CachingCpuAllocatorStats();
  void* p = allocator->raw_allocate(1000);
  ASSERT_NE(p, nullptr);
  std::memset(p, 7, 1000);
  EXPECT_GT(CachingCpuAllocatorStats().live_bytes, before.live_bytes);
  allocator->raw_deallocate(p);
  EXPECT_EQ(CachingCpuAllocatorStats().live_bytes, before.live_bytes);
}

TEST_F(CachingCpuAllocatorTest, TensorsWorkAndLiveBytesReturnToTheirLevel) {
  const CpuAllocatorStats before = CachingCpuAllocatorStats();
  {
    at::Tensor a = at::arange(10000, at::kFloat);
    at::Tensor b = a * 2 + 1;
    EXPECT_EQ(b[9999].item<float>(), 19999.0f);
    EXPECT_GT(CachingCpuAllocatorStats().live_bytes, before.live_bytes);
    at::Tensor empty = at::empty({0});
    EXPECT_EQ(empty.numel(), 0);
  }
  EXPECT_EQ(CachingCpuAllocatorStats().live_bytes, before.live_bytes);
}

TEST_F(CachingCpuAllocatorTest, TheCacheStaysWithinItsBound) {
  {
    std::vector<at::Tensor> many;
    for (int i = 0; i < 40; ++i) many.push_back(at::empty({(4 << 20) / 4 + i * 1024}));
  }  // 40 blocks of 4+ MiB freed at once: only 64 MiB of them may stay
  EXPECT_LE(CachingCpuAllocatorStats().cached_bytes, int64_t{64} << 20);
}

TEST_F(CachingCpuAllocatorTest, TensorsFreedOnOtherThreadsAreAccountedFor) {
  const CpuAllocatorStats before = CachingCpuAllocatorStats();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([] {
      for (int i = 0; i < 200; ++i) {
        at::Tensor x = at::rand({64, 64});
        at::Tensor y = at::mm(x, x);
        ASSERT_TRUE(at::isfinite(y).all().item<bool>());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const CpuAllocatorStats after = CachingCpuAllocatorStats();
  EXPECT_EQ(after.live_bytes, before.live_bytes);
  EXPECT_GT(after.cache_hits, before.cache_hits);
}

}  // namespace
}  // namespace prl::models
