#include "replay/allocator.h"

#include <malloc.h>

#include <cstdlib>
#include <cstring>

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

}  // namespace
}  // namespace prl::replay
