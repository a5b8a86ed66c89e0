#include "actor/envs/point_maze.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace prl::actor {

std::string PointMazeEnv::ModelXml(const env_desc::Maze& maze) {
  std::string xml = R"(<mujoco model="prl_point_maze">
  <compiler angle="radian"/>
  <option timestep="0.01" gravity="0 0 0" integrator="Euler"/>
  <default>
    <geom contype="1" conaffinity="0" condim="3" friction="0.5 0.005 0.0001"/>
  </default>
  <worldbody>
    <light pos="0 0 10" dir="0 0 -1" directional="true"/>
)";
  // one box per horizontal run of wall cells keeps the geom count (and collision checks) low
  for (int r = 0; r < maze.rows(); ++r) {
    int c = 0;
    while (c < maze.cols()) {
      if (!maze.IsWall({r, c})) {
        ++c;
        continue;
      }
      int end = c;
      while (end + 1 < maze.cols() && maze.IsWall({r, end + 1})) ++end;
      double x0, y, x1;
      maze.CellCenter({r, c}, &x0, &y);
      maze.CellCenter({r, end}, &x1, &y);
      absl::StrAppendFormat(&xml,
                            "    <geom name=\"wall_%d_%d\" type=\"box\" pos=\"%g %g 0\" "
                            "size=\"%g 0.5 0.5\" rgba=\"0.45 0.45 0.5 1\"/>\n",
                            r, c, (x0 + x1) / 2, y, (end - c + 1) / 2.0);
      c = end + 1;
    }
  }
  absl::StrAppend(&xml, R"(    <body name="point" pos="0 0 0">
      <joint name="x" type="slide" axis="1 0 0" damping="2"/>
      <joint name="y" type="slide" axis="0 1 0" damping="2"/>
      <geom name="point" type="sphere" size="0.1" mass="1" contype="0" conaffinity="1"
            rgba="0.9 0.3 0.2 1"/>
    </body>
  </worldbody>
  <actuator>
    <motor name="x" joint="x" gear="5" ctrllimited="true" ctrlrange="-1 1"/>
    <motor name="y" joint="y" gear="5" ctrllimited="true" ctrlrange="-1 1"/>
  </actuator>
</mujoco>
)");
  return xml;
}

PointMazeEnv::PointMazeEnv(std::shared_ptr<const mjModel> model, const env_desc::EnvConfig& config)
    : MujocoEnv(std::move(model), config),
      maze_(*config.maze),
      start_(config.start),
      goal_(config.goal),
      configured_start_(config.start),
      configured_goal_(config.goal),
      randomize_(config.randomize_start_goal),
      per_env_maze_(config.random_maze && config.random_maze->per_env),
      maze_index_(config.maze_index) {}

void PointMazeEnv::ResetState() {
  if (randomize_) {
    const std::vector<env_desc::Cell>& cells = maze_.free_cells();
    std::uniform_int_distribution<size_t> pick(0, cells.size() - 1);
    start_ = cells[pick(rng())];
    do {
      goal_ = cells[pick(rng())];
    } while (goal_ == start_);
  } else {
    start_ = configured_start_;
    goal_ = configured_goal_;
  }
  double x, y;
  maze_.CellCenter(start_, &x, &y);
  mjData* d = mutable_data();
  d->qpos[0] = x + Uniform(-0.1, 0.1);
  d->qpos[1] = y + Uniform(-0.1, 0.1);
  d->qvel[0] = 0;
  d->qvel[1] = 0;
}

void PointMazeEnv::Observe(absl::Span<float> obs) const {
  const mjData& d = data();
  obs[0] = static_cast<float>(d.qpos[0]);
  obs[1] = static_cast<float>(d.qpos[1]);
  obs[2] = static_cast<float>(d.qvel[0]);
  obs[3] = static_cast<float>(d.qvel[1]);
}

StepResult PointMazeEnv::Transition(absl::Span<const double> ctrl) {
  Simulate(ctrl);
  double gx, gy;
  maze_.CellCenter(goal_, &gx, &gy);
  const double distance = std::hypot(data().qpos[0] - gx, data().qpos[1] - gy);
  StepResult result;
  result.success = distance <= kGoalRadius;
  result.terminated = result.success;
  result.reward = result.success ? 1.0f : 0.0f;
  return result;
}

std::vector<InfoField> PointMazeEnv::info_fields() const {
  std::vector<InfoField> fields = MujocoEnv::info_fields();
  fields.push_back({"goal", 2});
  if (per_env_maze_) fields.push_back({"maze", 1});
  return fields;
}

void PointMazeEnv::GetInfo(absl::Span<float> info) const {
  MujocoEnv::GetInfo(info);
  double gx, gy;
  maze_.CellCenter(goal_, &gx, &gy);
  info[4] = static_cast<float>(gx);
  info[5] = static_cast<float>(gy);
  if (per_env_maze_) info[6] = static_cast<float>(maze_index_);
}

}  // namespace prl::actor
