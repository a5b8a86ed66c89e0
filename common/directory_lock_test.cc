#include "common/directory_lock.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl {
namespace {

using ::testing::HasSubstr;

std::string TestDir(const std::string& name) {
  const char* root = std::getenv("TEST_TMPDIR");
  std::string dir = std::string(root != nullptr ? root : "/tmp") + "/" + name;
  mkdir(dir.c_str(), 0755);
  return dir;
}

TEST(DirectoryLockTest, SecondHolderIsRefusedWithTheFirstNamed) {
  const std::string dir = TestDir("locked");
  auto first = DirectoryLock::Acquire(dir, "prl_learner");
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = DirectoryLock::Acquire(dir, "prl_learner");
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr(dir));
  EXPECT_THAT(second.status().message(), HasSubstr("prl_learner, pid " + std::to_string(getpid())));
  first->reset();  // released: the next one gets it
  auto third = DirectoryLock::Acquire(dir, "prl_learner");
  EXPECT_TRUE(third.ok()) << third.status();
}

TEST(DirectoryLockTest, AKilledHolderLeavesNoLock) {
  const std::string dir = TestDir("killed");
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto lock = DirectoryLock::Acquire(dir, "child");
    const char byte = lock.ok() ? 1 : 0;
    (void)!write(ready[1], &byte, 1);
    pause();  // holds the lock until killed
    _exit(0);
  }
  char byte = 0;
  ASSERT_EQ(read(ready[0], &byte, 1), 1);
  ASSERT_EQ(byte, 1);
  auto refused = DirectoryLock::Acquire(dir, "parent");
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("child, pid " + std::to_string(child)));
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  auto taken = DirectoryLock::Acquire(dir, "parent");
  EXPECT_TRUE(taken.ok()) << taken.status();
}

TEST(DirectoryLockTest, CreatesAMissingDirectory) {
  const std::string dir = TestDir("x") + "/missing/deeper";
  auto lock = DirectoryLock::Acquire(dir, "p");
  ASSERT_TRUE(lock.ok()) << lock.status();
  EXPECT_EQ((*lock)->path(), dir + "/LOCK");
  struct stat st;
  EXPECT_EQ(stat((*lock)->path().c_str(), &st), 0);
}

TEST(DirectoryLockTest, AFileInTheWayIsAnError) {
  const std::string dir = TestDir("y");
  ASSERT_TRUE(DirectoryLock::Acquire(dir, "p").ok());  // makes dir/LOCK, a file
  auto lock = DirectoryLock::Acquire(dir + "/LOCK/sub", "p");
  ASSERT_FALSE(lock.ok());
  EXPECT_THAT(lock.status().message(), HasSubstr(dir + "/LOCK"));
}

}  // namespace
}  // namespace prl
