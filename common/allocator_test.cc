#include "common/allocator.h"

#include <malloc.h>

#include <cstdlib>
#include <cstring>

#include "gtest/gtest.h"

namespace prl {
namespace {

// Touches every page so that the block is really backed.
void* Touched(size_t bytes) {
  void* p = std::malloc(bytes);
  std::memset(p, 1, bytes);
  return p;
}

TEST(RetainFreedMemoryTest, EnvironmentSettingsWin) {
  ASSERT_EQ(setenv("MALLOC_TRIM_THRESHOLD_", "1000000", 1), 0);
  EXPECT_FALSE(RetainFreedMemory());
  unsetenv("MALLOC_TRIM_THRESHOLD_");
}

TEST(RetainFreedMemoryTest, MiBBlocksComeFromTheHeapAndStayAfterFree) {
  unsetenv("GLIBC_TUNABLES");
  unsetenv("MALLOC_MMAP_THRESHOLD_");
  unsetenv("MALLOC_TRIM_THRESHOLD_");
  // glibc's default: a fresh 8 MiB block is its own mmap
  const size_t kBlock = 8 << 20;
  const size_t mmapped_before = mallinfo2().hblks;
  void* first = Touched(kBlock);
  EXPECT_EQ(mallinfo2().hblks, mmapped_before + 1);
  std::free(first);

  ASSERT_TRUE(RetainFreedMemory());
  void* second = Touched(kBlock);
  EXPECT_EQ(mallinfo2().hblks, mmapped_before);  // from the heap
  std::free(second);
  // the freed block is kept for the next allocation, not trimmed back to the kernel
  EXPECT_GE(mallinfo2().fordblks, kBlock);
}

}  // namespace
}  // namespace prl
