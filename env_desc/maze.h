// A walled grid maze for the point_maze domain: parsing and validating a layout string,
// coordinates of cells, and shortest paths over free cells. No MuJoCo here, so the learner can
// validate specs and the planner can plan without linking the simulator.
//
// Layout: rows top to bottom separated by '\n'; '#' wall, '.' free, 'S' start, 'G' goal. Rows
// have equal length and the border is all walls. Cell (row, col) has its centre at
//   x = col - (cols - 1) / 2,   y = (rows - 1) / 2 - row
// (metres, cell size 1), so the maze is centred on the origin with row 0 at the top (+y).
//
// Immutable after Parse; thread-safe.
#ifndef PRL_ENV_DESC_MAZE_H_
#define PRL_ENV_DESC_MAZE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace prl::env_desc {

struct Cell {
  int row = 0;
  int col = 0;
  friend bool operator==(const Cell& a, const Cell& b) { return a.row == b.row && a.col == b.col; }
  friend bool operator!=(const Cell& a, const Cell& b) { return !(a == b); }
};

class Maze {
 public:
  // The built-in layout used when a spec leaves MazeSpec.layout empty.
  static absl::string_view DefaultLayout();

  // Parses and validates `layout`. INVALID_ARGUMENT (message prefixed with `field`) when rows
  // differ in length, a character is not one of "#.SG", the border has a free cell, there is
  // more than one 'S' or 'G', the maze is smaller than 3x3 or larger than 64x64, or it has no
  // free cell.
  static absl::StatusOr<Maze> Parse(absl::string_view layout, absl::string_view field = "layout");

  int rows() const { return rows_; }
  int cols() const { return cols_; }
  bool IsWall(Cell c) const;
  bool IsFree(Cell c) const { return !IsWall(c); }
  // True when `c` lies inside the grid.
  bool Contains(Cell c) const;
  // The layout's 'S' / 'G' cell, if it has one.
  std::optional<Cell> start() const { return start_; }
  std::optional<Cell> goal() const { return goal_; }
  // Every free cell, row-major.
  const std::vector<Cell>& free_cells() const { return free_cells_; }

  // Centre of a cell in world coordinates.
  void CellCenter(Cell c, double* x, double* y) const;
  // The cell containing the world point (x, y) (may be outside the grid for far points).
  Cell CellAt(double x, double y) const;

  // Steps (4-connected, through free cells) from every cell to `target`, row-major; -1 for
  // walls and cells that cannot reach it.
  std::vector<int> DistancesTo(Cell target) const;
  // True when every free cell can reach every other.
  bool Connected() const;
  // The layout string with 'S' and 'G' as parsed.
  const std::string& layout() const { return layout_; }

 private:
  Maze() = default;
  int Index(Cell c) const { return c.row * cols_ + c.col; }

  int rows_ = 0;
  int cols_ = 0;
  std::vector<bool> wall_;
  std::vector<Cell> free_cells_;
  std::optional<Cell> start_;
  std::optional<Cell> goal_;
  std::string layout_;
};

}  // namespace prl::env_desc

#endif  // PRL_ENV_DESC_MAZE_H_
