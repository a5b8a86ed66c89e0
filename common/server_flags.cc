#include "common/server_flags.h"

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "common/auth.h"
#include "common/logging.h"
#include "common/signals.h"
#include "common/version.h"

ABSL_FLAG(std::string, host, "127.0.0.1",
          "Address to serve gRPC on (0.0.0.0 for every interface).");
ABSL_FLAG(int, port, -1, "gRPC port; 0 picks a free one. Default: the binary's own port.");
ABSL_FLAG(int, metrics_port, -2,
          "Prometheus /metrics port; 0 picks a free one, -1 turns it off. Default: the binary's "
          "own port.");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain; with --tls_key turns TLS on.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert.");
ABSL_FLAG(std::string, auth_token_file, "",
          "File holding the bearer token: servers require it on mutating RPCs, clients "
          "(actors) send it. Default: "
          "$PRL_AUTH_TOKEN, or no auth when unset.");
ABSL_FLAG(int, max_message_bytes, 64 << 20, "Largest gRPC message accepted or sent.");
ABSL_FLAG(int, grpc_max_threads, 16, "Most threads the gRPC server may use for handlers.");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(3),
          "On SIGTERM, how long in-flight RPCs may run before they are cancelled.");

namespace prl {

void ParseServerCommandLine(int argc, char** argv, absl::string_view usage) {
  absl::FlagsUsageConfig config;
  config.version_string = [] { return std::string("PRL ") + kVersion + "\n"; };
  absl::SetFlagsUsageConfig(config);
  absl::SetProgramUsageMessage(usage);
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    std::cerr << "ERROR: unexpected argument '" << positional[1]
              << "'; this program takes only --flags (see --help)\n";
    std::exit(1);
  }
}

ServerOptions ServerOptionsFromFlags(absl::string_view service_name, int default_port,
                                     int default_metrics_port) {
  ServerOptions o;
  o.service_name = std::string(service_name);
  o.host = absl::GetFlag(FLAGS_host);
  o.metrics_host = o.host;
  o.port = absl::GetFlag(FLAGS_port) == -1 ? default_port : absl::GetFlag(FLAGS_port);
  o.metrics_port = absl::GetFlag(FLAGS_metrics_port) == -2 ? default_metrics_port
                                                           : absl::GetFlag(FLAGS_metrics_port);
  o.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  o.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  o.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  o.max_threads = absl::GetFlag(FLAGS_grpc_max_threads);
  o.drain_timeout = absl::GetFlag(FLAGS_drain_timeout);
  return o;
}

absl::StatusOr<std::string> AuthTokenFromFlags() {
  const std::string file = absl::GetFlag(FLAGS_auth_token_file);
  if (!file.empty()) return ReadTokenFile(file);
  const char* env = std::getenv("PRL_AUTH_TOKEN");
  return std::string(env != nullptr ? env : "");
}

int ServeUntilSignal(ServerHost& host) {
  std::cout << host.ReadyLine() << std::endl;
  const int signal = WaitForTerminationSignal();
  PRL_LOG(INFO) << "received signal " << signal;
  host.Shutdown();
  return 0;
}

}  // namespace prl
