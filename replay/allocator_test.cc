#include "replay/allocator.h"

#include <malloc.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/barrier.h"
#include "gtest/gtest.h"

namespace prl::replay {
namespace {

TEST(AllocatorTest, LargeFreedBlocksStayInTheHeap) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer replaces glibc's allocator";
#endif
  ASSERT_TRUE(KeepFreedBuffersForReuse().ok());
  // a 4 MiB block, the size of gRPC's largest socket reads, comes from the heap (not a fresh
  // mapping) and stays there once freed.
  constexpr size_t kBlock = 4 << 20;
  const size_t mapped = mallinfo2().hblkhd;
  void* volatile block = std::malloc(kBlock);  // volatile: the compiler may not elide it
  ASSERT_NE(block, nullptr);
  std::memset(block, 1, kBlock);
  EXPECT_EQ(mallinfo2().hblkhd, mapped) << "the block was mapped";
  std::free(block);
  EXPECT_GE(mallinfo2().fordblks, kBlock) << "the freed block went back to the kernel";
}

// Counts the arenas malloc_info reports.
int Arenas() {
  char* text = nullptr;
  size_t size = 0;
  FILE* out = open_memstream(&text, &size);
  malloc_info(0, out);
  std::fclose(out);
  const std::string info(text, size);
  std::free(text);
  int arenas = 0;
  for (size_t at = info.find("<heap nr="); at != std::string::npos;
       at = info.find("<heap nr=", at + 1)) {
    ++arenas;
  }
  return arenas;
}

TEST(AllocatorTest, ThreadsShareOneArenaPerCore) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer replaces glibc's allocator";
#endif
  ASSERT_TRUE(KeepFreedBuffersForReuse().ok());
  const int limit = std::max(2, static_cast<int>(std::thread::hardware_concurrency()));
  // more threads than glibc's default would give arenas to (8 per core), each allocating while
  // all the others hold a block.
  const int threads = 8 * limit + 4;
  absl::Barrier* holding = new absl::Barrier(threads);
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([holding] {
      void* volatile block = std::malloc(64 << 10);
      std::memset(block, 1, 64 << 10);
      if (holding->Block()) delete holding;
      std::free(block);
    });
  }
  for (std::thread& t : pool) t.join();
  EXPECT_LE(Arenas(), limit);
  EXPECT_GE(Arenas(), 1);
}

}  // namespace
}  // namespace prl::replay
