#include "common/server.h"

#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/health_service.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "grpcpp/impl/server_builder_option.h"
#include "grpcpp/impl/server_builder_plugin.h"
#include "grpcpp/impl/server_initializer.h"
#include "grpcpp/resource_quota.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace prl {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path, absl::string_view option) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("--", option, ": cannot read '", path, "'"));
  }
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

absl::Status ValidateOptions(const ServerOptions& o) {
  if (o.service_name.empty()) return absl::InvalidArgumentError("service_name must be set");
  if (o.port < 0 || o.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--port: ", o.port, " is not a port; allowed: 0 (any free port) to 65535"));
  }
  if (o.metrics_port < -1 || o.metrics_port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--metrics_port: ", o.metrics_port, " is not a port; allowed: -1 (off), 0 (any), 1-65535"));
  }
  if (o.tls_cert_file.empty() != o.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls_cert and --tls_key must be given together (both for TLS, neither for plaintext)");
  }
  if (o.max_message_bytes <= 0) {
    return absl::InvalidArgumentError("--max_message_bytes must be positive");
  }
  if (o.drain_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--drain_timeout must not be negative");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeCredentials(const ServerOptions& o) {
  if (o.tls_cert_file.empty()) return grpc::InsecureServerCredentials();
  auto cert = ReadFile(o.tls_cert_file, "tls_cert");
  if (!cert.ok()) return cert.status();
  auto key = ReadFile(o.tls_key_file, "tls_key");
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({*key, *cert});
  return grpc::SslServerCredentials(ssl);
}

// Hands the names of the services a server was built with (package.Service, as gRPC parsed
// them from their methods) to `names` when the server starts. A ServerBuilderOption is the
// builder's one public way to add a plugin to a single server.
class ServiceNamesOption final : public grpc::ServerBuilderOption {
 public:
  explicit ServiceNamesOption(std::vector<std::string>* names) : names_(names) {}
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    plugins->push_back(std::make_unique<Plugin>(names_));
  }

 private:
  class Plugin final : public grpc::ServerBuilderPlugin {
   public:
    explicit Plugin(std::vector<std::string>* names) : names_(names) {}
    std::string name() override { return "prl_service_names"; }
    // called once the services are registered, before the server starts.
    void InitServer(grpc::ServerInitializer* initializer) override {
      *names_ = *initializer->GetServiceList();
    }
    void Finish(grpc::ServerInitializer*) override {}
    void ChangeArguments(const std::string&, void*) override {}

   private:
    std::vector<std::string>* const names_;
  };

  std::vector<std::string>* const names_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ServerHost>> ServerHost::Start(
    const ServerOptions& options, const std::vector<grpc::Service*>& services,
    std::shared_ptr<prometheus::Registry> registry) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  auto credentials = MakeCredentials(options);
  if (!credentials.ok()) return credentials.status();

  std::unique_ptr<ServerHost> host(new ServerHost());
  host->options_ = options;
  host->registry_ = std::move(registry);
  host->tls_ = !options.tls_cert_file.empty();
  RegisterBuildInfo(*host->registry_, options.service_name);

  // metrics first: a server that cannot be observed should not start taking traffic.
  if (options.metrics_port >= 0) {
    const std::string bind = absl::StrCat(options.metrics_host, ":", options.metrics_port);
    try {
      host->exposer_ = std::make_unique<prometheus::Exposer>(bind);
    } catch (const std::exception& e) {
      return absl::UnavailableError(
          absl::StrCat("--metrics_port: cannot serve /metrics on ", bind, ": ", e.what()));
    }
    host->exposer_->RegisterCollectable(host->registry_);
    const std::vector<int> ports = host->exposer_->GetListeningPorts();
    if (ports.empty()) {
      return absl::UnavailableError(absl::StrCat("--metrics_port: nothing listening on ", bind));
    }
    host->metrics_port_ = ports.front();
  }

  grpc::ServerBuilder builder;
  const std::string address = absl::StrCat(options.host, ":", options.port);
  builder.AddListeningPort(address, *credentials, &host->port_);
  // a second server on a taken port must fail, not silently share it.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  if (options.max_threads > 0) {
    grpc::ResourceQuota quota(absl::StrCat(options.service_name, "_quota"));
    quota.SetMaxThreads(options.max_threads);
    builder.SetResourceQuota(quota);
  }
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<RpcMetricsInterceptorFactory>(*host->registry_));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  host->health_ = std::make_unique<HealthService>();
  builder.RegisterService(host->health_.get());
  for (grpc::Service* service : services) builder.RegisterService(service);
  std::vector<std::string> service_names;
  builder.SetOption(std::make_unique<ServiceNamesOption>(&service_names));

  host->server_ = builder.BuildAndStart();
  if (host->server_ == nullptr || host->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("--port: cannot listen on ", address, " (in use, or not a local address?)"));
  }
  // the server and each service it serves by its full name ("prl.v1.ReplayService"), as
  // health checkers ask; all go NOT_SERVING on Shutdown().
  host->health_->SetStatus("", grpc::health::v1::HealthCheckResponse::SERVING);
  for (const std::string& name : service_names) {
    host->health_->SetStatus(name, grpc::health::v1::HealthCheckResponse::SERVING);
  }
  PRL_LOG(INFO) << options.service_name << " serving on " << host->address()
                << (host->tls_ ? " (TLS)" : "") << ", metrics on port " << host->metrics_port_;
  return host;
}

ServerHost::~ServerHost() { Shutdown(); }

std::string ServerHost::address() const { return absl::StrCat(options_.host, ":", port_); }

std::string ServerHost::ReadyLine() const {
  return absl::StrCat("PRL_READY service=", options_.service_name, " grpc=", address(),
                      " metrics=", options_.metrics_host, ":", metrics_port_);
}

void ServerHost::Shutdown() {
  absl::MutexLock lock(&mu_);
  if (shut_down_ || server_ == nullptr) return;
  shut_down_ = true;
  PRL_LOG(INFO) << options_.service_name << " shutting down, draining for up to "
                << absl::FormatDuration(options_.drain_timeout);
  // the metrics web server takes up to ~2 s to stop (its poll interval): stop it while the
  // gRPC server drains rather than after.
  std::thread stop_metrics([exposer = std::move(exposer_)]() mutable { exposer.reset(); });
  // ends health Watch streams and answers NOT_SERVING from here on.
  health_->Shutdown();
  server_->Shutdown(absl::ToChronoTime(absl::Now() + options_.drain_timeout));
  server_->Wait();
  stop_metrics.join();
  PRL_LOG(INFO) << options_.service_name << " stopped";
}

}  // namespace prl
