// The gRPC adapter of the prior-inference server (prl.v1.PriorService): checks every request
// (model reference, method, tensor dtypes, shapes, rows and finiteness, naming the field),
// resolves the model in the ModelRegistry (loading it on demand), runs the call through the
// model's dynamic batcher with the RPC's deadline and cancellation, and counts it in
// prl_prior_requests_total. LoadModel and UnloadModel require the bearer token when one is
// configured. Thread-safe; must outlive the server it is registered with.
#ifndef PRL_PRIOR_SERVER_PRIOR_SERVICE_H_
#define PRL_PRIOR_SERVER_PRIOR_SERVICE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/auth.h"
#include "models/prior_inference.h"
#include "prior_server/model_registry.h"
#include "prior_server/prior_metrics.h"
#include "proto/prior.grpc.pb.h"

namespace prl::prior_server {

struct PriorServiceOptions {
  // Bearer token required on mutating RPCs; empty turns the check off.
  std::string auth_token;
  // Rows one inference call may carry (INVALID_ARGUMENT beyond).
  int64_t max_request_rows = 65536;
};

class PriorServiceImpl final : public v1::PriorService::Service {
 public:
  // `registry` and `metrics` (may be null) must outlive the service.
  PriorServiceImpl(const PriorServiceOptions& options, ModelRegistry* registry,
                   PriorMetrics* metrics);

  grpc::Status ListModels(grpc::ServerContext* context, const v1::ListModelsRequest* request,
                          v1::ListModelsResponse* response) override;
  grpc::Status LoadModel(grpc::ServerContext* context, const v1::LoadModelRequest* request,
                         v1::LoadModelResponse* response) override;
  grpc::Status UnloadModel(grpc::ServerContext* context, const v1::UnloadModelRequest* request,
                           v1::UnloadModelResponse* response) override;
  grpc::Status Decode(grpc::ServerContext* context, const v1::DecodeRequest* request,
                      v1::DecodeResponse* response) override;
  grpc::Status Prior(grpc::ServerContext* context, const v1::PriorRequest* request,
                     v1::PriorResponse* response) override;
  grpc::Status Forward(grpc::ServerContext* context, const v1::ForwardRequest* request,
                       v1::ForwardResponse* response) override;
  grpc::Status Inverse(grpc::ServerContext* context, const v1::InverseRequest* request,
                       v1::InverseResponse* response) override;
  grpc::Status Translate(grpc::ServerContext* context, const v1::TranslateRequest* request,
                         v1::TranslateResponse* response) override;

 private:
  // Resolves, checks and runs one call. `fields` holds the request's input tensors in the
  // method's order (null for an absent message field); on success `outputs` gets the method's
  // outputs and `resolved` the model that answered.
  grpc::Status Infer(grpc::ServerContext* context, models::PriorMethod method,
                     const v1::PriorRef& ref, const std::vector<const v1::Tensor*>& fields,
                     std::vector<HostTensor>* outputs, v1::PriorRef* resolved);

  const TokenAuthenticator auth_;
  const PriorServiceOptions options_;
  ModelRegistry* const registry_;
  PriorMetrics* const metrics_;
};

}  // namespace prl::prior_server

#endif  // PRL_PRIOR_SERVER_PRIOR_SERVICE_H_
