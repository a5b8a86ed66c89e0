// The scaffolding every PRL server runs in: a gRPC server with the standard health service,
// optional TLS, per-RPC metrics, a Prometheus /metrics endpoint on its own port carrying
// prl_build_info, and a graceful shutdown (NOT_SERVING, stop accepting, drain in-flight RPCs
// until a deadline, then cancel them).
//
// ServerHost owns the gRPC server and the exposer; the caller owns the services (which must
// outlive the host) and shares the registry. Thread-safe: Shutdown() may be called from any
// thread, once or more.
#ifndef PRL_COMMON_SERVER_H_
#define PRL_COMMON_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/server.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"

namespace prl {

class HealthService;

struct ServerOptions {
  // Names the process in logs and prl_build_info: "replay", "learner", ...
  std::string service_name;
  // gRPC listening address and port; port 0 picks a free port (read it back with port()).
  std::string host = "127.0.0.1";
  int port = 0;
  // Prometheus endpoint; port 0 picks a free port, -1 disables it.
  std::string metrics_host = "127.0.0.1";
  int metrics_port = 0;
  // TLS: both set turns TLS on; both empty leaves the server in plaintext.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Largest request or response message accepted.
  int max_message_bytes = 64 << 20;
  // Upper bound on the synchronous server's handler threads (0 = gRPC's default).
  int max_threads = 0;
  // How long Shutdown() lets in-flight RPCs finish before cancelling them.
  absl::Duration drain_timeout = absl::Seconds(3);
};

class ServerHost {
 public:
  // Validates options, builds and starts the server with `services` plus the health service
  // (reporting SERVING for "" and for each service's full name, e.g. "prl.v1.ReplayService")
  // and the metrics endpoint for `registry`.
  // Errors: INVALID_ARGUMENT for bad options (naming the option), NOT_FOUND for unreadable TLS
  // files, UNAVAILABLE if a port cannot be bound.
  static absl::StatusOr<std::unique_ptr<ServerHost>> Start(
      const ServerOptions& options, const std::vector<grpc::Service*>& services,
      std::shared_ptr<prometheus::Registry> registry);

  ~ServerHost();
  ServerHost(const ServerHost&) = delete;
  ServerHost& operator=(const ServerHost&) = delete;

  // The bound gRPC port and "host:port" address.
  int port() const { return port_; }
  std::string address() const;
  // The bound metrics port, or -1 when disabled.
  int metrics_port() const { return metrics_port_; }
  bool tls() const { return tls_; }
  // The health service: "" and the name of every service this host serves (the health
  // service's own included) are SERVING from Start() until Shutdown(), then NOT_SERVING;
  // services may change their own status through it.
  HealthService& health() { return *health_; }

  // One line for launchers and tests, printed to stdout when a server is ready:
  //   PRL_READY service=replay grpc=127.0.0.1:40123 metrics=127.0.0.1:40124
  std::string ReadyLine() const;

  // Reports NOT_SERVING, stops accepting RPCs, waits up to drain_timeout for in-flight ones,
  // then cancels the rest. Idempotent.
  void Shutdown();

 private:
  ServerHost() = default;

  ServerOptions options_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::unique_ptr<HealthService> health_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  int metrics_port_ = -1;
  bool tls_ = false;
  // Held for the whole shutdown, so a second caller (e.g. the destructor) returns only when
  // the server is fully stopped.
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace prl

#endif  // PRL_COMMON_SERVER_H_
