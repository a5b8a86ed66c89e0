#include "common/temp_files.h"

#include <sys/stat.h>
#include <unistd.h>
#include <utime.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <string>

#include "gtest/gtest.h"

namespace prl {
namespace {

std::string TestDir(const std::string& name) {
  const char* root = std::getenv("TEST_TMPDIR");
  std::string dir = std::string(root != nullptr ? root : "/tmp") + "/" + name;
  mkdir(dir.c_str(), 0755);
  return dir;
}

void Touch(const std::string& path, int age_seconds) {
  std::ofstream(path) << "x";
  const time_t when = time(nullptr) - age_seconds;
  const utimbuf times{when, when};
  ASSERT_EQ(utime(path.c_str(), &times), 0) << path;
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

TEST(TempFilesTest, NamesAreFreshAndRecognised) {
  std::set<std::string> names;
  for (int i = 0; i < 100; ++i) {
    const std::string name = TempPathFor("/d/data.h5");
    EXPECT_EQ(name.rfind("/d/data.h5.tmp.", 0), 0u) << name;
    EXPECT_TRUE(IsTempFileName(name.substr(3))) << name;
    names.insert(name);
  }
  EXPECT_EQ(names.size(), 100u);
}

TEST(TempFilesTest, RecognisesOnlyTempNames) {
  EXPECT_TRUE(IsTempFileName("checkpoint.bin.tmp.1.0"));  // the older form
  EXPECT_TRUE(IsTempFileName("v3.prl.tmp.42.7.00ff12ab34cd56ef"));
  EXPECT_TRUE(IsTempFileName(".maze.exp-000001.staged.hdf5.tmp.1.2.0a"));
  EXPECT_FALSE(IsTempFileName("checkpoint.bin"));
  EXPECT_FALSE(IsTempFileName("data.tmp"));
  EXPECT_FALSE(IsTempFileName("data.tmp.1"));
  EXPECT_FALSE(IsTempFileName("data.tmp.1."));
  EXPECT_FALSE(IsTempFileName("data.tmp.x.1"));
  EXPECT_FALSE(IsTempFileName("data.tmp.1.2.zz"));
  EXPECT_FALSE(IsTempFileName(".tmp.1.2"));
  EXPECT_FALSE(IsTempFileName("my.tmp.notes.txt"));
}

TEST(TempFilesTest, SweepRemovesOnlyOldTempFilesWithinDepth) {
  const std::string dir = TestDir("sweep");
  mkdir((dir + "/a").c_str(), 0755);
  mkdir((dir + "/a/b").c_str(), 0755);
  Touch(dir + "/x.pb.tmp.1.0", 7200);                       // old temp: removed
  Touch(dir + "/x.pb", 7200);                               // old, not a temp: kept
  Touch(dir + "/y.pb.tmp.1.1.abcdef0123456789", 10);        // young temp (a live writer): kept
  Touch(dir + "/a/z.hdf5.tmp.9.3.00000000000000aa", 7200);  // depth 1: removed
  Touch(dir + "/a/b/w.prl.tmp.9.4", 7200);                  // depth 2: beyond depth 1, kept
  EXPECT_EQ(RemoveStaleTempFiles(dir, 1, absl::Hours(1)), 2);
  EXPECT_FALSE(Exists(dir + "/x.pb.tmp.1.0"));
  EXPECT_TRUE(Exists(dir + "/x.pb"));
  EXPECT_TRUE(Exists(dir + "/y.pb.tmp.1.1.abcdef0123456789"));
  EXPECT_FALSE(Exists(dir + "/a/z.hdf5.tmp.9.3.00000000000000aa"));
  EXPECT_TRUE(Exists(dir + "/a/b/w.prl.tmp.9.4"));
  EXPECT_EQ(RemoveStaleTempFiles(dir, 2, absl::Hours(1)), 1);
  EXPECT_FALSE(Exists(dir + "/a/b/w.prl.tmp.9.4"));
  EXPECT_EQ(RemoveStaleTempFiles(dir + "/missing", 3, absl::ZeroDuration()), 0);
}

TEST(TempFilesTest, SweepDoesNotFollowSymlinks) {
  const std::string dir = TestDir("sweep_links");
  const std::string outside = TestDir("sweep_outside");
  Touch(outside + "/o.pb.tmp.1.0", 7200);
  ASSERT_EQ(symlink(outside.c_str(), (dir + "/link").c_str()), 0);
  ASSERT_EQ(symlink((outside + "/o.pb.tmp.1.0").c_str(), (dir + "/l.pb.tmp.1.0").c_str()), 0);
  EXPECT_EQ(RemoveStaleTempFiles(dir, 3, absl::ZeroDuration()), 0);
  EXPECT_TRUE(Exists(outside + "/o.pb.tmp.1.0"));
}

}  // namespace
}  // namespace prl
