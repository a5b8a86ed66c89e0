#include "cli/spec_file.h"

#include <dirent.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl::cli {
namespace {

using ::testing::HasSubstr;

std::vector<std::string> ExampleSpecs() {
  std::vector<std::string> paths;
  const std::string dir = std::string(std::getenv("TEST_SRCDIR")) + "/prl/examples";
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return paths;
  while (dirent* e = readdir(d)) {
    if (absl::EndsWith(e->d_name, ".textproto")) paths.push_back(dir + "/" + e->d_name);
  }
  closedir(d);
  return paths;
}

TEST(SpecFileTest, EveryExampleParses) {
  const std::vector<std::string> examples = ExampleSpecs();
  ASSERT_GE(examples.size(), 2u);
  for (const std::string& path : examples) {
    auto spec = ReadSpecFile(path);
    ASSERT_TRUE(spec.ok()) << spec.status();
    EXPECT_FALSE(spec->name().empty()) << path;
    EXPECT_NE(spec->kind(), v1::ExperimentSpec::KIND_UNSPECIFIED) << path;
  }
}

TEST(SpecFileTest, ParsesFieldsAndEnums) {
  auto spec = ParseSpec(R"pb(
                          name: "t"
                          kind: KIND_TRAIN
                          env { domain: DOMAIN_CHEETAH task: "run_backward" }
                        )pb",
                        "inline");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->env().domain(), v1::EnvSpec::DOMAIN_CHEETAH);
  EXPECT_EQ(spec->env().task(), "run_backward");
}

TEST(SpecFileTest, ErrorsNameFileLineAndColumn) {
  auto spec = ParseSpec("name: \"x\"\nenv {\n  domian: DOMAIN_ANT\n}\n", "my.textproto");
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(spec.status().message(), HasSubstr("my.textproto:3:"));
  EXPECT_THAT(spec.status().message(), HasSubstr("domian"));

  spec = ParseSpec("kind: KIND_DANCE\n", "k.textproto");
  EXPECT_THAT(spec.status().message(), HasSubstr("KIND_DANCE"));
}

TEST(SpecFileTest, MissingFileIsNotFound) {
  auto spec = ReadSpecFile("/nonexistent/spec.textproto");
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(spec.status().message(), HasSubstr("/nonexistent/spec.textproto"));
}

}  // namespace
}  // namespace prl::cli
