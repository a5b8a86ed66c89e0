// The scripted point_maze controller: a shortest path over the maze grid from the point's cell
// to the goal, followed by a PD controller that steers at the centre of the next cell on the
// path (the union of two adjacent cells is a rectangle, so that straight line never crosses a
// wall) and at the goal itself in the goal cell.
//
// Works only with PointMazeEnv batches (OnEpisodeStart reads the maze and goal).
#ifndef PRL_ACTOR_COLLECT_MAZE_PLANNER_H_
#define PRL_ACTOR_COLLECT_MAZE_PLANNER_H_

#include <string>
#include <vector>

#include "actor/collect/policy.h"
#include "env_desc/maze.h"

namespace prl::actor {

class MazePlannerPolicy final : public Policy {
 public:
  struct Gains {
    double kp = 4.0;  // action per metre of position error
    double kd = 1.0;  // action per m/s of velocity
  };

  // `num_envs` is the batch size.
  explicit MazePlannerPolicy(int num_envs) : MazePlannerPolicy(num_envs, Gains()) {}
  MazePlannerPolicy(int num_envs, Gains gains);

  void OnEpisodeStart(int index, const Env& env) override;
  void Act(absl::Span<const float> obs, absl::Span<float> actions) override;
  std::string Describe() const override { return "scripted:planner"; }

  // The action for one env with observation (x, y, vx, vy); exposed for tests.
  void ActOne(int index, absl::Span<const float> obs, absl::Span<float> action) const;

 private:
  struct Plan {
    const env_desc::Maze* maze = nullptr;
    env_desc::Cell goal;
    std::vector<int> distance;  // grid steps to the goal, row-major; -1 unreachable
  };
  Gains gains_;
  std::vector<Plan> plans_;
};

}  // namespace prl::actor

#endif  // PRL_ACTOR_COLLECT_MAZE_PLANNER_H_
