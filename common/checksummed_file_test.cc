#include "common/checksummed_file.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
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

std::string ReadRaw(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteRaw(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

int CountEntriesWithPrefix(const std::string& dir, const std::string& prefix) {
  int n = 0;
  DIR* d = opendir(dir.c_str());
  while (dirent* e = readdir(d)) {
    if (std::string(e->d_name).rfind(prefix, 0) == 0) ++n;
  }
  closedir(d);
  return n;
}

TEST(ChecksummedFileTest, RoundTripsBinaryPayload) {
  const std::string path = TestDir() + "/roundtrip.ckpt";
  std::string payload;
  for (int i = 0; i < 100000; ++i) payload.push_back(static_cast<char>(i % 251));
  ASSERT_TRUE(WriteChecksummedFile(path, payload).ok());
  auto read = ReadChecksummedFile(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, payload);
}

TEST(ChecksummedFileTest, StreamedAppendsEqualOneWrite) {
  const std::string path = TestDir() + "/streamed.ckpt";
  auto writer = ChecksummedFileWriter::Create(path);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Append("hello ").ok());
  ASSERT_TRUE((*writer)->Append("").ok());
  ASSERT_TRUE((*writer)->Append("world").ok());
  EXPECT_EQ((*writer)->payload_bytes(), 11u);
  ASSERT_TRUE((*writer)->Commit().ok());
  EXPECT_EQ(*ReadChecksummedFile(path), "hello world");
  EXPECT_FALSE((*writer)->Commit().ok());
}

TEST(ChecksummedFileTest, UncommittedWriterLeavesOldFileAndNoTemp) {
  const std::string dir = TestDir() + "/uncommitted";
  ASSERT_EQ(system(("mkdir -p " + dir).c_str()), 0);
  const std::string path = dir + "/state.ckpt";
  ASSERT_TRUE(WriteChecksummedFile(path, "old").ok());
  {
    auto writer = ChecksummedFileWriter::Create(path);
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE((*writer)->Append("new but never committed").ok());
  }
  EXPECT_EQ(*ReadChecksummedFile(path), "old");
  EXPECT_EQ(CountEntriesWithPrefix(dir, "state.ckpt.tmp"), 0);
}

TEST(ChecksummedFileTest, OverwriteReplacesWholeFile) {
  const std::string path = TestDir() + "/overwrite.ckpt";
  ASSERT_TRUE(WriteChecksummedFile(path, std::string(1000, 'x')).ok());
  ASSERT_TRUE(WriteChecksummedFile(path, "short").ok());
  EXPECT_EQ(*ReadChecksummedFile(path), "short");
}

TEST(ChecksummedFileTest, FlippedPayloadByteIsRefusedNamingTheFile) {
  const std::string path = TestDir() + "/flipped.ckpt";
  ASSERT_TRUE(WriteChecksummedFile(path, "replay table contents").ok());
  std::string raw = ReadRaw(path);
  raw[raw.size() - 3] ^= 0x20;
  WriteRaw(path, raw);
  auto read = ReadChecksummedFile(path);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(read.status().message(), HasSubstr(path));
  EXPECT_THAT(read.status().message(), HasSubstr("checksum mismatch"));
  // the corrupt file is kept for inspection.
  EXPECT_EQ(ReadRaw(path), raw);
}

TEST(ChecksummedFileTest, TruncatedFileIsRefused) {
  const std::string path = TestDir() + "/truncated.ckpt";
  ASSERT_TRUE(WriteChecksummedFile(path, std::string(500, 'p')).ok());
  const std::string raw = ReadRaw(path);
  WriteRaw(path, raw.substr(0, raw.size() - 100));
  auto read = ReadChecksummedFile(path);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(read.status().message(), HasSubstr("payload bytes"));

  WriteRaw(path, raw.substr(0, 10));
  read = ReadChecksummedFile(path);
  EXPECT_THAT(read.status().message(), HasSubstr("header"));
}

TEST(ChecksummedFileTest, ForeignFileIsRefused) {
  const std::string path = TestDir() + "/foreign.ckpt";
  WriteRaw(path, "this is a text file written by something else entirely");
  auto read = ReadChecksummedFile(path);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(read.status().message(), HasSubstr("bad magic"));
  EXPECT_THAT(read.status().message(), HasSubstr(path));
}

TEST(MappedChecksummedFileTest, MapsTheVerifiedPayloadAndRefusesBadFilesAsTheReaderDoes) {
  const std::string path = TestDir() + "/mapped.ckpt";
  std::string payload;
  for (int i = 0; i < 300000; ++i) payload.push_back(static_cast<char>(i % 253));
  ASSERT_TRUE(WriteChecksummedFile(path, payload).ok());
  auto mapped = MappedChecksummedFile::Open(path);
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  EXPECT_EQ((*mapped)->payload(), payload);
  // replacing the file leaves the open mapping as it was
  ASSERT_TRUE(WriteChecksummedFile(path, "replaced").ok());
  EXPECT_EQ((*mapped)->payload(), payload);
  mapped->reset();
  EXPECT_EQ((*MappedChecksummedFile::Open(path))->payload(), "replaced");
  ASSERT_TRUE(WriteChecksummedFile(path, "").ok());  // an empty payload
  EXPECT_EQ((*MappedChecksummedFile::Open(path))->payload(), "");

  std::string raw = ReadRaw(path);
  ASSERT_TRUE(WriteChecksummedFile(path, "replay table contents").ok());
  raw = ReadRaw(path);
  raw[raw.size() - 3] ^= 0x20;
  WriteRaw(path, raw);
  auto flipped = MappedChecksummedFile::Open(path);
  ASSERT_FALSE(flipped.ok());
  EXPECT_EQ(flipped.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(flipped.status().message(), HasSubstr("checksum mismatch"));
  WriteRaw(path, "");
  EXPECT_THAT(MappedChecksummedFile::Open(path).status().message(), HasSubstr("header"));
  EXPECT_EQ(MappedChecksummedFile::Open(TestDir() + "/none.ckpt").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ChecksummedFileTest, DevicesAndFifosAreRefusedWithoutReadingThem) {
  // a path a user names (a checkpoint to evaluate) may be anything: /dev/zero was read until
  // memory ran out, a FIFO blocked the reading thread
  auto zero = ReadChecksummedFile("/dev/zero");
  ASSERT_FALSE(zero.ok());
  EXPECT_THAT(zero.status().message(), HasSubstr("not a regular file"));
  EXPECT_FALSE(MappedChecksummedFile::Open("/dev/zero").ok());
  const std::string fifo = TestDir() + "/checkpoint.fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0644), 0);
  EXPECT_THAT(ReadChecksummedFile(fifo).status().message(), HasSubstr("it is a FIFO"));
  EXPECT_THAT(MappedChecksummedFile::Open(fifo).status().message(), HasSubstr("it is a FIFO"));
  // a large file that is not a PRL file is refused from its header, not read whole
  const std::string big = TestDir() + "/big.bin";
  {
    std::ofstream out(big, std::ios::binary);
    out.seekp((int64_t{1} << 32) - 1);  // sparse: 4 GiB that take no disk
    out.put('x');
  }
  auto read = ReadChecksummedFile(big);
  ASSERT_FALSE(read.ok());
  EXPECT_THAT(read.status().message(), HasSubstr("bad magic"));
  unlink(big.c_str());
}

TEST(ChecksummedFileTest, MissingFileIsNotFound) {
  auto read = ReadChecksummedFile(TestDir() + "/does-not-exist.ckpt");
  EXPECT_EQ(read.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(read.status().message(), HasSubstr("does-not-exist.ckpt"));
}

TEST(ChecksummedFileTest, MissingDirectoryFailsWithoutSideEffects) {
  const std::string path = TestDir() + "/no/such/dir/x.ckpt";
  absl::Status s = WriteChecksummedFile(path, "data");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("/no/such/dir/"));
}

TEST(AtomicFileTest, WritesPlainContents) {
  const std::string path = TestDir() + "/plain.txt";
  ASSERT_TRUE(WriteFileAtomically(path, "first").ok());
  ASSERT_TRUE(WriteFileAtomically(path, "second line\n").ok());
  EXPECT_EQ(ReadRaw(path), "second line\n");
}

}  // namespace
}  // namespace prl
