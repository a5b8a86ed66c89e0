#include "common/directories.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace prl {
namespace {

std::string TestDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

TEST(DirectoriesTest, CreatesMissingParentsAndAcceptsExistingOnes) {
  const std::string path = TestDir() + "/a/b/c";
  ASSERT_TRUE(MakeDirectories(path).ok());
  EXPECT_TRUE(IsDirectory(path));
  EXPECT_TRUE(MakeDirectories(path).ok());                   // again: fine
  EXPECT_TRUE(MakeDirectories(TestDir() + "/a/b/c/").ok());  // a trailing slash
}

TEST(DirectoriesTest, AFileInTheWayIsAnErrorNamingIt) {
  const std::string file = TestDir() + "/plain";
  std::ofstream(file) << "x";
  const absl::Status s = MakeDirectories(file + "/sub");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find(file), std::string::npos) << s;
}

}  // namespace
}  // namespace prl
