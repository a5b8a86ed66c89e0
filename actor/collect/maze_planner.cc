#include "actor/collect/maze_planner.h"

#include <algorithm>

#include "actor/envs/point_maze.h"
#include "actor/envs/reward_delay.h"
#include "common/logging.h"

namespace prl::actor {
namespace {

const PointMazeEnv* AsPointMaze(const Env& env) {
  if (const auto* delayed = dynamic_cast<const RewardDelayEnv*>(&env)) {
    return AsPointMaze(delayed->wrapped());
  }
  return dynamic_cast<const PointMazeEnv*>(&env);
}

}  // namespace

MazePlannerPolicy::MazePlannerPolicy(int num_envs, Gains gains) : gains_(gains), plans_(num_envs) {}

void MazePlannerPolicy::OnEpisodeStart(int index, const Env& env) {
  const PointMazeEnv* maze_env = AsPointMaze(env);
  PRL_CHECK(maze_env != nullptr) << "the maze planner drives point_maze envs, not " << env.name();
  Plan& plan = plans_.at(index);
  plan.maze = &maze_env->maze();
  // the distance field only changes with the goal
  if (plan.distance.empty() || plan.goal != maze_env->goal_cell()) {
    plan.goal = maze_env->goal_cell();
    plan.distance = plan.maze->DistancesTo(plan.goal);
  }
}

void MazePlannerPolicy::ActOne(int index, absl::Span<const float> obs,
                               absl::Span<float> action) const {
  const Plan& plan = plans_.at(index);
  PRL_CHECK(plan.maze != nullptr) << "OnEpisodeStart was not called for env " << index;
  const env_desc::Maze& maze = *plan.maze;
  const double x = obs[0], y = obs[1], vx = obs[2], vy = obs[3];
  const env_desc::Cell here = maze.CellAt(x, y);
  env_desc::Cell target = plan.goal;
  const auto dist = [&](env_desc::Cell c) {
    return maze.IsWall(c) ? -1 : plan.distance[c.row * maze.cols() + c.col];
  };
  if (here != plan.goal && dist(here) > 0) {
    // the neighbour one step closer to the goal
    static constexpr int kDr[] = {-1, 1, 0, 0};
    static constexpr int kDc[] = {0, 0, -1, 1};
    for (int k = 0; k < 4; ++k) {
      const env_desc::Cell next{here.row + kDr[k], here.col + kDc[k]};
      if (dist(next) >= 0 && dist(next) < dist(here)) {
        target = next;
        break;
      }
    }
  }
  double tx, ty;
  maze.CellCenter(target, &tx, &ty);
  action[0] = static_cast<float>(std::clamp(gains_.kp * (tx - x) - gains_.kd * vx, -1.0, 1.0));
  action[1] = static_cast<float>(std::clamp(gains_.kp * (ty - y) - gains_.kd * vy, -1.0, 1.0));
}

void MazePlannerPolicy::Act(absl::Span<const float> obs, absl::Span<float> actions) {
  const int n = static_cast<int>(plans_.size());
  PRL_CHECK(obs.size() == static_cast<size_t>(n) * 4 &&
            actions.size() == static_cast<size_t>(n) * 2);
  for (int i = 0; i < n; ++i) {
    ActOne(i, obs.subspan(static_cast<size_t>(i) * 4, 4),
           actions.subspan(static_cast<size_t>(i) * 2, 2));
  }
}

}  // namespace prl::actor
