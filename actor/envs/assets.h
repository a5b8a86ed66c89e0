// The domains' MJCF files (actor/envs/assets/*.xml), compiled into the binary so envs need no
// files at run time.
#ifndef PRL_ACTOR_ENVS_ASSETS_H_
#define PRL_ACTOR_ENVS_ASSETS_H_

#include "absl/strings/string_view.h"

namespace prl::actor {

absl::string_view CheetahXml();
absl::string_view HopperXml();
absl::string_view AntXml();

}  // namespace prl::actor

#endif  // PRL_ACTOR_ENVS_ASSETS_H_
