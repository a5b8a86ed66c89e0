#include "env_desc/maze.h"

#include <cmath>
#include <deque>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace prl::env_desc {

absl::string_view Maze::DefaultLayout() {
  // A 10 x 10 maze (8 x 8 interior) with dead ends and two routes to the goal.
  static constexpr char kLayout[] =
      "##########\n"
      "#S...#...#\n"
      "#.##.#.#.#\n"
      "#.#..#.#.#\n"
      "#.#.##.#.#\n"
      "#...#..#.#\n"
      "###.#.##.#\n"
      "#...#.#..#\n"
      "#.#...#.G#\n"
      "##########";
  return kLayout;
}

absl::StatusOr<Maze> Maze::Parse(absl::string_view layout, absl::string_view field) {
  auto error = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
  };
  std::vector<absl::string_view> lines = absl::StrSplit(layout, '\n');
  // Tolerate one trailing newline.
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  if (lines.size() < 3 || lines.size() > 64) {
    return error(absl::StrCat("has ", lines.size(), " rows; a maze has 3 to 64"));
  }
  Maze maze;
  maze.rows_ = static_cast<int>(lines.size());
  maze.cols_ = static_cast<int>(lines[0].size());
  if (maze.cols_ < 3 || maze.cols_ > 64) {
    return error(absl::StrCat("row 0 has ", maze.cols_, " columns; a maze has 3 to 64"));
  }
  maze.wall_.assign(static_cast<size_t>(maze.rows_) * maze.cols_, true);
  for (int r = 0; r < maze.rows_; ++r) {
    if (static_cast<int>(lines[r].size()) != maze.cols_) {
      return error(absl::StrCat("row ", r, " has ", lines[r].size(), " columns but row 0 has ",
                                maze.cols_, "; rows must have equal length"));
    }
    for (int c = 0; c < maze.cols_; ++c) {
      const char ch = lines[r][c];
      const Cell cell{r, c};
      if (ch != '#' && ch != '.' && ch != 'S' && ch != 'G') {
        return error(absl::StrCat("row ", r, " column ", c, " is '", std::string(1, ch),
                                  "'; allowed are '#' (wall), '.' (free), 'S' and 'G'"));
      }
      if (ch == '#') continue;
      const bool border = r == 0 || c == 0 || r == maze.rows_ - 1 || c == maze.cols_ - 1;
      if (border) {
        return error(absl::StrCat("row ", r, " column ", c,
                                  " is on the border and not a wall; the border must be '#'"));
      }
      maze.wall_[maze.Index(cell)] = false;
      maze.free_cells_.push_back(cell);
      if (ch == 'S') {
        if (maze.start_) return error("has more than one 'S' cell");
        maze.start_ = cell;
      }
      if (ch == 'G') {
        if (maze.goal_) return error("has more than one 'G' cell");
        maze.goal_ = cell;
      }
    }
  }
  if (maze.free_cells_.empty()) return error("has no free cell");
  maze.layout_ = std::string(layout);
  return maze;
}

bool Maze::Contains(Cell c) const {
  return c.row >= 0 && c.col >= 0 && c.row < rows_ && c.col < cols_;
}

bool Maze::IsWall(Cell c) const { return !Contains(c) || wall_[Index(c)]; }

void Maze::CellCenter(Cell c, double* x, double* y) const {
  *x = c.col - (cols_ - 1) / 2.0;
  *y = (rows_ - 1) / 2.0 - c.row;
}

Cell Maze::CellAt(double x, double y) const {
  return Cell{static_cast<int>(std::lround((rows_ - 1) / 2.0 - y)),
              static_cast<int>(std::lround(x + (cols_ - 1) / 2.0))};
}

std::vector<int> Maze::DistancesTo(Cell target) const {
  std::vector<int> dist(wall_.size(), -1);
  if (IsWall(target)) return dist;
  std::deque<Cell> queue{target};
  dist[Index(target)] = 0;
  static constexpr int kDr[] = {-1, 1, 0, 0};
  static constexpr int kDc[] = {0, 0, -1, 1};
  while (!queue.empty()) {
    const Cell cell = queue.front();
    queue.pop_front();
    for (int k = 0; k < 4; ++k) {
      const Cell next{cell.row + kDr[k], cell.col + kDc[k]};
      if (IsWall(next) || dist[Index(next)] >= 0) continue;
      dist[Index(next)] = dist[Index(cell)] + 1;
      queue.push_back(next);
    }
  }
  return dist;
}

bool Maze::Connected() const {
  const std::vector<int> dist = DistancesTo(free_cells_.front());
  for (const Cell& c : free_cells_) {
    if (dist[Index(c)] < 0) return false;
  }
  return true;
}

}  // namespace prl::env_desc
