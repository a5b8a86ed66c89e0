#include "models/artifact.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <string>

#include "common/checksummed_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/artifact.pb.h"

namespace prl::models {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

ModelArtifact SkillPrior() {
  ModelArtifact a;
  a.info.set_name("maze-skills");
  a.info.set_version(3);
  a.info.set_kind(v1::PRIOR_KIND_SKILL_VAE);
  a.info.set_obs_dim(4);
  a.info.set_action_dim(2);
  a.info.set_latent_dim(10);
  a.info.set_horizon(10);
  a.info.add_methods("Decode");
  a.info.add_methods("Prior");
  a.info.set_dataset_hash("sha256:" + std::string(64, 'a'));
  a.hyperparameters["decoder.hidden"] = 128;
  a.tensors.emplace_back("decoder.trunk.0.weight",
                         HostTensor::FromFloats({2, 3}, {1, 2, 3, 4, 5, 6}));
  a.tensors.emplace_back("prior.mean.bias", HostTensor::FromFloats({2}, {-0.5f, 0.25f}));
  return a;
}

std::string Path(const std::string& name) { return ::testing::TempDir() + "/" + name; }

TEST(ModelArtifactTest, WritesAndReadsBackEverything) {
  const std::string path = Path("roundtrip.prl");
  ASSERT_TRUE(WriteModelArtifact(path, SkillPrior()).ok());
  absl::StatusOr<ModelArtifact> read = ReadModelArtifact(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->info.name(), "maze-skills");
  EXPECT_EQ(read->info.version(), 3);
  EXPECT_EQ(read->info.kind(), v1::PRIOR_KIND_SKILL_VAE);
  EXPECT_EQ(read->info.horizon(), 10);
  EXPECT_THAT(read->info.methods(), ElementsAre("Decode", "Prior"));
  EXPECT_EQ(read->info.artifact_path(), path);
  EXPECT_GT(read->info.size_bytes(), 0);
  EXPECT_THAT(read->hyperparameters, ElementsAre(Pair("decoder.hidden", 128)));
  ASSERT_EQ(read->tensors.size(), 2u);
  const HostTensor* w = read->Find("decoder.trunk.0.weight");
  ASSERT_NE(w, nullptr);
  EXPECT_THAT(w->shape(), ElementsAre(2, 3));
  EXPECT_THAT(w->data<float>(), ElementsAre(1, 2, 3, 4, 5, 6));
  EXPECT_EQ(read->Find("missing"), nullptr);
  // bytes round trip too (the path an artifact takes over gRPC)
  absl::StatusOr<std::string> bytes = SerializeModelArtifact(*read);
  ASSERT_TRUE(bytes.ok());
  absl::StatusOr<ModelArtifact> parsed = ParseModelArtifact(*bytes, "pushed bytes");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->info.artifact_path().empty());
  EXPECT_THAT(parsed->Find("prior.mean.bias")->data<float>(), ElementsAre(-0.5f, 0.25f));
}

TEST(ModelArtifactTest, AMissingFileIsNotFound) {
  EXPECT_EQ(ReadModelArtifact(Path("nothing-here.prl")).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ModelArtifactTest, ACorruptedFileIsRefusedAsDataLossNamingIt) {
  const std::string path = Path("corrupt.prl");
  ASSERT_TRUE(WriteModelArtifact(path, SkillPrior()).ok());
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);
    f.put('\x7f');
  }
  const absl::Status s = ReadModelArtifact(path).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()), HasSubstr(path));
}

TEST(ModelArtifactTest, AnotherChecksummedFileIsNotAnArtifact) {
  const std::string path = Path("foreign.prl");
  ASSERT_TRUE(WriteChecksummedFile(path, "\x0a\x03xyz").ok());
  const absl::Status s = ReadModelArtifact(path).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()), HasSubstr("is not a PRL model artifact"));
}

TEST(ModelArtifactTest, ANewerFormatIsRefusedSayingWhichThisBuildReads) {
  ArtifactPayload payload;
  payload.set_format_version(kArtifactFormatVersion + 1);
  *payload.mutable_info() = SkillPrior().info;
  const absl::Status s = ParseModelArtifact(payload.SerializeAsString(), "future.prl").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("future.prl has artifact format 2"));
}

TEST(ModelArtifactTest, InvalidArtifactsAreRefusedNamingTheField) {
  struct Case {
    std::function<void(ModelArtifact&)> mutate;
    std::string message;
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<Case> cases = {
      {[](ModelArtifact& a) { a.info.set_name("Maze"); }, "info.name: 'Maze' is not allowed"},
      {[](ModelArtifact& a) { a.info.set_version(0); }, "info.version: 0 is not allowed"},
      {[](ModelArtifact& a) { a.info.set_kind(v1::PRIOR_KIND_UNSPECIFIED); }, "info.kind"},
      {[](ModelArtifact& a) { a.info.set_action_dim(0); }, "info.action_dim: 0"},
      {[](ModelArtifact& a) { a.info.set_horizon(0); }, "info.horizon: 0 is not allowed"},
      {[](ModelArtifact& a) { a.tensors[1].first = a.tensors[0].first; },
       "tensors[1].name: 'decoder.trunk.0.weight' is not allowed; it must be unique"},
      {[nan](ModelArtifact& a) { a.tensors[1].second = HostTensor::FromFloats({1}, {nan}); },
       "prior.mean.bias"},
  };
  for (const Case& c : cases) {
    ModelArtifact a = SkillPrior();
    c.mutate(a);
    const absl::Status s = WriteModelArtifact(Path("invalid.prl"), a);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.message));
  }
}

}  // namespace
}  // namespace prl::models
