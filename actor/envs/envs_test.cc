// Tests of the MuJoCo domains: sizes, determinism, rewards, termination, dynamics variants,
// reward delay, and golden trajectories that pin the dynamics. Every test fails on a MuJoCo
// warning.
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "actor/envs/env_factory.h"
#include "actor/envs/mujoco_env.h"
#include "actor/envs/mujoco_model.h"
#include "actor/envs/point_maze.h"
#include "env_desc/maze_generator.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"

namespace prl::actor {
namespace {

class EnvsTest : public ::testing::Test {
 protected:
  void SetUp() override { warnings_before_ = MujocoWarningsLogged(); }
  void TearDown() override {
    EXPECT_EQ(MujocoWarningsLogged(), warnings_before_) << "MuJoCo warned during the test";
    for (const auto& env : made_) EXPECT_EQ(env->warnings(), 0) << env->name();
  }

  // An env for the text-format EnvSpec, kept for the warning check.
  Env* Make(const std::string& text, uint64_t seed = 1) {
    v1::EnvSpec spec;
    EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &spec)) << text;
    absl::StatusOr<env_desc::EnvConfig> config = env_desc::ResolveEnvSpec(spec);
    EXPECT_TRUE(config.ok()) << config.status();
    if (!config.ok()) return nullptr;
    absl::StatusOr<std::unique_ptr<EnvFactory>> factory = EnvFactory::Create(*config);
    EXPECT_TRUE(factory.ok()) << factory.status();
    if (!factory.ok()) return nullptr;
    made_.push_back((*factory)->Make(seed));
    return made_.back().get();
  }

  // A fixed, seed-free action sequence.
  static std::vector<float> Action(const Env& env, int t) {
    std::vector<float> a(env.act_dim());
    for (int i = 0; i < env.act_dim(); ++i) a[i] = static_cast<float>(std::sin(0.3 * t + 1.7 * i));
    return a;
  }

  struct Rollout {
    std::vector<std::vector<float>> obs;  // obs[0] is the reset observation
    std::vector<StepResult> steps;
  };

  // Steps `env` for up to `steps` steps (stopping at the episode's end) with `policy`.
  template <typename Policy>
  static Rollout Run(Env* env, int steps, Policy policy) {
    Rollout r;
    std::vector<float> obs(env->obs_dim());
    env->Reset(absl::MakeSpan(obs));
    r.obs.push_back(obs);
    for (int t = 0; t < steps; ++t) {
      const std::vector<float> a = policy(t);
      r.steps.push_back(env->Step(a, absl::MakeSpan(obs)));
      r.obs.push_back(obs);
      if (r.steps.back().done()) break;
    }
    return r;
  }
  static Rollout Run(Env* env, int steps) {
    return Run(env, steps, [env](int t) { return Action(*env, t); });
  }

  static double MaxDifference(const Rollout& a, const Rollout& b) {
    double diff = 0;
    for (size_t t = 0; t < std::min(a.obs.size(), b.obs.size()); ++t) {
      for (size_t i = 0; i < a.obs[t].size(); ++i) {
        diff = std::max(diff, static_cast<double>(std::abs(a.obs[t][i] - b.obs[t][i])));
      }
    }
    return diff;
  }

  int64_t warnings_before_ = 0;
  std::vector<std::unique_ptr<Env>> made_;
};

TEST_F(EnvsTest, SpecSizes) {
  struct Case {
    const char* spec;
    int obs, act, length;
    double dt;
  } cases[] = {
      {"domain: DOMAIN_CHEETAH", 17, 6, 1000, 0.05},
      {"domain: DOMAIN_HOPPER", 11, 3, 1000, 0.008},
      {"domain: DOMAIN_ANT", 27, 8, 1000, 0.05},
      {"domain: DOMAIN_POINT_MAZE", 4, 2, 2000, 0.03},
  };
  for (const Case& c : cases) {
    Env* env = Make(c.spec);
    ASSERT_NE(env, nullptr);
    EXPECT_EQ(env->obs_dim(), c.obs) << c.spec;
    EXPECT_EQ(env->act_dim(), c.act) << c.spec;
    EXPECT_EQ(env->max_episode_steps(), c.length) << c.spec;
    EXPECT_NEAR(env->dt(), c.dt, 1e-12) << c.spec;
    const Rollout r = Run(env, 5);
    for (const auto& o : r.obs) {
      for (float v : o) EXPECT_TRUE(std::isfinite(v)) << c.spec;
    }
  }
}

