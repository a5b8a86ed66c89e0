#include "common/testing/in_process_server.h"

#include "common/testing/http_get.h"

namespace prl::testing {

absl::StatusOr<std::unique_ptr<InProcessServer>> InProcessServer::Start(
    const std::string& service_name, const std::vector<grpc::Service*>& services,
    std::shared_ptr<prometheus::Registry> registry) {
  auto server = std::make_unique<InProcessServer>();
  server->registry_ =
      registry != nullptr ? std::move(registry) : std::make_shared<prometheus::Registry>();
  ServerOptions options;
  options.service_name = service_name;
  options.drain_timeout = absl::Milliseconds(200);
  auto host = ServerHost::Start(options, services, server->registry_);
  if (!host.ok()) return host.status();
  server->host_ = *std::move(host);
  auto channel = CreateChannel({server->host_->address()});
  if (!channel.ok()) return channel.status();
  server->channel_ = *std::move(channel);
  return server;
}

std::unique_ptr<grpc::ClientContext> InProcessServer::Context(const std::string& token) const {
  auto context = std::make_unique<grpc::ClientContext>();
  CallOptions options;
  options.timeout = absl::Seconds(5);
  options.auth_token = token;
  PrepareContext(options, context.get());
  return context;
}

absl::StatusOr<std::string> InProcessServer::Metrics() const {
  return HttpGet(host_->metrics_port(), "/metrics");
}

}  // namespace prl::testing
