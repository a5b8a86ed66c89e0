#include "env_desc/env_spec.h"

#include "absl/strings/str_cat.h"
#include "env_desc/maze_generator.h"
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
      {"domain: 77", "env.domain: 77 is not allowed; use DOMAIN_CHEETAH"},
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
      {"domain: DOMAIN_POINT_MAZE maze { layout: '###\\n#S#\\n###' random { rows: 9 cols: 9 } }",
       "env.maze.layout and env.maze.random: both are set"},
      {"domain: DOMAIN_POINT_MAZE maze { random { rows: 2 cols: 9 } }",
       "env.maze.random.rows: 2 is not allowed; use 4..64"},
      {"domain: DOMAIN_POINT_MAZE maze { random { rows: 9 } }",
       "env.maze.random.cols: 0 is not allowed"},
      {"domain: DOMAIN_POINT_MAZE maze { random { rows: 9 cols: 9 extra_openings: 2 } }",
       "env.maze.random.extra_openings: 2 is not allowed"},
      {"domain: DOMAIN_POINT_MAZE maze { random { rows: 9 cols: 9 per_env: true } "
       "start { row: 1 col: 1 } }",
       "env.maze.start: must stay unset with env.maze.random.per_env"},
      {"domain: DOMAIN_POINT_MAZE maze { random { rows: 9 cols: 9 } goal { row: 0 col: 3 } }",
       "env.maze.goal: (0, 3) is a wall"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<EnvConfig> config = ResolveEnvSpec(Parse(c.spec));
    ASSERT_FALSE(config.ok()) << c.spec;
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(config.status().message(), HasSubstr(c.message)) << c.spec;
  }
}

TEST(EnvSpecTest, RandomMazeIsGeneratedFromItsSeed) {
  absl::StatusOr<EnvConfig> config = ResolveEnvSpec(
      Parse("domain: DOMAIN_POINT_MAZE maze { random { rows: 15 cols: 21 seed: 4 } }"));
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_TRUE(config->maze.has_value());
  EXPECT_EQ(config->maze->layout(), *GenerateMazeLayout(15, 21, 4));
  EXPECT_EQ(config->start, *config->maze->start());
  EXPECT_EQ(config->goal, *config->maze->goal());
  ASSERT_TRUE(config->random_maze.has_value());
  EXPECT_EQ(config->random_maze->extra_openings, kDefaultExtraOpenings);
  EXPECT_FALSE(config->random_maze->per_env);
  EXPECT_EQ(config->maze_index, -1);
  // one maze for every env
  absl::StatusOr<EnvConfig> env3 = EnvConfigForEnv(*config, 3);
  ASSERT_TRUE(env3.ok()) << env3.status();
  EXPECT_EQ(env3->maze->layout(), config->maze->layout());

  // explicit start and goal cells are checked against the generated maze
  const Cell free = config->maze->free_cells()[0];
  const Cell other = config->maze->free_cells()[1];
  config = ResolveEnvSpec(Parse(absl::StrCat(
      "domain: DOMAIN_POINT_MAZE maze { random { rows: 15 cols: 21 seed: 4 } start { row: ",
      free.row, " col: ", free.col, " } goal { row: ", other.row, " col: ", other.col, " } }")));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->start, free);
  EXPECT_EQ(config->goal, other);
}

TEST(EnvSpecTest, PerEnvRandomMazesDifferByEnvIndex) {
  absl::StatusOr<EnvConfig> config = ResolveEnvSpec(
      Parse("domain: DOMAIN_POINT_MAZE maze { random { rows: 12 cols: 12 seed: 10 per_env: true "
            "extra_openings: 0 } }"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->maze_index, 0);
  absl::StatusOr<EnvConfig> env0 = EnvConfigForEnv(*config, 0);
  absl::StatusOr<EnvConfig> env1 = EnvConfigForEnv(*config, 1);
  absl::StatusOr<EnvConfig> env1_again = EnvConfigForEnv(*config, 1);
  ASSERT_TRUE(env0.ok() && env1.ok() && env1_again.ok());
  EXPECT_EQ(env0->maze->layout(), config->maze->layout());
  EXPECT_NE(env1->maze->layout(), env0->maze->layout());
  EXPECT_EQ(env1->maze->layout(), env1_again->maze->layout());
  // env j's maze is the one a single-maze spec with seed + j names
  EXPECT_EQ(env1->maze->layout(), *GenerateMazeLayout(12, 12, 11, 0.0));
  EXPECT_EQ(env1->maze_index, 1);
  EXPECT_EQ(env1->start, *env1->maze->start());
  EXPECT_EQ(env1->goal, *env1->maze->goal());
}

TEST(EnvSpecTest, FilledRandomMazeSpecKeepsTheSeedAndResolvesAgain) {
  for (const char* text :
       {"domain: DOMAIN_POINT_MAZE maze { random { rows: 9 cols: 11 seed: 2 } }",
        "domain: DOMAIN_POINT_MAZE maze { random { rows: 9 cols: 11 seed: 2 per_env: true } }"}) {
    v1::EnvSpec spec = Parse(text);
    absl::StatusOr<EnvConfig> config = ResolveEnvSpec(spec);
    ASSERT_TRUE(config.ok()) << config.status();
    FillEnvSpecDefaults(*config, &spec);
    EXPECT_TRUE(spec.maze().layout().empty()) << text;
    EXPECT_EQ(spec.maze().random().seed(), 2u);
    EXPECT_EQ(spec.maze().random().extra_openings(), kDefaultExtraOpenings);
    EXPECT_EQ(spec.maze().has_start(), !spec.maze().random().per_env()) << text;
    absl::StatusOr<EnvConfig> again = ResolveEnvSpec(spec);
    ASSERT_TRUE(again.ok()) << text << ": " << again.status();
    EXPECT_EQ(again->maze->layout(), config->maze->layout());
    EXPECT_EQ(again->start, config->start);
    EXPECT_EQ(again->goal, config->goal);
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
