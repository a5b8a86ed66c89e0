// prl_prior_server: serves frozen prior models (prl.v1.PriorService), gRPC health and /metrics;
// stops cleanly on SIGTERM/SIGINT.
#include <iostream>
#include <memory>

#include "common/logging.h"
#include "common/server.h"
#include "common/server_flags.h"
#include "common/signals.h"
#include "prior_server/prior_service.h"

int main(int argc, char** argv) {
  prl::BlockTerminationSignals();
  prl::ParseServerCommandLine(argc, argv,
                              "prl_prior_server: serves frozen PRL priors over gRPC.\n"
                              "Usage: prl_prior_server [--port=N] [--metrics_port=N] [flags]");
  auto token = prl::AuthTokenFromFlags();
  if (!token.ok()) {
    std::cerr << "prl_prior_server: " << token.status().message() << "\n";
    return 1;
  }
  prl::prior_server::PriorServiceOptions options;
  options.auth_token = *token;
  prl::prior_server::PriorServiceImpl service(options);

  auto registry = std::make_shared<prometheus::Registry>();
  auto host = prl::ServerHost::Start(prl::ServerOptionsFromFlags("prior_server", 50053, 9153),
                                     {&service}, registry);
  if (!host.ok()) {
    std::cerr << "prl_prior_server: " << host.status().message() << "\n";
    return 1;
  }
  return prl::ServeUntilSignal(**host);
}
