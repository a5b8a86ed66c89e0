// PRL's implementation of the standard gRPC health service (grpc.health.v1.Health), registered
// by ServerHost on every server. The empty service name stands for the whole server.
// Thread-safe.
#ifndef PRL_COMMON_HEALTH_SERVICE_H_
#define PRL_COMMON_HEALTH_SERVICE_H_

#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "proto/health.grpc.pb.h"

namespace prl {

class HealthService final : public grpc::health::v1::Health::Service {
 public:
  using ServingStatus = grpc::health::v1::HealthCheckResponse::ServingStatus;

  // Sets the status of `service` ("" for the server) and wakes its watchers.
  void SetStatus(const std::string& service, ServingStatus status) ABSL_LOCKS_EXCLUDED(mu_);

  // Every service becomes NOT_SERVING, further SetStatus calls are ignored and Watch streams
  // end, so a draining server is not held open by its watchers.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

  // NOT_FOUND for a service never set.
  grpc::Status Check(grpc::ServerContext* context,
                     const grpc::health::v1::HealthCheckRequest* request,
                     grpc::health::v1::HealthCheckResponse* response) override;

  // Sends the current status, then every change, until the client cancels or Shutdown().
  grpc::Status Watch(grpc::ServerContext* context,
                     const grpc::health::v1::HealthCheckRequest* request,
                     grpc::ServerWriter<grpc::health::v1::HealthCheckResponse>* writer) override;

 private:
  ServingStatus StatusLocked(const std::string& service) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::map<std::string, ServingStatus> statuses_ ABSL_GUARDED_BY(mu_);
  // Bumped on every change so watchers can tell they missed nothing.
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace prl

#endif  // PRL_COMMON_HEALTH_SERVICE_H_