TEST_F(EnvsTest, SameSeedSameTrajectoryOtherSeedDiffers) {
  for (const char* spec : {"domain: DOMAIN_CHEETAH", "domain: DOMAIN_HOPPER", "domain: DOMAIN_ANT",
                           "domain: DOMAIN_POINT_MAZE"}) {
    const Rollout a = Run(Make(spec, 5), 40);
    const Rollout b = Run(Make(spec, 5), 40);
    const Rollout c = Run(Make(spec, 6), 40);
    EXPECT_EQ(MaxDifference(a, b), 0.0) << spec;
    EXPECT_GT(MaxDifference(a, c), 1e-4) << spec;
  }
}

TEST_F(EnvsTest, ReusedEnvIsDeterministicAfterReseed) {
  Env* env = Make("domain: DOMAIN_CHEETAH", 3);
  const Rollout a = Run(env, 30);
  env->Seed(3);
  const Rollout b = Run(env, 30);
  EXPECT_EQ(MaxDifference(a, b), 0.0);
}

TEST_F(EnvsTest, CheetahBackwardTaskFlipsTheVelocityTerm) {
  // Same seed and actions: forward + backward reward = -2 * 0.1 * |a|^2 exactly, and the
  // forward reward tracks +x-velocity.
  Env* forward = Make("domain: DOMAIN_CHEETAH task: 'run_forward'", 9);
  Env* backward = Make("domain: DOMAIN_CHEETAH task: 'run_backward'", 9);
  const Rollout f = Run(forward, 200);
  const Rollout b = Run(backward, 200);
  ASSERT_EQ(f.steps.size(), 200u);
  double forward_return = 0;
  for (size_t t = 0; t < f.steps.size(); ++t) {
    const std::vector<float> a = Action(*forward, static_cast<int>(t));
    double ctrl = 0;
    for (float v : a) ctrl += std::min(1.0f, std::abs(v)) * std::min(1.0f, std::abs(v));
    EXPECT_NEAR(f.steps[t].reward + b.steps[t].reward, -0.2 * ctrl, 1e-4);
    forward_return += f.steps[t].reward + 0.1 * ctrl;
  }
  // the summed velocity term is the displacement over dt: check its sign against x
  const auto* cheetah = dynamic_cast<const MujocoEnv*>(forward);
  ASSERT_NE(cheetah, nullptr);
  const double displacement = cheetah->data().qpos[0];
  EXPECT_NEAR(forward_return * forward->dt(), displacement, 0.2);  // reset noise in x is ±0.1
}

TEST_F(EnvsTest, HopperTerminatesWhenUnhealthy) {
  Env* env = Make("domain: DOMAIN_HOPPER");
  auto* hopper = dynamic_cast<MujocoEnv*>(env);
  std::vector<float> obs(env->obs_dim());
  env->Reset(absl::MakeSpan(obs));
  // tilted past 0.2 rad: unhealthy on the next step
  std::vector<double> qpos(hopper->data().qpos, hopper->data().qpos + hopper->model().nq);
  std::vector<double> qvel(hopper->model().nv, 0.0);
  qpos[2] = 0.5;
  ASSERT_TRUE(hopper->SetState(qpos, qvel).ok());
  const StepResult r = env->Step(std::vector<float>(3, 0.0f), absl::MakeSpan(obs));
  EXPECT_TRUE(r.terminated);
  EXPECT_FALSE(r.truncated);
  // with no control it falls over well before the time limit
  const Rollout passive = Run(env, 1000, [](int) { return std::vector<float>(3, 0.0f); });
  ASSERT_FALSE(passive.steps.empty());
  EXPECT_TRUE(passive.steps.back().terminated);
  EXPECT_LT(passive.steps.size(), 1000u);
}

