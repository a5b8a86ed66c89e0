#include "env_desc/maze_generator.h"

#include <algorithm>
#include <random>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "env_desc/maze.h"

namespace prl::env_desc {
namespace {

// Draws from std::mt19937_64 without std distributions, whose algorithms the standard leaves to
// the library; the modulo bias (n / 2^64) is far below anything a maze could show.
class Draws {
 public:
  explicit Draws(uint64_t seed) : rng_(seed) {}
  // Uniform in [0, n), n > 0.
  size_t Below(size_t n) { return static_cast<size_t>(rng_() % n); }
  // Uniform in [0, 1).
  double Unit() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

 private:
  std::mt19937_64 rng_;
};

// The layout as rows of characters, all walls to start with.
using Grid = std::vector<std::string>;

// Carves a spanning tree over the cells at odd (row, col) positions: a depth-first search from a
// random cell that visits unvisited neighbours in random order, opening the wall between.
void CarveSpanningTree(int cell_rows, int cell_cols, Draws& draws, Grid& grid) {
  std::vector<bool> visited(static_cast<size_t>(cell_rows) * cell_cols, false);
  const int first = static_cast<int>(draws.Below(visited.size()));
  std::vector<int> stack{first};
  visited[first] = true;
  grid[2 * (first / cell_cols) + 1][2 * (first % cell_cols) + 1] = '.';
  static constexpr int kDr[] = {-1, 1, 0, 0};
  static constexpr int kDc[] = {0, 0, -1, 1};
  while (!stack.empty()) {
    const int cell = stack.back();
    const int r = cell / cell_cols, c = cell % cell_cols;
    // the unvisited neighbours, then one of them at random
    int options[4];
    int count = 0;
    for (int k = 0; k < 4; ++k) {
      const int nr = r + kDr[k], nc = c + kDc[k];
      if (nr < 0 || nc < 0 || nr >= cell_rows || nc >= cell_cols) continue;
      if (!visited[nr * cell_cols + nc]) options[count++] = k;
    }
    if (count == 0) {
      stack.pop_back();
      continue;
    }
    const int k = options[draws.Below(count)];
    const int nr = r + kDr[k], nc = c + kDc[k];
    visited[nr * cell_cols + nc] = true;
    grid[2 * r + 1 + kDr[k]][2 * c + 1 + kDc[k]] = '.';
    grid[2 * nr + 1][2 * nc + 1] = '.';
    stack.push_back(nr * cell_cols + nc);
  }
}

// Opens each wall between two horizontally or vertically adjacent cells with probability p,
// row-major so the draws are in a fixed order.
void OpenExtraWalls(int cell_rows, int cell_cols, double p, Draws& draws, Grid& grid) {
  if (p <= 0) return;
  for (int r = 1; r <= 2 * cell_rows - 1; ++r) {
    for (int c = 1; c <= 2 * cell_cols - 1; ++c) {
      // a wall between two cells has exactly one odd coordinate
      if ((r % 2 == 1) == (c % 2 == 1) || grid[r][c] != '#') continue;
      if (draws.Unit() < p) grid[r][c] = '.';
    }
  }
}

// Marks 'S' on a random free cell and 'G' on a random cell at least half the largest distance
// from it away (so the task is never a single step).
void MarkStartAndGoal(Draws& draws, Grid& grid) {
  std::string layout;
  for (const std::string& row : grid) absl::StrAppend(&layout, row, "\n");
  // the grid is well formed by construction
  absl::StatusOr<Maze> maze = Maze::Parse(layout);
  const std::vector<Cell>& cells = maze->free_cells();
  const Cell start = cells[draws.Below(cells.size())];
  const std::vector<int> dist = maze->DistancesTo(start);
  int farthest = 0;
  for (const Cell& c : cells) farthest = std::max(farthest, dist[c.row * maze->cols() + c.col]);
  std::vector<Cell> far;
  for (const Cell& c : cells) {
    const int d = dist[c.row * maze->cols() + c.col];
    if (d > 0 && 2 * d >= farthest) far.push_back(c);
  }
  const Cell goal = far[draws.Below(far.size())];
  grid[start.row][start.col] = 'S';
  grid[goal.row][goal.col] = 'G';
}

}  // namespace

absl::StatusOr<std::string> GenerateMazeLayout(int rows, int cols, uint64_t seed,
                                               double extra_openings, absl::string_view field) {
  for (const auto& [name, size] : {std::pair<const char*, int>{"rows", rows}, {"cols", cols}}) {
    if (size < kMinGeneratedMazeSize || size > kMaxGeneratedMazeSize) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".", name, ": ", size, " is not allowed; use ", kMinGeneratedMazeSize,
                       "..", kMaxGeneratedMazeSize, " (border included)"));
    }
  }
  if (!(extra_openings >= 0 && extra_openings <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".extra_openings: ", extra_openings, " is not allowed; use 0..1"));
  }
  Draws draws(seed);
  const int cell_rows = (rows - 1) / 2, cell_cols = (cols - 1) / 2;
  Grid grid(rows, std::string(cols, '#'));
  CarveSpanningTree(cell_rows, cell_cols, draws, grid);
  OpenExtraWalls(cell_rows, cell_cols, extra_openings, draws, grid);
  // an even size leaves one row (column) inside the border without cells: copy its neighbour,
  // whose free cells keep every copied one connected
  if (cols % 2 == 0) {
    for (int r = 1; r < rows - 1; ++r) grid[r][cols - 2] = grid[r][cols - 3];
  }
  if (rows % 2 == 0) grid[rows - 2] = grid[rows - 3];
  MarkStartAndGoal(draws, grid);
  return absl::StrJoin(grid, "\n");
}

}  // namespace prl::env_desc
