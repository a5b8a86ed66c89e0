#include "prior_server/prior_service.h"

#include "common/grpc_status.h"

namespace prl::prior_server {
namespace {
constexpr char kBinary[] = "prl_prior_server";
}  // namespace

PriorServiceImpl::PriorServiceImpl(const PriorServiceOptions& options)
    : auth_(options.auth_token) {}

grpc::Status PriorServiceImpl::ListModels(grpc::ServerContext*, const v1::ListModelsRequest*,
                                          v1::ListModelsResponse*) {
  return UnimplementedRpc(kBinary, "PriorService.ListModels");
}

grpc::Status PriorServiceImpl::LoadModel(grpc::ServerContext* context, const v1::LoadModelRequest*,
                                         v1::LoadModelResponse*) {
  if (grpc::Status s = auth_.Check(*context); !s.ok()) return s;
  return UnimplementedRpc(kBinary, "PriorService.LoadModel");
}

grpc::Status PriorServiceImpl::UnloadModel(grpc::ServerContext* context,
                                           const v1::UnloadModelRequest*,
                                           v1::UnloadModelResponse*) {
  if (grpc::Status s = auth_.Check(*context); !s.ok()) return s;
  return UnimplementedRpc(kBinary, "PriorService.UnloadModel");
}

grpc::Status PriorServiceImpl::Decode(grpc::ServerContext*, const v1::DecodeRequest*,
                                      v1::DecodeResponse*) {
  return UnimplementedRpc(kBinary, "PriorService.Decode");
}

grpc::Status PriorServiceImpl::Prior(grpc::ServerContext*, const v1::PriorRequest*,
                                     v1::PriorResponse*) {
  return UnimplementedRpc(kBinary, "PriorService.Prior");
}

grpc::Status PriorServiceImpl::Forward(grpc::ServerContext*, const v1::ForwardRequest*,
                                       v1::ForwardResponse*) {
  return UnimplementedRpc(kBinary, "PriorService.Forward");
}

grpc::Status PriorServiceImpl::Inverse(grpc::ServerContext*, const v1::InverseRequest*,
                                       v1::InverseResponse*) {
  return UnimplementedRpc(kBinary, "PriorService.Inverse");
}

grpc::Status PriorServiceImpl::Translate(grpc::ServerContext*, const v1::TranslateRequest*,
                                         v1::TranslateResponse*) {
  return UnimplementedRpc(kBinary, "PriorService.Translate");
}

}  // namespace prl::prior_server
