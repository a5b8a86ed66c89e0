// Builds envs for a resolved EnvConfig: compiles the domain's model once (with the dynamics
// variant applied) and hands out envs that share it read-only, each with its own mjData.
// With per-env random mazes (MazeSpec.random.per_env) env j runs the maze of random seed + j,
// so Make compiles that env's own model (env 0's is the shared one).
//
//   PRL_ASSIGN_OR_RETURN(EnvConfig config, ResolveEnvSpec(spec));
//   PRL_ASSIGN_OR_RETURN(auto factory, EnvFactory::Create(config));
//   std::unique_ptr<Env> env = factory->Make(/*seed=*/config.seed + j, /*env_index=*/j);
//
// Thread-safe: Make may be called concurrently.
#ifndef PRL_ACTOR_ENVS_ENV_FACTORY_H_
#define PRL_ACTOR_ENVS_ENV_FACTORY_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "actor/envs/env.h"
#include "env_desc/env_spec.h"

struct mjModel_;

namespace prl::actor {

class EnvFactory {
 public:
  // INVALID_ARGUMENT when the model does not compile (a maze too large, say).
  static absl::StatusOr<std::unique_ptr<EnvFactory>> Create(const env_desc::EnvConfig& config);

  // A new env seeded with `seed`, wrapped for reward delay when the config asks. `env_index` is
  // the env's index j in the run (counted over all actors); it only matters with per-env random
  // mazes, where the env gets the maze of random seed + j.
  std::unique_ptr<Env> Make(uint64_t seed, uint64_t env_index) const;
  // Make(seed, seed - config().seed): env j of a run is seeded with EnvSpec.seed + j, so this
  // gives it maze j too.
  std::unique_ptr<Env> Make(uint64_t seed) const;

  const env_desc::EnvConfig& config() const { return config_; }
  // The compiled model (shared by every env this factory makes, except envs 1.. of per-env
  // random mazes, which have their own).
  const mjModel_& model() const { return *model_; }

 private:
  EnvFactory(env_desc::EnvConfig config, std::shared_ptr<const mjModel_> model)
      : config_(std::move(config)), model_(std::move(model)) {}

  env_desc::EnvConfig config_;
  std::shared_ptr<const mjModel_> model_;
};

// The MJCF text a domain's model is compiled from (point_maze's depends on the maze).
std::string DomainModelXml(const env_desc::EnvConfig& config);

}  // namespace prl::actor

#endif  // PRL_ACTOR_ENVS_ENV_FACTORY_H_
