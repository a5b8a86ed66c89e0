// Flags every PRL server binary shares, and the main() scaffolding around ServerHost:
//   --host, --port, --metrics_port, --tls_cert, --tls_key, --auth_token_file,
//   --max_message_bytes, --grpc_max_threads, --drain_timeout
// Binary-specific flags are prefixed with the binary's name (e.g. --replay_max_tables).
#ifndef PRL_COMMON_SERVER_FLAGS_H_
#define PRL_COMMON_SERVER_FLAGS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/server.h"

namespace prl {

// Parses the command line. Unknown flags and positional arguments are errors: the message
// names them and the process exits with status 1 (absl's behaviour for unknown flags).
void ParseServerCommandLine(int argc, char** argv, absl::string_view usage);

// ServerOptions from the shared flags, with `default_port` for an unset --port.
ServerOptions ServerOptionsFromFlags(absl::string_view service_name, int default_port,
                                     int default_metrics_port);

// The bearer token for mutating RPCs: from --auth_token_file, else $PRL_AUTH_TOKEN, else
// empty (auth off). Errors: the token file cannot be read or is empty.
absl::StatusOr<std::string> AuthTokenFromFlags();

// Prints host.ReadyLine() to stdout, waits for SIGINT/SIGTERM, then shuts the host down.
// Returns the process exit code (0).
int ServeUntilSignal(ServerHost& host);

}  // namespace prl

#endif  // PRL_COMMON_SERVER_FLAGS_H_
