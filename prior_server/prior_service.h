// The gRPC adapter of the prior-inference server (prl.v1.PriorService). Checks the bearer
// token on mutating RPCs (LoadModel, UnloadModel); model loading and batched inference arrive
// with the prior-server issue, until then every RPC answers UNIMPLEMENTED. Thread-safe; owned
// by prl_prior_server's main (or a test) and must outlive the server it is registered with.
#ifndef PRL_PRIOR_SERVER_PRIOR_SERVICE_H_
#define PRL_PRIOR_SERVER_PRIOR_SERVICE_H_

#include <string>

#include "common/auth.h"
#include "proto/prior.grpc.pb.h"

namespace prl::prior_server {

struct PriorServiceOptions {
  // Bearer token required on mutating RPCs; empty turns the check off.
  std::string auth_token;
};

class PriorServiceImpl final : public v1::PriorService::Service {
 public:
  explicit PriorServiceImpl(const PriorServiceOptions& options);

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
  const TokenAuthenticator auth_;
};

}  // namespace prl::prior_server

#endif  // PRL_PRIOR_SERVER_PRIOR_SERVICE_H_
