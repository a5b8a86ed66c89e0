// point_maze: a point mass driven by two planar forces through a walled maze. obs = (x, y, vx,
// vy), action = force direction in [-1, 1]². Reward 1 and termination when the point is within
// 0.5 m of the goal cell's centre, 0 otherwise; episodes are truncated at the time limit.
// Each episode starts within ±0.1 m of the start cell's centre at rest; with
// EnvConfig.randomize_start_goal each episode draws its own start and goal cells. The maze is
// EnvConfig.maze: a given layout or one generated from a seed (per env with
// MazeSpec.random.per_env, when the config comes from EnvConfigForEnv; EnvFactory does that).
#ifndef PRL_ACTOR_ENVS_POINT_MAZE_H_
#define PRL_ACTOR_ENVS_POINT_MAZE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "actor/envs/mujoco_env.h"
#include "env_desc/maze.h"

namespace prl::actor {

class PointMazeEnv final : public MujocoEnv {
 public:
  // Distance to the goal centre that counts as reaching it, in metres.
  static constexpr double kGoalRadius = 0.5;

  // MJCF of the maze: walls as boxes, the point as a sphere on two slide joints, no gravity.
  static std::string ModelXml(const env_desc::Maze& maze);

  PointMazeEnv(std::shared_ptr<const mjModel> model, const env_desc::EnvConfig& config);

  const env_desc::Maze& maze() const { return maze_; }
  env_desc::Cell start_cell() const { return start_; }
  env_desc::Cell goal_cell() const { return goal_; }

  // With per-env random mazes: j, the env whose maze this is (generated from random seed + j).
  bool per_env_maze() const { return per_env_maze_; }
  int64_t maze_index() const { return maze_index_; }

  // qpos, qvel and the goal centre (2); with per-env random mazes also "maze" (1), the
  // maze_index, so a dataset spanning many mazes tells which maze each row ran in.
  std::vector<InfoField> info_fields() const override;
  void GetInfo(absl::Span<float> info) const override;

 protected:
  void ResetState() override;
  void Observe(absl::Span<float> obs) const override;
  StepResult Transition(absl::Span<const double> ctrl) override;

 private:
  env_desc::Maze maze_;
  env_desc::Cell start_;
  env_desc::Cell goal_;
  env_desc::Cell configured_start_;
  env_desc::Cell configured_goal_;
  bool randomize_;
  bool per_env_maze_;
  int64_t maze_index_;
};

}  // namespace prl::actor

#endif  // PRL_ACTOR_ENVS_POINT_MAZE_H_
