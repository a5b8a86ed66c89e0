#include "learner/model_store.h"

#include <unistd.h>

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl::learner {
namespace {

using ::testing::HasSubstr;

models::ModelArtifact Artifact(const std::string& name, int64_t version) {
  models::ModelArtifact a;
  a.info.set_name(name);
  a.info.set_version(version);
  a.info.set_kind(v1::PRIOR_KIND_REAL_NVP_FLOW);
  a.info.set_obs_dim(4);
  a.info.set_action_dim(2);
  a.info.set_latent_dim(2);
  a.info.set_horizon(1);
  a.tensors.emplace_back("w", HostTensor::FromFloats({2}, {1.0f, static_cast<float>(version)}));
  return a;
}

std::string Dir() {
  return absl::StrCat(::testing::TempDir(), "/models_", getpid(), "_",
                      ::testing::UnitTest::GetInstance()->current_test_info()->name());
}

TEST(ModelStoreTest, VersionsCountUpPerNameAndReservationsAreNotHandedOutTwice) {
  auto store = ModelStore::Open(Dir());
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(*(*store)->Reserve("maze-flow"), 1);
  EXPECT_EQ(*(*store)->Reserve("maze-flow"), 2);  // 1 is reserved, not yet written
  EXPECT_EQ(*(*store)->Reserve("other"), 1);
  ASSERT_TRUE((*store)->Write(Artifact("maze-flow", 1)).ok());
  (*store)->Release("maze-flow", 2);
  EXPECT_EQ(*(*store)->Reserve("maze-flow"), 2);
  ASSERT_TRUE((*store)->Write(Artifact("maze-flow", 2)).ok());
  EXPECT_EQ((*store)->Write(Artifact("maze-flow", 2)).status().code(),
            absl::StatusCode::kAlreadyExists);
  absl::StatusOr<models::ModelArtifact> latest = (*store)->Read("maze-flow", 0);
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->info.version(), 2);
  EXPECT_EQ(latest->Find("w")->data<float>()[1], 2.0f);
  const std::vector<v1::ModelInfo> listed = (*store)->List();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].version(), 1);
  EXPECT_EQ(listed[1].version(), 2);
  EXPECT_EQ((*store)->Read("maze-flow", 7).status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string((*store)->Read("maze-flow", 7).status().message()),
              HasSubstr("stored: 1, 2"));
  EXPECT_EQ((*store)->Read("nothing", 0).status().code(), absl::StatusCode::kNotFound);
}

TEST(ModelStoreTest, ACorruptArtifactIsRefusedNamedAndLeftInPlace) {
  auto store = ModelStore::Open(Dir());
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Write(Artifact("flow", 1)).ok());
  ASSERT_TRUE((*store)->Write(Artifact("flow", 2)).ok());
  const std::string path = (*store)->PathOf("flow", 2);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(30);
    f.put('\x55');
  }
  const absl::Status s = (*store)->Read("flow", 2).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()), HasSubstr(path));
  std::vector<std::string> problems;
  EXPECT_EQ((*store)->List(&problems).size(), 1u);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_THAT(problems[0], HasSubstr(path));
  EXPECT_EQ(access(path.c_str(), F_OK), 0);  // left for inspection
  EXPECT_EQ(*(*store)->Reserve("flow"), 3);  // and never overwritten
}

TEST(ModelStoreTest, NamesArtifactsRefuseAreRefused) {
  auto store = ModelStore::Open(Dir());
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->Reserve("../escape").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*store)->Reserve("Upper").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace prl::learner
