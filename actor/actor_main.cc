// prl_actor: a CPU worker that steps MuJoCo environments for the learner. It serves gRPC
// health and /metrics (so launchers and Kubernetes can probe it) and stops cleanly on
// SIGTERM/SIGINT. Joining the learner and stepping environments arrive with the training-loop
// issue.
#include <iostream>
#include <memory>

#include "absl/flags/flag.h"
#include "common/logging.h"
#include "common/server.h"
#include "common/server_flags.h"
#include "common/signals.h"

ABSL_FLAG(std::string, actor_learner, "127.0.0.1:50052", "Address of prl_learner.");
ABSL_FLAG(int, actor_num_envs, 4, "Environments this actor steps as one batch.");

int main(int argc, char** argv) {
  prl::BlockTerminationSignals();
  prl::ParseServerCommandLine(argc, argv,
                              "prl_actor: a PRL actor (CPU environment worker).\n"
                              "Usage: prl_actor --actor_learner=HOST:PORT [flags]");
  if (absl::GetFlag(FLAGS_actor_num_envs) < 1) {
    std::cerr << "prl_actor: --actor_num_envs=" << absl::GetFlag(FLAGS_actor_num_envs)
              << " is not allowed; it must be at least 1\n";
    return 1;
  }
  if (absl::GetFlag(FLAGS_actor_learner).empty()) {
    std::cerr << "prl_actor: --actor_learner must name the learner's HOST:PORT\n";
    return 1;
  }
  // the token this actor sends on its mutating calls to the learner and replay.
  auto token = prl::AuthTokenFromFlags();
  if (!token.ok()) {
    std::cerr << "prl_actor: " << token.status().message() << "\n";
    return 1;
  }
  auto registry = std::make_shared<prometheus::Registry>();
  auto host =
      prl::ServerHost::Start(prl::ServerOptionsFromFlags("actor", 50054, 9154), {}, registry);
  if (!host.ok()) {
    std::cerr << "prl_actor: " << host.status().message() << "\n";
    return 1;
  }
  PRL_LOG(INFO) << "actor for learner " << absl::GetFlag(FLAGS_actor_learner) << " with "
                << absl::GetFlag(FLAGS_actor_num_envs) << " envs; waiting for assignments";
  return prl::ServeUntilSignal(**host);
}
