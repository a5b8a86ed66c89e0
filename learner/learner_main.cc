// prl_learner: the experiment service (for users) and the actor service (for actors), gRPC
// health and /metrics; stops cleanly on SIGTERM/SIGINT.
#include <iostream>
#include <memory>

#include "absl/flags/flag.h"
#include "common/server.h"
#include "common/server_flags.h"
#include "common/signals.h"
#include "learner/learner_services.h"

ABSL_FLAG(std::string, learner_device, "auto",
          "Where the learner trains: auto (CUDA when present), cpu or cuda.");

int main(int argc, char** argv) {
  prl::BlockTerminationSignals();
  prl::ParseServerCommandLine(argc, argv,
                              "prl_learner: PRL's experiment service and learner.\n"
                              "Usage: prl_learner [--port=N] [--metrics_port=N] [flags]");
  const std::string device = absl::GetFlag(FLAGS_learner_device);
  if (device != "auto" && device != "cpu" && device != "cuda") {
    std::cerr << "prl_learner: --learner_device='" << device
              << "' is not allowed; allowed: auto, cpu, cuda\n";
    return 1;
  }
  auto token = prl::AuthTokenFromFlags();
  if (!token.ok()) {
    std::cerr << "prl_learner: " << token.status().message() << "\n";
    return 1;
  }
  prl::learner::LearnerServiceOptions options;
  options.auth_token = *token;
  prl::learner::ExperimentServiceImpl experiments(options);
  prl::learner::ActorServiceImpl actors(options);

  auto registry = std::make_shared<prometheus::Registry>();
  auto host = prl::ServerHost::Start(prl::ServerOptionsFromFlags("learner", 50052, 9152),
                                     {&experiments, &actors}, registry);
  if (!host.ok()) {
    std::cerr << "prl_learner: " << host.status().message() << "\n";
    return 1;
  }
  return prl::ServeUntilSignal(**host);
}