TEST_F(EnvsTest, AntTerminatesOutsideItsHeightRange) {
  // launched above the range (below it the floor pushes the torso back up within a step)
  for (double height : {1.5, 3.0}) {
    Env* env = Make("domain: DOMAIN_ANT");
    auto* ant = dynamic_cast<MujocoEnv*>(env);
    std::vector<float> obs(env->obs_dim());
    env->Reset(absl::MakeSpan(obs));
    std::vector<double> qpos(ant->model().qpos0, ant->model().qpos0 + ant->model().nq);
    qpos[2] = height;
    ASSERT_TRUE(ant->SetState(qpos, std::vector<double>(ant->model().nv, 0.0)).ok());
    EXPECT_TRUE(env->Step(std::vector<float>(8, 0.0f), absl::MakeSpan(obs)).terminated) << height;
  }
  // a healthy ant is not terminated by a few steps
  const Rollout r = Run(Make("domain: DOMAIN_ANT"), 20);
  EXPECT_EQ(r.steps.size(), 20u);
}

TEST_F(EnvsTest, TimeLimitTruncates) {
  const Rollout r = Run(Make("domain: DOMAIN_CHEETAH episode_length: 7"), 100);
  ASSERT_EQ(r.steps.size(), 7u);
  EXPECT_TRUE(r.steps.back().truncated);
  EXPECT_FALSE(r.steps.back().terminated);
  for (size_t t = 0; t + 1 < r.steps.size(); ++t) EXPECT_FALSE(r.steps[t].done());
}

TEST_F(EnvsTest, EveryDynamicsParameterChangesTheDynamics) {
  const char* variants[] = {
      "domain: DOMAIN_CHEETAH dynamics { armature_scale: 2 }",
      "domain: DOMAIN_CHEETAH dynamics { mass_scale: 1.5 }",
      "domain: DOMAIN_CHEETAH dynamics { damping_scale: 3 }",
      "domain: DOMAIN_HOPPER dynamics { armature_scale: 2 }",
      "domain: DOMAIN_HOPPER dynamics { mass_scale: 1.5 }",
      "domain: DOMAIN_HOPPER dynamics { damping_scale: 3 }",
      "domain: DOMAIN_HOPPER dynamics { size_scale: 1.2 }",
      "domain: DOMAIN_ANT dynamics { armature_scale: 2 }",
      "domain: DOMAIN_ANT dynamics { mass_scale: 1.5 }",
      "domain: DOMAIN_ANT dynamics { damping_scale: 3 }",
      "domain: DOMAIN_ANT dynamics { crippled_leg: 2 }",
  };
  for (const char* variant : variants) {
    const std::string base = std::string(variant).substr(0, std::string(variant).find(' ', 8));
    const Rollout a = Run(Make(base, 4), 30);
    const Rollout b = Run(Make(variant, 4), 30);
    EXPECT_GT(MaxDifference(a, b), 1e-3) << variant << " vs " << base;
  }
}

TEST_F(EnvsTest, CrippledLegIgnoresItsActions) {
  Env* a = Make("domain: DOMAIN_ANT dynamics { crippled_leg: 1 }", 2);
  Env* b = Make("domain: DOMAIN_ANT dynamics { crippled_leg: 1 }", 2);
  const Rollout ra = Run(a, 30);
  const Rollout rb = Run(b, 30, [b](int t) {
    std::vector<float> action = Action(*b, t);
    action[2] = 0.9f;  // leg 1's hip and ankle
    action[3] = -0.9f;
    return action;
  });
  EXPECT_EQ(MaxDifference(ra, rb), 0.0);
}

