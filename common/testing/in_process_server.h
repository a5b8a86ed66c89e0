// Starts PRL services in-process on loopback (ports picked by the OS) for service tests, and
// makes the calls those tests repeat: health, /metrics, a call context with or without token.
#ifndef PRL_COMMON_TESTING_IN_PROCESS_SERVER_H_
#define PRL_COMMON_TESTING_IN_PROCESS_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/client.h"
#include "common/server.h"

namespace prl::testing {

class InProcessServer {
 public:
  // Starts `services` (owned by the caller, outliving this object) under `service_name`,
  // exposing `registry` (a fresh one when null) on /metrics.
  static absl::StatusOr<std::unique_ptr<InProcessServer>> Start(
      const std::string& service_name, const std::vector<grpc::Service*>& services,
      std::shared_ptr<prometheus::Registry> registry = nullptr);

  ServerHost& host() { return *host_; }
  prometheus::Registry& registry() { return *registry_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

  // A context with a 5 s deadline and, when non-empty, the bearer token.
  std::unique_ptr<grpc::ClientContext> Context(const std::string& token = "") const;

  // The body of GET /metrics.
  absl::StatusOr<std::string> Metrics() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<ServerHost> host_;
  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace prl::testing

#endif  // PRL_COMMON_TESTING_IN_PROCESS_SERVER_H_
