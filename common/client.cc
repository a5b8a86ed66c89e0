#include "common/client.h"

#include <algorithm>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "proto/health.grpc.pb.h"

namespace prl {

absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateChannel(const ChannelOptions& options) {
  if (options.address.empty()) {
    return absl::InvalidArgumentError("channel address is empty; expected host:port");
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  // each channel gets its own connection instead of sharing one process-wide.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // a restarted peer is found within seconds: gRPC's default reconnect backoff grows to 120 s.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 250);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.tls_ca_file.empty()) {
    credentials = grpc::InsecureChannelCredentials();
  } else {
    std::ifstream in(options.tls_ca_file);
    if (!in) {
      return absl::NotFoundError(
          absl::StrCat("cannot read TLS CA file '", options.tls_ca_file, "'"));
    }
    std::ostringstream pem;
    pem << in.rdbuf();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = pem.str();
    credentials = grpc::SslCredentials(ssl);
    if (!options.tls_server_name.empty()) {
      args.SetSslTargetNameOverride(options.tls_server_name);
    }
  }
  return grpc::CreateCustomChannel(options.address, credentials, args);
}

void PrepareContext(const CallOptions& options, grpc::ClientContext* context) {
  context->set_deadline(absl::ToChronoTime(absl::Now() + options.timeout));
  if (!options.auth_token.empty()) {
    context->AddMetadata("authorization", absl::StrCat("Bearer ", options.auth_token));
  }
}

void CallCanceller::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  if (current_ != nullptr) current_->TryCancel();
}

bool CallCanceller::cancelled() const {
  absl::MutexLock lock(&mu_);
  return cancelled_;
}

bool CallCanceller::Begin(grpc::ClientContext* context) {
  absl::MutexLock lock(&mu_);
  if (cancelled_) return false;
  current_ = context;
  return true;
}

void CallCanceller::End() {
  absl::MutexLock lock(&mu_);
  current_ = nullptr;
}

bool CallCanceller::SleepFor(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&cancelled_), d);
  return !cancelled_;
}

absl::Status CallWithRetry(const CallOptions& call_options, const RetryOptions& retry,
                           const std::function<grpc::Status(grpc::ClientContext*)>& call) {
  std::optional<absl::BitGen> rng;  // seeded only when a retry needs it
  const absl::Time give_up = absl::Now() + retry.total_timeout;
  absl::Duration backoff = retry.initial_backoff;
  const grpc::Status cancelled(grpc::StatusCode::CANCELLED, "the call was cancelled");
  grpc::Status status;
  for (int attempt = 1;; ++attempt) {
    grpc::ClientContext context;
    PrepareContext(call_options, &context);
    if (retry.canceller != nullptr && !retry.canceller->Begin(&context))
      return FromGrpcStatus(cancelled);
    status = call(&context);
    if (retry.canceller != nullptr) retry.canceller->End();
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE) break;
    if (attempt >= retry.max_attempts) break;
    // full jitter: sleep uniformly in [backoff/2, backoff].
    if (!rng.has_value()) rng.emplace();
    const absl::Duration sleep = backoff * absl::Uniform(*rng, 0.5, 1.0);
    if (absl::Now() + sleep >= give_up) break;
    if (retry.canceller != nullptr) {
      if (!retry.canceller->SleepFor(sleep)) return FromGrpcStatus(cancelled);
    } else {
      absl::SleepFor(sleep);
    }
    backoff = std::min(backoff * retry.multiplier, retry.max_backoff);
  }
  return FromGrpcStatus(status);
}

absl::Status CheckHealth(const std::shared_ptr<grpc::Channel>& channel, const CallOptions& options,
                         const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  grpc::ClientContext context;
  PrepareContext(options, &context);
  grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  if (response.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
    return absl::UnavailableError(
        absl::StrCat("not serving: health status ",
                     grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status())));
  }
  return absl::OkStatus();
}

}  // namespace prl