TEST_F(EnvsTest, RewardDelayPaysTheSameReturnLater) {
  const Rollout plain = Run(Make("domain: DOMAIN_CHEETAH episode_length: 95", 8), 1000);
  const Rollout every10 =
      Run(Make("domain: DOMAIN_CHEETAH episode_length: 95 reward_delay: 10", 8), 1000);
  const Rollout at_end =
      Run(Make("domain: DOMAIN_CHEETAH episode_length: 95 reward_delay: -1", 8), 1000);
  ASSERT_EQ(plain.steps.size(), 95u);
  ASSERT_EQ(every10.steps.size(), 95u);
  double total = 0, total10 = 0, total_end = 0, owed = 0;
  for (size_t t = 0; t < 95; ++t) {
    total += plain.steps[t].reward;
    owed += plain.steps[t].reward;
    total10 += every10.steps[t].reward;
    total_end += at_end.steps[t].reward;
    const bool paid = (t + 1) % 10 == 0 || t == 94;
    if (paid) {
      EXPECT_NEAR(every10.steps[t].reward, owed, 1e-3) << t;
      owed = 0;
    } else {
      EXPECT_EQ(every10.steps[t].reward, 0.0f) << t;
    }
    if (t < 94) EXPECT_EQ(at_end.steps[t].reward, 0.0f) << t;
  }
  EXPECT_NEAR(total10, total, 1e-3);
  EXPECT_NEAR(total_end, total, 1e-3);
  EXPECT_EQ(MaxDifference(plain, every10), 0.0);  // observations are untouched
}

TEST_F(EnvsTest, PointMazeRewardsReachingTheGoal) {
  // start right of... the goal one cell to the east: push east until it arrives
  Env* env = Make(
      "domain: DOMAIN_POINT_MAZE maze { layout: '#####\\n#S.G#\\n#####' "
      "start { row: 1 col: 2 } }");
  const Rollout r = Run(env, 200, [](int) { return std::vector<float>{1.0f, 0.0f}; });
  ASSERT_FALSE(r.steps.empty());
  const StepResult& last = r.steps.back();
  EXPECT_TRUE(last.success);
  EXPECT_TRUE(last.terminated);
  EXPECT_EQ(last.reward, 1.0f);
  for (size_t t = 0; t + 1 < r.steps.size(); ++t) EXPECT_EQ(r.steps[t].reward, 0.0f);
  // walls stop it: pushing west from the start cell keeps it inside the maze
  Env* blocked = Make("domain: DOMAIN_POINT_MAZE maze { layout: '#####\\n#S.G#\\n#####' }");
  const Rollout w = Run(blocked, 300, [](int) { return std::vector<float>{-1.0f, 1.0f}; });
  EXPECT_FALSE(w.steps.back().success);
  EXPECT_GT(w.obs.back()[0], -1.5f + 0.1f - 0.02f);  // wall face at x = -1.5, radius 0.1
  EXPECT_LT(w.obs.back()[1], 0.5f - 0.1f + 0.02f);
}

TEST_F(EnvsTest, PointMazeRandomStartsAndGoalsAreFreeCells) {
  v1::EnvSpec spec;
  spec.set_domain(v1::EnvSpec::DOMAIN_POINT_MAZE);
  absl::StatusOr<env_desc::EnvConfig> config = env_desc::ResolveEnvSpec(spec);
  ASSERT_TRUE(config.ok());
  config->randomize_start_goal = true;
  auto factory = EnvFactory::Create(*config);
  ASSERT_TRUE(factory.ok());
  std::unique_ptr<Env> env = (*factory)->Make(11);
  auto* maze_env = dynamic_cast<PointMazeEnv*>(env.get());
  ASSERT_NE(maze_env, nullptr);
  std::vector<float> obs(4);
  int distinct_goals = 0;
  env_desc::Cell last_goal{-1, -1};
  for (int i = 0; i < 20; ++i) {
    env->Reset(absl::MakeSpan(obs));
    EXPECT_TRUE(maze_env->maze().IsFree(maze_env->start_cell()));
    EXPECT_TRUE(maze_env->maze().IsFree(maze_env->goal_cell()));
    EXPECT_NE(maze_env->start_cell(), maze_env->goal_cell());
    EXPECT_EQ(maze_env->maze().CellAt(obs[0], obs[1]), maze_env->start_cell());
    if (maze_env->goal_cell() != last_goal) ++distinct_goals;
    last_goal = maze_env->goal_cell();
  }
  EXPECT_GT(distinct_goals, 5);
}

