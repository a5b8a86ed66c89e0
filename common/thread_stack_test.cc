#include "common/thread_stack.h"

#include <dlfcn.h>
#include <pthread.h>

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"

namespace prl {
namespace {

TEST(ThreadStackTest, FloorsSmallRequestsAndKeepsLargeOnes) {
  EXPECT_EQ(FlooredThreadStackBytes(100 * 1024), kMinThreadStackBytes);
  EXPECT_EQ(FlooredThreadStackBytes(kMinThreadStackBytes), kMinThreadStackBytes);
  EXPECT_EQ(FlooredThreadStackBytes(8 * kMinThreadStackBytes), 8 * kMinThreadStackBytes);
}

size_t StoredStackSize(size_t requested) {
  pthread_attr_t attr;
  EXPECT_EQ(pthread_attr_init(&attr), 0);
  EXPECT_EQ(pthread_attr_setstacksize(&attr, requested), 0);
  size_t stored = 0;
  EXPECT_EQ(pthread_attr_getstacksize(&attr, &stored), 0);
  pthread_attr_destroy(&attr);
  return stored;
}

// The call goes through the interposed definition, as civetweb's does.
TEST(ThreadStackTest, TheProcessWideCallIsFloored) {
  EXPECT_EQ(StoredStackSize(100 * 1024), kMinThreadStackBytes);
  EXPECT_EQ(StoredStackSize(4 * kMinThreadStackBytes), 4 * kMinThreadStackBytes);
}

// Shared libraries resolve the symbol through the dynamic symbol table, where
// the interposed definition has to come before glibc's.
TEST(ThreadStackTest, SharedLibrariesFindTheInterposedDefinition) {
  using SetStackSize = int (*)(pthread_attr_t*, size_t);
  auto set = reinterpret_cast<SetStackSize>(dlsym(RTLD_DEFAULT, "pthread_attr_setstacksize"));
  ASSERT_NE(set, nullptr);
  pthread_attr_t attr;
  ASSERT_EQ(pthread_attr_init(&attr), 0);
  ASSERT_EQ(set(&attr, 100 * 1024), 0);
  size_t stored = 0;
  ASSERT_EQ(pthread_attr_getstacksize(&attr, &stored), 0);
  EXPECT_EQ(stored, kMinThreadStackBytes);
  pthread_attr_destroy(&attr);
}

// A shared library's reference is versioned (pthread_attr_setstacksize@GLIBC_2.34 on glibc
// 2.34 and later, as in Debian's civetweb): the probe library, loaded here, calls through one.
TEST(ThreadStackTest, ASharedLibrarysVersionedCallIsFloored) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  ASSERT_NE(srcdir, nullptr);
  ASSERT_NE(workspace, nullptr);
  const std::string path =
      std::string(srcdir) + "/" + workspace + "/common/libthread_stack_probe.so";
  void* probe = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(probe, nullptr) << dlerror();
  using SetStackSize = int (*)(pthread_attr_t*, size_t);
  auto set = reinterpret_cast<SetStackSize>(dlsym(probe, "PrlProbeSetStackSize"));
  ASSERT_NE(set, nullptr) << dlerror();
  pthread_attr_t attr;
  ASSERT_EQ(pthread_attr_init(&attr), 0);
  ASSERT_EQ(set(&attr, 100 * 1024), 0);
  size_t stored = 0;
  ASSERT_EQ(pthread_attr_getstacksize(&attr, &stored), 0);
  EXPECT_EQ(stored, kMinThreadStackBytes);
  pthread_attr_destroy(&attr);
  dlclose(probe);
}

void* ReturnArgument(void* arg) { return arg; }

TEST(ThreadStackTest, AThreadStartsWithASmallRequestedStack) {
  pthread_attr_t attr;
  ASSERT_EQ(pthread_attr_init(&attr), 0);
  ASSERT_EQ(pthread_attr_setstacksize(&attr, 100 * 1024), 0);
  pthread_t thread;
  int value = 7;
  ASSERT_EQ(pthread_create(&thread, &attr, &ReturnArgument, &value), 0);
  void* result = nullptr;
  ASSERT_EQ(pthread_join(thread, &result), 0);
  EXPECT_EQ(result, &value);
  pthread_attr_destroy(&attr);
}

}  // namespace
}  // namespace prl
