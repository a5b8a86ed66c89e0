#include "replay/replay_service.h"

#include "common/grpc_status.h"

namespace prl::replay {
namespace {
constexpr char kBinary[] = "prl_replay";
}  // namespace

ReplayServiceImpl::ReplayServiceImpl(const ReplayServiceOptions& options)
    : auth_(options.auth_token) {}

grpc::Status ReplayServiceImpl::MutatingNotYetServed(const grpc::ServerContext& context,
                                                     const char* method) {
  if (grpc::Status s = auth_.Check(context); !s.ok()) return s;
  return UnimplementedRpc(kBinary, method);
}

grpc::Status ReplayServiceImpl::CreateTable(grpc::ServerContext* context,
                                            const v1::CreateTableRequest*,
                                            v1::CreateTableResponse*) {
  return MutatingNotYetServed(*context, "ReplayService.CreateTable");
}

grpc::Status ReplayServiceImpl::DeleteTable(grpc::ServerContext* context,
                                            const v1::DeleteTableRequest*,
                                            v1::DeleteTableResponse*) {
  return MutatingNotYetServed(*context, "ReplayService.DeleteTable");
}

grpc::Status ReplayServiceImpl::Insert(grpc::ServerContext* context,
                                       grpc::ServerReader<v1::InsertRequest>*,
                                       v1::InsertResponse*) {
  return MutatingNotYetServed(*context, "ReplayService.Insert");
}

grpc::Status ReplayServiceImpl::Sample(grpc::ServerContext* context, const v1::SampleRequest*,
                                       v1::SampleResponse*) {
  return MutatingNotYetServed(*context, "ReplayService.Sample");
}

grpc::Status ReplayServiceImpl::UpdatePriorities(grpc::ServerContext* context,
                                                 const v1::UpdatePrioritiesRequest*,
                                                 v1::UpdatePrioritiesResponse*) {
  return MutatingNotYetServed(*context, "ReplayService.UpdatePriorities");
}

grpc::Status ReplayServiceImpl::Info(grpc::ServerContext*, const v1::InfoRequest*,
                                     v1::InfoResponse*) {
  return UnimplementedRpc(kBinary, "ReplayService.Info");
}

grpc::Status ReplayServiceImpl::Checkpoint(grpc::ServerContext* context,
                                           const v1::CheckpointRequest*, v1::CheckpointResponse*) {
  return MutatingNotYetServed(*context, "ReplayService.Checkpoint");
}

}  // namespace prl::replay
