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

namespace {

// Compiles the domain's model for `config` with its dynamics variant applied.
absl::StatusOr<std::shared_ptr<const mjModel>> CompileModel(const env_desc::EnvConfig& config) {
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
  return std::shared_ptr<const mjModel>(model.release(), MjModelDeleter());
}

}  // namespace

absl::StatusOr<std::unique_ptr<EnvFactory>> EnvFactory::Create(const env_desc::EnvConfig& config) {
  PRL_CHECK(config.domain != nullptr);
  PRL_ASSIGN_OR_RETURN(std::shared_ptr<const mjModel> model, CompileModel(config));
  return std::unique_ptr<EnvFactory>(new EnvFactory(config, std::move(model)));
}

std::unique_ptr<Env> EnvFactory::Make(uint64_t seed) const {
  return Make(seed, seed - static_cast<uint64_t>(config_.seed));
}

std::unique_ptr<Env> EnvFactory::Make(uint64_t seed, uint64_t env_index) const {
  env_desc::EnvConfig config = config_;
  std::shared_ptr<const mjModel> model = model_;
  const bool per_env_maze = config_.random_maze && config_.random_maze->per_env;
  if (per_env_maze && env_index != 0) {
    // a maze of the size Create compiled, from the same generator: failing here is a bug
    absl::StatusOr<env_desc::EnvConfig> env_config = env_desc::EnvConfigForEnv(config_, env_index);
    PRL_CHECK(env_config.ok()) << env_config.status();
    config = *std::move(env_config);
    absl::StatusOr<std::shared_ptr<const mjModel>> compiled = CompileModel(config);
    PRL_CHECK(compiled.ok()) << "maze of env " << env_index << ": " << compiled.status();
    model = *std::move(compiled);
  }
  config.seed = static_cast<int64_t>(seed);
  std::unique_ptr<Env> env;
  switch (config.domain->domain) {
    case v1::EnvSpec::DOMAIN_CHEETAH:
      env = std::make_unique<CheetahEnv>(model, config);
      break;
    case v1::EnvSpec::DOMAIN_HOPPER:
      env = std::make_unique<HopperEnv>(model, config);
      break;
    case v1::EnvSpec::DOMAIN_ANT:
      env = std::make_unique<AntEnv>(model, config);
      break;
    case v1::EnvSpec::DOMAIN_POINT_MAZE:
      env = std::make_unique<PointMazeEnv>(model, config);
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