TEST_F(EnvsTest, PerEnvRandomMazesDifferByEnvAndReproduce) {
  const std::string spec =
      "domain: DOMAIN_POINT_MAZE seed: 100 "
      "maze { random { rows: 11 cols: 13 seed: 40 per_env: true } }";
  auto maze_of = [](Env* env) -> const PointMazeEnv& {
    auto* maze_env = dynamic_cast<PointMazeEnv*>(env);
    EXPECT_NE(maze_env, nullptr);
    return *maze_env;
  };
  // env j of the run: seed 100 + j; the one-argument Make infers j from the seed
  Env* env0 = Make(spec, 100);
  Env* env1 = Make(spec, 101);
  Env* env1_again = Make(spec, 101);
  ASSERT_NE(env0, nullptr);
  ASSERT_NE(env1, nullptr);
  ASSERT_NE(env1_again, nullptr);
  EXPECT_NE(maze_of(env0).maze().layout(), maze_of(env1).maze().layout());
  EXPECT_EQ(maze_of(env1).maze().layout(), maze_of(env1_again).maze().layout());
  EXPECT_EQ(maze_of(env0).maze().layout(), *env_desc::GenerateMazeLayout(11, 13, 40));
  EXPECT_EQ(maze_of(env1).maze().layout(), *env_desc::GenerateMazeLayout(11, 13, 41));
  // each maze has its own model: the walls differ
  EXPECT_NE(&maze_of(env0).model(), &maze_of(env1).model());
  // the explicit index wins over the seed
  v1::EnvSpec parsed;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(spec, &parsed));
  absl::StatusOr<env_desc::EnvConfig> config = env_desc::ResolveEnvSpec(parsed);
  ASSERT_TRUE(config.ok()) << config.status();
  auto factory = EnvFactory::Create(*config);
  ASSERT_TRUE(factory.ok()) << factory.status();
  made_.push_back((*factory)->Make(7, 3));
  EXPECT_EQ(maze_of(made_.back().get()).maze().layout(), *env_desc::GenerateMazeLayout(11, 13, 43));
  // infos say which maze: "maze" = j
  ASSERT_EQ(env1->info_fields().size(), 4u);
  EXPECT_EQ(env1->info_fields()[3].name, "maze");
  for (auto [env, index] : {std::pair<Env*, float>{env0, 0.0f}, {env1, 1.0f}}) {
    std::vector<float> obs(4), info(env->info_dim());
    env->Reset(absl::MakeSpan(obs));
    env->GetInfo(absl::MakeSpan(info));
    EXPECT_EQ(info[6], index);
    // the start is the maze's own 'S' cell, and the point moves in it without warnings
    EXPECT_EQ(maze_of(env).maze().CellAt(obs[0], obs[1]), *maze_of(env).maze().start());
    const Rollout r = Run(env, 50);
    EXPECT_EQ(r.steps.size(), 50u);
  }
}

