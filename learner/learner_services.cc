#include "learner/learner_services.h"

#include "common/grpc_status.h"

namespace prl::learner {
namespace {
constexpr char kBinary[] = "prl_learner";
}  // namespace

ExperimentServiceImpl::ExperimentServiceImpl(const LearnerServiceOptions& options)
    : auth_(options.auth_token) {}

grpc::Status ExperimentServiceImpl::Submit(grpc::ServerContext* context, const v1::SubmitRequest*,
                                           v1::SubmitResponse*) {
  if (grpc::Status s = auth_.Check(*context); !s.ok()) return s;
  return UnimplementedRpc(kBinary, "ExperimentService.Submit");
}

grpc::Status ExperimentServiceImpl::Get(grpc::ServerContext*, const v1::GetRequest*,
                                        v1::GetResponse*) {
  return UnimplementedRpc(kBinary, "ExperimentService.Get");
}

grpc::Status ExperimentServiceImpl::List(grpc::ServerContext*, const v1::ListRequest*,
                                         v1::ListResponse*) {
  return UnimplementedRpc(kBinary, "ExperimentService.List");
}

grpc::Status ExperimentServiceImpl::Stop(grpc::ServerContext* context, const v1::StopRequest*,
                                         v1::StopResponse*) {
  if (grpc::Status s = auth_.Check(*context); !s.ok()) return s;
  return UnimplementedRpc(kBinary, "ExperimentService.Stop");
}

grpc::Status ExperimentServiceImpl::Watch(grpc::ServerContext*, const v1::WatchRequest*,
                                          grpc::ServerWriter<v1::WatchResponse>*) {
  return UnimplementedRpc(kBinary, "ExperimentService.Watch");
}

ActorServiceImpl::ActorServiceImpl(const LearnerServiceOptions& options)
    : auth_(options.auth_token) {}

grpc::Status ActorServiceImpl::MutatingNotYetServed(const grpc::ServerContext& context,
                                                    const char* method) {
  if (grpc::Status s = auth_.Check(context); !s.ok()) return s;
  return UnimplementedRpc(kBinary, method);
}

grpc::Status ActorServiceImpl::Join(grpc::ServerContext* context, const v1::JoinRequest*,
                                    v1::JoinResponse*) {
  return MutatingNotYetServed(*context, "ActorService.Join");
}

grpc::Status ActorServiceImpl::Heartbeat(grpc::ServerContext* context, const v1::HeartbeatRequest*,
                                         v1::HeartbeatResponse*) {
  return MutatingNotYetServed(*context, "ActorService.Heartbeat");
}

grpc::Status ActorServiceImpl::GetPolicy(grpc::ServerContext*, const v1::GetPolicyRequest*,
                                         v1::GetPolicyResponse*) {
  return UnimplementedRpc(kBinary, "ActorService.GetPolicy");
}

grpc::Status ActorServiceImpl::ReportEpisodes(grpc::ServerContext* context,
                                              const v1::ReportEpisodesRequest*,
                                              v1::ReportEpisodesResponse*) {
  return MutatingNotYetServed(*context, "ActorService.ReportEpisodes");
}

grpc::Status ActorServiceImpl::Leave(grpc::ServerContext* context, const v1::LeaveRequest*,
                                     v1::LeaveResponse*) {
  return MutatingNotYetServed(*context, "ActorService.Leave");
}

}  // namespace prl::learner
