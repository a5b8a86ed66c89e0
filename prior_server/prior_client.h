// The actor's side of the prior server: a models::PriorInference whose Run calls
// prl_prior_server over gRPC (one call per env batch per decision, a deadline on every attempt,
// retries with backoff on UNAVAILABLE so a restarting server costs a pause, not a failure).
// The same interface is implemented in-process by models/torch_prior_inference.h; code that
// decodes (an actor's latent policy) holds a PriorInference and does not care which.
//
// Which to use (docs/prior_server.md has the measurements): in-process for small priors on CPU
// actors (no network hop, no serialisation), the served path for large models, for GPUs, and
// for many actors sharing one batched model.
//
// Thread-safe: Run may be called from several threads at once (one gRPC channel, one stub).
#ifndef PRL_PRIOR_SERVER_PRIOR_CLIENT_H_
#define PRL_PRIOR_SERVER_PRIOR_CLIENT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/client.h"
#include "common/tensor.h"
#include "grpcpp/channel.h"
#include "models/prior_inference.h"
#include "proto/prior.grpc.pb.h"

namespace prl::prior_server {

struct RemotePriorOptions {
  // Deadline of each attempt and the bearer token (inference calls need none).
  CallOptions call{absl::Seconds(5), ""};
  // Retries on UNAVAILABLE (a server restarting, a connection not yet up).
  RetryOptions retry;
};

class RemotePrior final : public models::PriorInference {
 public:
  // Resolves `ref` on the server behind `channel`: version 0 becomes the newest version the
  // server has loaded or can load from its model directory, and stays fixed for this client's
  // life (a spec's PriorRef is resolved once, at the start). Errors: INVALID_ARGUMENT for a bad
  // name or a negative version; NOT_FOUND naming what the server has; the RPC's status.
  static absl::StatusOr<std::unique_ptr<RemotePrior>> Connect(
      std::shared_ptr<grpc::Channel> channel, const v1::PriorRef& ref,
      const RemotePriorOptions& options = {});

  const v1::ModelInfo& info() const override { return info_; }

  // One RPC (retried on UNAVAILABLE). Inputs are checked here first (CheckPriorInputs), so bad
  // input fails without a round trip; outputs are checked against the method's shapes.
  absl::StatusOr<std::vector<HostTensor>> Run(models::PriorMethod method,
                                              const std::vector<HostTensor>& inputs) const override;

 private:
  RemotePrior(std::unique_ptr<v1::PriorService::Stub> stub, v1::ModelInfo info,
              const RemotePriorOptions& options)
      : stub_(std::move(stub)), info_(std::move(info)), options_(options) {}

  const std::unique_ptr<v1::PriorService::Stub> stub_;
  const v1::ModelInfo info_;
  const RemotePriorOptions options_;
};

// Pushes an artifact (the whole file's bytes: a PRL artifact or a TorchScript module) to the
// prior server behind `channel` as name/version (LoadModelRequest.artifact), for servers that
// share no file system with the caller. `options.call.auth_token` must carry the server's token
// when it has one. Returns the ModelInfo the server now serves. Errors: LoadModel's statuses
// (ALREADY_EXISTS for another artifact under that name/version); UNAVAILABLE after the retries.
absl::StatusOr<v1::ModelInfo> PushModel(const std::shared_ptr<grpc::Channel>& channel,
                                        const std::string& name, int64_t version,
                                        const std::string& file_bytes,
                                        const RemotePriorOptions& options);

}  // namespace prl::prior_server

#endif  // PRL_PRIOR_SERVER_PRIOR_CLIENT_H_
