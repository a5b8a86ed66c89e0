// Resolving a prl.v1.EnvSpec: defaults filled, every field validated, the maze parsed. No
// MuJoCo here, so the learner validates submitted specs without linking the simulator.
#ifndef PRL_ENV_DESC_ENV_SPEC_H_
#define PRL_ENV_DESC_ENV_SPEC_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "env_desc/maze.h"
#include "env_desc/maze_generator.h"
#include "proto/experiment.pb.h"

namespace prl::env_desc {

// Fixed facts about a domain.
struct DomainInfo {
  v1::EnvSpec::Domain domain;
  const char* name;  // "cheetah", "hopper", "ant", "point_maze"
  int obs_dim;
  int act_dim;
  int frame_skip;  // physics steps per env step
  int default_episode_length;
  std::vector<std::string> tasks;  // first is the default
};

// The domain's facts; nullptr for DOMAIN_UNSPECIFIED or unknown values.
const DomainInfo* FindDomain(v1::EnvSpec::Domain domain);
// Looks a domain up by its short name ("cheetah", ...); nullptr when unknown.
const DomainInfo* FindDomainByName(absl::string_view name);

// MazeSpec.random with its defaults resolved.
struct RandomMazeConfig {
  int rows = 0;
  int cols = 0;
  uint64_t seed = 0;
  bool per_env = false;  // env j gets the maze of seed + j
  double extra_openings = kDefaultExtraOpenings;
};

// An EnvSpec with every default resolved; what env constructors take.
struct EnvConfig {
  const DomainInfo* domain = nullptr;
  std::string task;
  double armature_scale = 1.0;
  double mass_scale = 1.0;
  double damping_scale = 1.0;
  double size_scale = 1.0;
  int crippled_leg = -1;  // ant only; -1 none
  int reward_delay = 0;   // 0 none, n > 0 every n steps, -1 at episode end
  int episode_length = 0;
  int64_t seed = 0;
  // point_maze only. With a random maze, the maze generated from random_maze->seed (env 0's
  // when per_env; EnvConfigForEnv gives env j's).
  std::optional<Maze> maze;
  Cell start;
  Cell goal;
  // point_maze only: set when the maze is generated from a seed (MazeSpec.random).
  std::optional<RandomMazeConfig> random_maze;
  // Per-env random mazes only: j, the env whose maze `maze` is (generated from
  // random_maze->seed + j); -1 otherwise.
  int64_t maze_index = -1;
  // point_maze only: each episode draws its start and goal among free cells (collectors).
  bool randomize_start_goal = false;
};

// Validates `spec` and resolves its defaults. INVALID_ARGUMENT listing every problem, each with
// its field path below `field` (e.g. "env.dynamics.mass_scale: -1 is not allowed; it must be
// > 0"), separated by "; ".
absl::StatusOr<EnvConfig> ResolveEnvSpec(const v1::EnvSpec& spec, absl::string_view field = "env");

// The config of env `env_index` of a run (counted over all actors, as EnvSpec.seed): `config`
// itself, except with per-env random mazes (MazeSpec.random.per_env), where maze, start, goal and
// maze_index are those of the maze generated from random_maze->seed + env_index (wrapping).
// INTERNAL only if a generated maze failed its own checks (a generator bug).
absl::StatusOr<EnvConfig> EnvConfigForEnv(const EnvConfig& config, uint64_t env_index);

// Appends one message per problem in `spec` to `problems` (the same checks as ResolveEnvSpec).
void ValidateEnvSpec(const v1::EnvSpec& spec, absl::string_view field,
                     std::vector<std::string>* problems);

// Writes the resolved values back into `spec` (task, scales, episode_length, maze layout, start
// and goal), so a stored spec shows what ran. A random maze keeps its seed instead of the layout
// (with extra_openings filled), and a per-env one no start and goal (each env has its own).
void FillEnvSpecDefaults(const EnvConfig& config, v1::EnvSpec* spec);

}  // namespace prl::env_desc

#endif  // PRL_ENV_DESC_ENV_SPEC_H_
