#include "actor/envs/env_factory.h"

#include "absl/strings/str_cat.h"
#include "actor/envs/assets.h"
#include "actor/envs/locomotion.h"
#include "actor/envs/mujoco_model.h"
#include "actor/envs/point_maze.h"
#include "actor/envs/reward_delay.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace prl::actor {

std::string DomainModelXml(const env_desc::EnvConfig& config) {
  switch (config.domain->domain) {
    case v1::EnvSpec::DOMAIN_CHEETAH:
      return std::string(CheetahXml());
    case v1::EnvSpec::DOMAIN_HOPPER:
      return std::string(HopperXml());
    case v1::EnvSpec::DOMAIN_ANT:
      return std::string(AntXml());
    case v1::EnvSpec::DOMAIN_POINT_MAZE:
      return PointMazeEnv::ModelXml(*config.maze);
    default:
      PRL_LOG(FATAL) << "unhandled domain " << config.domain->name;
      return "";
  }
}

absl::StatusOr<std::unique_ptr<EnvFactory>> EnvFactory::Create(const env_desc::EnvConfig& config) {
  PRL_CHECK(config.domain != nullptr);
  PRL_ASSIGN_OR_RETURN(MjModelPtr model,
                       LoadModelFromXml(DomainModelXml(config), config.domain->name));
  if (config.size_scale != 1.0) ScaleSize(model.get(), config.size_scale);
  if (config.armature_scale != 1.0 || config.mass_scale != 1.0 || config.damping_scale != 1.0) {
    ScaleDynamics(model.get(), config.armature_scale, config.mass_scale, config.damping_scale);
  }
  if (model->nu != config.domain->act_dim) {
    return absl::InternalError(absl::StrCat(config.domain->name, " model has ", model->nu,
                                            " actuators, expected ", config.domain->act_dim));
  }
  std::shared_ptr<const mjModel> shared(model.release(), MjModelDeleter());
  return std::unique_ptr<EnvFactory>(new EnvFactory(config, std::move(shared)));
}

std::unique_ptr<Env> EnvFactory::Make(uint64_t seed) const {
  env_desc::EnvConfig config = config_;
  config.seed = static_cast<int64_t>(seed);
  std::unique_ptr<Env> env;
  switch (config.domain->domain) {
    case v1::EnvSpec::DOMAIN_CHEETAH:
      env = std::make_unique<CheetahEnv>(model_, config);
      break;
    case v1::EnvSpec::DOMAIN_HOPPER:
      env = std::make_unique<HopperEnv>(model_, config);
      break;
    case v1::EnvSpec::DOMAIN_ANT:
      env = std::make_unique<AntEnv>(model_, config);
      break;
    case v1::EnvSpec::DOMAIN_POINT_MAZE:
      env = std::make_unique<PointMazeEnv>(model_, config);
      break;
    default:
      PRL_LOG(FATAL) << "unhandled domain " << config.domain->name;
  }
  if (config.reward_delay != 0) {
    env = std::make_unique<RewardDelayEnv>(std::move(env), config.reward_delay);
  }
  return env;
}

}  // namespace prl::actor
