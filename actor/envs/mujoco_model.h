// Owning MuJoCo handles, loading models from in-memory MJCF, the dynamics-variant edits, and a
// process-wide count of MuJoCo warnings (tests fail on any).
#ifndef PRL_ACTOR_ENVS_MUJOCO_MODEL_H_
#define PRL_ACTOR_ENVS_MUJOCO_MODEL_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "mujoco/mujoco.h"

namespace prl::actor {

struct MjModelDeleter {
  void operator()(mjModel* m) const { mj_deleteModel(m); }
};
struct MjDataDeleter {
  void operator()(mjData* d) const { mj_deleteData(d); }
};
using MjModelPtr = std::unique_ptr<mjModel, MjModelDeleter>;
using MjDataPtr = std::unique_ptr<mjData, MjDataDeleter>;

// Compiles MJCF text (no file system access; `name` is used in errors). INVALID_ARGUMENT with
// MuJoCo's compiler message when the model does not compile.
absl::StatusOr<MjModelPtr> LoadModelFromXml(absl::string_view xml, absl::string_view name);

// Multiplies every dof's armature / damping and every body's mass and inertia. Recomputes the
// model's derived constants.
void ScaleDynamics(mjModel* model, double armature_scale, double mass_scale, double damping_scale);
// Scales the model's geometry by `scale` (geom sizes and positions, body and joint positions);
// masses follow volume (scale³) and inertias scale⁵. Recomputes derived constants.
void ScaleSize(mjModel* model, double scale);

// Installs (once) handlers that count MuJoCo warnings and log them, and turn MuJoCo errors into
// a logged fatal error instead of exit(). Called by every MuJoCo env constructor.
void InstallMujocoHandlers();
// Warnings MuJoCo printed in this process (its handler only fires for the first of each kind
// per mjData; envs also count mjData::warning themselves).
int64_t MujocoWarningsLogged();

}  // namespace prl::actor

#endif  // PRL_ACTOR_ENVS_MUJOCO_MODEL_H_
