#include "common/regular_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl {
namespace {

using ::testing::HasSubstr;

std::string TestDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

TEST(RegularFileTest, ReadsARegularFileWholeWithinItsLimit) {
  const std::string path = TestDir() + "/plain.bin";
  std::ofstream(path, std::ios::binary) << std::string("abc\0def", 7);
  auto contents = ReadRegularFile(path);
  ASSERT_TRUE(contents.ok()) << contents.status();
  EXPECT_EQ(*contents, std::string("abc\0def", 7));
  EXPECT_TRUE(CheckRegularFile(path).ok());
  auto limited = ReadRegularFile(path, 6);
  ASSERT_FALSE(limited.ok());
  EXPECT_EQ(limited.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(limited.status().message(), HasSubstr("has 7 bytes; the limit is 6"));
}

TEST(RegularFileTest, DevicesDirectoriesAndFifosAreRefusedAtOnce) {
  for (const char* device : {"/dev/zero", "/dev/urandom"}) {
    auto read = ReadRegularFile(device);
    ASSERT_FALSE(read.ok()) << device;
    EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(read.status().message(), HasSubstr("is not a regular file (it is a character"));
    EXPECT_FALSE(CheckRegularFile(device).ok());
  }
  EXPECT_THAT(ReadRegularFile(TestDir()).status().message(), HasSubstr("it is a directory"));
  // a FIFO nobody writes to: opening it for reading must not wait for a writer
  const std::string fifo = TestDir() + "/pipe";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0644), 0);
  auto read = ReadRegularFile(fifo);
  ASSERT_FALSE(read.ok());
  EXPECT_THAT(read.status().message(), HasSubstr("it is a FIFO"));
  EXPECT_THAT(CheckRegularFile(fifo).message(), HasSubstr("it is a FIFO"));
  // a symbolic link to a regular file is followed
  const std::string target = TestDir() + "/target.bin";
  std::ofstream(target) << "x";
  const std::string link = TestDir() + "/link.bin";
  ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0);
  EXPECT_EQ(*ReadRegularFile(link), "x");
}

TEST(RegularFileTest, ANameTooLongIsAnInvalidArgument) {
  auto read = ReadRegularFile(TestDir() + "/" + std::string(300, 'y'));
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(read.status().message(), HasSubstr("too long"));
}

TEST(RegularFileTest, MissingFileIsNotFoundNamingIt) {
  auto read = ReadRegularFile(TestDir() + "/none.bin");
  EXPECT_EQ(read.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(read.status().message(), HasSubstr("none.bin"));
}

}  // namespace
}  // namespace prl