TEST_F(EnvsTest, SharedRandomMazeIsTheSameForEveryEnv) {
  const std::string spec = "domain: DOMAIN_POINT_MAZE maze { random { rows: 9 cols: 9 seed: 5 } }";
  Env* a = Make(spec, 1);
  Env* b = Make(spec, 2);
  const auto* maze_a = dynamic_cast<PointMazeEnv*>(a);
  const auto* maze_b = dynamic_cast<PointMazeEnv*>(b);
  ASSERT_NE(maze_a, nullptr);
  ASSERT_NE(maze_b, nullptr);
  EXPECT_EQ(maze_a->maze().layout(), maze_b->maze().layout());
  EXPECT_EQ(maze_a->maze().layout(), *env_desc::GenerateMazeLayout(9, 9, 5));
  EXPECT_EQ(a->info_fields().size(), 3u);  // no "maze" info for a single maze
}

TEST_F(EnvsTest, InfosHoldQposQvelAndGoal) {
  Env* env = Make("domain: DOMAIN_POINT_MAZE");
  ASSERT_EQ(env->info_fields().size(), 3u);
  EXPECT_EQ(env->info_fields()[2].name, "goal");
  EXPECT_EQ(env->info_dim(), 6);
  std::vector<float> obs(4), info(6);
  env->Reset(absl::MakeSpan(obs));
  env->GetInfo(absl::MakeSpan(info));
  EXPECT_EQ(info[0], obs[0]);
  EXPECT_EQ(info[1], obs[1]);
  EXPECT_FLOAT_EQ(info[4], 3.5f);  // goal (8, 8) of the 10x10 default maze
  EXPECT_FLOAT_EQ(info[5], -3.5f);
}

// Golden trajectories pin each domain's dynamics: seed 7, the fixed action sequence, 60 steps;
// the episode's length and end, and the observation and reward at steps 1, 10, 30 and 60
// (those reached) must match testdata/golden_<domain>.txt.
// After an intended change of a model, regenerate with
//   PRL_UPDATE_GOLDEN=$PWD/actor/envs/testdata bazel test //actor/envs:envs_test
// and say why in the commit.
TEST_F(EnvsTest, GoldenTrajectories) {
  const char* update_dir = std::getenv("PRL_UPDATE_GOLDEN");
  for (const char* domain : {"cheetah", "hopper", "ant", "point_maze"}) {
    std::string upper = domain;
    for (char& ch : upper) ch = static_cast<char>(std::toupper(ch));
    Env* env = Make(absl::StrCat("domain: DOMAIN_", upper, " episode_length: 60"), 7);
    const Rollout r = Run(env, 60);
    ASSERT_GE(r.steps.size(), 10u) << domain;
    std::ostringstream text;
    // the episode's length and how it ended are part of the golden record
    text << r.steps.size() << " " << r.steps.back().terminated << " " << r.steps.back().truncated
         << "\n";
    for (int t : {1, 10, 30, 60}) {
      if (t > static_cast<int>(r.steps.size())) break;
      text << t << " " << absl::StrFormat("%.6g", r.steps[t - 1].reward);
      for (float v : r.obs[t]) text << " " << absl::StrFormat("%.6g", v);
      text << "\n";
    }
    const std::string name = absl::StrCat("golden_", domain, ".txt");
    if (update_dir != nullptr) {
      std::ofstream(absl::StrCat(update_dir, "/", name)) << text.str();
      continue;
    }
    std::ifstream golden(absl::StrCat("actor/envs/testdata/", name));
    ASSERT_TRUE(golden.good()) << "missing actor/envs/testdata/" << name;
    std::istringstream actual(text.str());
    double expected_value, actual_value;
    int count = 0;
    while (golden >> expected_value) {
      ASSERT_TRUE(static_cast<bool>(actual >> actual_value)) << domain;
      EXPECT_NEAR(actual_value, expected_value, 1e-4 + 1e-4 * std::abs(expected_value))
          << domain << " value " << count;
      ++count;
    }
    EXPECT_FALSE(static_cast<bool>(actual >> actual_value))
        << domain << ": more values than golden";
    EXPECT_GT(count, 2 * 10) << domain;
  }
}

}  // namespace
}  // namespace prl::actor
