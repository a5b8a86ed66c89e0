#include "env_desc/maze.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl::env_desc {
namespace {

using ::testing::HasSubstr;

TEST(MazeTest, DefaultLayoutParsesAndIsConnected) {
  absl::StatusOr<Maze> maze = Maze::Parse(Maze::DefaultLayout());
  ASSERT_TRUE(maze.ok()) << maze.status();
  EXPECT_EQ(maze->rows(), 10);
  EXPECT_EQ(maze->cols(), 10);
  ASSERT_TRUE(maze->start().has_value());
  ASSERT_TRUE(maze->goal().has_value());
  EXPECT_EQ(*maze->start(), (Cell{1, 1}));
  EXPECT_EQ(*maze->goal(), (Cell{8, 8}));
  EXPECT_TRUE(maze->Connected());
}

TEST(MazeTest, CellCentersRoundTrip) {
  absl::StatusOr<Maze> maze = Maze::Parse("####\n#S.#\n#.G#\n####");
  ASSERT_TRUE(maze.ok()) << maze.status();
  double x, y;
  maze->CellCenter({1, 1}, &x, &y);
  EXPECT_DOUBLE_EQ(x, -0.5);
  EXPECT_DOUBLE_EQ(y, 0.5);
  for (const Cell& c : maze->free_cells()) {
    maze->CellCenter(c, &x, &y);
    EXPECT_EQ(maze->CellAt(x + 0.3, y - 0.3), c);
  }
}

TEST(MazeTest, DistancesFollowCorridors) {
  absl::StatusOr<Maze> maze = Maze::Parse(
      "#####\n"
      "#S#G#\n"
      "#...#\n"
      "#####");
  ASSERT_TRUE(maze.ok()) << maze.status();
  const std::vector<int> dist = maze->DistancesTo({1, 3});
  EXPECT_EQ(dist[1 * 5 + 3], 0);
  EXPECT_EQ(dist[1 * 5 + 1], 4);  // around the wall, not through it
  EXPECT_EQ(dist[1 * 5 + 2], -1);
}

TEST(MazeTest, BadLayoutsNameTheProblem) {
  struct Case {
    const char* layout;
    const char* message;
  } cases[] = {
      {"###\n#.#", "has 2 rows"},
      {"####\n#.#\n####", "row 1 has 3 columns but row 0 has 4"},
      {"####\n#.x#\n####", "row 1 column 2 is 'x'"},
      {"####\n#...\n####", "row 1 column 3 is on the border"},
      {"#####\n#SS.#\n#####", "more than one 'S'"},
      {"#####\n#GG.#\n#####", "more than one 'G'"},
      {"###\n###\n###", "no free cell"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<Maze> maze = Maze::Parse(c.layout, "env.maze.layout");
    ASSERT_FALSE(maze.ok()) << c.layout;
    EXPECT_EQ(maze.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(maze.status().message(), HasSubstr("env.maze.layout: ")) << c.layout;
    EXPECT_THAT(maze.status().message(), HasSubstr(c.message)) << c.layout;
  }
}

TEST(MazeTest, DisconnectedMazeIsDetected) {
  absl::StatusOr<Maze> maze = Maze::Parse("#####\n#S#G#\n#####");
  ASSERT_TRUE(maze.ok());
  EXPECT_FALSE(maze->Connected());
}

}  // namespace
}  // namespace prl::env_desc
