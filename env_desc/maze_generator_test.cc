#include "env_desc/maze_generator.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <string>

#include "env_desc/maze.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl::env_desc {
namespace {

using ::testing::HasSubstr;

TEST(MazeGeneratorTest, SameSeedSameLayout) {
  absl::StatusOr<std::string> a = GenerateMazeLayout(20, 20, 7);
  absl::StatusOr<std::string> b = GenerateMazeLayout(20, 20, 7);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(*a, *b);
}

TEST(MazeGeneratorTest, DifferentSeedsDiffer) {
  std::set<std::string> layouts;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    absl::StatusOr<std::string> layout = GenerateMazeLayout(12, 12, seed);
    ASSERT_TRUE(layout.ok()) << layout.status();
    layouts.insert(*layout);
  }
  EXPECT_EQ(layouts.size(), 20u);
}

TEST(MazeGeneratorTest, SizesAreHonouredAndEveryMazeIsConnected) {
  for (int rows : {4, 5, 9, 20, 41, 64}) {
    for (int cols : {4, 7, 20, 64}) {
      for (double openings : {0.0, 0.2, 1.0}) {
        for (uint64_t seed : {0, 1, 12345}) {
          const std::string what =
              ::testing::PrintToString(rows) + "x" + ::testing::PrintToString(cols) + " openings " +
              ::testing::PrintToString(openings) + " seed " + ::testing::PrintToString(seed);
          absl::StatusOr<std::string> layout = GenerateMazeLayout(rows, cols, seed, openings);
          ASSERT_TRUE(layout.ok()) << what << ": " << layout.status();
          absl::StatusOr<Maze> maze = Maze::Parse(*layout);
          ASSERT_TRUE(maze.ok()) << what << ": " << maze.status() << "\n" << *layout;
          EXPECT_EQ(maze->rows(), rows) << what;
          EXPECT_EQ(maze->cols(), cols) << what;
          EXPECT_TRUE(maze->Connected()) << what << "\n" << *layout;
          ASSERT_TRUE(maze->start().has_value()) << what;
          ASSERT_TRUE(maze->goal().has_value()) << what;
          EXPECT_NE(*maze->start(), *maze->goal()) << what;
        }
      }
    }
  }
}

TEST(MazeGeneratorTest, GoalIsFarFromStart) {
  for (uint64_t seed = 0; seed < 20; ++seed) {
    absl::StatusOr<Maze> maze = Maze::Parse(*GenerateMazeLayout(20, 20, seed));
    ASSERT_TRUE(maze.ok());
    const std::vector<int> dist = maze->DistancesTo(*maze->start());
    const int farthest = *std::max_element(dist.begin(), dist.end());
    const Cell g = *maze->goal();
    EXPECT_GE(2 * dist[g.row * maze->cols() + g.col], farthest) << seed;
  }
}

TEST(MazeGeneratorTest, ExtraOpeningsAddLoops) {
  // a spanning tree over n cells has n - 1 openings; opened walls add to that
  auto free_count = [](const std::string& layout) {
    return std::count(layout.begin(), layout.end(), '.') +
           std::count(layout.begin(), layout.end(), 'S') +
           std::count(layout.begin(), layout.end(), 'G');
  };
  const std::string perfect = *GenerateMazeLayout(21, 21, 3, 0.0);
  const std::string open = *GenerateMazeLayout(21, 21, 3, 0.5);
  const std::string grid = *GenerateMazeLayout(21, 21, 3, 1.0);
  EXPECT_EQ(free_count(perfect), 100 + 99);  // 10 x 10 cells
  EXPECT_GT(free_count(open), free_count(perfect) + 20);
  EXPECT_EQ(free_count(grid), 100 + 2 * 10 * 9);  // every wall between two cells open
}

// Datasets record the seed, not the layout: this pins what seed 1 means.
TEST(MazeGeneratorTest, GoldenLayout) {
  absl::StatusOr<std::string> layout = GenerateMazeLayout(9, 12, 1);
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_EQ(*layout,
            "############\n"
            "#.#...#....#\n"
            "#.#.#.###..#\n"
            "#...#...#.G#\n"
            "#.#.#.#.#..#\n"
            "#.#........#\n"
            "#.#.#####..#\n"
            "#..S#......#\n"
            "############")
      << "\n"
      << *layout;
}

TEST(MazeGeneratorTest, BadSizesAreRefusedNamingTheField) {
  struct Case {
    int rows, cols;
    double openings;
    const char* message;
  } cases[] = {
      {3, 10, 0.2, "env.maze.random.rows: 3 is not allowed; use 4..64"},
      {65, 10, 0.2, "env.maze.random.rows: 65 is not allowed"},
      {10, 0, 0.2, "env.maze.random.cols: 0 is not allowed"},
      {10, 100, 0.2, "env.maze.random.cols: 100 is not allowed"},
      {10, 10, -0.1, "env.maze.random.extra_openings: -0.1 is not allowed; use 0..1"},
      {10, 10, 1.5, "env.maze.random.extra_openings: 1.5 is not allowed"},
      {10, 10, std::nan(""), "env.maze.random.extra_openings: nan is not allowed"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::string> layout =
        GenerateMazeLayout(c.rows, c.cols, 1, c.openings, "env.maze.random");
    ASSERT_FALSE(layout.ok()) << c.message;
    EXPECT_EQ(layout.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(layout.status().message(), HasSubstr(c.message));
  }
}

}  // namespace
}  // namespace prl::env_desc
