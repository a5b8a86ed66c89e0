// prl_replay: one replay shard. Serves prl.v1.ReplayService, gRPC health and /metrics; stops
// cleanly on SIGTERM/SIGINT.
#include <iostream>
#include <memory>

#include "common/logging.h"
#include "common/server.h"
#include "common/server_flags.h"
#include "common/signals.h"
#include "replay/replay_service.h"

int main(int argc, char** argv) {
  prl::BlockTerminationSignals();
  prl::ParseServerCommandLine(argc, argv,
                              "prl_replay: a PRL replay shard.\n"
                              "Usage: prl_replay [--port=N] [--metrics_port=N] [flags]");
  auto token = prl::AuthTokenFromFlags();
  if (!token.ok()) {
    std::cerr << "prl_replay: " << token.status().message() << "\n";
    return 1;
  }
  prl::replay::ReplayServiceOptions options;
  options.auth_token = *token;
  prl::replay::ReplayServiceImpl service(options);

  auto registry = std::make_shared<prometheus::Registry>();
  auto host = prl::ServerHost::Start(prl::ServerOptionsFromFlags("replay", 50051, 9151), {&service},
                                     registry);
  if (!host.ok()) {
    std::cerr << "prl_replay: " << host.status().message() << "\n";
    return 1;
  }
  return prl::ServeUntilSignal(**host);
}
