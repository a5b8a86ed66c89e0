#include "env_desc/env_spec.h"

#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"

namespace prl::env_desc {
namespace {

using ::testing::HasSubstr;

v1::EnvSpec Parse(const std::string& text) {
  v1::EnvSpec spec;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &spec)) << text;
  return spec;
}

TEST(EnvSpecTest, DefaultsResolve) {
  absl::StatusOr<EnvConfig> config = ResolveEnvSpec(Parse("domain: DOMAIN_CHEETAH"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_STREQ(config->domain->name, "cheetah");
  EXPECT_EQ(config->task, "run_forward");
  EXPECT_EQ(config->episode_length, 1000);
  EXPECT_EQ(config->mass_scale, 1.0);
  EXPECT_FALSE(config->maze.has_value());

  config = ResolveEnvSpec(Parse("domain: DOMAIN_POINT_MAZE"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->episode_length, 2000);
  ASSERT_TRUE(config->maze.has_value());
  EXPECT_EQ(config->start, (Cell{1, 1}));
  EXPECT_EQ(config->goal, (Cell{8, 8}));
}

TEST(EnvSpecTest, FillDefaultsWritesResolvedValues) {
  v1::EnvSpec spec = Parse("domain: DOMAIN_POINT_MAZE");
  absl::StatusOr<EnvConfig> config = ResolveEnvSpec(spec);
  ASSERT_TRUE(config.ok());
  FillEnvSpecDefaults(*config, &spec);
  EXPECT_EQ(spec.task(), "reach_goal");
  EXPECT_EQ(spec.episode_length(), 2000);
  EXPECT_EQ(spec.maze().goal().row(), 8);
  EXPECT_FALSE(spec.maze().layout().empty());
  // the filled spec resolves to the same config
  absl::StatusOr<EnvConfig> again = ResolveEnvSpec(spec);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->goal, config->goal);
}

TEST(EnvSpecTest, EveryBadFieldIsNamed) {
  struct Case {
    const char* spec;
    const char* message;
  } cases[] = {
      {"", "env.domain: DOMAIN_UNSPECIFIED is not allowed"},
      {"domain: DOMAIN_CHEETAH task: 'fly'", "env.task: \"fly\" is not a cheetah task"},
      {"domain: DOMAIN_CHEETAH dynamics { mass_scale: -1 }",
       "env.dynamics.mass_scale: -1 is not allowed; it must be > 0"},
      {"domain: DOMAIN_CHEETAH dynamics { armature_scale: 1000 }",
       "env.dynamics.armature_scale: 1000 is too large"},
      {"domain: DOMAIN_CHEETAH dynamics { size_scale: 2 }",
       "env.dynamics.size_scale: not used by the cheetah domain"},
      {"domain: DOMAIN_HOPPER dynamics { crippled_leg: 1 }", "env.dynamics.crippled_leg: only"},
      {"domain: DOMAIN_ANT dynamics { crippled_leg: 4 }",
       "env.dynamics.crippled_leg: 4 is not allowed"},
      {"domain: DOMAIN_ANT reward_delay: -2", "env.reward_delay: -2 is not allowed"},
      {"domain: DOMAIN_ANT episode_length: -5", "env.episode_length: -5 is not allowed"},
      {"domain: DOMAIN_ANT maze { layout: '###' }", "env.maze: only the point_maze domain"},
      {"domain: DOMAIN_POINT_MAZE maze { layout: '####\\n#..#\\n####' }",
       "env.maze.start: not set and the layout has no 'S' cell"},
      {"domain: DOMAIN_POINT_MAZE maze { goal { row: 0 col: 0 } }",
       "env.maze.goal: (0, 0) is a wall"},
      {"domain: DOMAIN_POINT_MAZE maze { goal { row: 20 col: 0 } }",
       "env.maze.goal: (20, 0) is outside the 10x10 maze"},
      {"domain: DOMAIN_POINT_MAZE maze { goal { row: 1 col: 1 } }",
       "env.maze.goal: (1, 1) is the start cell"},
      {"domain: DOMAIN_POINT_MAZE maze { layout: '#####\\n#S#G#\\n#####' }",
       "env.maze.layout: some free cells cannot reach others"},
      {"domain: DOMAIN_POINT_MAZE dynamics { mass_scale: 2 }",
       "env.dynamics.mass_scale: not used by the point_maze domain"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<EnvConfig> config = ResolveEnvSpec(Parse(c.spec));
    ASSERT_FALSE(config.ok()) << c.spec;
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(config.status().message(), HasSubstr(c.message)) << c.spec;
  }
}

TEST(EnvSpecTest, AllProblemsAreReportedTogether) {
  std::vector<std::string> problems;
  ValidateEnvSpec(Parse("domain: DOMAIN_ANT task: 'x' reward_delay: -3 episode_length: -1"),
                  "spec.env", &problems);
  EXPECT_EQ(problems.size(), 3u);
  for (const std::string& p : problems) EXPECT_THAT(p, HasSubstr("spec.env."));
}

}  // namespace
}  // namespace prl::env_desc
