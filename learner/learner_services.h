// The gRPC adapters the learner serves: prl.v1.ExperimentService (for users) over the
// ExperimentManager, and prl.v1.ActorService (for actors) over the ActorRegistry and the
// PolicyStore. Each handler checks the bearer token on mutating RPCs, calls the core and
// converts the status. Thread-safe; the cores are not owned and must outlive the services,
// which must outlive the server they are registered with.
#ifndef PRL_LEARNER_LEARNER_SERVICES_H_
#define PRL_LEARNER_LEARNER_SERVICES_H_

#include <atomic>
#include <string>

#include "common/auth.h"
#include "learner/actor_registry.h"
#include "learner/dataset_store.h"
#include "learner/experiment_manager.h"
#include "learner/policy_store.h"
#include "proto/actor.grpc.pb.h"
#include "proto/experiment.grpc.pb.h"

namespace prl::learner {

// Bounds the calls that hold a handler thread of the synchronous server (--grpc_max_threads)
// while they wait: Watch streams and GetPolicy calls waiting for a newer version. Actors'
// heartbeats and health checks need the other threads; prl_learner allows half of them.
// Shared by the learner's services. Thread-safe.
class WaitingCallLimit {
 public:
  explicit WaitingCallLimit(int max) : max_(max) {}
  // True when the call may wait (then Leave when done).
  bool TryEnter() {
    if (count_.fetch_add(1) < max_) return true;
    count_.fetch_sub(1);
    return false;
  }
  void Leave() { count_.fetch_sub(1); }
  int max() const { return max_; }
  int count() const { return count_.load(); }

 private:
  const int max_;
  std::atomic<int> count_{0};
};

struct LearnerServiceOptions {
  // Bearer token required on mutating RPCs; empty turns the check off.
  std::string auth_token;
  // Not owned; null: each service bounds its own waiting calls to 8.
  WaitingCallLimit* waiting_calls = nullptr;
};

class ExperimentServiceImpl final : public v1::ExperimentService::Service {
 public:
  // `datasets` (not owned, may be null: ListDatasets is then FAILED_PRECONDITION) answers
  // ListDatasets.
  ExperimentServiceImpl(const LearnerServiceOptions& options, ExperimentManager* manager,
                        const DatasetStore* datasets = nullptr);

  grpc::Status Submit(grpc::ServerContext* context, const v1::SubmitRequest* request,
                      v1::SubmitResponse* response) override;
  grpc::Status Get(grpc::ServerContext* context, const v1::GetRequest* request,
                   v1::GetResponse* response) override;
  grpc::Status List(grpc::ServerContext* context, const v1::ListRequest* request,
                    v1::ListResponse* response) override;
  grpc::Status Stop(grpc::ServerContext* context, const v1::StopRequest* request,
                    v1::StopResponse* response) override;
  // Streams the experiment's snapshots as proto/experiment.proto describes, blocking on
  // ExperimentManager::WaitForChange between them (changes within min_interval_ms are sent as
  // one snapshot, the newest); ends UNAVAILABLE when the manager shuts down.
  grpc::Status Watch(grpc::ServerContext* context, const v1::WatchRequest* request,
                     grpc::ServerWriter<v1::WatchResponse>* writer) override;
  // The dataset store's records (DatasetStore::List, or Lookup for one name) and the files it
  // could not read.
  grpc::Status ListDatasets(grpc::ServerContext* context, const v1::ListDatasetsRequest* request,
                            v1::ListDatasetsResponse* response) override;

 private:
  const TokenAuthenticator auth_;
  ExperimentManager* manager_;
  const DatasetStore* datasets_;
  WaitingCallLimit own_limit_{8};
  WaitingCallLimit* const waiting_calls_;
};

class ActorServiceImpl final : public v1::ActorService::Service {
 public:
  ActorServiceImpl(const LearnerServiceOptions& options, ActorRegistry* registry,
                   PolicyStore* policies);

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
  const TokenAuthenticator auth_;
  ActorRegistry* registry_;
  PolicyStore* policies_;
  WaitingCallLimit own_limit_{8};
  WaitingCallLimit* const waiting_calls_;
};

}  // namespace prl::learner

#endif  // PRL_LEARNER_LEARNER_SERVICES_H_
