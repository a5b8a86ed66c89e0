#include "actor/envs/mujoco_model.h"

#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace prl::actor {
namespace {

std::atomic<int64_t> warnings_logged{0};

void OnMujocoWarning(const char* message) {
  warnings_logged.fetch_add(1, std::memory_order_relaxed);
  PRL_LOG(WARNING) << "MuJoCo: " << message;
}

void OnMujocoError(const char* message) { PRL_LOG(FATAL) << "MuJoCo error: " << message; }

}  // namespace

void InstallMujocoHandlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    mju_user_warning = &OnMujocoWarning;
    mju_user_error = &OnMujocoError;
  });
}

int64_t MujocoWarningsLogged() { return warnings_logged.load(std::memory_order_relaxed); }

absl::StatusOr<MjModelPtr> LoadModelFromXml(absl::string_view xml, absl::string_view name) {
  InstallMujocoHandlers();
  // mjVFS holds fixed-size name tables (megabytes); keep it off the stack.
  auto vfs = std::make_unique<mjVFS>();
  mj_defaultVFS(vfs.get());
  const std::string filename = absl::StrCat(name, ".xml");
  if (mj_makeEmptyFileVFS(vfs.get(), filename.c_str(), static_cast<int>(xml.size())) != 0) {
    return absl::InternalError(absl::StrCat("cannot stage model ", filename, " in MuJoCo's VFS"));
  }
  const int index = mj_findFileVFS(vfs.get(), filename.c_str());
  std::memcpy(vfs->filedata[index], xml.data(), xml.size());
  char error[1024] = {0};
  mjModel* model = mj_loadXML(filename.c_str(), vfs.get(), error, sizeof(error));
  mj_deleteVFS(vfs.get());
  if (model == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("model ", filename, " does not compile: ", error));
  }
  if (error[0] != '\0') PRL_LOG(WARNING) << "MuJoCo compiler on " << filename << ": " << error;
  return MjModelPtr(model);
}

namespace {

void RecomputeConstants(mjModel* model) {
  MjDataPtr data(mj_makeData(model));
  mj_setConst(model, data.get());
}

}  // namespace

void ScaleDynamics(mjModel* model, double armature_scale, double mass_scale, double damping_scale) {
  for (int i = 0; i < model->nv; ++i) {
    model->dof_armature[i] *= armature_scale;
    model->dof_damping[i] *= damping_scale;
  }
  for (int b = 1; b < model->nbody; ++b) {
    model->body_mass[b] *= mass_scale;
    for (int k = 0; k < 3; ++k) model->body_inertia[3 * b + k] *= mass_scale;
  }
  RecomputeConstants(model);
}

void ScaleSize(mjModel* model, double scale) {
  for (int g = 0; g < model->ngeom; ++g) {
    if (model->geom_type[g] == mjGEOM_PLANE) continue;
    for (int k = 0; k < 3; ++k) {
      model->geom_size[3 * g + k] *= scale;
      model->geom_pos[3 * g + k] *= scale;
    }
    model->geom_rbound[g] *= scale;
  }
  const double volume = scale * scale * scale;
  for (int b = 1; b < model->nbody; ++b) {
    for (int k = 0; k < 3; ++k) {
      model->body_pos[3 * b + k] *= scale;
      model->body_ipos[3 * b + k] *= scale;
      model->body_inertia[3 * b + k] *= volume * scale * scale;
    }
    model->body_mass[b] *= volume;
  }
  for (int j = 0; j < model->njnt; ++j) {
    for (int k = 0; k < 3; ++k) model->jnt_pos[3 * j + k] *= scale;
  }
  for (int s = 0; s < model->nsite; ++s) {
    for (int k = 0; k < 3; ++k) model->site_pos[3 * s + k] *= scale;
  }
  RecomputeConstants(model);
}

}  // namespace prl::actor
