#include "env_desc/env_spec.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "env_desc/maze_generator.h"

namespace prl::env_desc {
namespace {

const std::vector<DomainInfo>& Domains() {
  static const auto* domains = new std::vector<DomainInfo>{
      {v1::EnvSpec::DOMAIN_CHEETAH, "cheetah", 17, 6, 5, 1000, {"run_forward", "run_backward"}},
      {v1::EnvSpec::DOMAIN_HOPPER, "hopper", 11, 3, 4, 1000, {"hop_forward"}},
      {v1::EnvSpec::DOMAIN_ANT, "ant", 27, 8, 5, 1000, {"run_forward"}},
      {v1::EnvSpec::DOMAIN_POINT_MAZE, "point_maze", 4, 2, 3, 2000, {"reach_goal"}},
  };
  return *domains;
}

// Checks one optional scale: 0 means 1.0; otherwise finite and > 0. Returns the resolved value.
double CheckScale(double value, const std::string& path, bool allowed, const char* domain_name,
                  std::vector<std::string>* problems) {
  if (value == 0) return 1.0;
  if (!allowed) {
    problems->push_back(
        absl::StrCat(path, ": not used by the ", domain_name, " domain; leave it unset"));
    return 1.0;
  }
  if (!std::isfinite(value) || value <= 0) {
    problems->push_back(absl::StrCat(path, ": ", value, " is not allowed; it must be > 0"));
    return 1.0;
  }
  if (value > 100) {
    problems->push_back(absl::StrCat(path, ": ", value, " is too large; at most 100"));
    return 1.0;
  }
  return value;
}

// Resolves a maze cell: the explicit cell if set, else the layout's marked one.
std::optional<Cell> ResolveCell(const Maze& maze, bool has_cell, const v1::GridCell& cell,
                                std::optional<Cell> marked, char mark, const std::string& path,
                                std::vector<std::string>* problems) {
  if (!has_cell) {
    if (!marked) {
      problems->push_back(
          absl::StrCat(path, ": not set and the layout has no '", std::string(1, mark), "' cell"));
    }
    return marked;
  }
  const Cell c{cell.row(), cell.col()};
  if (!maze.Contains(c)) {
    problems->push_back(absl::StrCat(path, ": (", c.row, ", ", c.col, ") is outside the ",
                                     maze.rows(), "x", maze.cols(), " maze"));
    return std::nullopt;
  }
  if (maze.IsWall(c)) {
    problems->push_back(
        absl::StrCat(path, ": (", c.row, ", ", c.col, ") is a wall; it must be a free cell"));
    return std::nullopt;
  }
  return c;
}

// Parses `layout` into config->maze, with its start and goal: the cells `spec` sets (when
// `use_cells`), else the layout's 'S' and 'G'.
void ResolveLayout(const std::string& layout, const v1::MazeSpec& spec, bool use_cells,
                   const std::string& mp, EnvConfig* config, std::vector<std::string>* problems) {
  absl::StatusOr<Maze> maze = Maze::Parse(layout, mp + ".layout");
  if (!maze.ok()) {
    problems->push_back(std::string(maze.status().message()));
    return;
  }
  if (!maze->Connected()) {
    problems->push_back(absl::StrCat(mp,
                                     ".layout: some free cells cannot reach others; every "
                                     "free cell must be connected"));
  }
  std::optional<Cell> start = ResolveCell(*maze, use_cells && spec.has_start(), spec.start(),
                                          maze->start(), 'S', mp + ".start", problems);
  std::optional<Cell> goal = ResolveCell(*maze, use_cells && spec.has_goal(), spec.goal(),
                                         maze->goal(), 'G', mp + ".goal", problems);
  if (start && goal && *start == *goal) {
    problems->push_back(absl::StrCat(mp, ".goal: (", goal->row, ", ", goal->col,
                                     ") is the start cell; the goal must differ from the start"));
  }
  if (maze->free_cells().size() < 2) {
    problems->push_back(absl::StrCat(mp, ".layout: needs at least two free cells"));
  }
  if (start) config->start = *start;
  if (goal) config->goal = *goal;
  config->maze = std::move(*maze);
}

// Resolves MazeSpec `spec` (at field path `mp`) into config->maze, start, goal and random_maze.
void ResolveMaze(const v1::MazeSpec& spec, const std::string& mp, EnvConfig* config,
                 std::vector<std::string>* problems) {
  if (!spec.has_random()) {
    ResolveLayout(spec.layout().empty() ? std::string(Maze::DefaultLayout()) : spec.layout(), spec,
                  /*use_cells=*/true, mp, config, problems);
    return;
  }
  if (!spec.layout().empty()) {
    problems->push_back(absl::StrCat(mp, ".layout and ", mp,
                                     ".random: both are set; a maze is either a given layout or "
                                     "generated from a seed, so set one of them"));
    return;
  }
  const v1::MazeSpec::RandomMaze& r = spec.random();
  RandomMazeConfig random;
  random.rows = r.rows();
  random.cols = r.cols();
  random.seed = r.seed();
  random.per_env = r.per_env();
  if (r.has_extra_openings()) random.extra_openings = r.extra_openings();
  if (random.per_env) {
    for (const auto& [name, set] :
         {std::pair<const char*, bool>{"start", spec.has_start()}, {"goal", spec.has_goal()}}) {
      if (!set) continue;
      problems->push_back(absl::StrCat(mp, ".", name, ": must stay unset with ", mp,
                                       ".random.per_env (each env's maze has its own 'S' and "
                                       "'G'); leave it unset"));
    }
  }
  absl::StatusOr<std::string> layout = GenerateMazeLayout(random.rows, random.cols, random.seed,
                                                          random.extra_openings, mp + ".random");
  if (!layout.ok()) {
    problems->push_back(std::string(layout.status().message()));
    return;
  }
  ResolveLayout(*layout, spec, /*use_cells=*/!random.per_env, mp, config, problems);
  config->random_maze = random;
  if (random.per_env) config->maze_index = 0;
}

EnvConfig Resolve(const v1::EnvSpec& spec, absl::string_view field,
                  std::vector<std::string>* problems) {
  EnvConfig config;
  const std::string f(field);
  config.domain = FindDomain(spec.domain());
  if (config.domain == nullptr) {
    // a number the enum does not know has no name: say the number
    const std::string name = v1::EnvSpec::Domain_Name(spec.domain());
    problems->push_back(absl::StrCat(f,
                                     ".domain: ", name.empty() ? absl::StrCat(spec.domain()) : name,
                                     " is not allowed; use DOMAIN_CHEETAH, DOMAIN_HOPPER, "
                                     "DOMAIN_ANT or DOMAIN_POINT_MAZE"));
    return config;
  }
  const DomainInfo& d = *config.domain;
  const bool is_maze = d.domain == v1::EnvSpec::DOMAIN_POINT_MAZE;

  // task
  config.task = spec.task().empty() ? d.tasks.front() : spec.task();
  if (std::find(d.tasks.begin(), d.tasks.end(), config.task) == d.tasks.end()) {
    problems->push_back(absl::StrCat(f, ".task: \"", config.task, "\" is not a ", d.name,
                                     " task; allowed: ", absl::StrJoin(d.tasks, ", ")));
  }

  // dynamics
  const v1::DynamicsSpec& dyn = spec.dynamics();
  const std::string dp = f + ".dynamics";
  config.armature_scale =
      CheckScale(dyn.armature_scale(), dp + ".armature_scale", !is_maze, d.name, problems);
  config.mass_scale = CheckScale(dyn.mass_scale(), dp + ".mass_scale", !is_maze, d.name, problems);
  config.damping_scale =
      CheckScale(dyn.damping_scale(), dp + ".damping_scale", !is_maze, d.name, problems);
  config.size_scale = CheckScale(dyn.size_scale(), dp + ".size_scale",
                                 d.domain == v1::EnvSpec::DOMAIN_HOPPER, d.name, problems);
  if (dyn.has_crippled_leg() && dyn.crippled_leg() != -1) {
    if (d.domain != v1::EnvSpec::DOMAIN_ANT) {
      problems->push_back(absl::StrCat(dp,
                                       ".crippled_leg: only the ant domain has legs to "
                                       "cripple; leave it unset"));
    } else if (dyn.crippled_leg() < 0 || dyn.crippled_leg() > 3) {
      problems->push_back(absl::StrCat(dp, ".crippled_leg: ", dyn.crippled_leg(),
                                       " is not allowed; use 0-3, or -1 for none"));
    } else {
      config.crippled_leg = dyn.crippled_leg();
    }
  }

  // reward delay, episode length, seed
  if (spec.reward_delay() < -1) {
    problems->push_back(absl::StrCat(f, ".reward_delay: ", spec.reward_delay(),
                                     " is not allowed; use 0 (none), n > 0 (every n steps) or "
                                     "-1 (at episode end)"));
  } else {
    config.reward_delay = spec.reward_delay();
  }
  if (spec.episode_length() < 0 || spec.episode_length() > 1000000) {
    problems->push_back(absl::StrCat(f, ".episode_length: ", spec.episode_length(),
                                     " is not allowed; use 0 (the domain's default, ",
                                     d.default_episode_length, ") or 1..1000000"));
  }
  config.episode_length =
      spec.episode_length() > 0 ? spec.episode_length() : d.default_episode_length;
  config.seed = spec.seed();

  // maze
  if (!is_maze) {
    if (spec.has_maze()) {
      problems->push_back(absl::StrCat(f,
                                       ".maze: only the point_maze domain has a maze; "
                                       "leave it unset"));
    }
    return config;
  }
  ResolveMaze(spec.maze(), f + ".maze", &config, problems);
  return config;
}

}  // namespace

const DomainInfo* FindDomain(v1::EnvSpec::Domain domain) {
  for (const DomainInfo& d : Domains()) {
    if (d.domain == domain) return &d;
  }
  return nullptr;
}

const DomainInfo* FindDomainByName(absl::string_view name) {
  for (const DomainInfo& d : Domains()) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

void ValidateEnvSpec(const v1::EnvSpec& spec, absl::string_view field,
                     std::vector<std::string>* problems) {
  Resolve(spec, field, problems);
}

absl::StatusOr<EnvConfig> ResolveEnvSpec(const v1::EnvSpec& spec, absl::string_view field) {
  std::vector<std::string> problems;
  EnvConfig config = Resolve(spec, field, &problems);
  if (!problems.empty()) return absl::InvalidArgumentError(absl::StrJoin(problems, "; "));
  return config;
}

absl::StatusOr<EnvConfig> EnvConfigForEnv(const EnvConfig& config, uint64_t env_index) {
  if (!config.random_maze || !config.random_maze->per_env) return config;
  const RandomMazeConfig& random = *config.random_maze;
  const std::string field = absl::StrCat("maze of env ", env_index);
  absl::StatusOr<std::string> layout = GenerateMazeLayout(
      random.rows, random.cols, random.seed + env_index, random.extra_openings, field);
  if (!layout.ok()) return layout.status();
  EnvConfig env = config;
  std::vector<std::string> problems;
  ResolveLayout(*layout, v1::MazeSpec(), /*use_cells=*/false, field, &env, &problems);
  if (!problems.empty()) return absl::InternalError(absl::StrJoin(problems, "; "));
  env.maze_index = static_cast<int64_t>(env_index);
  return env;
}

void FillEnvSpecDefaults(const EnvConfig& config, v1::EnvSpec* spec) {
  spec->set_task(config.task);
  spec->set_episode_length(config.episode_length);
  if (config.maze) {
    v1::MazeSpec* maze = spec->mutable_maze();
    if (config.random_maze) {
      // the seed stands for the layout; per-env mazes each have their own start and goal
      maze->mutable_random()->set_extra_openings(config.random_maze->extra_openings);
      if (config.random_maze->per_env) return;
    } else {
      maze->set_layout(config.maze->layout());
    }
    maze->mutable_start()->set_row(config.start.row);
    maze->mutable_start()->set_col(config.start.col);
    maze->mutable_goal()->set_row(config.goal.row);
    maze->mutable_goal()->set_col(config.goal.col);
    return;
  }
  v1::DynamicsSpec* dyn = spec->mutable_dynamics();
  dyn->set_armature_scale(config.armature_scale);
  dyn->set_mass_scale(config.mass_scale);
  dyn->set_damping_scale(config.damping_scale);
  if (config.domain->domain == v1::EnvSpec::DOMAIN_HOPPER) dyn->set_size_scale(config.size_scale);
  if (config.domain->domain == v1::EnvSpec::DOMAIN_ANT) {
    dyn->set_crippled_leg(config.crippled_leg);
  }
}

}  // namespace prl::env_desc
