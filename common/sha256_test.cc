#include "common/sha256.h"

#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace prl {
namespace {

TEST(Sha256Test, KnownDigests) {
  // FIPS 180-2 examples
  EXPECT_EQ(Sha256(""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256Test, AFileHashesLikeItsBytesAcrossReadChunks) {
  const std::string path = ::testing::TempDir() + "/sha256_input.bin";
  std::string bytes;
  for (int i = 0; i < (3 << 20) + 17; ++i) bytes.push_back(static_cast<char>(i * 31));
  std::ofstream(path, std::ios::binary) << bytes;
  absl::StatusOr<std::string> hash = Sha256File(path);
  ASSERT_TRUE(hash.ok()) << hash.status();
  EXPECT_EQ(*hash, Sha256(bytes));
}

TEST(Sha256Test, AMissingFileIsNotFoundNamingIt) {
  const absl::Status s = Sha256File("/nonexistent/prl/file").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find("/nonexistent/prl/file"), std::string::npos);
}

}  // namespace
}  // namespace prl
