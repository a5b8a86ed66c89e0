// The gRPC adapters the learner serves: prl.v1.ExperimentService (for users) and
// prl.v1.ActorService (for actors). Both check the bearer token on mutating RPCs; the
// experiment queue, training loop and policy publication arrive with the training-loop issue,
// until then every RPC answers UNIMPLEMENTED. Thread-safe; owned by prl_learner's main (or a
// test) and must outlive the server they are registered with.
#ifndef PRL_LEARNER_LEARNER_SERVICES_H_
#define PRL_LEARNER_LEARNER_SERVICES_H_

#include <string>

#include "common/auth.h"
#include "proto/actor.grpc.pb.h"
#include "proto/experiment.grpc.pb.h"

namespace prl::learner {

struct LearnerServiceOptions {
  // Bearer token required on mutating RPCs; empty turns the check off.
  std::string auth_token;
};

class ExperimentServiceImpl final : public v1::ExperimentService::Service {
 public:
  explicit ExperimentServiceImpl(const LearnerServiceOptions& options);

  grpc::Status Submit(grpc::ServerContext* context, const v1::SubmitRequest* request,
                      v1::SubmitResponse* response) override;
  grpc::Status Get(grpc::ServerContext* context, const v1::GetRequest* request,
                   v1::GetResponse* response) override;
  grpc::Status List(grpc::ServerContext* context, const v1::ListRequest* request,
                    v1::ListResponse* response) override;
  grpc::Status Stop(grpc::ServerContext* context, const v1::StopRequest* request,
                    v1::StopResponse* response) override;
  grpc::Status Watch(grpc::ServerContext* context, const v1::WatchRequest* request,
                     grpc::ServerWriter<v1::WatchResponse>* writer) override;

 private:
  const TokenAuthenticator auth_;
};

class ActorServiceImpl final : public v1::ActorService::Service {
 public:
  explicit ActorServiceImpl(const LearnerServiceOptions& options);

  grpc::Status Join(grpc::ServerContext* context, const v1::JoinRequest* request,
                    v1::JoinResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext* context, const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override;
  grpc::Status GetPolicy(grpc::ServerContext* context, const v1::GetPolicyRequest* request,
                         v1::GetPolicyResponse* response) override;
  grpc::Status ReportEpisodes(grpc::ServerContext* context,
                              const v1::ReportEpisodesRequest* request,
                              v1::ReportEpisodesResponse* response) override;
  grpc::Status Leave(grpc::ServerContext* context, const v1::LeaveRequest* request,
                     v1::LeaveResponse* response) override;

 private:
  // Auth check, then UNIMPLEMENTED naming the method.
  grpc::Status MutatingNotYetServed(const grpc::ServerContext& context, const char* method);

  const TokenAuthenticator auth_;
};

}  // namespace prl::learner

#endif  // PRL_LEARNER_LEARNER_SERVICES_H_
