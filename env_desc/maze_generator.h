// Random point_maze layouts generated from a seed (SPiRL's many-maze datasets): a randomized
// depth-first spanning tree over a grid of cells, some of its remaining inner walls opened so
// the maze has loops, and 'S' and 'G' cells drawn far apart. No MuJoCo here.
//
// The layout depends only on (rows, cols, seed, extra_openings): the random draws use
// std::mt19937_64 (whose output the C++ standard fixes) and no std distribution, so a seed gives
// the same maze with every compiler and standard library. Datasets record the seed, not the
// layout, so changing the generator changes the mazes of existing seeds: don't, or pin it in
// maze_generator_test's golden layout and say why.
//
// Thread-safe (no state).
#ifndef PRL_ENV_DESC_MAZE_GENERATOR_H_
#define PRL_ENV_DESC_MAZE_GENERATOR_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace prl::env_desc {

// Smallest and largest generated size (each of rows and cols, border included).
inline constexpr int kMinGeneratedMazeSize = 4;
inline constexpr int kMaxGeneratedMazeSize = 64;
// Fraction of inner walls opened when a spec leaves MazeSpec.random.extra_openings unset.
inline constexpr double kDefaultExtraOpenings = 0.2;

// A connected maze layout in Maze::Parse's format, `rows` x `cols` with the border all walls,
// one 'S' and one 'G' cell. Cells sit on odd (row, col) positions and the walls between them
// are carved by a randomized depth-first search, so every free cell reaches every other; then
// each inner wall between two cells that the search left standing is opened with probability
// `extra_openings` (0: a perfect maze with one route between any two cells; 1: an open grid of
// pillars). An even size doubles the last row or column of cells. 'S' is a free cell drawn at
// random and 'G' one drawn among the cells at least half the largest distance from 'S' away.
// INVALID_ARGUMENT naming `field`.rows, `field`.cols or `field`.extra_openings when a size is
// outside kMinGeneratedMazeSize..kMaxGeneratedMazeSize or extra_openings is outside [0, 1].
absl::StatusOr<std::string> GenerateMazeLayout(int rows, int cols, uint64_t seed,
                                               double extra_openings = kDefaultExtraOpenings,
                                               absl::string_view field = "random");

}  // namespace prl::env_desc

#endif  // PRL_ENV_DESC_MAZE_GENERATOR_H_
